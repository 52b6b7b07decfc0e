"""The Redis layer's contracts on a real server (standalone and cluster): domain
operations in, typed records out, and a commit script that runs only its own commands.
"""

from __future__ import annotations

import dataclasses

import orjson
import pytest
from redis.exceptions import ResponseError

from agentstack_core import protocol
from agentstack_core.approvals import Approval, ApprovalState
from agentstack_core.keys import StackKeys
from agentstack_core.operations import (
    AdvanceCursor,
    AppendTrace,
    Deliver,
    Forget,
    ForgetApproval,
    MarkInputRead,
    Post,
    Remember,
    SaveApproval,
    SaveArtifact,
    SavePlan,
)
from agentstack_core.protocol import RedisClient, TickKind
from agentstack_core.records import (
    ArtifactRecord,
    FeedRecord,
    InputOutcome,
    MessageRecord,
    StepRecord,
    TaskRecord,
    TaskStatus,
    TraceRecord,
)
from agentstack_core.redis.approvals import read_approvals
from agentstack_core.redis.reader import StackReader
from agentstack_core.redis.tick import _COMMIT_STEP, TickStore, _Commit, lease_token
from agentstack_operator.dispatching import RedisLanes
from tests.integration.support import STACK, publish, request

pytestmark = pytest.mark.asyncio
KEYS = StackKeys(STACK)
TICK = "team/demo/7"


async def _leased(aredis: RedisClient) -> tuple[TickStore, str]:
    await publish(aredis, {"goal": "g"})
    store = TickStore(aredis, STACK)
    token = lease_token(TICK, "runner-a", "n1")
    start = await store.begin(TICK, token, ttl_seconds=30)
    assert start.published is not None
    assert start.published.generation == 1
    return store, token


def _step(agent: str) -> StepRecord:
    return StepRecord(agent=agent, role=agent, outcome="Succeeded", reason="Succeeded")


async def test_every_operation_is_read_back_as_the_record_it_wrote(aredis: RedisClient) -> None:
    store, token = await _leased(aredis)
    artifact = ArtifactRecord(content="# notes", author="builder", task_id="t1", version=2)
    task = TaskRecord(id="t1", title="draft", status=TaskStatus.REVIEW, note="shorter")
    approval = Approval(
        id="a1",
        agent="builder",
        tool="kb/lookup",
        arguments="{}",
        tick_id=TICK,
        requested_at=1.5,
        expires_at=99.5,
    )
    outcome = InputOutcome(agent="builder", tick_id=TICK, at=3.25)
    following = await store.commit_step(
        token=token,
        tick_id=TICK,
        record=_step("builder"),
        operations=[
            Deliver(to="reviewer", message=MessageRecord(sender="builder", content="look")),
            Remember(agent="builder", key="kept", value="yes"),
            Remember(agent="builder", key="dropped", value="no"),
            Forget(agent="builder", key="dropped"),
            SaveArtifact(name="notes.md", artifact=artifact),
            SavePlan(tasks=(task,)),
            Post(entry=FeedRecord(agent="builder", content="v2 is up")),
            AdvanceCursor(agent="builder", message_id="5-0"),
            MarkInputRead(number=4, outcome=outcome),
            SaveApproval(approval, new=True),
            AppendTrace(entry=TraceRecord(tick_id=TICK, agent="builder")),
        ],
        then="reviewer",
    )
    assert following is not None  # the reviewer's context, read by the same call
    assert following.plan == (task,)
    assert following.artifacts == {"notes.md": artifact}
    assert following.feed == ["v2 is up"]
    assert [(m.sender, m.content) for m in following.inbox] == [("builder", "look")]

    builder = await store.context("builder")
    assert builder.memory == {"kept": "yes"}
    assert builder.inbox == []  # nothing after the cursor

    reader = StackReader(aredis, STACK)
    assert await reader.plan() == [task]
    assert await reader.artifacts() == {"notes.md": artifact}
    assert await reader.input_outcomes([4]) == {4: outcome}
    assert await read_approvals(aredis, STACK) == [approval]
    (_id, traced), *_ = (await reader.page(KEYS.trace, cursor=None, limit=5)).entries
    assert TraceRecord.from_fields(traced).agent == "builder"
    # Every key the commit wrote is in the stack's index (deletion finds it).
    indexed = await aredis.smembers(KEYS.index)  # type: ignore[misc]
    written = {
        KEYS.inbox("reviewer"),
        KEYS.memory("builder"),
        KEYS.artifacts,
        KEYS.plan,
        KEYS.feed,
        KEYS.cursors,
        KEYS.input_outcomes,
        KEYS.approvals,
        KEYS.trace,
    }
    assert written <= set(indexed)


