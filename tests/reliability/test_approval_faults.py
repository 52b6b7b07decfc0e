"""An approved tool call and a runner killed while making it: the call is made once.

The builder (offline scripted team) asks to call a slow tool of a ``requireApproval``
server; a person approves through the read API; the runner is SIGKILLed while the call
is in flight (the MCP server's log says it started). The tick is claimed by another
runner and resumed: it finds the call claimed by the dead attempt and marks it
``Interrupted`` instead of calling again. Afterwards: one call in the server's log,
and every invariant from Redis and the API server.
"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import redis
from kubernetes import client

from agentstack_devkit.fleet import Fleet
from agentstack_devkit.mcpserver import ToolServer
from tests.e2e.stacks import Stacks
from tests.helpers import eventually
from tests.reliability.support import (
    approval_state,
    approval_tools,
    approve,
    pending_approval,
    verify,
)


def test_an_approved_call_runs_once_across_a_runner_sigkill(
    fleet: Fleet,
    k8s_api: client.ApiClient,
    namespace: str,
    reader: redis.Redis,
    tmp_path: Path,
) -> None:
    with ToolServer(tmp_path / "mcp") as server:
        stacks = Stacks(k8s_api, namespace, reader)
        stacks.create("careful", tickIntervalSeconds=3600, tools=approval_tools(server))
        fleet.operator()
        victim = fleet.runner("runner-0")[0]
        _api, port = fleet.api()
        path = f"/api/v1/namespaces/{namespace}/stacks/careful"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            approval = pending_approval(http, path)
            approve(http, path, approval)
            server.wait_calls("slow", 1)  # the call is in flight: kill its caller
            victim.send_signal(signal.SIGKILL)
            victim.wait_exit()
            fleet.runner("runner-1")

            def settled() -> str | None:
                state = approval_state(http, path, approval)
                return state if state not in ("Approved", "Running") else None

            final = eventually(settled, "the resumed tick to settle the call", timeout=90)
        assert final == "Interrupted"
        assert len(server.calls("slow")) == 1  # never made again
        report = verify(
            "approved call, runner SIGKILL mid-call", fleet, k8s_api, reader, [namespace]
        )
        assert report.executed >= 2
