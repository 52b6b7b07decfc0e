"""Ticks per second of ONE runner process, against a concurrency-1 baseline of the same run.

Why this shape:

- The runner is measured as it is deployed: a real ``redis-server``, and the real
  ``python -m agentstack_cli runner`` process started through
  :class:`~agentstack_devkit.processes.ManagedProcess`, exactly as the
  integration tests start it. Ticks enter through :func:`agentstack_core.protocol.dispatch`
  and leave through the results stream, so the number includes the stream protocol,
  leases, the Lua commits and result publishing — everything but the operator.
- Ticks are dispatched in *rounds*, one tick per stack per round, and the next round
  starts only when every result of the previous one is in. Dispatching a stack's next
  tick while its previous one still runs is dropped as ``StackBusy`` by design; rounds
  keep every dispatched tick runnable, so only ``Succeeded`` results are counted and
  anything else is reported as a problem.
- Waiting is event-driven: ``XREAD BLOCK`` on the results stream (bounded by a timeout,
  and checking that the runner is still alive), never a blind sleep, so the wall time
  of a round ends when its last result is published.
- Absolute ticks/s depend on the machine; the project reports ratios against a baseline
  run in the same command. Each scenario therefore runs the runner once with
  concurrency 1 (the baseline), then at higher concurrency, and divides.

Two scenarios:

``scripted``
    The offline deterministic provider (``{"goal": ...}`` only): no LLM wait at all, so
    throughput is bounded by the CPU of the single runner process (and Redis).
    Concurrency 64 runs twice: on the standard library's event loop
    (``AGENTSTACK_EVENT_LOOP=asyncio``), then on the default, uvloop.
``latency``
    Every agent calls a :class:`~agentstack_devkit.fakellm.FakeLLMServer`
    through the real ``openai`` SDK, answering after a seeded uniform 1-3 s. A tick of
    the default four-agent team takes ~8 s, so throughput is bounded by concurrency:
    the table also shows the ideal ``concurrency / mean tick duration``. Concurrency 256
    runs twice: as configured by default, and with the runner's Redis connection pool
    raised through ``REDIS_URL`` (``?max_connections=1024``, a redis-py URL option) —
    redis-py 8 caps a client's pool at 100 connections, fewer than 256 ticks in flight.

Besides ticks/s the table gives p50/p99 tick duration (``TickResult.duration``), p50/p99
queue lag (``started_at`` minus the time the benchmark dispatched the tick), the CPU
used during the timed rounds by the runner, ``redis-server``, the benchmark process
itself (which hosts the fake LLM server) and everything else on the machine ("other": on
a shared machine, work that competed with the measurement), in % of one core, and the
Redis commands processed per tick.

Usage (from the repository root)::

    .venv/bin/python -m bench.runner_throughput            # full run, a few minutes
    .venv/bin/python -m bench.runner_throughput --quick    # smoke run, well under a minute

The Markdown table goes to stdout, progress to stderr. A run that fails (the runner
exits, a round times out) gets a row saying why, the other runs still happen, and the
exit code is 1. Every process it starts is stopped on the way out, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentstack_core import protocol
from agentstack_core.connection import connect
from agentstack_core.keys import FleetKeys, StackRef
from agentstack_core.protocol import Outcome, TickRequest, TickResult, tick_id
from agentstack_core.redis.publishing import publish_spec
from agentstack_devkit.fakellm import FakeLLMServer
from agentstack_devkit.processes import DevEnvError, ManagedProcess, free_port
from agentstack_devkit.redisserver import RedisServer

RUNNER_CLI = [sys.executable, "-m", "agentstack_cli", "runner"]
READY_TIMEOUT = 30.0
GENERATION = 1
DEADLINE_AHEAD = 3600.0
"""Ticks must never be dropped for a missed deadline here: give them an hour."""
LLM_LATENCY = (1.0, 3.0)
QUICK_LLM_LATENCY = (0.1, 0.3)
LLM_CALL_SLOTS = 10_000
"""``AGENTSTACK_LLM_CONCURRENCY_OPENAI``: far above any tick concurrency measured here."""
FAKE_API_KEY = "sk-bench-not-a-real-key"
_LOG_ISSUE = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """The benchmark could not measure (a round timed out, the runner died...)."""


@dataclass(frozen=True)
class RunPlan:
    """One runner process measured at one concurrency."""

    scenario: str
    """``scripted`` or ``latency``."""
    concurrency: int
    stacks: int
    rounds: int
    """Timed rounds, after one warm-up round."""
    round_timeout: float
    """Seconds one round may take before the benchmark gives up."""
    pool: int | None = None
    """``max_connections`` of the runner's Redis pool, given in ``REDIS_URL``'s query;
    ``None`` keeps redis-py's default (100 in redis-py 8)."""
    loop: str = ""
    """``AGENTSTACK_EVENT_LOOP`` of the runner (empty: the default, uvloop)."""

    @property
    def name(self) -> str:
        pool = f"-pool{self.pool}" if self.pool else ""
        loop = f"-{self.loop}" if self.loop else ""
        return f"bench-{self.scenario}-c{self.concurrency}{pool}{loop}"

    @property
    def label(self) -> str:
        label = f"{self.concurrency} (pool {self.pool})" if self.pool else str(self.concurrency)
        return f"{label} ({self.loop} loop)" if self.loop else label


