"""Inputs against a real Redis (standalone and cluster): numbered, bounded, read once.

:func:`~agentstack_core.redis.inputs.send_input` is one script: the number, the rate window,
the inbox entry and the inputs log move together or not at all. The engine's step that
reads an input records its outcome in the same commit as the step's other writes.
"""

from __future__ import annotations

import json

import pytest

from agentstack_core import protocol
from agentstack_core.keys import StackKeys
from agentstack_core.protocol import RedisClient, Wakeup
from agentstack_core.redis.errors import StackGoneError
from agentstack_core.redis.inputs import InputRateError, send_input
from agentstack_core.redis.publishing import delete_stack, publish_spec
from agentstack_core.redis.reader import Page, StackReader
from tests.integration.support import STACK, make_engine, publish, request

KEYS = StackKeys(STACK)
pytestmark = pytest.mark.asyncio
MINUTE = 1_800_000_000.0  # a minute boundary (divisible by 60)


async def _send(client: RedisClient, content: str, *, now: float, per_minute: int = 3) -> int:
    number, _id = await send_input(
        client,
        STACK,
        agent="planner",
        sender="alice",
        content=content,
        per_minute=per_minute,
        now=now,
    )
    return number


async def test_inputs_are_numbered_and_land_in_the_inbox_and_the_log(aredis: RedisClient) -> None:
    await publish(aredis, {"goal": "g"})
    number, message_id = await send_input(
        aredis,
        STACK,
        agent="builder",
        sender="alice",
        content="Use British spelling.",
        per_minute=5,
    )
    second, _ = await send_input(
        aredis, STACK, agent="planner", sender="ci-bot", content="Build 7 is green.", per_minute=5
    )
    assert (number, second) == (1, 2)
    ((inbox_id, message),) = await aredis.xrange(KEYS.inbox("builder"))
    assert inbox_id == message_id
    assert message["from"] == "alice"
    assert message["content"] == "Use British spelling."
    assert message["input"] == "1"
    log = [fields for _id, fields in await aredis.xrange(KEYS.inputs)]
    assert [(e["number"], e["agent"], e["from"]) for e in log] == [
        ("1", "builder", "alice"),
        ("2", "planner", "ci-bot"),
    ]
    assert log[0]["message"] == message_id
    # Every key the script wrote is indexed, so deleting the stack leaves none behind.
    await delete_stack(aredis, STACK)
    for key in (KEYS.inputs, KEYS.input_counters, KEYS.inbox("builder"), KEYS.inbox("planner")):
        assert not await aredis.exists(key), key


async def test_the_rate_is_per_minute_and_a_refused_input_leaves_nothing(
    aredis: RedisClient,
) -> None:
    await publish(aredis, {"goal": "g"})
    assert [await _send(aredis, f"m{i}", now=MINUTE + i) for i in range(3)] == [1, 2, 3]
    with pytest.raises(InputRateError) as refused:
        await _send(aredis, "one too many", now=MINUTE + 45)
    assert refused.value.retry_after == pytest.approx(15.0)
    assert await aredis.xlen(KEYS.inputs) == 3
    assert await aredis.xlen(KEYS.inbox("planner")) == 3
    # The next minute takes inputs again, and numbering goes on without a gap.
    assert await _send(aredis, "next minute", now=MINUTE + 60) == 4


async def test_a_stack_not_published_takes_no_input(aredis: RedisClient) -> None:
    with pytest.raises(StackGoneError):
        await _send(aredis, "hello?", now=MINUTE)
    assert await aredis.exists(KEYS.inbox("planner"), KEYS.inputs, KEYS.input_counters) == 0
    await publish_spec(aredis, STACK, 1, {"goal": "g"}, uid="new")
    with pytest.raises(StackGoneError):  # a stack re-created under the name: another uid
        await send_input(
            aredis, STACK, agent="planner", sender="a", content="x", per_minute=5, uid="other"
        )


