"""Redis with a replica and Sentinel: the primary SIGKILLed under load, the replica
promoted, every process finding the new primary by itself.

- Twenty stacks tick every 2 s with confirmed commits (``REDIS_WAIT_REPLICAS=1``); the
  primary is killed; every stack must run a tick again within :data:`RECOVERY_BOUND`
  of the kill (promotion about 2 s, the dead server back as a replica as its
  StatefulSet would bring it, the processes' reconnection back-off), and the invariant
  checker is clean.
- An approved tool call whose claim the replica never received: without ``WAIT``, the
  claim acknowledged by the primary dies with it, the approval is ``Approved`` again on
  the promoted replica, and the call is made twice (shown, so the case proves it can
  see the hazard); with ``WAIT``, nothing is acted on until the replica confirms, and
  the call is made once.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from kubernetes import client

from agentstack_core.keys import StackKeys, StackRef
from agentstack_devkit.controlplane import ControlPlane
from agentstack_devkit.fakellm import FakeLLMServer
from agentstack_devkit.fleet import Fleet
from agentstack_devkit.mcpserver import ToolServer
from agentstack_devkit.redissentinel import SentinelRedis
from tests.e2e.stacks import Stacks
from tests.helpers import eventually
from tests.reliability.support import (
    approval_state,
    approval_tools,
    approve,
    fleet_on,
    more_ticks,
    pending_approval,
    team_of_stacks,
    verify,
)

STACKS = 20
RECOVERY_BOUND = 30.0
"""Seconds from the primary's death to every stack having run a tick again."""


@pytest.fixture(scope="module")
def sentinel_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelRedis]:
    with SentinelRedis(data_dir=tmp_path_factory.mktemp("sentinel")) as setup:
        yield setup


@pytest.fixture
def primary_reader(sentinel_redis: SentinelRedis) -> Iterator[redis.Redis]:
    """The checker's client: whichever server is the primary (it follows failovers)."""
    reader = sentinel_redis.client(retry_on_error=[redis.ConnectionError])
    reader.flushall()
    reader.execute_command("WAIT", 1, 5000)
    try:
        yield reader
    finally:
        reader.close()


FleetStarter = Callable[..., contextlib.AbstractContextManager[Fleet]]


@pytest.fixture
def sentinel_fleet(
    sentinel_redis: SentinelRedis,
    control_plane: ControlPlane,
    k8s_api: client.ApiClient,
    crd: str,
    gateway: FakeLLMServer,
    tmp_path: Path,
) -> FleetStarter:
    """``with sentinel_fleet(wait_replicas=n) as fleet``: processes that find the primary
    through the Sentinels, with ``REDIS_WAIT_REPLICAS=n``."""

    @contextlib.contextmanager
    def start(*, wait_replicas: int) -> Iterator[Fleet]:
        env = {**sentinel_redis.env(), "REDIS_WAIT_REPLICAS": str(wait_replicas)}
        logs = tmp_path / "logs"
        with fleet_on(
            control_plane, k8s_api, env["REDIS_URL"], gateway=gateway, logs_dir=logs, env=env
        ) as fleet:
            yield fleet

    return start


def _ran_since(stacks: Stacks, name: str, moment: float) -> float | None:
    """When the stack's first tick that ran after ``moment`` started."""
    started = [
        float(h["started_at"])
        for h in stacks.history(name)
        if float(h["started_at"]) > moment and h["outcome"] != "Dropped"
    ]
    return min(started) if started else None


