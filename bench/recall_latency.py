"""Recall over a long-lived stack's archive: search latency, and what the index costs.

Run from the repository root::

    .venv/bin/python -m bench.recall_latency            # 20,000 ticks, ~10 min
    .venv/bin/python -m bench.recall_latency --quick    # 2,000 ticks, ~1 min

Two stacks tick side by side through the real runner engine (:class:`Engine`, in this
process) on a real ``redis-server``, the default team on the offline scripted provider:

- **lexical**: as configured by default: what a step archives is indexed by the scripts
  that append it; recall and the API's search rank by BM25;
- **semantic**: with ``spec.memory.embeddings`` (``text-embedding-3-small``, 256
  dimensions) answered by the fake LLM server through the real ``openai`` SDK, so every
  archived item carries its vector and recall fuses cosine with BM25.

Neither stack consolidates (no watermark moves): their archives fill up to the hard cap
(:data:`~agentstack_core.retention.ARCHIVE_HARD_MAXLEN` items) and are trimmed there,
the oldest counted as lost — the largest archive, and so the slowest search, a stack
can have. A fact is sent to both as an input ``FACT_LEAD`` ticks before each sample.

At the sample ticks (1,000 — the baseline — and the last) every query of
:data:`QUERIES` runs :data:`REPEAT` times, one after the other, on each stack:

- lexical: :func:`~agentstack_core.redis.search.search_archive`, the one script call
  the API's search and a recall without embeddings make (limit 10);
- semantic: :func:`~agentstack_runner.recall.recall` as a step makes it — the search
  with the newest 200 items and their vectors, the query embedded by the fake server
  (one loopback HTTP call), the fusion in Python (limit 5).

The table gives p50/p99 per query kind, the ratio of the last sample's p99 to the
baseline's (same command, same machine), the archive's items and what its keys take in
Redis (``MEMORY USAGE`` of the stream, the index and its stats). Absolute figures depend
on the machine; ``bench/RESULTS.md`` records them with the command.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agentstack_core.connection import connect
from agentstack_core.endpoints import ALLOWED_BASE_URLS_ENV
from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.protocol import RedisClient, TickRequest, tick_id
from agentstack_core.redis.inputs import send_input
from agentstack_core.redis.publishing import publish_spec
from agentstack_core.redis.search import search_archive
from agentstack_core.retention import ARCHIVE_HARD_MAXLEN
from agentstack_core.spec import parse_spec
from agentstack_devkit.fakellm import FakeLLMServer
from agentstack_devkit.redisserver import RedisServer
from agentstack_runner.actions import Recall
from agentstack_runner.embeddings import embedder_for, unit
from agentstack_runner.engine import Engine
from agentstack_runner.llm.router import Router
from agentstack_runner.providers import ProviderRegistry
from agentstack_runner.recall import recall
from bench.operator_scale import BenchError, bench_main, percentile

LEXICAL = StackRef("bench", "lexical")
SEMANTIC = StackRef("bench", "semantic")
GOAL = "Plan a team offsite"
BASELINE_TICK = 1_000
FACT_LEAD = 50
REPEAT = 200
QUERIES = {
    "rare": "what is the launch code",
    "title": "Outline the approach",
    "feedback": "make the outcome explicit with a concrete next step",
    "mixed": "draft improvements iteration review offsite",
}
"""Query kinds: a fact sent as an input (rare terms), a task title (terms in most
items), the reviewer's feedback (common terms, long query), five common terms."""


@dataclass(frozen=True)
class Sample:
    tick: int
    stack: str
    items: int
    lost: int
    archive_bytes: int
    index_bytes: int
    postings: int
    latencies: dict[str, list[float]]
    """Seconds of each search (lexical) or recall without its query's embedding
    (semantic), by query kind."""
    embedding: list[float]
    """Seconds of each query's embedding (semantic): the provider's part."""
    found_fact: bool


def _spec(fake: FakeLLMServer, embeddings: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"goal": GOAL}
    if embeddings:
        spec["llm"] = {"providers": {"openai": {"baseURL": fake.openai_base_url}}}
        spec["memory"] = {
            "embeddings": {
                "provider": "openai",
                "model": "text-embedding-3-small",
                "dimensions": 256,
            }
        }
    return spec


async def _timed(call: Callable[[], Awaitable[Any]], repeat: int) -> tuple[list[float], Any]:
    seconds, last = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        last = await call()
        seconds.append(time.perf_counter() - started)
    return seconds, last


