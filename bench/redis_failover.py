"""From the death of the Redis primary to every stack ticking again, over 10 failovers.

Run from the repository root::

    .venv/bin/python -m bench.redis_failover              # 10 failovers at each lease TTL
    .venv/bin/python -m bench.redis_failover --quick      # 3 failovers, the short TTL only

What a platform team's night looks like when the machine under the Redis primary dies:
the fleet as deployed on this machine (control plane, a primary, a replica and three
Sentinels from :class:`~agentstack_devkit.redissentinel.SentinelRedis`, the operator,
two runners and the read API, all finding the primary through the Sentinels, with
``REDIS_WAIT_REPLICAS=1``), ``--stacks`` stacks ticking every 2 s whose agents call a
:class:`~agentstack_devkit.fakellm.FakeLLMServer` answering in 0.05-0.3 s (so ticks are
in flight when the primary dies). Each failover:

1. waits until every stack has ticked since the previous one (the fleet is at speed);
2. SIGKILLs the primary (the moment of the kill is *t0*);
3. waits until the Sentinels name the replica (**promoted**), then starts the dead server
   again as a replica of the new primary (its StatefulSet restarting it; with one
   replica and ``REDIS_WAIT_REPLICAS=1`` nothing is confirmed until then);
4. waits until a stack runs a tick that started after *t0* (**first tick**) and until
   every stack has (**all ticking**): the ``started_at`` the runner recorded under the
   lease, minus *t0*.

Ticks that were in flight at the kill hold their stack's lease until it expires (their
runner could not release it with Redis gone), and are claimed again after the
visibility timeout: both scale what "all ticking" waits for, so the bench runs twice —
at the product's default lease TTL (30 s) and at the fault suite's (3 s, with its short
visibility timeout). It also counts, over all failovers, the ticks recorded as dropped
with their reasons. Absolute figures depend on the machine; ``bench/RESULTS.md``
records them with the command.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis
from kubernetes import client

from agentstack_core.keys import StackKeys, StackRef
from agentstack_devkit.controlplane import ControlPlane
from agentstack_devkit.fakellm import FakeLLMServer
from agentstack_devkit.fleet import Fleet
from agentstack_devkit.redissentinel import SentinelRedis
from agentstack_devkit.toolchain import controlplane_binaries
from bench.operator_scale import (
    BenchError,
    _apply_crd,
    _progress,
    bench_main,
    create_stacks,
    kube_client,
    percentile,
    stack_refs,
)

NAMESPACE = "bench-failover"
INTERVAL = 2
POOL_KEY = "sk-bench-failover-pool-key"
SHORT = {
    "AGENTSTACK_RUNNER_LEASE_TTL": "3",
    "AGENTSTACK_RUNNER_VISIBILITY_TIMEOUT": "4",
    "AGENTSTACK_RUNNER_CLAIM_INTERVAL": "0.5",
}
"""The fault suite's lease and claim timings (tests/reliability/support.py, ``FAST``)."""
RECOVERY_TIMEOUT = 180.0


@dataclass
class Failover:
    promoted: float
    first: float
    all_ticking: float


@dataclass
class Scenario:
    name: str
    env: Mapping[str, str]
    failovers: list[Failover] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)


def _started_since(reader: redis.Redis, ref: StackRef, moment: float) -> list[dict[str, str]]:
    """The stack's history entries that started after ``moment`` (newest few)."""
    entries: list[tuple[str, dict[str, str]]] = reader.xrevrange(  # type: ignore[assignment]
        StackKeys(ref).history, count=20
    )
    return [fields for _id, fields in entries if float(fields.get("started_at") or 0) > moment]


def _ran_since(reader: redis.Redis, refs: Sequence[StackRef], moment: float) -> list[float]:
    """For each stack that ran a tick started after ``moment``: the first one's start."""
    found = []
    for ref in refs:
        ran = [
            float(e["started_at"])
            for e in _started_since(reader, ref, moment)
            if e["outcome"] != "Dropped"
        ]
        if ran:
            found.append(min(ran))
    return found


