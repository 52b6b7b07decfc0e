"""What one agent sees at the start of its step, without Redis.

:mod:`agentstack_core.redis.tick` reads it (one round trip, or together with the
previous step's commit); the runner's pure rules (prompts, effects) work on it alone,
so they are tested without a server.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentstack_core.records import ArtifactRecord, GoalRecord, TaskRecord

INBOX_BATCH = 20
"""Unread inbox messages an agent reads per step (the rest wait for its next step)."""
FEED_CONTEXT = 5
"""Newest feed posts an agent sees."""


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
