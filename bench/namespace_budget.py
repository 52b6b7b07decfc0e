"""A namespace's budget under concurrency: two runner processes, 100 stacks of one
namespace, a priced model at its dearest and a budget of a few cents.

What it measures (issue 26):

- **Overspend.** Every call of the fake LLM costs its worst case (``Reply(worst_case=
  True)``: a prompt token per byte and the whole ``max_tokens`` answer, at
  gpt-4o-mini's price), so only the holds stand between the namespace and an overspend.
  Rounds of one tick per stack go to both runners until a round spends nothing (every
  call refused). Then the ledger's spend is compared with the cap, and with the sum the
  fake LLM's requests cost (what the provider would bill): the goal is at most one
  call's worst case over the cap, in total.
- **The cost of the check.** The same rounds without a budget (the baseline) and with a
  budget too large to refuse anything: the runners' CPU and Redis's commands per LLM
  call, the two runs side by side in the same command.

The runners are the real ``agentstack_cli runner`` processes
(:func:`bench.runner_throughput.runner_process`); ticks enter through the tick lanes and
results leave through the results stream, as in production (the operator is left out:
it plays no part in keeping a namespace's budget).

Usage (from the repository root)::

    .venv/bin/python -m bench.namespace_budget           # ~3 minutes
    .venv/bin/python -m bench.namespace_budget --quick   # a smoke run, under a minute

The Markdown table goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentstack_core import protocol
from agentstack_core.connection import connect
from agentstack_core.namespacebudget import parse_budget
from agentstack_core.pricing import Price, format_usd, prompt_bound
from agentstack_core.redis.ledger import NamespaceLedger
from agentstack_core.redis.publishing import publish_spec
from agentstack_devkit.fakellm import FakeLLMServer, Reply
from agentstack_devkit.redisserver import RedisServer
from bench.runner_throughput import (
    GENERATION,
    Driver,
    RunPlan,
    process_cpu_seconds,
    runner_process,
    stack_refs,
    stack_spec,
)

QUIET = '{"thought": "nothing to add", "actions": []}'
MINI = Price(0.15, 0.60)
"""gpt-4o-mini's default price (the model of :func:`bench.runner_throughput.stack_spec`)."""
NAMESPACE = "bench"
"""The namespace of :func:`bench.runner_throughput.stack_refs`."""
RUNNER_CONCURRENCY = 32
ROUND_TIMEOUT = 600.0


@dataclass(frozen=True)
class Run:
    label: str
    cap_usd: float | None
    calls: int
    seconds: float
    runner_cpu: float
    redis_commands: int
    spent: int
    """Nano-dollars the ledger counted (0 without a budget)."""
    billed: int
    """Nano-dollars the fake provider's requests cost (each at its worst case)."""
    largest_call: int
    """The runners' bound of the dearest single call (what one call may overspend)."""
    refused_rounds: int


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _billed(llm: FakeLLMServer) -> tuple[int, int]:
    """What the provider billed (the fake at its dearest reports a prompt token per byte
    of the messages' contents and the whole ``max_tokens``), and the runners' bound of
    the dearest call (:func:`~agentstack_core.pricing.prompt_bound` adds the chat
    template's margin: never below the bill)."""
    billed = sum(
        MINI.cost(
            sum(len(str(m["content"]).encode()) for m in r.body["messages"]),
            int(r.body["max_tokens"]),
        )
        for r in llm.requests
    )
    bounds = [
        MINI.cost(prompt_bound(r.body["messages"]), int(r.body["max_tokens"])) for r in llm.requests
    ]
    return billed, max(bounds, default=0)


