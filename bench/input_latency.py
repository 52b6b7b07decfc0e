"""From an input sent to the read API to the start of the tick it brings.

Run from the repository root::

    .venv/bin/python -m bench.input_latency              # quiet, then 1,000 stacks x 10 s
    .venv/bin/python -m bench.input_latency --quick      # quiet, then 100 stacks

What a person who sends a stack a message waits for before its agents act on it: the
API authorises and writes the input and a wake-up, the leading operator reads the
wake-up and dispatches an extra tick, a runner takes it and leases the stack. The
bench runs the fleet as deployed on this machine (control plane, ``redis-server``, the
operator, one runner on the offline scripted provider, one ``agentstack api``), and
sends inputs one at a time, each to one of a few target stacks that tick once an hour
on their own (so the tick that reads an input is the one it brought). For each input:

- **input → tick start**: the tick's ``started_at`` (it holds the lease: the runner's
  clock) minus the moment before the ``POST`` (this process's clock; same machine);
- **input → read**: when the agent's step that read it committed, minus the same.

The baseline, in the same command, sends the same inputs to a fleet of only the target
stacks; the loaded run adds background stacks ticking every ``--interval`` seconds, so
the wake-up competes with their dispatch, queue and runner. Absolute figures depend on
the machine; ``bench/RESULTS.md`` records them with the command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import redis

from agentstack_core.keys import StackKeys, StackRef
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

NAMESPACE = "input-bench"
TARGETS = 5
HOUR = 3600
READ_TIMEOUT = 30.0


@dataclass(frozen=True)
class Sample:
    started: float
    """Input → tick start (seconds)."""
    read: float
    """Input → the step that read it committed (seconds)."""


@dataclass(frozen=True)
class Outcome:
    background: int
    samples: list[Sample]


def _history_start(reader: redis.Redis, ref: StackRef, tick: str) -> float | None:
    for _id, fields in reader.xrevrange(StackKeys(ref).history, count=20):
        if fields.get("tick_id") == tick:
            return float(fields["started_at"])
    return None


def send_and_wait(
    http: httpx.Client, reader: redis.Redis, ref: StackRef, text: str, procs: Processes
) -> Sample:
    """One input; waits until the tick it brought has read it and is recorded."""
    path = f"/api/v1/namespaces/{ref.namespace}/stacks/{ref.name}/inputs"
    sent = time.time()
    answer = http.post(path, json={"agent": "planner", "content": text})
    if answer.status_code != 202:
        raise BenchError(f"input refused: {answer.status_code} {answer.text}")
    number = str(answer.json()["number"])
    deadline = time.monotonic() + READ_TIMEOUT
    while time.monotonic() < deadline:
        raw = reader.hget(StackKeys(ref).input_outcomes, number)
        if raw:
            outcome = json.loads(str(raw))
            start = _history_start(reader, ref, outcome["tickId"])
            if start is not None:
                return Sample(started=start - sent, read=float(outcome["at"]) - sent)
        procs.check_alive()
        time.sleep(0.01)
    raise BenchError(f"input #{number} to {ref} not read within {READ_TIMEOUT:g} s")


def measure(
    procs: Processes,
    reader: redis.Redis,
    http: httpx.Client,
    targets: Sequence[StackRef],
    inputs: int,
    background: int,
) -> Outcome:
    print(f"sending {inputs} inputs with {background} background stacks...", file=sys.stderr)
    samples = []
    for index in range(inputs):
        ref = targets[index % len(targets)]
        samples.append(send_and_wait(http, reader, ref, f"input {index}", procs))
        time.sleep(0.2)  # the tick it brought finishes; the next input finds the stack idle
    return Outcome(background, samples)


def table(outcomes: Sequence[Outcome]) -> str:
    header = (
        "| background stacks | inputs | input → tick start p50 | p90 | p99 | max "
        "| input → read p50 | p99 | p99 vs baseline |\n|---|---|---|---|---|---|---|---|---|"
    )
    rows = []
    base = None
    for outcome in outcomes:
        started = [s.started for s in outcome.samples]
        read = [s.read for s in outcome.samples]
        p99 = percentile(started, 0.99)
        base = base or p99
        rows.append(
            f"| {outcome.background} | {len(started)} | {spread(started)} "
            f"| {ms(percentile(read, 0.5))} | {ms(percentile(read, 0.99))} "
            f"| {p99 / base:.2f}x |"
        )
    return "\n".join([header, *rows])


def run(args: argparse.Namespace) -> str:
    with api_fleet("agentstack-input-bench-", 1, NAMESPACE) as bench:
        procs, reader = bench.procs, bench.reader
        targets = [StackRef(NAMESPACE, f"target-{n}") for n in range(TARGETS)]
        create_stacks(bench.kube, targets, HOUR)
        deadline = time.monotonic() + 120
        wait_for(
            "targets ticked", lambda: ticked_in_redis(reader, targets), TARGETS, deadline, procs
        )
        with httpx.Client(base_url=bench.api_url, timeout=10) as http:
            outcomes = [measure(procs, reader, http, targets, args.inputs, 0)]
            background = stack_refs([NAMESPACE], 0, args.stacks)
            print(f"creating {args.stacks} background stacks...", file=sys.stderr)
            create_stacks(bench.kube, background, args.interval)
            deadline = time.monotonic() + max(120.0, args.stacks / 10)
            wait_for(
                "stacks ticked",
                lambda: ticked_in_redis(reader, background),
                args.stacks,
                deadline,
                procs,
            )
            outcomes.append(measure(procs, reader, http, targets, args.inputs, args.stacks))
    return (
        f"\n{TARGETS} target stacks (hourly, scripted), one runner; background stacks every "
        f"{args.interval} s.\n\n{table(outcomes)}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.input_latency", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--stacks", type=int, default=1000, help="background stacks (1000)")
    parser.add_argument("--interval", type=int, default=10, help="their tickIntervalSeconds")
    parser.add_argument("--inputs", type=int, default=100, help="inputs per run (100)")
    parser.add_argument("--quick", action="store_true", help="100 stacks, 40 inputs")
    args = parser.parse_args(argv)
    if args.quick:
        args.stacks, args.inputs = 100, 40
    return bench_main(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
