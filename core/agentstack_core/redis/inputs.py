"""Inputs people and systems send a stack: numbered, rate-limited, written at once.

:func:`put_input` is the one way an input goes in, whoever sends it (a person through
the API, a webhook delivery, a Kubernetes trigger, an A2A message): the stack's state
and team are checked, then one script (``send_input.lua``) counts the input against
the stack's per-minute rate, numbers it, and appends it to the agent's inbox, the
stack's inputs log and its archive, indexed (where search finds it after the capped
streams moved on): a refused input leaves nothing, and an accepted one is never half
written. What became of an input (which agent read it in which tick) is written by that agent's step
(:class:`~agentstack_core.operations.MarkInputRead`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from agentstack_core import protocol
from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.protocol import RedisClient, Wakeup
from agentstack_core.records import ArchiveKind, ArchiveRecord, InputRecord, MessageRecord
from agentstack_core.redis.errors import GONE, StackGoneError
from agentstack_core.redis.script import LuaScript
from agentstack_core.redis.tick import ARCHIVE_KEYS, ARCHIVE_LIBS
from agentstack_core.retention import (
    ARCHIVE_HARD_MAXLEN,
    ARCHIVE_TRIM_BATCH,
    DELIVERIES_KEPT,
    DELIVERIES_KEPT_SECONDS,
    INBOX_MAXLEN,
    INDEX_TERMS,
    INPUTS_MAXLEN,
)
from agentstack_core.spec import ExecutionState, StackSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Send:
    uid: str
    per_minute: int
    now_ms: int
    message: MessageRecord
    """The inbox entry; the script sets its ``input`` number."""
    input: InputRecord
    """The inputs log entry; the script sets its ``number`` and ``message`` id."""
    archived: ArchiveRecord
    """The archive's entry; the script sets its ``ref`` (``#number``)."""
    delivery: str = ""
    """A retrying sender's id of it: a webhook delivery's ``webhook/id``, an A2A
    message's ``a2a/messageId`` (empty: a sender that does not retry)."""
    deliveries_kept: int = DELIVERIES_KEPT
    deliveries_kept_ms: int = DELIVERIES_KEPT_SECONDS * 1000
    inbox_maxlen: int = INBOX_MAXLEN
    inputs_maxlen: int = INPUTS_MAXLEN
    index_terms: int = INDEX_TERMS
    archive_hard_maxlen: int = ARCHIVE_HARD_MAXLEN
    archive_trim_batch: int = ARCHIVE_TRIM_BATCH


_SEND_INPUT = LuaScript(
    __file__,
    "send_input",
    keys=(
        "spec",
        "index",
        "input_counters",
        "inbox",
        "inputs",
        "input_outcomes",
        "deliveries",
        *ARCHIVE_KEYS,
    ),
    args=_Send,
    libs=("alive", *ARCHIVE_LIBS),
    durable=True,
)


DUPLICATE = -2


class DuplicateDeliveryError(RuntimeError):
    """A delivery (webhook or A2A message) with this id was accepted before: it is not
    sent again."""


class StackStoppedError(RuntimeError):
    """The stack is ``Stopped``: it reads no more inputs."""


class UnknownAgentError(LookupError):
    """The input names an agent the team does not have."""

    def __init__(self, agent: str, team: list[str]) -> None:
        super().__init__(f"no agent {agent!r} (agents: {', '.join(team)})")
        self.team = team


class InputRateError(RuntimeError):
    """The stack has accepted as many inputs as its policy allows this minute."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many inputs; try again in {retry_after:.0f}s")
        self.retry_after = retry_after


async def send_input(
    client: RedisClient,
    stack: StackRef,
    *,
    agent: str,
    sender: str,
    content: str,
    per_minute: int,
    uid: str = "",
    now: float | None = None,
    delivery: str = "",
) -> tuple[int, str]:
    """Put an input in ``agent``'s inbox and the stack's inputs log, numbered, at once.

    Returns (its number, its inbox message id). Raises
    :class:`~agentstack_core.redis.errors.StackGoneError` if the stack is not (or no
    longer) published, :class:`InputRateError` past ``per_minute`` inputs in the
    current minute, :class:`DuplicateDeliveryError` for a ``delivery``
    (``webhook/id``, ``a2a/messageId``) accepted before. Size and agent are the
    caller's to check (they come from the spec).
    """
    keys = StackKeys(stack)
    moment = time.time() if now is None else now
    reply = await _SEND_INPUT(
        client,
        _Send(
            uid=uid,
            per_minute=per_minute,
            now_ms=int(moment * 1000),
            message=MessageRecord(sender=sender, content=content, at=moment),
            input=InputRecord(
                agent=agent, sender=sender, content=content, at=moment, delivery=delivery or None
            ),
            archived=ArchiveRecord(kind=ArchiveKind.INPUT, agent=sender, text=content, at=moment),
            delivery=delivery,
        ),
        keys=keys,
        inbox=keys.inbox(agent),
    )
    if reply[0] == GONE:
        raise StackGoneError(f"{stack} is not published")
    if reply[0] == DUPLICATE:
        raise DuplicateDeliveryError(f"delivery {delivery} was accepted before")
    if reply[0] == 0:
        raise InputRateError(int(reply[1]) / 1000)
    return int(reply[0]), str(reply[1])


@dataclass(frozen=True)
class SentInput:
    number: int
    agent: str
    message_id: str
    wakes: bool
    """Whether a wake-up was sent (the stack is running and its inputs wake it)."""


async def put_input(
    client: RedisClient,
    stack: StackRef,
    spec: StackSpec,
    *,
    uid: str,
    agent: str | None,
    sender: str,
    content: str,
    delivery: str = "",
) -> SentInput:
    """Put an input in ``agent``'s inbox (the first agent's when ``None``) and wake the
    stack. Raises :class:`StackStoppedError`, :class:`UnknownAgentError`, and what
    :func:`send_input` raises; the content's size is the caller's to check.

    A wake-up is only a hint (the next scheduled tick reads the input anyway), so one
    that cannot be sent is logged, never an error: the input is in.
    """
    if spec.execution_state is ExecutionState.STOPPED:
        raise StackStoppedError(f"{stack} is Stopped: it reads no more inputs")
    team = [member.name for member in spec.agents]
    agent = agent or team[0]
    if agent not in team:
        raise UnknownAgentError(agent, team)
    number, message_id = await send_input(
        client,
        stack,
        agent=agent,
        sender=sender,
        content=content,
        per_minute=spec.inputs.max_per_minute,
        uid=uid,
        delivery=delivery,
    )
    wakes = spec.inputs.wake and spec.execution_state is ExecutionState.RUNNING
    if wakes:
        try:
            await protocol.wake(client, Wakeup(stack=stack, uid=uid, input=number))
        except Exception as exc:
            logger.warning("input #%d to %s: no wake-up sent: %s", number, stack, exc)
            wakes = False
    return SentInput(number=number, agent=agent, message_id=message_id, wakes=wakes)


def cut_to_bytes(content: str, max_bytes: int) -> str:
    """``content`` within ``max_bytes`` of UTF-8, cut with a marker that says so: for
    inputs made from what others sent (a webhook's body, an object a trigger saw),
    which are shortened rather than refused."""
    encoded = content.encode()
    if len(encoded) <= max_bytes:
        return content
    marker = f"\n… ({len(encoded)} bytes, cut)"
    room = max(0, max_bytes - len(marker.encode()))
    return encoded[:room].decode("utf-8", errors="ignore") + marker
