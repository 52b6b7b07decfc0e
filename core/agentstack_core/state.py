"""The shapes of a stack's state, without Redis: what an agent sees at the start of its
step (:class:`AgentContext`), the write operations a step commits (:data:`Op`,
:func:`xadd_op`), the history entry of a finished tick, and the caps of each stream.

:mod:`agentstack_core.store` reads and writes these in Redis; the runner's pure rules
(prompts, effects) work on them alone, so they are tested without a server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from agentstack_core.messages import TickResult
from agentstack_core.records import Record, TickRecord

TRACE_MAXLEN = 5_000
FEED_MAXLEN = 1_000
INBOX_MAXLEN = 1_000
INPUTS_MAXLEN = 1_000
"""Inputs kept in a stack's inputs log (and outcomes kept: the same newest numbers)."""
HISTORY_MAXLEN = 1_000
DONE_WINDOW = 256
"""Finished tick ids remembered per stack: enough for any re-dispatch of recent slots."""
OUTCOMES_WINDOW = 16
"""Finished ticks whose whole result is kept (to publish again to a redelivery): the
newest few, since a redelivery comes within a visibility timeout or a failover — and a
result is some hundred bytes, a done id some tens."""
STEPS_TTL_MS = 86_400_000
INBOX_BATCH = 20
FEED_CONTEXT = 5

Op = tuple[str, str, Sequence[str]]
"""A Redis command for the commit script: (command, key, arguments)."""


@dataclass(frozen=True)
class InboxMessage:
    id: str
    sender: str
    content: str
    tick_id: str
    input: int = 0
    """The number of the input this message is (0: a teammate's message)."""


@dataclass(frozen=True)
class AgentContext:
    """Everything one agent sees at the start of its step."""

    plan: list[dict[str, Any]]
    artifacts: dict[str, dict[str, Any]]
    feed: list[str]
    memory: dict[str, str]
    inbox: list[InboxMessage]


def history_entry(result: TickResult) -> TickRecord:
    """The history stream's entry for a tick's result (one shape for every writer)."""
    return TickRecord(
        tick_id=result.tick_id,
        generation=result.generation,
        outcome=result.outcome.value,
        reason=result.reason,
        message=result.message,
        started_at=result.started_at,
        finished_at=result.finished_at,
        duration_ms=round(result.duration * 1000),
        tokens=result.tokens,
        steps=result.steps,
        progressed=result.progressed,
        runner=result.runner,
        cost=result.cost,
        unpriced=result.unpriced,
    )


def input_outcome(*, agent: str, tick_id: str, at: float) -> str:
    """What became of an input (the JSON kept in the stack's input outcomes): the agent
    that read it and the tick it read it in — so a person sees which tick's trace and
    history entry answer it."""
    return orjson.dumps({"state": "Read", "agent": agent, "tickId": tick_id, "at": at}).decode()


def xadd_op(key: str, record: Record, maxlen: int) -> Op:
    """The op that appends ``record`` to the stream ``key``, capped near ``maxlen``."""
    flat = [item for pair in record.to_fields().items() for item in pair]
    return ("XADD", key, ["MAXLEN", "~", str(maxlen), "*", *flat])