async def test_the_tick_that_reads_an_input_records_its_outcome(aredis: RedisClient) -> None:
    await publish(aredis, {"goal": "Write a haiku"})
    await send_input(
        aredis, STACK, agent="reviewer", sender="alice", content="Be strict.", per_minute=5
    )
    reader = StackReader(aredis, STACK)
    assert await reader.input_outcomes([1]) == {}  # queued

    result = (await make_engine(aredis).execute(request(1))).result
    assert result is not None
    assert result.outcome.value == "Succeeded"

    outcome = (await reader.input_outcomes([1]))[1]
    assert outcome.state == "Read"
    assert outcome.agent == "reviewer"
    assert outcome.tick_id == result.tick_id
    traces = {f["agent"]: f for _id, f in await aredis.xrange(KEYS.trace)}
    assert "read input #1" in json.loads(traces["reviewer"]["actions"])
    # The scripted reviewer answered it where people look: the feed.
    feed = [f["content"] for _id, f in await aredis.xrange(KEYS.feed)]
    assert any(line.startswith("Input #1 from alice: Be strict.") for line in feed)
    # A second tick does not read (nor record) it again.
    await make_engine(aredis).execute(request(2))
    assert (await reader.input_outcomes([1]))[1].tick_id == result.tick_id


async def test_an_input_is_found_by_its_delivery_and_its_tick_by_its_id(
    aredis: RedisClient,
) -> None:
    """What an A2A task reads: the input a retried message was (its delivery id), and
    how the tick that read it ended — from the newest results, then from the history."""
    await publish(aredis, {"goal": "Write a haiku"})
    reader = StackReader(aredis, STACK)
    assert await reader.inputs_sent() == 0
    for ident in ("m-1", "m-2"):
        await send_input(
            aredis,
            STACK,
            agent="planner",
            sender="bob",
            content=f"message {ident}",
            per_minute=5,
            delivery=f"a2a/{ident}",
        )
    assert await reader.inputs_sent() == 2
    found = await reader.input_of_delivery("a2a/m-1")
    assert found is not None
    assert (found.number, found.content, found.delivery) == (1, "message m-1", "a2a/m-1")
    assert await reader.input_of_delivery("a2a/m-3") is None

    assert await reader.input_outcomes([1]) == {}  # queued: no tick has read it
    result = (await make_engine(aredis).execute(request(1))).result
    assert result is not None
    outcome = (await reader.input_outcomes([1]))[1]
    recent = await reader.finished_tick(outcome.tick_id, since=outcome.at)
    assert recent is not None
    assert (recent.tick_id, recent.outcome) == (result.tick_id, "Succeeded")
    await aredis.hdel(KEYS.outcomes, result.tick_id)  # aged out of the newest results
    assert await reader.finished_tick(outcome.tick_id, since=outcome.at) == recent
    assert await reader.finished_tick("team/other/1", since=outcome.at) is None


async def test_wakeups_are_read_after_a_stream_id(aredis: RedisClient) -> None:
    start = "0-0"
    await protocol.wake(aredis, Wakeup(stack=STACK, uid="u1", input=3))
    await aredis.xadd(protocol.FleetKeys.wakeups, {"stack": "not a ref"})  # skipped
    after, wakeups = await protocol.read_wakeups(aredis, start, count=10, block_ms=100)
    assert [(w.stack, w.uid, w.input) for w in wakeups] == [(STACK, "u1", 3)]
    again, none = await protocol.read_wakeups(aredis, after, count=10, block_ms=50)
    assert (again, none) == (after, [])


async def test_the_inputs_log_pages_newest_first_down_to_the_first_id(
    aredis: RedisClient,
) -> None:
    await publish(aredis, {"goal": "g"})
    for i in range(3):
        await _send(aredis, f"m{i}", now=MINUTE + i)
    reader = StackReader(aredis, STACK)
    first = await reader.page(KEYS.inputs, cursor=None, limit=2)
    assert [f["content"] for _id, f in first.entries] == ["m2", "m1"]
    rest = await reader.page(KEYS.inputs, cursor=first.next_cursor, limit=2)
    assert [f["content"] for _id, f in rest.entries] == ["m0"]
    assert rest.next_cursor is None
    # Nothing is older than the first possible id (Redis itself refuses "(0-0").
    for cursor in ("0-0", "000-0", "0-0000"):
        assert await reader.page(KEYS.inputs, cursor=cursor, limit=5) == Page([], None)
    # A cursor past Redis's largest id (twenty digits pass the API's pattern; the fuzz
    # found a 500 there): everything is older than it.
    for cursor in ("92032387373936529360-660690", "5-99999999999999999999"):
        beyond = await reader.page(KEYS.inputs, cursor=cursor, limit=5)
        expected = ["m2", "m1", "m0"] if cursor.startswith("9") else []
        assert [f["content"] for _id, f in beyond.entries] == expected
