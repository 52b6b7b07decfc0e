"""Fair share under a noisy neighbour (issue 26): a quiet namespace (10 stacks every 5 s)
beside a noisy one (5,000 stacks every 10 s) on runners the noisy one saturates.

The runners are stand-ins of a known capacity (:mod:`bench.ack_consumer` with
``BENCH_SERVICE_SECONDS``: 32 slots of 100 ms, 320 ticks a second, against the 502 the
two namespaces ask for), so the benchmark measures the operator's dispatch, not agent
work two cores could not run at this scale. The operator, control plane and Redis are
the real ones.

Three runs, one after the other, on the same control plane, Redis and runners:

1. **alone**: the quiet namespace only (the baseline);
2. **noisy, first come first served**: the noisy namespace added, the operator restarted
   with ``AGENTSTACK_DISPATCH_BACKLOG=0`` (every due tick straight into the lanes: the
   design before fair share);
3. **noisy, fair share**: the operator restarted with its defaults.

Each run measures, over its window, the quiet namespace's ticks: due → start (the
tick's slot to the moment a runner took it) at p50/p99, and the share dropped (a tick
that could not start before its next was due). The goal: run 3's p99 at most 1.5x run
1's.

Usage (from the repository root)::

    .venv/bin/python -m bench.fair_share           # ~10 minutes
    .venv/bin/python -m bench.fair_share --quick   # 500 noisy stacks, shorter windows

The Markdown table goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import redis
from kubernetes import client

from agentstack_core.keys import FleetKeys, StackRef
from agentstack_core.messages import TickKind, kind_of, slot_of
from agentstack_devkit.fleet import Fleet
from agentstack_devkit.processes import LOOPBACK
from bench.operator_scale import (
    BenchError,
    Metrics,
    Processes,
    _bench_process,
    _progress,
    _wait_leader,
    bench_main,
    bucket_delta,
    create_stacks,
    environment,
    histogram_quantile,
    http_get,
    kube_client,
    ms,
    percentile,
    process_cpu_seconds,
)

QUIET, QUIET_INTERVAL = 10, 5
NOISY, NOISY_INTERVAL = 5000, 10
SLOTS, SERVICE_SECONDS = 32, 0.1
"""The stand-in runners' capacity: 320 ticks a second."""
LAG = "agentstack_scheduler_dispatch_lag_seconds"


@dataclass(frozen=True)
class Run:
    label: str
    started: int
    dropped: int
    delays: list[float]
    """Due → start of each quiet tick that started, in seconds."""
    noisy_started: int
    dispatch_lag: tuple[float, float]
    """p50 and p99 of the leader's dispatch lag (due → sent, every namespace's) over the
    window, from its histogram."""
    operator_cpu: float
    """The leader's CPU over the window, as a share of one core."""

    @property
    def p50(self) -> float:
        return percentile(self.delays, 0.5)

    @property
    def p99(self) -> float:
        return percentile(self.delays, 0.99)


def _runners(fleet: Fleet, slots: int) -> None:
    _bench_process(
        fleet,
        "runners",
        "ack_consumer",
        "AGENTSTACK_RUNNER_METRICS_PORT",
        "agentstack_runner_queue_lag",
        AGENTSTACK_RUNNER_ID="runners",
        BENCH_SERVICE_SECONDS=str(SERVICE_SECONDS),
        BENCH_SLOTS=str(slots),
    )


def _restart_operator(procs: Processes, fleet: Fleet, **env: str) -> None:
    procs.operator.stop(timeout=20)
    fleet.processes.remove(procs.operator)
    procs.operator, procs.operator_port = fleet.operator(**env)
    _wait_leader(procs)


def _operator_lag(procs: Processes) -> tuple[dict[float, float], float]:
    """The leader's dispatch lag buckets and CPU seconds so far."""
    text = http_get(f"http://{LOOPBACK}:{procs.operator_port}/metrics")
    buckets = Metrics.parse(text, "agentstack_").buckets(LAG)
    assert procs.operator.pid is not None
    return buckets, process_cpu_seconds(procs.operator.pid)