def test_the_primary_killed_under_load_and_every_stack_ticks_again(
    sentinel_redis: SentinelRedis,
    sentinel_fleet: FleetStarter,
    primary_reader: redis.Redis,
    k8s_api: client.ApiClient,
    namespace: str,
    gateway: FakeLLMServer,
) -> None:
    with sentinel_fleet(wait_replicas=1) as fleet:
        stacks = Stacks(k8s_api, namespace, primary_reader)
        names = team_of_stacks(stacks, STACKS, gateway, tickIntervalSeconds=2)
        fleet.operator()
        fleet.runner("runner-a")
        fleet.runner("runner-b")
        fleet.api()
        more_ticks(stacks, names, 2 * STACKS)
        killed_at = time.time()
        sentinel_redis.failover()  # the dead server back as a replica, as a StatefulSet does

        def all_ticking() -> float | None:
            again = [_ran_since(stacks, name, killed_at) for name in names]
            return None if None in again else max(a for a in again if a is not None)

        last = eventually(all_ticking, "every stack to tick after the failover", timeout=120)
        recovered = last - killed_at
        print(f"primary SIGKILL: every stack ticking again {recovered:.1f}s after the kill")
        assert recovered < RECOVERY_BOUND
        verify(
            "Redis primary SIGKILL, Sentinel failover", fleet, k8s_api, primary_reader, [namespace]
        )


@pytest.mark.parametrize("wait_replicas", [1, 0], ids=["with-wait", "without-wait"])
def test_an_approved_call_whose_claim_a_failover_lost(
    wait_replicas: int,
    sentinel_redis: SentinelRedis,
    sentinel_fleet: FleetStarter,
    primary_reader: redis.Redis,
    k8s_api: client.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    """The decision is replicated; then the replica is cut off, the stack resumed, and
    the primary killed once the call started (without ``WAIT``) or once the runner has
    had time to try (with it). Made twice without ``WAIT``; once with it."""
    with (
        ToolServer(tmp_path / "mcp") as server,
        sentinel_fleet(wait_replicas=wait_replicas) as fleet,
    ):
        stacks = Stacks(k8s_api, namespace, primary_reader)
        stacks.create("careful", tickIntervalSeconds=3, tools=approval_tools(server))
        fleet.operator()
        fleet.runner("runner-0")
        _api, port = fleet.api()
        path = f"/api/v1/namespaces/{namespace}/stacks/careful"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            approval = pending_approval(http, path)
            stacks.patch_spec("careful", executionState="Paused")
            stacks.wait_condition("careful", "Paused", "True")
            lease = StackKeys(StackRef(namespace, "careful")).lease
            eventually(  # no tick left in flight that could claim the call before the cut
                lambda: True if primary_reader.get(lease) is None else None,
                "the stack's last tick to end",
            )
            approve(http, path, approval)
            primary_reader.set("replicated", "1")  # everything before it reaches the replica
            assert primary_reader.execute_command("WAIT", 1, 5000) == 1
            with sentinel_redis.lagging():
                stacks.patch_spec("careful", executionState="Running")
                if wait_replicas:
                    # Nothing is acted on: the dispatch itself is not confirmed.
                    operator_log = fleet.logs_dir / "operator.log"
                    eventually(
                        lambda: True if "could not send" in operator_log.read_text() else None,
                        "the operator to find its dispatch unconfirmed",
                    )
                else:
                    server.wait_calls("slow", 1, timeout=60)  # the claim was acknowledged
                assert len(server.calls("slow")) == 1 - wait_replicas
                _killed = sentinel_redis.kill_primary()
            sentinel_redis.wait_promoted(_killed.port)
            sentinel_redis.rejoin(_killed)

            def settled() -> str | None:
                state = approval_state(http, path, approval)
                return state if state in ("Executed", "Interrupted") else None

            final = eventually(settled, "the call to be made after the failover", timeout=120)
            if wait_replicas:
                server.wait_calls("slow", 1)
            else:
                server.wait_calls("slow", 2)
        calls = len(server.calls("slow"))
        print(f"REDIS_WAIT_REPLICAS={wait_replicas}: approved call made {calls}x ({final})")
        if not wait_replicas:
            assert calls == 2  # the hazard: the claim the replica never had was lost
            return
        assert final == "Executed"
        assert calls == 1
        verify("approved call across a failover", fleet, k8s_api, primary_reader, [namespace])