async def test_a_new_approval_never_overwrites_one_that_exists(aredis: RedisClient) -> None:
    store, token = await _leased(aredis)
    asked = Approval("a1", "builder", "kb/lookup", "{}", TICK, 1.0, 9.0)
    decided = Approval("a1", "builder", "kb/lookup", "{}", TICK, 1.0, 9.0, state="Approved")
    await aredis.hset(KEYS.approvals, "a1", decided.to_json())  # type: ignore[misc]
    await store.commit_step(
        token=token, tick_id=TICK, record=_step("builder"), operations=[SaveApproval(asked, True)]
    )
    assert await read_approvals(aredis, STACK) == [decided]


async def test_a_decided_approval_is_forgotten_by_a_commit(aredis: RedisClient) -> None:
    store, token = await _leased(aredis)
    told = Approval("a1", "builder", "kb/lookup", "{}", TICK, 1.0, 9.0, state=ApprovalState.DENIED)
    await aredis.hset(KEYS.approvals, "a1", told.to_json())  # type: ignore[misc]
    await store.commit_step(
        token=token, tick_id=TICK, record=_step("builder"), operations=[ForgetApproval("a1")]
    )
    assert await read_approvals(aredis, STACK) == []


async def test_the_commit_runs_only_the_commands_of_its_list(aredis: RedisClient) -> None:
    """A write outside the list (here DEL of the stack's spec) refuses the whole commit
    before anything is written, however it came to be asked for."""
    _store, token = await _leased(aredis)
    writes = [
        ["HSET", 5, ["kept", "no"]],  # KEYS[5]: the plan key — a harmless write first
        ["DEL", 1, []],  # KEYS[1]: the spec
    ]
    keys = {
        "steps": KEYS.steps(TICK),
        "plan": KEYS.plan,
        "artifacts": KEYS.artifacts,
        "feed": KEYS.feed,
        "cursors": KEYS.cursors,
        "memory": KEYS.memory("builder"),
        "inbox": KEYS.inbox("builder"),
    }
    args = _Commit(
        token=token,
        uid="",
        agent="builder",
        record=_step("builder").to_json(),
        writes=orjson.dumps(writes).decode(),
        next_agent=None,
        day="2026-12-07",
    )
    with pytest.raises(ResponseError, match="command not allowed: DEL"):
        await _COMMIT_STEP(aredis, args, keys=KEYS, **keys)
    assert await aredis.exists(KEYS.spec, KEYS.plan, KEYS.steps(TICK)) == 1  # the spec only


async def test_a_script_refuses_arguments_of_another_shape(aredis: RedisClient) -> None:
    with pytest.raises(TypeError, match="takes"):
        await _COMMIT_STEP(aredis, _step("builder"), keys=KEYS)
    with pytest.raises(TypeError, match="no value for its key 'steps'"):
        await _COMMIT_STEP(
            aredis,
            _Commit(
                token="t",
                uid="",
                agent="a",
                record="{}",
                writes="[]",
                next_agent=None,
                day="2026-12-07",
            ),
            keys=KEYS,
        )


@pytest.mark.asyncio
async def test_the_room_in_the_lanes_counts_work_no_runner_has_received(
    aredis: RedisClient,
) -> None:
    """What the dispatcher's fair share reads (``RedisLanes.waiting_work``): requests
    sent and not yet received, consolidations left out — on one server and a cluster."""
    await protocol.ensure_groups(aredis)
    lanes = RedisLanes(aredis)
    sleeping = dataclasses.replace(request(9), kind=TickKind.SLEEP)
    await lanes.send([request(1), request(2), request(3), sleeping])
    assert (await lanes.waiting_work(), await lanes.pending()) == (3, 4)
    received = await protocol.read(aredis, "runner-a", count=2, block_ms=None)
    assert [d.request.slot for d in received if d.request] == [1, 2]
    assert (await lanes.waiting_work(), await lanes.pending()) == (1, 2)