@dataclass(frozen=True)
class Failure:
    """A run that could not be measured, and why (the runner's own log says the rest)."""

    plan: RunPlan
    error: str
    log_issues: list[str]


@dataclass(frozen=True)
class Usage:
    """Counters read at one instant; the difference of two is what the rounds used."""

    runner_cpu: float
    redis_cpu: float
    driver_cpu: float
    """The benchmark process: dispatching, reading results, and the fake LLM server."""
    machine_cpu: float
    """Busy CPU seconds of the whole machine, every core, whoever used them."""
    redis_commands: int

    def __sub__(self, other: Usage) -> Usage:
        return Usage(
            self.runner_cpu - other.runner_cpu,
            self.redis_cpu - other.redis_cpu,
            self.driver_cpu - other.driver_cpu,
            self.machine_cpu - other.machine_cpu,
            self.redis_commands - other.redis_commands,
        )

    @property
    def other_cpu(self) -> float:
        """CPU used by processes outside the benchmark (other work on a shared machine)."""
        return max(0.0, self.machine_cpu - self.runner_cpu - self.redis_cpu - self.driver_cpu)


@dataclass
class Measurement:
    plan: RunPlan
    seconds: float
    succeeded: int
    durations: list[float]
    lags: list[float]
    problems: Counter[str]
    """``outcome/reason`` of every tick that did not succeed (warm-up included)."""
    usage: Usage
    log_issues: list[str] = field(default_factory=list)

    @property
    def ticks_per_second(self) -> float:
        return self.succeeded / self.seconds if self.seconds > 0 else 0.0

    @property
    def mean_duration(self) -> float:
        return statistics.fmean(self.durations) if self.durations else 0.0

    @property
    def ideal_ticks_per_second(self) -> float:
        """Ticks/s if ``min(concurrency, stacks)`` ticks ran back to back, always."""
        busy = min(self.plan.concurrency, self.plan.stacks)
        return busy / self.mean_duration if self.mean_duration > 0 else 0.0


def plans(quick: bool, scenarios: Sequence[str]) -> list[RunPlan]:
    """The runs of each scenario, baseline (concurrency 1) first.

    Concurrency 256 with redis-py's default pool loses ticks to ``MaxConnectionsError``
    and those wait for the visibility timeout (60 s): its rounds get a shorter limit
    than a healthy run needs many times over, so that the run reports the failure
    instead of making the whole benchmark wait for redeliveries.
    """
    chosen: list[RunPlan] = []
    if "scripted" in scenarios:
        if quick:
            chosen += [
                RunPlan("scripted", 1, 20, 1, 60),
                RunPlan("scripted", 64, 50, 2, 60, loop="asyncio"),
                RunPlan("scripted", 64, 50, 2, 60),
            ]
        else:
            chosen += [
                RunPlan("scripted", 1, 200, 10, 300),
                RunPlan("scripted", 64, 200, 10, 300, loop="asyncio"),
                RunPlan("scripted", 64, 200, 10, 300),
            ]
    if "latency" in scenarios:
        if quick:
            chosen += [
                RunPlan("latency", 1, 2, 1, 60),
                RunPlan("latency", 64, 64, 1, 60),
                RunPlan("latency", 256, 256, 1, 15),
                RunPlan("latency", 256, 256, 1, 60, pool=1024),
            ]
        else:
            chosen += [
                RunPlan("latency", 1, 4, 1, 120),
                RunPlan("latency", 64, 128, 2, 180),
                RunPlan("latency", 256, 512, 2, 90),
                RunPlan("latency", 256, 512, 2, 180, pool=1024),
            ]
    return chosen


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: an observed value, also for small n)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def stack_refs(count: int) -> list[StackRef]:
    return [StackRef("bench", f"s{index:04d}") for index in range(count)]


