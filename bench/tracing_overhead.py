"""CPU per tick that OpenTelemetry tracing costs: the runner, and the operator's dispatch.

Why this shape:

- The question (issue 12) is what tracing costs per tick, in CPU, with no endpoint
  (tracing off, the default) and with an exporter. So the unit is **runner CPU seconds
  per tick** (``utime + stime`` of the runner process from ``/proc/<pid>/stat``, every
  thread included, so the SDK's batch exporter thread is counted), not ticks/s, which
  moves with whatever else the shared machine is doing.
- The runner is measured as deployed, with the helpers of
  :mod:`bench.runner_throughput`: a real ``redis-server``, a fresh
  ``python -m agentstack_cli runner`` process per run, ticks of N stacks dispatched
  in rounds through the stream protocol, the default four-agent team on the offline
  scripted provider — no LLM wait, so the CPU is the runner's own work, and the share
  tracing takes of it is the largest it can be (with a real provider a tick costs several
  times more CPU, the SDK's included, and the spans are the same nine).
- The exporter sends to a live receiver over the wire: a real Jaeger v2
  (:class:`agentstack_devkit.jaeger.JaegerServer`, a fresh one per run), the way
  ``tests/e2e/test_tracing.py`` runs it. An exporter pointed at nothing would measure
  failed connections instead of exports. After each run (the runner stopped, so its
  last batch flushed) the spans are counted back through Jaeger's query API: per tick
  one ``tick``, four ``invoke_agent`` and four ``chat`` spans (9; the scripted team
  calls no tools), so a dropped span (the SDK's batch queue holds 2,048) shows up.
- The runner makes a root ``tick`` span itself when a request carries no
  ``traceparent`` (the benchmark dispatches none), so every tick is traced without an
  operator; extracting a parent context would add one header parse per tick.
- Configurations, each a fresh runner, run in the same command and interleaved (all
  configurations once, then again, ``--repeats`` times), so a drift of the machine hits
  all of them alike: tracing off (no endpoint: the **baseline**), exporter on, exporter
  on with ``AGENTSTACK_TRACE_CONTENT=true`` (prompts and completions in the ``chat``
  spans), and exporter on with ``parentbased_traceidratio`` at 0.1 (what
  ``docs/tracing.md`` suggests; the runner's roots are sampled at 10 %, their children
  follow). The table gives the median of the repeats and their range.
- The operator's side is one ``dispatch tick`` span per tick
  (:func:`agentstack_operator.dispatching.traced`). Tracing installs a process-wide
  provider, so each configuration runs in a child process (``--operator-side``) that
  builds tick requests in batches of 500 (below the batch queue's 2,048, as the
  dispatcher's batches are) and measures ``time.process_time`` around building them,
  around ``traced()``, and around flushing the exporter (the export's encoding and
  sending, which the batch thread otherwise does in the background).

Usage (from the repository root; serialise with other heavy runs)::

    .venv/bin/python -m bench.tracing_overhead            # full run, ~6 minutes
    .venv/bin/python -m bench.tracing_overhead --quick    # smoke run, well under a minute

The Markdown tables go to stdout, progress to stderr. A run that fails gets a row saying
why, the others still run, and the exit code is 1. Every process it starts (Redis,
Jaeger, runners, the operator-side children) is stopped on the way out, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentstack_core import tracing
from agentstack_devkit.jaeger import JaegerServer
from agentstack_devkit.processes import DevEnvError
from agentstack_devkit.redisserver import RedisServer
from bench.runner_throughput import (
    BenchError,
    Measurement,
    RunPlan,
    log_issues,
    measure,
    run_notes,
    stack_refs,
    tick_requests,
)

RUNNER_SERVICE = "agentstack-runner"
OPERATOR_SERVICE = "agentstack-operator"
SPANS_PER_TICK = 9
"""``tick`` + 4 x ``invoke_agent`` + 4 x ``chat``: the default team, scripted, no tools."""
CONCURRENCY = 64
"""The runner's default ``AGENTSTACK_RUNNER_CONCURRENCY``."""
OPERATOR_BATCH = 500
SAMPLER = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
SETTLE_TIMEOUT = 30.0
"""Seconds to wait for the span count in Jaeger to stop changing after a run."""


@dataclass(frozen=True)
class Config:
    """One tracing configuration of a process."""

    label: str
    exporter: bool
    env: Mapping[str, str] = field(default_factory=dict)
    """Added to the process's environment (besides the endpoint, when ``exporter``)."""
    fraction: float = 1.0
    """Expected share of ticks traced (the sampler's ratio)."""

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.label.lower()).strip("-")