def _wait(check: Callable[[], bool], what: str, timeout: float = RECOVERY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def _one_failover(
    setup: SentinelRedis, reader: redis.Redis, refs: Sequence[StackRef], scenario: Scenario
) -> Failover:
    before = time.time()
    _wait(lambda: len(_ran_since(reader, refs, before)) == len(refs), "the fleet at speed")
    killed = setup.kill_primary()
    t0 = time.time()
    setup.wait_promoted(killed.port)
    promoted = time.time() - t0
    setup.rejoin(killed)
    ran: list[float] = []

    def everyone() -> bool:
        ran[:] = _ran_since(reader, refs, t0)
        return len(ran) == len(refs)

    _wait(everyone, "every stack to tick after the failover")
    for ref in refs:  # what the failover cost: ticks dropped while the fleet recovered
        for entry in _started_since(reader, ref, t0):
            if entry["outcome"] == "Dropped" and float(entry["started_at"]) <= max(ran):
                scenario.dropped[entry.get("reason") or "?"] += 1
    return Failover(promoted, min(ran) - t0, max(ran) - t0)


@contextlib.contextmanager
def _fleet(
    log_dir: Path,
    plane: ControlPlane,
    setup: SentinelRedis,
    gateway: FakeLLMServer,
    env: Mapping[str, str],
) -> Iterator[Fleet]:
    fleet = Fleet(
        kubeconfig=plane.kubeconfig_path,
        redis_url=setup.env()["REDIS_URL"],
        logs_dir=log_dir,
        extra_env={
            **setup.env(),
            **env,
            "REDIS_WAIT_REPLICAS": "1",
            "AGENTSTACK_ALLOWED_BASE_URLS": gateway.openai_base_url,
            "OPENAI_API_KEY": POOL_KEY,
        },
    )
    try:
        fleet.operator()
        fleet.runner("runner-a")
        fleet.runner("runner-b")
        fleet.api()
        yield fleet
    finally:
        fleet.stop()


def run(args: argparse.Namespace) -> str:
    log_dir = Path(tempfile.mkdtemp(prefix="agentstack-failover-bench-"))
    scenarios = [Scenario("3 s (fault suite)", SHORT)]
    if not args.quick:
        scenarios.insert(0, Scenario("30 s (default)", {}))
    with contextlib.ExitStack() as stack:
        _progress("starting the control plane, the Sentinels and the fake LLM...")
        plane = stack.enter_context(
            ControlPlane(controlplane_binaries(), data_dir=log_dir / "controlplane")
        )
        setup = stack.enter_context(SentinelRedis(data_dir=log_dir / "sentinel"))
        gateway = stack.enter_context(FakeLLMServer(latency=(0.05, 0.3)))
        _apply_crd(plane)
        api = kube_client(plane.kubeconfig_path)
        stack.callback(api.close)
        reader = setup.client(retry_on_error=[redis.ConnectionError])
        stack.callback(reader.close)
        core = client.CoreV1Api(api)
        for index, scenario in enumerate(scenarios):
            namespace = f"{NAMESPACE}-{index}"
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
            refs = stack_refs([namespace], 0, args.stacks)
            with _fleet(log_dir / f"fleet-{index}", plane, setup, gateway, scenario.env):
                _progress(f"{scenario.name}: {args.stacks} stacks every {INTERVAL} s...")
                create_stacks(api, refs, INTERVAL, lambda _ref: _on_gateway(gateway))
                for number in range(1, args.failovers + 1):
                    failover = _one_failover(setup, reader, refs, scenario)
                    scenario.failovers.append(failover)
                    _progress(
                        f"  failover {number}: promoted {failover.promoted:.1f} s, first tick "
                        f"{failover.first:.1f} s, all ticking {failover.all_ticking:.1f} s"
                    )
                custom = client.CustomObjectsApi(api)
                for ref in refs:
                    custom.delete_namespaced_custom_object(
                        "agentstack.dev", "v1alpha1", ref.namespace, "agentstacks", ref.name
                    )
    return _table(scenarios, args)


def _on_gateway(gateway: FakeLLMServer) -> dict[str, object]:
    return {
        "llm": {
            "model": {"provider": "openai", "name": "gpt-4o-mini"},
            "providers": {"openai": {"baseURL": gateway.openai_base_url}},
        }
    }


def _seconds(values: Sequence[float]) -> str:
    return (
        " | ".join(f"{percentile(values, f):.1f} s" for f in (0.5, 0.99))
        + f" | {max(values):.1f} s"
    )


def _table(scenarios: Sequence[Scenario], args: argparse.Namespace) -> str:
    lines = [
        f"{args.stacks} stacks every {INTERVAL} s, REDIS_WAIT_REPLICAS=1, "
        f"{args.failovers} failovers per row (p50 | p99 | max).",
        "",
        "| lease TTL | promoted p50 | p99 | max | first tick p50 | p99 | max "
        "| all ticking p50 | p99 | max | dropped while recovering |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for scenario in scenarios:
        done = scenario.failovers
        dropped = ", ".join(f"{reason} {count}" for reason, count in scenario.dropped.most_common())
        lines.append(
            f"| {scenario.name} | {_seconds([f.promoted for f in done])} "
            f"| {_seconds([f.first for f in done])} | {_seconds([f.all_ticking for f in done])} "
            f"| {dropped or 'none'} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_failover")
    parser.add_argument("--quick", action="store_true", help="3 failovers, short leases only")
    parser.add_argument("--stacks", type=int, default=50)
    parser.add_argument("--failovers", type=int, default=10)
    args = parser.parse_args(argv)
    if args.quick:
        args.failovers = min(args.failovers, 3)
    return bench_main(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
