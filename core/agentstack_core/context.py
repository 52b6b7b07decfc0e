"""What one agent sees at the start of its step, without Redis.

:mod:`agentstack_core.redis.tick` reads it (one round trip, or together with the
previous step's commit); the runner's pure rules (prompts, effects) work on it alone,
so they are tested without a server.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import orjson

from agentstack_core.records import (
    ArchiveRecord,
    ArtifactRecord,
    GoalRecord,
    LongTermMemory,
    LongTermRecord,
    TaskRecord,
)

INBOX_BATCH = 20
"""Unread inbox messages an agent reads per step (the rest wait for its next step)."""
FEED_CONTEXT = 5
"""Newest feed posts an agent sees."""
CHARS_PER_TOKEN = 4
"""How prompt sizes are estimated (the offline provider counts the same way; a model's
own tokenizer may count a little more)."""
SLEEP_BATCH = 500
"""Archive items one consolidation reads at the most (the rest wait for the next)."""


@dataclass(frozen=True)
class InboxMessage:
    id: str
    """Its entry id in the agent's inbox stream (the agent's cursor moves past it)."""
    sender: str
    content: str
    tick_id: str
    input: int = 0
    """The number of the input this message is (0: a teammate's message)."""


@dataclass(frozen=True)
class AgentContext:
    """Everything one agent sees at the start of its step."""

    plan: tuple[TaskRecord, ...]
    artifacts: dict[str, ArtifactRecord]
    feed: list[str]
    memory: dict[str, str]
    inbox: list[InboxMessage]
    goal: GoalRecord | None = None
    """Where a finite goal stands (``None``: never declared met)."""
    longterm: LongTermRecord = field(default_factory=LongTermRecord)
    """The stack's long-term memory (and how far consolidation has read)."""
    archive: tuple[tuple[str, ArchiveRecord], ...] = ()
    """For a consolidation only: the archive's items after the watermark, with their ids."""


def tokens_of(value: Any) -> int:
    """The estimated tokens of ``value`` as a prompt's JSON carries it."""
    return len(orjson.dumps(value)) // CHARS_PER_TOKEN + 1


def within(memory: LongTermMemory, bound: int) -> LongTermMemory:
    """``memory`` within ``bound`` tokens: while it is larger, the oldest entry (each
    section is newest first) of its largest section goes — so no section is emptied
    while another holds more, and the newest of everything stays."""
    while tokens_of(memory.to_dict()) > bound and not memory.empty():
        largest = max(fields(memory), key=lambda f: len(getattr(memory, f.name)))
        memory = replace(memory, **{largest.name: getattr(memory, largest.name)[:-1]})
    return memory