RUNNER_CONFIGS = (
    Config("off (baseline)", exporter=False),
    Config("exporter", exporter=True),
    Config("exporter + content", exporter=True, env={tracing.CONTENT_VARIABLE: "true"}),
    Config("exporter, sampled 10 %", exporter=True, env=SAMPLER, fraction=0.1),
)
OPERATOR_CONFIGS = (
    Config("off (baseline)", exporter=False),
    Config("exporter", exporter=True),
    Config("exporter, sampled 10 %", exporter=True, env=SAMPLER, fraction=0.1),
)


@dataclass(frozen=True)
class Received:
    """What Jaeger holds of one service after a run."""

    traces: int
    spans: int
    shapes: Counter[int]
    """Spans per trace -> number of traces of that size."""


@dataclass
class RunnerRun:
    config: Config
    measurement: Measurement
    received: Received | None
    """``None`` when tracing was off (no receiver), or the spans could not be counted."""
    count_error: str = ""

    @property
    def ticks_run(self) -> int:
        """Every tick the runner executed: the timed ones and the warm-up round."""
        plan = self.measurement.plan
        return plan.stacks * (plan.rounds + 1)

    @property
    def cpu_per_tick(self) -> float:
        return self.measurement.usage.runner_cpu / max(1, self.measurement.succeeded)


@dataclass(frozen=True)
class RunFailure:
    config: Config
    error: str
    log_issues: list[str]


