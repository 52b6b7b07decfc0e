"""What the fault cases share: stacks on the platform's gateway, waiting for ticks, a
fleet wired to a given Redis, and the one way every case ends (quiesce, then check)."""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import redis
from kubernetes import client

from agentstack_devkit.controlplane import ControlPlane
from agentstack_devkit.fakellm import Delay, FakeLLMServer, RecordedRequest, Reply
from agentstack_devkit.fleet import Fleet
from agentstack_devkit.mcpserver import ToolServer
from agentstack_devkit.processes import ManagedProcess
from tests.e2e.stacks import Stacks
from tests.helpers import eventually
from tests.reliability.invariants import Report, check, quiesce

POOL_KEY = "sk-reliability-pool-key-never-seen"
"""The runners' own key: the checker proves it appears nowhere."""

QUIET = '{"thought": "nothing to add", "actions": []}'
CONSOLIDATED = json.dumps(
    {
        "thought": "folded",
        "actions": [{"type": "update_long_term_memory", "delivered": ["what the team did"]}],
    }
)
"""A consolidation's answer (its step moves the long-term memory and the watermark)."""
POSTED = json.dumps(
    {"thought": "report", "actions": [{"type": "post_update", "content": "all quiet"}]}
)
"""A communicator's answer: a feed post, which the archive keeps (so consolidations have
something to fold)."""


def consolidating(gateway: FakeLLMServer, seconds: float) -> None:
    """Make the gateway's communicators post every tick and its consolidations take
    ``seconds``: a stack of it always has something to consolidate, slowly."""
    gateway.add_rule(
        Delay(seconds, Reply(CONSOLIDATED)),
        headers={"X-Agentstack-Agent": "(sleep)"},
        repeat_last=True,
    )
    gateway.add_rule(
        Reply(POSTED), headers={"X-Agentstack-Agent": "communicator"}, repeat_last=True
    )


FAST = {
    "AGENTSTACK_LEASE_SECONDS": "3",
    "AGENTSTACK_STATUS_MIN_INTERVAL": "0.5",
    "AGENTSTACK_RUNNER_CLAIM_INTERVAL": "0.5",
    "AGENTSTACK_RUNNER_VISIBILITY_TIMEOUT": "4",
    "AGENTSTACK_RUNNER_LEASE_TTL": "3",
    "AGENTSTACK_RUNNER_DRAIN_TIMEOUT": "2",
}
"""Failover in seconds, not minutes: leases, claims and status cadence of a test."""


@contextlib.contextmanager
def fleet_on(
    control_plane: ControlPlane,
    api: client.ApiClient,
    redis_url: str,
    *,
    gateway: FakeLLMServer,
    logs_dir: Path,
    env: Mapping[str, str] | None = None,
) -> Iterator[Fleet]:
    """Processes wired to ``redis_url`` (and ``env``: Sentinels, confirmed commits), the
    gateway allow-listed for the pool's key, their leader Lease in a namespace of their
    own; all stopped on the way out."""
    lease_namespace = f"ops-{secrets.token_hex(4)}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=lease_namespace)))
    fleet = Fleet(
        kubeconfig=control_plane.kubeconfig_path,
        redis_url=redis_url,
        logs_dir=logs_dir,
        extra_env={
            **FAST,
            "AGENTSTACK_OPERATOR_NAMESPACE": lease_namespace,
            "AGENTSTACK_ALLOWED_BASE_URLS": f"{gateway.openai_base_url},{gateway.groq_base_url}",
            "OPENAI_API_KEY": POOL_KEY,
            **(env or {}),
        },
    )
    try:
        yield fleet
    finally:
        fleet.stop()
        core.delete_namespace(lease_namespace)


def team_of_stacks(
    stacks: Stacks, count: int, gateway: FakeLLMServer | None = None, **spec: Any
) -> list[str]:
    """``count`` stacks (on the gateway, or the offline scripted team); their names."""
    names = [f"team-{n:03d}" for n in range(count)]
    for name in names:
        stacks.create(name, **(on_gateway(gateway, **spec) if gateway else spec))
    return names


