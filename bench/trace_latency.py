"""From a tick's due time to its first trace line on the live page's SSE stream.

Run from the repository root::

    .venv/bin/python -m bench.trace_latency                 # 10 then 1,000 stacks, ~6 min
    .venv/bin/python -m bench.trace_latency --quick         # 10 then 100 stacks, ~2 min

What a person watching a stack waits for: the operator dispatches the tick of a slot,
a runner takes it, leases the stack, runs the first agent and commits its step with
the trace entry, and the read API pushes that entry to every SSE client. The bench runs
the whole fleet as deployed on this machine — a real control plane, ``redis-server``,
the operator, the runners on the offline scripted provider, and one ``agentstack api``
— and, during a measured window, keeps SSE clients connected to
``…/stacks/{name}/traces/stream`` of a sample of the stacks. For each tick whose first
trace line arrives it records:

- **due → first line**: arrival (this process's clock) minus the slot's due time (the
  tick id carries it in milliseconds; same machine, same clock);
- **orchestration**: the same minus the first step's own time (``latencyMs``: its
  context read and model call), i.e. dispatch, queueing, lease, commit and the push.

The baseline, in the same command, is the same measurement with a handful of stacks
(nothing queues): the ratio says what the fleet's size adds. Absolute figures depend on
the machine; ``bench/RESULTS.md`` records them with the command.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import redis
from kubernetes import client

from agentstack_core.keys import StackRef
from agentstack_core.messages import slot_of
from bench.operator_scale import (
    BenchError,
    Processes,
    api_fleet,
    bench_main,
    create_stacks,
    ms,
    percentile,
    spread,
    stack_refs,
    ticked_in_redis,
    wait_for,
)

NAMESPACE = "trace-bench"
SAMPLE = 20
"""Stacks with an SSE client during the window (each is one connection to the API)."""


@dataclass(frozen=True)
class Sample:
    """One tick's first trace line."""

    due: float
    arrived: float
    step_seconds: float

    @property
    def wait(self) -> float:
        return self.arrived - self.due

    @property
    def orchestration(self) -> float:
        return self.wait - self.step_seconds


@dataclass(frozen=True)
class Outcome:
    stacks: int
    interval: int
    samples: list[Sample]


class Listener:
    """SSE clients on some stacks' trace streams; the first line of each tick counts."""

    def __init__(self, base_url: str, refs: Sequence[StackRef]) -> None:
        self.base_url = base_url
        self.refs = refs
        self.first: dict[str, Sample] = {}
        self.stop = threading.Event()
        self.connected = threading.Semaphore(0)
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._listen, args=(ref,), daemon=True) for ref in refs
        ]

    def __enter__(self) -> Listener:
        for thread in self._threads:
            thread.start()
        for _ref in self.refs:
            if not self.connected.acquire(timeout=30):
                raise BenchError("SSE clients did not connect within 30 s")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=40)

    def _listen(self, ref: StackRef) -> None:
        path = f"/api/v1/namespaces/{ref.namespace}/stacks/{ref.name}/traces/stream"
        # Longer than the API's 15 s keep-alive: a line (event or comment) at least that
        # often lets the thread see `stop`.
        timeout = httpx.Timeout(10.0, read=30.0)
        connected = False
        try:
            with (
                httpx.Client(base_url=self.base_url, timeout=timeout) as http,
                http.stream("GET", path) as response,
            ):
                response.raise_for_status()
                connected = True
                self.connected.release()
                for line in response.iter_lines():
                    if self.stop.is_set():
                        return
                    if line.startswith("data: "):
                        self._record(json.loads(line[6:]), time.time())
        except Exception as exc:  # reported with the results, never silently
            self.errors.append(f"{ref}: {type(exc).__name__}: {exc}")
        finally:
            if not connected:
                self.connected.release()  # do not hold the start up

    def _record(self, data: dict[str, object], arrived: float) -> None:
        tick = str(data.get("tickId", ""))
        slot = slot_of(tick)
        if slot is None:
            return
        with self._lock:
            if tick not in self.first:
                self.first[tick] = Sample(
                    due=slot / 1000,
                    arrived=arrived,
                    step_seconds=int(str(data.get("latencyMs") or 0)) / 1000,
                )


def measure(
    procs: Processes,
    reader: redis.Redis,
    api_url: str,
    kube: client.ApiClient,
    refs: Sequence[StackRef],
    new: Sequence[StackRef],
    interval: int,
    window: float,
) -> Outcome:
    print(f"creating {len(new)} stacks ({len(refs)} in all)...", file=sys.stderr)
    create_stacks(kube, new, interval)
    deadline = time.monotonic() + max(120.0, len(new) / 10)
    wait_for("stacks ticked", lambda: ticked_in_redis(reader, refs), len(refs), deadline, procs)
    sample = refs[:: max(1, len(refs) // SAMPLE)][:SAMPLE]
    print(f"  listening to {len(sample)} stacks for {window:g} s...", file=sys.stderr)
    with Listener(api_url, sample) as listener:
        opened = time.time()
        end = time.monotonic() + window
        while time.monotonic() < end:
            procs.check_alive()
            time.sleep(0.5)
        closed = time.time()
    if listener.errors:
        raise BenchError(f"SSE clients failed: {listener.errors[0]}")
    # Only ticks due inside the window, so none is cut off by its end, and not in its
    # first second: a key that joins the API's tailing waits for the read in progress
    # (up to its 500 ms block) once, which is subscription, not tick, latency.
    samples = [s for s in listener.first.values() if opened + 1.0 <= s.due <= closed - 5]
    if not samples:
        raise BenchError("no trace line arrived in the window")
    return Outcome(len(refs), interval, samples)


def table(outcomes: Sequence[Outcome]) -> str:
    header = (
        "| stacks | ticks seen | due → first line p50 | p90 | p99 | max "
        "| orchestration p50 | p99 | p99 vs baseline |\n|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    base = None
    for outcome in outcomes:
        waits = [s.wait for s in outcome.samples]
        orchestration = [s.orchestration for s in outcome.samples]
        p99 = percentile(orchestration, 0.99)
        base = base or p99
        rows.append(
            f"| {outcome.stacks} | {len(outcome.samples)} | {spread(waits)} "
            f"| {ms(percentile(orchestration, 0.5))} | {ms(p99)} | {p99 / base:.2f}x |"
        )
    return "\n".join([header, *rows])


def run(args: argparse.Namespace) -> str:
    outcomes: list[Outcome] = []
    with api_fleet("agentstack-trace-bench-", args.runners, NAMESPACE) as bench:
        existing = 0
        for size in (args.baseline, args.stacks):
            refs = stack_refs([NAMESPACE], 0, size)
            outcomes.append(
                measure(
                    bench.procs,
                    bench.reader,
                    bench.api_url,
                    bench.kube,
                    refs,
                    refs[existing:],
                    args.interval,
                    args.window,
                )
            )
            existing = size
    return (
        f"\n{args.runners} runner(s), tickIntervalSeconds {args.interval}, {SAMPLE} stacks "
        f"listened to for {args.window:g} s after warm-up.\n\n{table(outcomes)}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.trace_latency", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--stacks", type=int, default=1000, help="stacks (default 1000)")
    parser.add_argument("--baseline", type=int, default=10, help="baseline stacks (default 10)")
    parser.add_argument("--interval", type=int, default=10, help="tickIntervalSeconds (10)")
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured (60)")
    parser.add_argument("--runners", type=int, default=1, help="runner processes (default 1)")
    parser.add_argument("--quick", action="store_true", help="100 stacks, 25 s: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.stacks, args.window = 100, 25.0
    return bench_main(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