@dataclass(frozen=True)
class OperatorSide:
    config: Config
    calls: int
    build: float
    """CPU seconds building the tick requests."""
    traced: float
    """CPU seconds in ``traced()`` (span, attributes, context injection)."""
    export: float
    """CPU seconds flushing the batches to the exporter (encode and send)."""
    carried: int
    """Requests that came out with a ``traceparent``."""
    received: Received | None


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _headline(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(error).__name__


def _clean_environment() -> None:
    """No tracing setting of the caller's shell may leak into the baseline."""
    for name in list(os.environ):
        if name.startswith("OTEL_") or name == tracing.CONTENT_VARIABLE:
            del os.environ[name]


def count_received(jaeger: JaegerServer, service: str, limit: int) -> Received:
    """Spans of ``service`` in Jaeger, once the count has stopped changing."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    previous: Received | None = None
    while True:
        traces = jaeger.traces(service, limit=limit)
        shapes = Counter(len(trace.get("spans") or ()) for trace in traces)
        current = Received(len(traces), _span_total(shapes), shapes)
        if current == previous or time.monotonic() > deadline:
            return current
        previous = current
        time.sleep(0.5)


def _span_total(shapes: Counter[int]) -> int:
    return sum(size * count for size, count in shapes.items())


def measure_runner(config: Config, plan: RunPlan, redis: RedisServer, log_dir: Path) -> RunnerRun:
    """One fresh runner under ``config``; its own Jaeger when the exporter is on."""
    with contextlib.ExitStack() as stack:
        env = dict(config.env)
        jaeger: JaegerServer | None = None
        if config.exporter:
            jaeger = stack.enter_context(JaegerServer())
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = jaeger.otlp_endpoint
        measurement = asyncio.run(measure(plan, redis, None, log_dir, env))
        run = RunnerRun(config, measurement, None)
        if jaeger is not None:  # the runner has exited: its last batch is flushed
            limit = 2 * plan.stacks * (plan.rounds + 1) + 100
            try:
                run.received = count_received(jaeger, RUNNER_SERVICE, limit)
            except (DevEnvError, OSError) as exc:  # the CPU figures stand without it
                run.count_error = _headline(exc)
        return run


def operator_side_child(calls: int, batch: int) -> dict[str, Any]:
    """In a child process: CPU of building and tracing ``calls`` dispatches."""
    from opentelemetry import trace

    from agentstack_core.spec import Executor
    from agentstack_operator.dispatching import traced

    tracing.configure(OPERATOR_SERVICE)
    provider: Any = trace.get_tracer_provider()
    stacks = stack_refs(batch)
    totals = {"build": 0.0, "traced": 0.0, "export": 0.0}
    carried = 0
    rounds = 1 + -(-calls // batch)  # the first round warms up, uncounted
    for round_number in range(rounds):
        started = time.process_time()
        requests = tick_requests(stacks, round_number, time.time())
        built = time.process_time()
        sent = [traced(request, Executor.POOL, lag=0.002) for request in requests]
        spanned = time.process_time()
        if tracing.enabled():
            provider.force_flush()
        flushed = time.process_time()
        if round_number:
            totals["build"] += built - started
            totals["traced"] += spanned - built
            totals["export"] += flushed - spanned
            carried += sum(1 for request in sent if request.traceparent)
    tracing.shutdown()
    return {"calls": (rounds - 1) * batch, "carried": carried, **totals}


def measure_operator(config: Config, calls: int) -> OperatorSide:
    """Run the operator-side microbenchmark in a child process under ``config``."""
    with contextlib.ExitStack() as stack:
        env = {**os.environ, **config.env}
        jaeger: JaegerServer | None = None
        if config.exporter:
            jaeger = stack.enter_context(JaegerServer())
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = jaeger.otlp_endpoint
        argv = [sys.executable, "-m", "bench.tracing_overhead", "--operator-side"]
        argv += ["--calls", str(calls)]
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        if done.returncode != 0:
            raise BenchError(f"operator-side child failed: {done.stderr.strip()[-500:]}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        received = None
        if jaeger is not None:
            received = count_received(jaeger, OPERATOR_SERVICE, 2 * calls + 2 * OPERATOR_BATCH)
        return OperatorSide(
            config,
            calls=int(figures["calls"]),
            build=float(figures["build"]),
            traced=float(figures["traced"]),
            export=float(figures["export"]),
            carried=int(figures["carried"]),
            received=received,
        )


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs"


def _short_row(cells: list[str], columns: int) -> str:
    """A table row of the first ``cells``, the other columns empty."""
    return "| " + " | ".join(cells + [""] * (columns - len(cells))) + " |"


def _failed(failures: Sequence[RunFailure]) -> str:
    return f"**failed**: {failures[0].error}" if failures else "-"


def runner_table(runs: Sequence[RunnerRun | RunFailure]) -> str:
    header = (
        "| configuration | runs | ticks timed | runner CPU per tick (median) | range "
        "| vs baseline | extra CPU per tick | ticks/s (median) | ticks run | spans received "
        "| spans per tick run | traces of 9 spans |"
    )
    columns = header.count("|") - 1
    rows = [header, "|" + "---|" * columns]
    base: float | None = None
    for config in RUNNER_CONFIGS:
        done = [run for run in runs if isinstance(run, RunnerRun) and run.config == config]
        failed = [run for run in runs if isinstance(run, RunFailure) and run.config == config]
        if not done:
            rows.append(_short_row([config.label, "0", _failed(failed)], columns))
            continue
        per_tick = [run.cpu_per_tick for run in done]
        median = statistics.median(per_tick)
        if base is None and not config.exporter:
            base = median
        ratio = f"{median / base:.2f}x" if base else "-"
        extra = f"{(median - base) * 1000:+.2f} ms" if base else "-"
        rate = statistics.median(run.measurement.ticks_per_second for run in done)
        ticks_run = sum(run.ticks_run for run in done)
        received = [run.received for run in done if run.received is not None]
        if received:
            spans = sum(r.spans for r in received)
            full = sum(r.shapes.get(SPANS_PER_TICK, 0) for r in received)
            traces = sum(r.traces for r in received)
            spans_cell, per_tick_cell = f"{spans}", f"{spans / ticks_run:.2f}"
            shape_cell = f"{full} of {traces}"
        else:
            spans_cell, per_tick_cell, shape_cell = "- (no receiver)", "-", "-"
        timed = sum(run.measurement.succeeded for run in done)
        runs_cell = f"{len(done)}" + (f" ({len(failed)} failed)" if failed else "")
        rows.append(
            f"| {config.label} | {runs_cell} | {timed} | {_ms(median)} "
            f"| {_ms(min(per_tick))} to {_ms(max(per_tick))} | {ratio} | {extra} | {rate:.1f} "
            f"| {ticks_run} | {spans_cell} | {per_tick_cell} | {shape_cell} |"
        )
    return "\n".join(rows)


def operator_table(sides: Sequence[OperatorSide | RunFailure]) -> str:
    header = (
        "| configuration | dispatches | build request | traced() | export (flush) "
        "| tracing per dispatch | with traceparent | spans received |"
    )
    columns = header.count("|") - 1
    rows = [header, "|" + "---|" * columns]
    for side in sides:
        if isinstance(side, RunFailure):
            rows.append(_short_row([side.config.label, _failed([side])], columns))
            continue
        calls = max(1, side.calls)
        spans = "- (no receiver)" if side.received is None else str(side.received.spans)
        rows.append(
            f"| {side.config.label} | {side.calls} | {_us(side.build / calls)} "
            f"| {_us(side.traced / calls)} | {_us(side.export / calls)} "
            f"| {_us((side.traced + side.export) / calls)} | {side.carried} | {spans} |"
        )
    return "\n".join(rows)


def notes(runs: Sequence[RunnerRun | RunFailure]) -> str:
    lines: list[str] = []
    for run in runs:
        if isinstance(run, RunFailure):
            lines += run_notes(run.config.label, Counter(), run.log_issues)
            continue
        if run.count_error:
            lines.append(f"- {run.config.label}: spans not counted: {run.count_error}")
        lines += run_notes(run.config.label, run.measurement.problems, run.measurement.log_issues)
    sdk = importlib.metadata.version("opentelemetry-sdk")
    lines.append(f"- opentelemetry-sdk {sdk}, Python {sys.version.split()[0]}.")
    return "\n".join(lines)


def run_runner_side(
    plan: RunPlan, repeats: int, redis: RedisServer, log_dir: Path
) -> list[RunnerRun | RunFailure]:
    outcomes: list[RunnerRun | RunFailure] = []
    for repeat in range(1, repeats + 1):
        for config in RUNNER_CONFIGS:
            _progress(
                f"runner, {config.label} ({repeat}/{repeats}): {plan.stacks} stacks, "
                f"1 warm-up + {plan.rounds} timed round(s)..."
            )
            run_logs = log_dir / f"{config.slug}-{repeat}"
            try:
                run = measure_runner(config, plan, redis, run_logs)
            except (BenchError, DevEnvError) as exc:
                _progress(f"  failed: {exc}")
                issues = log_issues(run_logs / f"{plan.name}.log")
                outcomes.append(RunFailure(config, _headline(exc), issues))
                continue
            spans = "" if run.received is None else f", {run.received.spans} spans received"
            _progress(
                f"  {run.measurement.succeeded} ticks, {_ms(run.cpu_per_tick)} runner CPU "
                f"per tick, {run.measurement.ticks_per_second:.1f} ticks/s{spans}"
            )
            outcomes.append(run)
    return outcomes


def run_operator_side(calls: int) -> list[OperatorSide | RunFailure]:
    outcomes: list[OperatorSide | RunFailure] = []
    for config in OPERATOR_CONFIGS:
        _progress(f"operator side, {config.label}: {calls} dispatches...")
        try:
            side = measure_operator(config, calls)
        except (BenchError, DevEnvError, subprocess.TimeoutExpired) as exc:
            _progress(f"  failed: {exc}")
            outcomes.append(RunFailure(config, _headline(exc), []))
            continue
        _progress(f"  {_us((side.traced + side.export) / max(1, side.calls))} per dispatch")
        outcomes.append(side)
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.tracing_overhead", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--stacks", type=int, help="stacks (ticks per round)")
    parser.add_argument("--rounds", type=int, help="timed rounds per run")
    parser.add_argument("--repeats", type=int, help="runs of each configuration")
    parser.add_argument("--calls", type=int, help="operator-side dispatches per configuration")
    parser.add_argument("--keep-logs", action="store_true", help="keep the runner logs")
    parser.add_argument("--operator-side", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.operator_side:
        figures = operator_side_child(args.calls or 20_000, OPERATOR_BATCH)
        print(json.dumps(figures))
        return 0

    _clean_environment()
    stacks = args.stacks or (20 if args.quick else 200)
    rounds = args.rounds or (2 if args.quick else 10)
    repeats = args.repeats or (1 if args.quick else 3)
    calls = args.calls or (1_000 if args.quick else 20_000)
    timeout = 120 if args.quick else 300
    plan = RunPlan("scripted", CONCURRENCY, stacks, rounds, round_timeout=timeout)
    log_dir = Path(tempfile.mkdtemp(prefix="agentstack-bench-tracing-"))
    try:
        with RedisServer() as redis:
            runs = run_runner_side(plan, repeats, redis, log_dir)
        sides = run_operator_side(calls)
    except KeyboardInterrupt:
        _progress("interrupted; every process started was stopped")
        return 130
    except DevEnvError as exc:  # redis-server did not start
        _progress(f"benchmark failed: {exc}")
        return 1
    finally:
        if args.keep_logs:
            _progress(f"runner logs: {log_dir}")
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
    print(
        f"\n### Runner: CPU per tick ({stacks} stacks, concurrency {CONCURRENCY}, "
        f"{rounds} timed rounds per run)\n\n{runner_table(runs)}\n\n"
        f"### Operator: the dispatch span, per dispatch\n\n{operator_table(sides)}\n\n"
        f"{notes(runs)}"
    )
    failed = any(isinstance(outcome, RunFailure) for outcome in [*runs, *sides])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