def _measure(
    procs: Processes, reader: redis.Redis, label: str, warmup: float, window: float
) -> Run:
    """The quiet namespace's ticks whose results came in ``window`` seconds after
    ``warmup`` (read from the results stream: each names its tick and when it started),
    and the leader's dispatch lag and CPU over the same window."""
    _progress(f"{label}: warming up {warmup:.0f}s, then measuring {window:.0f}s...")
    time.sleep(warmup)
    lag_before, cpu_before = _operator_lag(procs)
    first = f"{int(time.time() * 1000)}-0"
    time.sleep(window)
    last = f"{int(time.time() * 1000)}-0"
    lag_after, cpu_after = _operator_lag(procs)
    lag = bucket_delta(lag_after, lag_before)
    dispatch_lag = (histogram_quantile(0.5, lag), histogram_quantile(0.99, lag))
    delays: list[float] = []
    dropped = noisy = 0
    entries = cast(list[tuple[str, dict[str, str]]], reader.xrange(FleetKeys.results, first, last))
    for _id, fields in entries:
        tick = fields.get("tick_id", "")
        slot = slot_of(tick)
        if kind_of(tick) is not TickKind.WORK or slot is None:
            continue
        if not tick.startswith("quiet/"):
            noisy += fields.get("outcome") == "Succeeded"
            continue
        if fields.get("outcome") == "Dropped":
            dropped += 1
        else:
            delays.append(float(fields["started_at"]) - slot / 1000)
    tail = sorted(delays)[-8:]
    _progress(f"  {len(delays)} started, {dropped} dropped; slowest: {[round(d, 2) for d in tail]}")
    if not delays and not dropped:
        raise BenchError(f"{label}: no quiet tick ended in the window")
    cpu = (cpu_after - cpu_before) / window
    return Run(label, len(delays), dropped, delays, noisy, dispatch_lag, cpu)


def run(quick: bool) -> str:
    noisy_count = 500 if quick else NOISY
    slots = max(2, round(SLOTS * noisy_count / NOISY))  # as saturated in a quick run
    warmup, window = (20.0, 30.0) if quick else (40.0, 90.0)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-fair-share-"))
    runs: list[Run] = []
    with environment(log_dir, 0, 0, {}, consumer="ack") as (procs, plane, server, fleet):
        _runners(fleet, slots)
        kube = kube_client(plane.kubeconfig_path)
        reader = redis.Redis.from_url(server.url, decode_responses=True)
        try:
            core = client.CoreV1Api(kube)
            for name in ("quiet", "noisy"):
                core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
            quiet = [StackRef("quiet", f"q{i:02d}") for i in range(QUIET)]
            create_stacks(kube, quiet, QUIET_INTERVAL)
            runs.append(_measure(procs, reader, "alone", warmup, window))
            _progress(f"creating {noisy_count} noisy stacks...")
            noisy = [StackRef("noisy", f"n{i:04d}") for i in range(noisy_count)]
            took = create_stacks(kube, noisy, NOISY_INTERVAL)
            _progress(f"  created in {took:.0f}s")
            _restart_operator(procs, fleet, AGENTSTACK_DISPATCH_BACKLOG="0")
            runs.append(_measure(procs, reader, "noisy, first come first served", warmup, window))
            _restart_operator(procs, fleet)
            runs.append(_measure(procs, reader, "noisy, fair share", warmup, window))
        finally:
            reader.close()
            kube.close()  # type: ignore[no-untyped-call]
    return _table(runs, noisy_count, slots, window)


def _table(runs: list[Run], noisy_count: int, slots: int, window: float) -> str:
    base = runs[0].p99

    def cell(value: float, text: str) -> str:
        return "none started" if math.isnan(value) else text

    lines = [
        f"Quiet namespace: {QUIET} stacks every {QUIET_INTERVAL} s; noisy: {noisy_count} "
        f"every {NOISY_INTERVAL} s; runners: {slots} slots of {SERVICE_SECONDS * 1000:.0f} ms "
        f"({slots / SERVICE_SECONDS:.0f} ticks/s); window {window:.0f} s.",
        "",
        "| run | quiet ticks started | quiet dropped | due → start p50 | p99 | p99 vs alone "
        "| noisy ticks run | dispatch lag p50 | p99 | operator CPU |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for each in runs:
        lines.append(
            f"| {each.label} | {each.started} | {each.dropped} | {cell(each.p50, ms(each.p50))} "
            f"| {cell(each.p99, ms(each.p99))} | {cell(each.p99, f'{each.p99 / base:.2f}x')} "
            f"| {each.noisy_started} | {ms(each.dispatch_lag[0])} | {ms(each.dispatch_lag[1])} "
            f"| {each.operator_cpu:.0%} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 noisy stacks, short windows")
    args = parser.parse_args()
    return bench_main(lambda: run(args.quick))


if __name__ == "__main__":
    sys.exit(main())
