"""Consolidation ("sleep") ticks on the real parts: the engine and Redis (standalone and
cluster), the scripted provider offline and the openai SDK against the fake server.

A sleep tick folds what the archive holds past the watermark into the long-term memory
in one step, commits memory, watermark and a note at once, counts apart from the
team's ticks, and is done once in effect however often it is delivered.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from agentstack_core.keys import StackKeys
from agentstack_core.protocol import Outcome, RedisClient, TickKind, TickRequest, tick_id
from agentstack_core.records import ArchiveKind, ArchiveRecord, LongTermRecord
from agentstack_core.redis.inputs import send_input
from agentstack_devkit.fakellm import FakeLLMServer, Reply
from tests.integration.support import STACK, make_engine, openai_spec, publish, request

pytestmark = pytest.mark.asyncio
KEYS = StackKeys(STACK)


def sleep(slot: int) -> TickRequest:
    return dataclasses.replace(
        request(slot), kind=TickKind.SLEEP, tick_id=f"{tick_id(STACK, slot)}-sleep"
    )


async def _longterm(aredis: RedisClient) -> LongTermRecord:
    return LongTermRecord.from_fields(await aredis.hgetall(KEYS.longterm))  # type: ignore[misc]


async def test_a_sleep_tick_folds_the_archive_into_long_term_memory_once(
    aredis: RedisClient,
) -> None:
    await publish(aredis, {"goal": "Plan a team offsite"})
    await send_input(
        aredis, STACK, agent="planner", sender="alice", content="Budget is 3000 EUR", per_minute=5
    )
    engine = make_engine(aredis)
    for slot in range(1, 9):
        await engine.execute(request(slot))
    usage_before = await aredis.hgetall(KEYS.usage)  # type: ignore[misc]
    archived = await aredis.xrange(KEYS.archive)  # type: ignore[misc]

    result = (await engine.execute(sleep(100))).result
    assert result is not None
    assert (result.outcome, result.kind, result.steps) == (Outcome.SUCCEEDED, TickKind.SLEEP, 1)
    longterm = await _longterm(aredis)
    memory = longterm.long_term
    assert longterm.watermark == archived[-1][0]  # every item shown was folded in
    assert longterm.consolidations == 1
    assert any("Budget is 3000 EUR" in fact for fact in memory.facts)
    assert any(entry.startswith("t1:") for entry in memory.delivered)
    notes = [
        ArchiveRecord.from_fields(fields)
        for _id, fields in await aredis.xrange(KEYS.archive)  # type: ignore[misc]
        if fields["kind"] == ArchiveKind.NOTE
    ]
    assert len(notes) == 1
    assert "Budget is 3000 EUR" in notes[0].text  # search finds it after the raw items go
    usage = await aredis.hgetall(KEYS.usage)  # type: ignore[misc]
    assert usage["ticks"] == usage_before["ticks"]  # a sleep is not one of the team's ticks
    assert usage["sleeps"] == "1"
    assert usage.get("idle") == usage_before.get("idle")
    (traced,) = [f for _id, f in await aredis.xrange(KEYS.trace) if f["agent"] == "(sleep)"]  # type: ignore[misc]
    assert traced["role"] == "consolidator"

    again = (await engine.execute(sleep(100))).result  # redelivered: the recorded outcome
    assert again == result
    nothing_new = (await engine.execute(sleep(101))).result
    assert nothing_new is not None
    assert (nothing_new.outcome, nothing_new.steps) == (Outcome.SUCCEEDED, 0)
    assert (await _longterm(aredis)).consolidations == 1


async def test_agents_see_the_long_term_memory_and_the_consolidation_is_one_priced_call(
    aredis: RedisClient, fake_llm: FakeLLMServer
) -> None:
    await publish(aredis, openai_spec(fake_llm))
    await send_input(
        aredis, STACK, agent="planner", sender="bob", content="Ship by May", per_minute=5
    )
    memory = {
        "type": "update_long_term_memory",
        "facts": ["#1 from bob: Ship by May"],
        "decisions": ["x" * 400] * 50,  # far over the bound: trimmed to it
    }
    fake_llm.add_rule(
        Reply(json.dumps({"actions": [memory]}), prompt_tokens=700, completion_tokens=90),
        headers={"X-Agentstack-Agent": "(sleep)"},
    )
    engine = make_engine(aredis)
    result = (await engine.execute(sleep(7))).result
    assert result is not None
    assert (result.outcome, result.tokens) == (Outcome.SUCCEEDED, 790)
    assert result.cost > 0  # priced, and charged to the stack like any tick
    (call,) = [r for r in fake_llm.requests if r.headers.get("x-agentstack-agent") == "(sleep)"]
    assert "Ship by May" in call.messages[-1]["content"]
    kept = (await _longterm(aredis)).long_term
    assert kept.facts == ("#1 from bob: Ship by May",)
    assert 0 < len(kept.decisions) < 50
    assert len(json.dumps(kept.to_dict())) // 4 <= 1000  # the default longTermTokens

    await engine.execute(request(8))
    planner = next(r for r in fake_llm.requests if r.headers.get("x-agentstack-agent") == "planner")
    assert '"long_term_memory"' in planner.messages[-1]["content"]
    assert "Ship by May" in planner.messages[-1]["content"]


async def test_a_spent_budget_skips_the_consolidation(aredis: RedisClient) -> None:
    await publish(aredis, {"goal": "g", "budget": {"maxTokens": 10}})
    await aredis.hset(KEYS.usage, mapping={"tokens": "10"})  # type: ignore[misc]
    result = (await make_engine(aredis).execute(sleep(3))).result
    assert result is not None
    assert (result.outcome, result.reason) == (Outcome.DROPPED, "BudgetExceeded")
    assert await aredis.exists(KEYS.longterm) == 0


async def test_a_consolidation_that_cannot_reach_every_item_says_it_is_behind(
    aredis: RedisClient,
) -> None:
    """With a small prompt budget a consolidation reaches only the first items; its
    result says it is behind (the operator sends the next at once), and the next ones
    go on from its watermark until none is left."""
    await publish(aredis, {"goal": "g", "memory": {"contextTokens": 256}})
    for n in range(60):
        await send_input(
            aredis,
            STACK,
            agent="planner",
            sender="alice",
            content=f"note {n} " * 20,
            per_minute=100,
        )
    engine = make_engine(aredis)
    first = (await engine.execute(sleep(1))).result
    assert first is not None
    assert first.behind
    watermarks = [(await _longterm(aredis)).watermark]
    for slot in range(2, 40):
        result = (await engine.execute(sleep(slot))).result
        assert result is not None
        watermarks.append((await _longterm(aredis)).watermark)
        if not result.behind:
            break
    assert not result.behind
    assert watermarks == sorted(watermarks, key=_id)  # it only moved on
    assert len(set(watermarks)) == len(watermarks) > 2  # each went further
    archived = await aredis.xrevrange(KEYS.archive)  # type: ignore[misc]
    newest_input = next(i for i, f in archived if f["kind"] == "input")
    assert _id(newest_input) <= _id(watermarks[-1])  # every input is covered


def _id(entry: str) -> tuple[int, int]:
    millis, seq = entry.split("-")
    return int(millis), int(seq)