async def _sample(
    client: RedisClient,
    registry: ProviderRegistry,
    stack: StackRef,
    spec: dict[str, Any],
    tick: int,
    fact: str,
    repeat: int,
) -> Sample:
    keys = StackKeys(stack)
    semantic = stack == SEMANTIC
    latencies: dict[str, list[float]] = {}
    embedding: list[float] = []
    found_fact = False
    parsed = parse_spec(spec)
    embedder = embedder_for(registry.for_stack(stack.namespace, parsed), parsed)

    async def embed(text: str) -> Any:
        assert embedder is not None
        embedded = await embedder.embed([text], seconds=10.0)
        return unit(embedded.vectors[0])

    for kind, query in QUERIES.items():
        if semantic:
            # the query's vector, as the provider gives it (timed apart: it is the
            # provider's latency, not the archive's), then the recall timed with it
            spent, vector = await _timed(lambda q=query: embed(q), repeat)  # type: ignore[misc]
            embedding += spent

            async def embedded(_text: str, vector: Any = vector) -> Any:
                return vector

            action = Recall(type="recall", query=query, limit=5)
            seconds, last = await _timed(
                lambda action=action: recall(client, stack, action, embedded),  # type: ignore[misc]
                repeat,
            )
            texts = [hit.record.text for hit in last.hits]
            if last.mode != "semantic":
                raise BenchError(f"{stack}: the recall ranked {last.mode}ly")
        else:
            seconds, last = await _timed(
                lambda query=query: search_archive(client, stack, query, limit=10),  # type: ignore[misc]
                repeat,
            )
            texts = [hit.record.text for hit in last.hits]
        latencies[kind] = seconds
        if kind == "rare":
            found_fact = any(fact in text for text in texts[:3])
    redis: Any = client
    usage = [
        int(await redis.memory_usage(key, samples=0) or 0)
        for key in (keys.archive, keys.archive_index, keys.archive_stats)
    ]
    lost = int(await redis.hget(keys.longterm, "lost") or 0)
    return Sample(
        tick=tick,
        stack="semantic" if semantic else "lexical",
        items=int(await redis.xlen(keys.archive)),
        lost=lost,
        archive_bytes=usage[0],
        index_bytes=usage[1] + usage[2],
        postings=int(await redis.zcard(keys.archive_index)),
        latencies=latencies,
        embedding=embedding,
        found_fact=found_fact,
    )


async def _run(ticks: int, repeat: int) -> list[Sample]:
    samples: list[Sample] = []
    with RedisServer() as server, FakeLLMServer() as fake:
        os.environ["OPENAI_API_KEY"] = "sk-fake-bench"
        os.environ[ALLOWED_BASE_URLS_ENV] = fake.openai_base_url
        client = connect(server.url, cluster=False)
        registry = ProviderRegistry()
        engine = Engine(client=client, registry=registry, router=Router(), runner_id="bench")
        specs = {stack: _spec(fake, stack == SEMANTIC) for stack in (LEXICAL, SEMANTIC)}
        for stack, spec in specs.items():
            await publish_spec(client, stack, 1, spec)
        sample_ticks = sorted({min(BASELINE_TICK, ticks), ticks})
        started = time.monotonic()
        fact = ""
        try:
            for slot in range(1, ticks + 1):
                if slot + FACT_LEAD in sample_ticks or slot == 1:
                    fact = f"The launch code is ZEBRA-{slot}"
                    for stack in specs:
                        await send_input(
                            client,
                            stack,
                            agent="planner",
                            sender="bench",
                            content=fact,
                            per_minute=1_000,
                        )
                runs = await asyncio.gather(
                    *(engine.execute(_request(stack, slot)) for stack in specs)
                )
                for run in runs:
                    if run.result is None or run.result.outcome != "Succeeded":
                        raise BenchError(f"tick {slot}: {run.result}")
                if slot % 1_000 == 0:
                    rate = slot / (time.monotonic() - started)
                    print(f"  tick {slot:,} ({rate:.0f} ticks/s per stack)", file=sys.stderr)
                if slot in sample_ticks:
                    for stack, spec in specs.items():
                        samples.append(
                            await _sample(client, registry, stack, spec, slot, fact, repeat)
                        )
        finally:
            await registry.close()
            await client.aclose()
    return samples


def _request(stack: StackRef, slot: int) -> TickRequest:
    return TickRequest(
        stack=stack,
        generation=1,
        tick_id=tick_id(stack, slot),
        slot=slot,
        deadline=time.time() + 60,
    )


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def report(samples: Sequence[Sample], ticks: int, repeat: int) -> str:
    lines = [
        f"Recall over one stack's archive: {ticks:,} scripted ticks per stack, "
        f"{repeat} runs of each query per sample; archives not consolidated (hard cap "
        f"{ARCHIVE_HARD_MAXLEN:,} items)",
        "",
        "| stack | tick | items | lost | postings | archive MiB | index MiB | index B/item "
        + "".join(f"| {kind} p50 | {kind} p99 " for kind in QUERIES)
        + "| worst p99 vs baseline | fact in top 3 | query embedding p50 / p99 |",
        "|---|---|---|---|---|---|---|---" + "|---|---" * len(QUERIES) + "|---|---|---|",
    ]
    baseline = {s.stack: s for s in samples if s.tick == min(x.tick for x in samples)}
    for sample in samples:
        worst = max(percentile(v, 0.99) for v in sample.latencies.values())
        base = max(percentile(v, 0.99) for v in baseline[sample.stack].latencies.values())
        embedding = (
            f"{_ms(percentile(sample.embedding, 0.5))} / {_ms(percentile(sample.embedding, 0.99))}"
            if sample.embedding
            else "-"
        )
        cells = "".join(
            f"| {_ms(percentile(v, 0.5))} | {_ms(percentile(v, 0.99))} "
            for v in sample.latencies.values()
        )
        lines.append(
            f"| {sample.stack} | {sample.tick:,} | {sample.items:,} | {sample.lost:,} "
            f"| {sample.postings:,} | {sample.archive_bytes / 2**20:.1f} "
            f"| {sample.index_bytes / 2**20:.1f} "
            f"| {sample.index_bytes / max(sample.items, 1):,.0f} {cells}"
            f"| {worst / base:.2f}x | {'yes' if sample.found_fact else 'NO'} | {embedding} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 ticks, 50 runs per query")
    parser.add_argument("--ticks", type=int, default=None)
    args = parser.parse_args(argv)
    ticks = args.ticks or (2_000 if args.quick else 20_000)
    repeat = 50 if args.quick else REPEAT

    def run() -> str:
        return report(asyncio.run(_run(ticks, repeat)), ticks, repeat)

    return bench_main(run)


if __name__ == "__main__":
    sys.exit(main())