def stack_spec(scenario: str, llm: FakeLLMServer | None) -> dict[str, Any]:
    """The default four-agent team; offline (scripted) or through the openai SDK."""
    if scenario == "scripted":
        return {"goal": "Write a release note for the throughput benchmark"}
    assert llm is not None
    return {
        "goal": "Write a release note for the throughput benchmark",
        "llm": {
            "model": {"provider": "openai", "name": "gpt-4o-mini"},
            "providers": {"openai": {"baseURL": llm.openai_base_url}},
        },
    }


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from ``/proc/<pid>/stat``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": field 3 onwards
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _http_get(port: int, path: str) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return None


@contextlib.contextmanager
def runner_process(
    plan: RunPlan,
    redis_url: str,
    log_dir: Path,
    gateway: str = "",
    env: Mapping[str, str] | None = None,
    name: str = "",
) -> Iterator[tuple[ManagedProcess, int]]:
    """Start one runner as the integration tests do; stop it whatever happens.

    ``env`` is added to the runner's environment last (another benchmark's settings,
    such as the tracing endpoint); ``name`` (default: the plan's) is its runner id and
    log's name — distinct for runners started side by side."""
    port = free_port()
    name = name or plan.name
    if plan.pool:
        redis_url = f"{redis_url}?max_connections={plan.pool}"
    process = ManagedProcess(
        name,
        [*RUNNER_CLI, "--metrics-port", str(port)],
        log_path=log_dir / f"{name}.log",
        env={
            **os.environ,
            "REDIS_URL": redis_url,
            "AGENTSTACK_REDIS_CLUSTER": "false",
            "AGENTSTACK_RUNNER_ID": name,
            "AGENTSTACK_RUNNER_CONCURRENCY": str(plan.concurrency),
            "AGENTSTACK_LLM_CONCURRENCY_OPENAI": str(LLM_CALL_SLOTS),
            "AGENTSTACK_RUNNER_DRAIN_TIMEOUT": "2",  # a Ctrl-C must not wait for 8 s ticks
            "OPENAI_API_KEY": FAKE_API_KEY,
            # The fake LLM stands for the platform's allow-listed gateway.
            "AGENTSTACK_ALLOWED_BASE_URLS": gateway,
            **({"AGENTSTACK_EVENT_LOOP": plan.loop} if plan.loop else {}),
            **(env or {}),
        },
    )
    try:
        process.start()
        process.wait_ready(lambda: _http_get(port, "/readyz"), timeout=READY_TIMEOUT)
        yield process, port
    finally:
        process.stop(timeout=15)


def tick_requests(stacks: Sequence[StackRef], slot: int, now: float) -> list[TickRequest]:
    """One tick request per stack for ``slot``, dispatched ``now``."""
    return [
        TickRequest(
            stack=stack,
            generation=GENERATION,
            tick_id=tick_id(stack, slot),
            slot=slot,
            deadline=now + DEADLINE_AHEAD,
            dispatched_at=now,
        )
        for stack in stacks
    ]


class Driver:
    """Dispatches rounds of ticks and collects their results from the results stream."""

    def __init__(self, client: Any, process: ManagedProcess, stacks: Sequence[StackRef]) -> None:
        self.client = client
        self.process = process
        self.stacks = list(stacks)
        self.last_id = "0-0"

    async def round(self, slot: int, limit: float) -> tuple[list[TickResult], float]:
        """Dispatch one tick per stack in ``slot``; return the results and dispatch time."""
        dispatched_at = time.time()
        requests = tick_requests(self.stacks, slot, dispatched_at)
        await protocol.dispatch(self.client, requests)
        expected = {request.tick_id for request in requests}
        return await self._collect(expected, slot, limit), dispatched_at

    async def _collect(self, expected: set[str], slot: int, limit: float) -> list[TickResult]:
        found: dict[str, TickResult] = {}
        deadline = time.monotonic() + limit
        while len(found) < len(expected):
            self.process.check_alive()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(
                    f"round {slot}: {len(found)} of {len(expected)} results after {limit:g}s"
                )
            block_ms = max(1, int(min(remaining, 1.0) * 1000))
            reply = await self.client.xread(
                {FleetKeys.results: self.last_id}, count=1000, block=block_ms
            )
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    self.last_id = entry_id
                    result = TickResult.from_fields(fields)
                    if result.tick_id not in expected:
                        raise BenchError(f"unexpected result {result.tick_id} in round {slot}")
                    found[result.tick_id] = result
        return list(found.values())


