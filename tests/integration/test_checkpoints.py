"""Checkpoints written by the real finish of real ticks, and rollbacks to them, against
real Redis (standalone and cluster)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.protocol import RedisClient
from agentstack_core.redis.checkpoints import (
    Checkpoints,
    CheckpointState,
    Refusal,
    RolledBack,
    seed,
)
from agentstack_core.redis.inputs import send_input
from agentstack_core.redis.publishing import publish_spec
from agentstack_core.redis.tick import CHECKPOINT_LIMITS
from agentstack_core.spec import DEFAULT_TEAM
from tests.integration.support import STACK, make_engine, publish, request

KEYS = StackKeys(STACK)
SPEC: dict[str, Any] = {"goal": "Plan a team offsite"}
pytestmark = pytest.mark.asyncio


async def state_now(client: RedisClient, keys: StackKeys = KEYS) -> dict[str, Any]:
    """What a checkpoint keeps, read key by key from the stack as it is."""
    KEYS = keys  # noqa: N806 - the module's name for the keys read
    cursors = await client.hgetall(KEYS.cursors)
    team = {}
    for agent in DEFAULT_TEAM:
        cursor = cursors.get(agent)
        unread = await client.xrange(KEYS.inbox(agent), f"({cursor}" if cursor else "-", "+")
        newest = await client.xrevrange(KEYS.inbox(agent), count=1)
        team[agent] = (
            await client.hgetall(KEYS.memory(agent)),
            [(entry_id, fields) for entry_id, fields in unread],
            newest[0][0] if newest else "",
        )
    archived = await client.xrevrange(KEYS.archive, count=1)
    return {
        "plan": await client.get(KEYS.plan) or "",
        "artifacts": await client.hgetall(KEYS.artifacts),
        "goal": await client.get(KEYS.goal) or "",
        "memory": (await client.hgetall(KEYS.longterm)).get("memory"),
        "cursors": cursors,
        "feed": [
            (i, f) for i, f in await client.xrevrange(KEYS.feed, count=CHECKPOINT_LIMITS["feed"])
        ],
        "team": team,
        "archive": archived[0][0] if archived else "",
    }


def restored(state: dict[str, Any]) -> dict[str, Any]:
    """All but the archive's end and each inbox's newest id: a restored inbox holds what
    was unread then (read messages are in the archive), and the archive moved on."""
    team = {name: agent[:2] for name, agent in state["team"].items()}
    return {**{k: v for k, v in state.items() if k != "archive"}, "team": team}


def kept(state: CheckpointState) -> dict[str, Any]:
    """The same view of a checkpoint."""
    return {
        "plan": state.plan,
        "artifacts": state.artifacts,
        "goal": state.goal,
        "memory": state.longterm.get("memory"),
        "cursors": state.cursors,
        "feed": state.feed,
        "team": {
            name: (agent.memory, agent.unread, agent.newest) for name, agent in state.agents.items()
        },
        "archive": state.archive,
    }


async def run_ticks(client: RedisClient, first: int, last: int, generation: int = 1) -> None:
    engine = make_engine(client)
    for slot in range(first, last + 1):
        result = (await engine.execute(request(slot, generation=generation))).result
        assert result is not None
        assert result.steps > 0


async def test_each_tick_that_ran_leaves_the_state_it_left_field_by_field(
    aredis: RedisClient,
) -> None:
    await publish(aredis, SPEC)
    checkpoints = Checkpoints(aredis, STACK)
    seen = {}
    for slot in range(1, 5):
        await run_ticks(aredis, slot, slot)
        seen[request(slot).tick_id] = await state_now(aredis)
    listed = await checkpoints.listing()
    assert [(c.tick_id, c.seq) for c in listed] == [(t, n) for n, t in enumerate(seen, 1)]
    assert all(c.bytes > 0 for c in listed)
    for tick_id, expected in seen.items():
        state = await checkpoints.state(tick_id)
        assert state is not None
        assert state.tick_id == tick_id
        assert kept(state) == expected
    # The scripted team did build something for the comparison to mean anything.
    last = seen[request(4).tick_id]
    assert last["artifacts"]
    assert json.loads(last["plan"])
    assert last["cursors"]
    total = int(await aredis.hget(KEYS.checkpoint_states, "bytes"))
    assert total == sum(c.bytes for c in listed)


async def test_past_the_recent_window_one_in_every_k_is_kept_within_the_byte_bound(
    aredis: RedisClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(CHECKPOINT_LIMITS, "recent", 5)
    monkeypatch.setitem(CHECKPOINT_LIMITS, "every", 4)
    monkeypatch.setitem(CHECKPOINT_LIMITS, "max", 8)
    await publish(aredis, SPEC)
    checkpoints = Checkpoints(aredis, STACK)
    await run_ticks(aredis, 1, 16)
    # 12..16 recent; of 1..11 the multiples of 4 (4, 8), the oldest dropped past max 8.
    assert [c.seq for c in await checkpoints.listing()] == [4, 8, 12, 13, 14, 15, 16]
    await run_ticks(aredis, 17, 24)
    assert [c.seq for c in await checkpoints.listing()] == [8, 12, 16, 20, 21, 22, 23, 24]

    sizes = [c.bytes for c in await checkpoints.listing()]
    monkeypatch.setitem(CHECKPOINT_LIMITS, "max_bytes", sizes[-1] * 2 + sizes[-1] // 2)
    await run_ticks(aredis, 25, 25)
    listed = await checkpoints.listing()
    assert [c.seq for c in listed] == [24, 25]  # two fit; the oldest went first
    assert int(await aredis.hget(KEYS.checkpoint_states, "bytes")) == sum(c.bytes for c in listed)
    monkeypatch.setitem(CHECKPOINT_LIMITS, "max_bytes", 1)
    await run_ticks(aredis, 26, 26)
    assert [c.seq for c in await checkpoints.listing()] == [26]  # never the newest


async def test_a_rollback_restores_the_checkpoint_keeps_later_inputs_and_history(
    aredis: RedisClient,
) -> None:
    await publish(aredis, SPEC)
    checkpoints = Checkpoints(aredis, STACK)
    await run_ticks(aredis, 1, 2)
    target = request(2).tick_id
    before = await state_now(aredis)
    await run_ticks(aredis, 3, 5)
    archived = await aredis.xlen(KEYS.archive)
    assert await state_now(aredis) != before

    # Not while it runs: refused, nothing changed.
    assert await checkpoints.rollback(target, "alice") is Refusal.RUNNING
    await publish(aredis, {**SPEC, "executionState": "Paused"}, generation=2)
    await aredis.set(KEYS.lease, "team/demo/6|runner-x|n")
    assert await checkpoints.rollback(target, "alice") is Refusal.BUSY
    await aredis.delete(KEYS.lease)
    assert await checkpoints.rollback("team/demo/99", "alice") is Refusal.MISSING
    after_tick_five = await state_now(aredis)

    number, message_id = await send_input(
        aredis, STACK, agent="planner", content="keep me", sender="bob", per_minute=60
    )
    rolled = await checkpoints.rollback(target, "alice")
    assert rolled == RolledBack(tick_id=target, seq=2, inputs_kept=1)
    now = await state_now(aredis)
    unread = now["team"]["planner"][1]
    assert [fields["content"] for _id, fields in unread][-1] == "keep me"
    assert unread[-1][0] == message_id  # the same message, not a copy
    now["team"]["planner"] = (now["team"]["planner"][0], unread[:-1])

    assert restored(now) == restored(before)
    # What came after stays: the archive (plus the rollback's note), the checkpoints,
    # the history and the counters.
    notes = [f for _i, f in await aredis.xrange(KEYS.archive) if f.get("kind") == "note"]
    assert notes[-1]["agent"] == "alice"
    assert target in notes[-1]["text"]
    assert await aredis.xlen(KEYS.archive) == archived + 2  # the input, the note
    assert [c.seq for c in await checkpoints.listing()] == [1, 2, 3, 4, 5]
    assert await checkpoints.state(request(5).tick_id) is not None
    assert await aredis.xlen(KEYS.history) == 5
    assert after_tick_five != now

    # Resumed, the team goes on from the restored state and reads the kept input.
    await publish(aredis, SPEC, generation=3)
    await run_ticks(aredis, 7, 7, generation=3)
    outcome = json.loads(await aredis.hget(KEYS.input_outcomes, str(number)))
    assert outcome["tickId"] == request(7).tick_id
    assert [c.seq for c in await checkpoints.listing()][-1] == 6


async def test_a_fork_seeded_at_a_past_tick_holds_the_sources_state_then_field_by_field(
    aredis: RedisClient,
) -> None:
    await publish(aredis, SPEC)
    await run_ticks(aredis, 1, 2)
    at_two = await state_now(aredis)
    await run_ticks(aredis, 3, 4)
    source = Checkpoints(aredis, STACK)
    raw = await source.raw(request(2).tick_id)
    assert raw is not None
    state = CheckpointState.from_json(raw)
    fork = StackRef("team", "demo-fork")
    fork_keys = StackKeys(fork)

    async def seeding() -> Refusal | None:
        return await seed(aredis, fork, "fork-uid", state, raw, "carol", STACK)

    assert await seeding() is Refusal.GONE  # the operator has not published it yet
    await publish_spec(aredis, fork, 1, SPEC, uid="fork-uid")
    assert await seeding() is Refusal.RUNNING
    await publish_spec(aredis, fork, 2, {**SPEC, "executionState": "Paused"}, uid="fork-uid")
    assert await seeding() is None
    seeded = await state_now(aredis, fork_keys)
    assert restored(seeded) == restored(at_two)
    notes = [f for _i, f in await aredis.xrange(fork_keys.archive)]
    assert [(n["kind"], n["agent"]) for n in notes] == [("note", "carol")]
    assert await seeding() is Refusal.USED  # never twice, never over its own state
    assert await aredis.xlen(fork_keys.archive) == 1
    assert await state_now(aredis) != seeded  # the source went on; untouched by the fork

    # Resumed, the fork ticks from there on its own keys, and keeps checkpoints of its own.
    await publish_spec(aredis, fork, 3, SPEC, uid="fork-uid")
    assert await seeding() is Refusal.USED  # running now: still its own state
    engine = make_engine(aredis)
    ticked = (await engine.execute(request(5, stack=fork, generation=3))).result
    assert ticked is not None
    assert ticked.steps > 0
    assert [c.seq for c in await Checkpoints(aredis, fork).listing()] == [1]