def on_gateway(gateway: FakeLLMServer, **spec: Any) -> dict[str, Any]:
    """A spec whose agents call the platform's gateway with the pool's key."""
    return {
        "llm": {
            "model": {"provider": "openai", "name": "gpt-4o-mini"},
            "providers": {"openai": {"baseURL": gateway.openai_base_url}},
        },
        **spec,
    }


def sleep_calls(gateway: FakeLLMServer) -> list[RecordedRequest]:
    """The consolidation calls the gateway received so far."""
    return [r for r in gateway.requests if r.headers.get("x-agentstack-agent") == "(sleep)"]


def kill_runners_during(
    fleet: Fleet, victim: ManagedProcess, times: int, in_flight: Callable[[], int], what: str
) -> None:
    """SIGKILL ``victim`` — then each runner started in its place — ``times`` times,
    each once ``in_flight()`` (calls the gateway received) has grown: a call of the
    kind the case is about is then in flight, likely in the victim's hands."""
    for kill in range(1, times + 1):
        seen = in_flight()
        eventually(lambda seen=seen: True if in_flight() > seen else None, what, timeout=90)
        victim.send_signal(signal.SIGKILL)
        victim.wait_exit()
        victim = fleet.runner(f"runner-{kill}")[0]


def ticks(stacks: Stacks, names: list[str]) -> int:
    """Ticks the stacks' status reports, all together."""
    return sum(int(stacks.status(name).get("ticks") or 0) for name in names)


def more_ticks(stacks: Stacks, names: list[str], more: int, timeout: float = 90) -> None:
    start = ticks(stacks, names)
    eventually(
        lambda: True if ticks(stacks, names) >= start + more else None,
        f"{more} more ticks",
        timeout=timeout,
    )


def verify(
    what: str,
    fleet: Fleet,
    api: client.ApiClient,
    reader: redis.Redis,
    namespaces: list[str],
    **checks: Any,
) -> Report:
    """Bring the fleet to rest, run the invariant checker, fail on any problem, and
    print the figures (``-s``) under ``what``."""
    if namespaces:
        quiesce(api, reader, namespaces)
    report = check(
        api,
        reader,
        namespaces,
        secrets=[POOL_KEY],
        logs=sorted(fleet.logs_dir.glob("*.log")),
        **checks,
    )
    if report.problems:
        raise AssertionError(f"{what}: invariants broken:\n" + "\n".join(report.problems))
    print(f"{what}: {report.summary()}")
    return report


def approval_tools(server: ToolServer) -> dict[str, Any]:
    """A stack's ``tools``: the server's slow tool, every call of it needing approval."""
    return {
        "servers": [
            {
                "name": "kb",
                "url": server.url,
                "allowedTools": ["slow"],
                "requireApproval": True,
                "timeoutSeconds": 60,
            }
        ]
    }


def pending_approval(http: httpx.Client, path: str) -> str:
    """Wait for the stack at ``path`` (the read API's) to ask for a call; its id."""

    def asked() -> str | None:
        items = http.get(f"{path}/approvals").json().get("items") or []
        return next((a["id"] for a in items if a["state"] == "Pending"), None)

    return eventually(asked, "the builder's call to wait for approval")


def approve(http: httpx.Client, path: str, approval: str) -> None:
    """A person approves the call through the read API (answered 200)."""
    decided = http.post(f"{path}/approvals/{approval}", json={"decision": "Approved"})
    assert decided.status_code == 200, decided.text


def approval_state(http: httpx.Client, path: str, approval: str) -> str | None:
    """The approval's state as the read API says it."""
    items = http.get(f"{path}/approvals").json().get("items") or []
    return next((a["state"] for a in items if a["id"] == approval), None)