def _problems(results: Sequence[TickResult]) -> Counter[str]:
    return Counter(
        f"{result.outcome.value}/{result.reason}"
        for result in results
        if result.outcome is not Outcome.SUCCEEDED
    )


def machine_cpu_seconds() -> float:
    """Busy CPU time of all cores since boot, from the first line of ``/proc/stat``."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS


async def usage(client: Any, runner_pid: int) -> Usage:
    cpu = await client.info("cpu")
    stats = await client.info("stats")
    return Usage(
        runner_cpu=process_cpu_seconds(runner_pid),
        redis_cpu=float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
        driver_cpu=time.process_time(),
        machine_cpu=machine_cpu_seconds(),
        redis_commands=int(stats["total_commands_processed"]),
    )


def log_issues(path: Path, limit: int = 5) -> list[str]:
    """Warning and error lines of a runner log (the first ``limit`` distinct ones)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    issues: list[str] = []
    for line in lines:
        if _LOG_ISSUE.search(line):
            text = line[:300]
            if text not in issues:
                issues.append(text)
    return issues[:limit] + ([f"... {len(issues) - limit} more"] if len(issues) > limit else [])


async def measure(
    plan: RunPlan,
    redis: RedisServer,
    llm: FakeLLMServer | None,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
) -> Measurement:
    """One run: fresh Redis contents, one runner process, a warm-up round, timed rounds
    (``env``: added to the runner's environment)."""
    client: Any = connect(redis.url, cluster=False)
    try:
        await client.flushall()
        if llm is not None:
            llm.clear()
        await protocol.ensure_groups(client)
        stacks = stack_refs(plan.stacks)
        spec = stack_spec(plan.scenario, llm)
        for stack in stacks:
            await publish_spec(client, stack, GENERATION, spec)
        gateway = llm.openai_base_url if llm is not None else ""
        with runner_process(plan, redis.url, log_dir, gateway, env) as (process, _port):
            driver = Driver(client, process, stacks)
            assert process.pid is not None
            warmup, _ = await driver.round(0, plan.round_timeout)
            problems = _problems(warmup)
            durations: list[float] = []
            lags: list[float] = []
            succeeded = 0
            before = await usage(client, process.pid)
            started = time.perf_counter()
            for slot in range(1, plan.rounds + 1):
                results, dispatched_at = await driver.round(slot, plan.round_timeout)
                problems += _problems(results)
                for result in results:
                    if result.outcome is Outcome.SUCCEEDED:
                        succeeded += 1
                        durations.append(result.duration)
                        lags.append(max(0.0, result.started_at - dispatched_at))
            seconds = time.perf_counter() - started
            used = await usage(client, process.pid) - before
        return Measurement(
            plan=plan,
            seconds=seconds,
            succeeded=succeeded,
            durations=durations,
            lags=lags,
            problems=problems,
            usage=used,
            log_issues=log_issues(process.log_path),
        )
    finally:
        await client.aclose()