async def _run(
    label: str,
    cap_usd: float | None,
    rounds: int,
    stacks: int,
    redis: RedisServer,
    llm: FakeLLMServer,
    log_dir: Path,
) -> Run:
    """Fresh Redis contents, the budget (if any), two runners; ``rounds`` rounds of one
    tick per stack (until a round spends nothing, with a cap that refuses)."""
    client: Any = connect(redis.url, cluster=False)
    try:
        await client.flushall()
        llm.clear()
        await protocol.ensure_groups(client)
        refs = stack_refs(stacks)
        for stack in refs:
            await publish_spec(client, stack, GENERATION, stack_spec("latency", llm))
        ledger = NamespaceLedger(client, NAMESPACE)
        window = ""
        if cap_usd is not None:
            budget = parse_budget("cap", {"maxCostUSD": cap_usd, "window": {"calendar": "Day"}})
            await ledger.publish({"cap": budget.ledger_limits()})
            window = budget.window(time.time()).id
        plan = RunPlan("latency", RUNNER_CONCURRENCY, stacks, rounds, ROUND_TIMEOUT)
        with contextlib.ExitStack() as started:
            runners = [
                started.enter_context(
                    runner_process(plan, redis.url, log_dir, gateway=llm.openai_base_url, name=name)
                )[0]
                for name in ("runner-a", "runner-b")
            ]
            driver = Driver(client, runners[0], refs)
            pids = [r.pid for r in runners if r.pid is not None]
            cpu_before = sum(process_cpu_seconds(pid) for pid in pids)
            commands_before = int((await client.info("stats"))["total_commands_processed"])
            began = time.perf_counter()
            refused_rounds = 0
            for slot in range(1, rounds + 1):
                results, _ = await driver.round(slot, ROUND_TIMEOUT)
                if cap_usd is not None and all(r.cost == 0 for r in results):
                    refused_rounds += 1
                    break
            seconds = time.perf_counter() - began
            cpu = sum(process_cpu_seconds(pid) for pid in pids) - cpu_before
            commands = int((await client.info("stats"))["total_commands_processed"])
        spent = 0
        if cap_usd is not None:
            spent = (await ledger.spent({"cap": window}, now=time.time()))["cap"].cost
        billed, largest = _billed(llm)
        return Run(
            label=label,
            cap_usd=cap_usd,
            calls=len(llm.requests),
            seconds=seconds,
            runner_cpu=cpu,
            redis_commands=commands - commands_before,
            spent=spent,
            billed=billed,
            largest_call=largest,
            refused_rounds=refused_rounds,
        )
    finally:
        await client.aclose()


def table(runs: Sequence[Run]) -> str:
    baseline = runs[0]
    base_cpu = baseline.runner_cpu / max(1, baseline.calls)
    base_cmds = baseline.redis_commands / max(1, baseline.calls)
    lines = [
        "| run | cap | LLM calls | runner CPU per call | vs baseline | Redis commands per call "
        "| vs baseline | ledger spent | provider billed | over the cap | largest call |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        cpu = run.runner_cpu / max(1, run.calls)
        cmds = run.redis_commands / max(1, run.calls)
        cap = "none" if run.cap_usd is None else f"${run.cap_usd:g}"
        over = "-"
        if run.cap_usd is not None:
            over_nanos = max(0, run.billed - round(run.cap_usd * 1e9))
            over = f"${format_usd(over_nanos)}"
        lines.append(
            f"| {run.label} | {cap} | {run.calls} | {cpu * 1000:.2f} ms | "
            f"{cpu / base_cpu:.2f}x | {cmds:.1f} | {cmds / base_cmds:.2f}x | "
            f"${format_usd(run.spent)} | ${format_usd(run.billed)} | {over} | "
            f"${format_usd(run.largest_call)} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.namespace_budget", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    args = parser.parse_args(argv)
    stacks, rounds = (20, 2) if args.quick else (100, 3)
    log_dir = Path(tempfile.mkdtemp(prefix="agentstack-bench-"))
    try:
        with contextlib.ExitStack() as stack:
            redis = stack.enter_context(RedisServer())
            llm = stack.enter_context(FakeLLMServer())
            llm.add_rule(Reply(QUIET, worst_case=True), repeat_last=True)
            runs = []
            for label, cap, limit in (
                ("no budget (baseline)", None, rounds),
                ("a budget it never reaches", 1000.0, rounds),
                ("a budget of a few cents", 0.05, 50),
            ):
                _progress(f"{label}: {stacks} stacks, 2 runners")
                runs.append(asyncio.run(_run(label, cap, limit, stacks, redis, llm, log_dir)))
    except KeyboardInterrupt:
        _progress("interrupted; every process started was stopped")
        return 130
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    print(f"\n{table(runs)}\n")
    capped = runs[-1]
    over = capped.billed - round((capped.cap_usd or 0) * 1e9)
    if capped.refused_rounds == 0 or over > capped.largest_call:
        _progress("the capped run never stopped, or went over by more than one call")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
