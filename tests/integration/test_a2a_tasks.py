"""A stack's A2A handler against a real Redis (standalone and cluster) and a real tick.

:class:`~agentstack_api.a2aserver.StackAgents` is called as the SDK's
dispatcher calls it, with the call context the route builds; the tick that reads the
message is executed by the runner's engine with the offline ``scripted`` provider. What
the handler answers is read from what the input and the tick left in Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from a2a.server.context import ServerCallContext
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    SubscribeToTaskRequest,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import (
    InvalidParamsError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from prometheus_client import REGISTRY
from redis.asyncio import Redis, RedisCluster

from agentstack_api.a2aserver import CALL, StackAgents, StackCall
from agentstack_api.auth import User
from agentstack_api.inputs import Inputs
from agentstack_api.tailing import StreamHub
from agentstack_core.keys import StackKeys
from agentstack_core.protocol import RedisClient
from tests.integration.conftest import RedisBackend
from tests.integration.support import STACK, make_engine, publish, request

pytestmark = pytest.mark.asyncio
KEYS = StackKeys(STACK)
SPEC = {"goal": "Write a haiku about tides"}
OBJECT = {
    "metadata": {"namespace": STACK.namespace, "name": STACK.name, "uid": ""},
    "spec": SPEC,
}
CONTEXT = ServerCallContext(state={CALL: StackCall(stack=OBJECT, caller=User("alice"))})


@pytest_asyncio.fixture
async def agents(aredis: RedisClient, redis_backend: RedisBackend) -> AsyncIterator[StackAgents]:
    """The handler over the stack ``team/demo``, published; short waits."""
    await publish(aredis, SPEC)
    kind = RedisCluster if redis_backend.cluster else Redis
    readers = kind.from_url(redis_backend.url, decode_responses=True)
    hub = StreamHub(aredis, readers, block_ms=100)
    try:
        yield StackAgents(
            Inputs(aredis), aredis, hub, send_wait_seconds=0.5, stream_seconds=20, poll_seconds=0.1
        )
    finally:
        await hub.stop()
        await readers.aclose()


def _counted(outcome: str) -> float:
    """``agentstack_api_a2a_messages_total`` of ``outcome`` in this process."""
    labels = {"outcome": outcome}
    return REGISTRY.get_sample_value("agentstack_api_a2a_messages_total", labels) or 0.0


def _send(ident: str, text: str, *, at_once: bool = False) -> SendMessageRequest:
    return SendMessageRequest(
        message=Message(message_id=ident, role=Role.ROLE_USER, parts=[Part(text=text)]),
        configuration=SendMessageConfiguration(return_immediately=at_once),
    )


async def test_a_streamed_message_follows_the_tick_that_reads_it(
    agents: StackAgents, aredis: RedisClient
) -> None:
    stream = agents.on_message_send_stream(_send("m-1", "Make it rhyme."), CONTEXT)
    first = await anext(stream)
    assert isinstance(first, Task)
    assert (first.id, first.status.state) == ("input-1", TaskState.TASK_STATE_SUBMITTED)

    result = (await make_engine(aredis).execute(request(1))).result
    assert result is not None
    rest = [event async for event in stream]
    statuses = [e for e in rest if isinstance(e, TaskStatusUpdateEvent)]
    # The tick read the message and ended before the stream looked again: it is
    # reported working all the same, then completed — the last event.
    assert [e.status.state for e in statuses] == [
        TaskState.TASK_STATE_WORKING,
        TaskState.TASK_STATE_COMPLETED,
    ]
    assert rest[-1] is statuses[-1]
    assert f"read input #1 in tick {result.tick_id}" in statuses[0].status.message.parts[0].text
    made = [e.artifact for e in rest if isinstance(e, TaskArtifactUpdateEvent)]
    assert made  # the scripted builder wrote its first artifact in that tick
    assert all(a.metadata["tickId"] == result.tick_id for a in made)

    got = await agents.on_get_task(GetTaskRequest(id="input-1"), CONTEXT)
    assert got is not None
    assert got.status.state == TaskState.TASK_STATE_COMPLETED
    assert [a.artifact_id for a in got.artifacts] == [a.artifact_id for a in made]
    with pytest.raises(UnsupportedOperationError, match="has ended"):
        await anext(agents.on_subscribe_to_task(SubscribeToTaskRequest(id="input-1"), CONTEXT))
    with pytest.raises(TaskNotCancelableError):
        await agents.on_cancel_task(CancelTaskRequest(id="input-1"), CONTEXT)


async def test_send_waits_a_while_and_a_retry_is_the_same_task(
    agents: StackAgents, aredis: RedisClient
) -> None:
    before = {outcome: _counted(outcome) for outcome in ("Accepted", "Duplicate", "Refused")}
    # No tick runs: the send waits its half second, then answers with the task queued.
    waited = await agents.on_message_send(_send("m-2", "Shorter, please."), CONTEXT)
    assert isinstance(waited, Task)
    assert (waited.id, waited.status.state) == ("input-1", TaskState.TASK_STATE_SUBMITTED)
    again = await agents.on_message_send(_send("m-2", "Shorter, please.", at_once=True), CONTEXT)
    assert isinstance(again, Task)
    assert again.id == "input-1"
    assert await aredis.xlen(KEYS.inputs) == 1  # sent once
    other = await agents.on_message_send(_send("m-3", "And a title.", at_once=True), CONTEXT)
    assert isinstance(other, Task)
    assert other.id == "input-2"

    for unknown in ("input-3", "input-0", "task-1"):
        with pytest.raises(TaskNotFoundError):
            await agents.on_get_task(GetTaskRequest(id=unknown), CONTEXT)
    message = _send("m-4", "hi", at_once=True)
    message.message.metadata.update({"agent": "nobody"})
    with pytest.raises(InvalidParamsError, match="no agent 'nobody'"):
        await agents.on_message_send(message, CONTEXT)
    assert await aredis.xlen(KEYS.inputs) == 2
    counted = {outcome: _counted(outcome) - before[outcome] for outcome in before}
    assert counted == {"Accepted": 2, "Duplicate": 1, "Refused": 1}
