"""The marathon: a stack that ticked every second through the whole end-to-end session
(started with its first test, see :mod:`tests.e2e.marathon`), checked after it.

Past 500 ticks it still produces artifacts and reviews, its tokens per tick stay flat,
it consolidated into a long-term memory, and a fact it was sent at its start — pushed
out of every capped stream by 1,300 later inputs — is still found by search.
"""

from __future__ import annotations

import statistics

import httpx

from tests.e2e.marathon import FACT, FLOOD, STACK, Marathon
from tests.helpers import eventually

TICKS = 520
AFTER = 200
"""Ticks after the flood's inputs were read, whose tokens per tick must stay flat."""
TIMEOUT = 900.0
"""The session's other tests take most of the marathon's time; run alone, this waits
for it (inputs wake the stack, so the flood's two minutes bring extra ticks)."""


def test_a_stack_ticking_for_500_ticks_stays_flat_and_still_finds_its_first_fact(
    marathon: Marathon,
) -> None:
    stacks = marathon.stacks

    def work() -> list[dict[str, str]]:
        return [h for h in stacks.executed(STACK) if h.get("kind", "Work") == "Work"]

    eventually(lambda: True if marathon.flooded() else None, "the flood of inputs", TIMEOUT)
    assert marathon.flooded_at is not None
    read_by = marathon.flooded_at + 30  # the planner reads 20 inputs a step

    def enough() -> list[dict[str, str]] | None:
        ticks = work()
        after = [h for h in ticks if float(h["started_at"]) > read_by]
        return ticks if len(ticks) >= TICKS and len(after) >= AFTER else None

    ticks = eventually(enough, f"{TICKS} ticks, {AFTER} of them after the flood", TIMEOUT)
    try:
        # Still producing artifacts and reviews at the end.
        last = {h["tick_id"] for h in ticks[-50:]}
        trace = [f for _id, f in stacks.redis.xrange(marathon.keys.trace) if f["tick_id"] in last]
        actions = " ".join(f["actions"] for f in trace)
        assert "wrote " in actions, "no artifact written in the last 50 ticks"
        assert "accept " in actions, "no artifact accepted in the last 50 ticks"
        assert all(h["outcome"] == "Succeeded" for h in ticks[-50:])

        # Tokens per tick flat once the flood's inputs were read (the first version's
        # grew 4x from tick 1 to 100 and 1.4x from tick 200 to 500).
        after = [int(h["tokens"]) for h in ticks if float(h["started_at"]) > read_by]
        half = len(after) // 2
        early, late = statistics.mean(after[:half]), statistics.mean(after[half:])
        assert late <= 1.2 * early, f"tokens per tick grew from {early:.0f} to {late:.0f}"

        # The fact left every capped stream ...
        first_logged = stacks.redis.xrange(marathon.keys.inputs, count=1)[0][1]
        assert int(first_logged["number"]) > 1
        assert marathon.sent == FLOOD + 1
        inbox = stacks.redis.xrange(marathon.keys.inbox("planner"))
        assert all(m.get("input") != "1" for _id, m in inbox)
        # ... and search still finds it, in the archive.
        found = httpx.get(
            f"{marathon.path}/search", params={"q": "venue Lisbon booked", "limit": 5}, timeout=10
        )
        found.raise_for_status()
        hits = found.json()["items"]
        assert any(h["kind"] == "input" and h["text"] == FACT for h in hits), hits

        # It consolidated: the long-term memory exists, written more than once.
        memory = httpx.get(f"{marathon.path}/memory", timeout=10).json()
        assert memory["consolidations"] >= 10
        assert any(memory["longTerm"].values())
    finally:
        marathon.stop()  # the reliability tests that follow need the machine