def _seconds(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def _share(cpu_seconds: float, m: Measurement) -> str:
    """CPU time as % of one core over the timed rounds."""
    return f"{100 * cpu_seconds / m.seconds:.0f} %"


def _scenario_label(scenario: str, latency: tuple[float, float]) -> str:
    return "scripted" if scenario == "scripted" else f"latency {latency[0]:g}-{latency[1]:g} s"


def table(outcomes: Sequence[Measurement | Failure], latency: tuple[float, float]) -> str:
    """The Markdown table of a whole benchmark run; a failed run gets a row saying so."""
    header = (
        "| scenario | concurrency | stacks | ticks | seconds | ticks/s | vs baseline "
        "| ideal ticks/s | tick p50 | tick p99 | lag p50 | lag p99 "
        "| runner CPU | runner CPU per tick | redis CPU | driver CPU | other CPU "
        "| redis cmds/tick |"
    )
    columns = header.count("|") - 1
    rows = [header, "|" + "---|" * columns]
    baselines: dict[str, float] = {}
    for m in outcomes:
        plan = m.plan
        scenario = _scenario_label(plan.scenario, latency)
        if isinstance(m, Failure):
            cells = [scenario, plan.label, str(plan.stacks), f"**failed**: {m.error}"]
            rows.append("| " + " | ".join(cells + [""] * (columns - len(cells))) + " |")
            continue
        if plan.concurrency == 1:
            baselines.setdefault(plan.scenario, m.ticks_per_second)
        base = baselines.get(plan.scenario, 0.0)
        ratio = f"{m.ticks_per_second / base:.2f}x" if base > 0 else "-"
        ideal = f"{m.ideal_ticks_per_second:.2f}" if plan.scenario == "latency" else "-"
        rows.append(
            f"| {scenario} | {plan.label} | {plan.stacks} "
            f"| {m.succeeded} | {m.seconds:.1f} | {m.ticks_per_second:.2f} | {ratio} | {ideal} "
            f"| {_seconds(percentile(m.durations, 0.5))} "
            f"| {_seconds(percentile(m.durations, 0.99))} "
            f"| {_seconds(percentile(m.lags, 0.5))} | {_seconds(percentile(m.lags, 0.99))} "
            f"| {_share(m.usage.runner_cpu, m)} "
            f"| {_seconds(m.usage.runner_cpu / max(1, m.succeeded))} "
            f"| {_share(m.usage.redis_cpu, m)} "
            f"| {_share(m.usage.driver_cpu, m)} | {_share(m.usage.other_cpu, m)} "
            f"| {m.usage.redis_commands / max(1, m.succeeded):.1f} |"
        )
    return "\n".join(rows)


def run_notes(label: str, problems: Counter[str], issues: Sequence[str]) -> list[str]:
    """Note lines of one run: ticks that did not succeed, warnings in its runner log."""
    lines: list[str] = []
    if problems:
        counts = ", ".join(f"{reason}: {count}" for reason, count in problems.items())
        lines.append(f"- {label}: ticks not succeeded: {counts}")
    if issues:
        lines.append(f"- {label}: runner log warnings/errors:")
        lines.extend(f"    {issue}" for issue in issues)
    return lines


def notes(outcomes: Sequence[Measurement | Failure]) -> str:
    """Ticks that did not succeed and warnings in the runner logs, per run."""
    lines: list[str] = []
    for m in outcomes:
        label = f"{m.plan.scenario} concurrency {m.plan.label}"
        problems = m.problems if isinstance(m, Measurement) else Counter[str]()
        lines += run_notes(label, problems, m.log_issues)
    return "\n".join(lines) or "No dropped or failed ticks; no warnings in the runner logs."


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _summary(error: BaseException) -> str:
    """One line for the table: what failed, and the last line of the quoted log if any."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    head = lines[0].split("; last lines of")[0].split("; last error")[0]
    return head if len(lines) == 1 else f"{head} ({lines[-1]})"


async def run_all(
    runs: Sequence[RunPlan], redis: RedisServer, llm: FakeLLMServer | None, log_dir: Path
) -> list[Measurement | Failure]:
    """Measure every run; a run that fails is reported and the others still run."""
    outcomes: list[Measurement | Failure] = []
    for plan in runs:
        _progress(
            f"{plan.scenario}: concurrency {plan.label}, {plan.stacks} stacks, "
            f"1 warm-up + {plan.rounds} timed round(s)..."
        )
        try:
            measurement = await measure(plan, redis, llm, log_dir)
        except (BenchError, DevEnvError) as exc:
            _progress(f"  failed: {exc}")
            issues = log_issues(log_dir / f"{plan.name}.log")
            outcomes.append(Failure(plan, _summary(exc), issues))
            continue
        _progress(
            f"  {measurement.succeeded} ticks in {measurement.seconds:.1f} s = "
            f"{measurement.ticks_per_second:.2f} ticks/s"
        )
        outcomes.append(measurement)
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.runner_throughput", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--scenario",
        choices=("all", "scripted", "latency"),
        default="all",
        help="which scenario to run (default: all)",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the fake LLM latency")
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the runner logs and print where"
    )
    args = parser.parse_args(argv)
    scenarios = ("scripted", "latency") if args.scenario == "all" else (args.scenario,)
    runs = plans(args.quick, scenarios)
    latency = QUICK_LLM_LATENCY if args.quick else LLM_LATENCY
    log_dir = Path(tempfile.mkdtemp(prefix="agentstack-bench-"))
    try:
        with contextlib.ExitStack() as stack:
            redis = stack.enter_context(RedisServer())
            llm = (
                stack.enter_context(FakeLLMServer(latency=latency, seed=args.seed))
                if "latency" in scenarios
                else None
            )
            outcomes = asyncio.run(run_all(runs, redis, llm, log_dir))
    except KeyboardInterrupt:
        _progress("interrupted; every process started was stopped")
        return 130
    except DevEnvError as exc:  # redis-server or the fake LLM server did not start
        _progress(f"benchmark failed: {exc}")
        return 1
    finally:
        if args.keep_logs:
            _progress(f"runner logs: {log_dir}")
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
    print(f"\n{table(outcomes, latency)}\n\n{notes(outcomes)}")
    return 1 if any(isinstance(outcome, Failure) for outcome in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
