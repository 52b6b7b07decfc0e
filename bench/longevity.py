"""One stack's life over thousands of ticks: is it flat?

Run from the repository root::

    .venv/bin/python -m bench.longevity            # 20,000 ticks; the first version 2,000
    .venv/bin/python -m bench.longevity --quick    # 1,000 ticks; the first version 300

One stack's ticks go through the real runner engine and a real ``redis-server`` (no
operator: the bench plays its part and sends a consolidation tick every
``consolidateEveryTicks`` ticks, as the operator does), for two teams:

- **scripted** — the offline provider's default team (plans three tasks an iteration,
  builds, reviews, reports);
- **busy** — the real ``openai`` SDK against the fake LLM server, whose replies keep
  adding work: the planner adds a task every tick, the builder writes the first open
  task's artifact, the reviewer accepts whatever waits, the communicator posts.

At each sample tick it records the tokens per tick (the mean over the 50 ticks before
it), the stack's bytes in Redis (``MEMORY USAGE`` of every key its index names), and
consolidation's share of the tokens so far. The same command runs the **first
version** (commit :data:`FIRST_VERSION`, before issue 22) the same way — over a copy
of that commit's code, for fewer ticks: its prompt grows every tick until its plan is
full, then its cost stays at that height while nothing moves — so the two curves sit
side by side. Absolute figures depend on the machine; ``bench/RESULTS.md`` records
them with the command.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

import redis

from agentstack_devkit.fakellm import FakeLLMServer, RecordedRequest, Reply
from agentstack_devkit.redisserver import RedisServer
from agentstack_devkit.toolchain import cache_root
from agentstack_runner.prompts import extract_context
from bench.operator_scale import BenchError, bench_main

REPO = Path(__file__).resolve().parents[1]
FIRST_VERSION = "f71300e"
"""The last commit before the working set: the curve issue 22 set out to flatten."""
CONSOLIDATE_EVERY = 25


def busy(request: RecordedRequest) -> str:
    """The busy team: every reply adds or moves work."""
    document = extract_context(str(request.messages[-1]["content"])) or {}
    agent = (document.get("agent") or {}).get("role")
    tick = str(document.get("tick", "0")).rsplit("/", 1)[-1]
    plan = document.get("plan") or []
    actions: list[dict[str, Any]] = []
    if agent == "planner":
        task = {"id": f"b{tick}", "title": f"More work {tick}", "status": "todo"}
        actions.append({"type": "update_plan", "tasks": [task]})
    elif agent == "builder":
        todo = next((t for t in plan if t.get("status") == "todo"), None)
        if todo is not None:
            name, content = f"{todo['id']}.md", "# done\n" * 20
            actions.append(
                {"type": "write_artifact", "name": name, "content": content, "task_id": todo["id"]}
            )
            actions.append({"type": "update_plan", "tasks": [{**todo, "status": "review"}]})
    elif agent == "reviewer":
        for artifact in document.get("artifacts") or []:
            if artifact.get("status") == "review":
                review = {"type": "review_artifact", "name": artifact["name"], "verdict": "accept"}
                actions.append(review)
    elif agent == "communicator":
        actions.append({"type": "post_update", "content": f"{len(plan)} tasks in the plan"})
    elif agent == "consolidator":
        archive = document.get("archive") or []
        kept = (document.get("long_term_memory") or {}).get("delivered") or []
        newest = f"{len(archive)} items up to {archive[-1]['ref']}" if archive else "nothing"
        actions.append({"type": "update_long_term_memory", "delivered": [newest, *kept][:20]})
    return json.dumps({"thought": "busy", "actions": actions})


def first_version() -> Path:
    """The code of :data:`FIRST_VERSION`, unpacked once under the cache."""
    target = cache_root() / "bench" / f"agentstack-{FIRST_VERSION}"
    if not (target / "core").is_dir():
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", FIRST_VERSION, "core", "runner", "operator"],
            check=True,
            capture_output=True,
        ).stdout
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(target, filter="data")
    return target


def run(code: Path, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The driver over ``code`` (a checkout's root); its samples."""
    path = os.pathsep.join(str(code / part) for part in ("core", "runner", "operator"))
    env = {**os.environ, "PYTHONPATH": path, "OPENAI_API_KEY": "sk-bench"}
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "longevity_driver.py"), json.dumps(settings)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"the driver failed: {done.stderr.strip()[-2000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def table(rows: Sequence[tuple[str, str, list[dict[str, Any]]]]) -> str:
    lines = [
        "| team | version | tick | tokens/tick | vs tick 1,000 | Redis bytes | vs tick 10,000 "
        "| consolidation share | last tick |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for team, version, samples in rows:
        by_tick = {s["tick"]: s for s in samples}
        base_tokens = by_tick.get(1000, samples[0])["tokens_per_tick"]
        base_bytes = by_tick.get(10_000, samples[0])["bytes"]
        for s in samples:
            lines.append(
                f"| {team} | {version} | {s['tick']:,} | {s['tokens_per_tick']:,.0f} "
                f"| {s['tokens_per_tick'] / base_tokens:.2f}x | {s['bytes']:,} "
                f"| {s['bytes'] / base_bytes:.2f}x | {s['consolidation_share']:.1%} "
                f"| {s['outcome']}{'' if s['progressed'] else ', no progress'} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (minutes)")
    args = parser.parse_args(argv)
    ticks, first = (1000, 300) if args.quick else (20_000, 2000)
    samples = [n for n in (1, 100, 300, 1000, 2000, 10_000, 20_000) if n <= ticks]

    def measure() -> str:
        rows = []
        with RedisServer() as server, FakeLLMServer() as llm:
            llm.add_rule(Reply(busy, estimated=True), repeat_last=True)
            flat = redis.Redis.from_url(server.url)
            teams = {
                "scripted": {"goal": "Write a guide to Redis streams"},
                "busy": {
                    "goal": "Keep the backlog moving",
                    "llm": {
                        "model": {"provider": "openai", "name": "gpt-4o-mini"},
                        "providers": {"openai": {"baseURL": llm.openai_base_url}},
                    },
                },
            }
            os.environ["AGENTSTACK_ALLOWED_BASE_URLS"] = llm.openai_base_url
            for team, spec in teams.items():
                for version, code, count in (
                    ("now", REPO, ticks),
                    ("first", first_version(), first),
                ):
                    flat.flushall()
                    print(f"longevity: {team}, {version}: {count} ticks", file=sys.stderr)
                    settings = {
                        "redis": server.url,
                        "ticks": count,
                        "samples": [n for n in samples if n <= count],
                        "spec": spec,
                        "consolidate_every": CONSOLIDATE_EVERY,
                    }
                    rows.append((team, version, run(code, settings)))
        return table(rows)

    return bench_main(measure)


if __name__ == "__main__":
    raise SystemExit(main())
