"""Inputs people and systems send a stack: numbered, rate-limited, written at once.

One script (``send_input.lua``) counts the input against the stack's per-minute rate,
numbers it, and appends it to the agent's inbox, the stack's inputs log and its
archive, indexed (where search finds it after the capped streams moved on): a
refused input leaves nothing, and an accepted one is never half written. What became
of an input (which agent read it in which tick) is written by that agent's step
(:class:`~agentstack_core.operations.MarkInputRead`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.protocol import RedisClient
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
)


DUPLICATE = -2


class DuplicateDeliveryError(RuntimeError):
    """A delivery (webhook or A2A message) with this id was accepted before: it is not
    sent again."""


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
