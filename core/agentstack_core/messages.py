"""The messages of the tick protocol, without the streams that carry them.

The operator sends :class:`TickRequest` s, the runners answer with :class:`TickResult` s
(see :mod:`agentstack_core.protocol` for the streams). A tick's id is deterministic
per stack and slot (:func:`tick_id`), so the same slot sent twice is the same tick.
Pure data: the operator's rules and the runners' engine use these without Redis.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum

from agentstack_core.keys import StackRef
from agentstack_core.reasons import Outcome
from agentstack_core.records import Record, TickRecord
from agentstack_core.spec import Priority


def tick_id(stack: StackRef, slot: int) -> str:
    """The id of a stack's tick in scheduling slot ``slot``: same inputs, same id.

    Deterministic so that a restarted operator, or a second replica, that dispatches
    the same slot again produces a duplicate the runners recognise and skip.
    """
    return f"{stack.namespace}/{stack.name}/{slot}"


def sleep_tick_id(stack: StackRef, slot: int) -> str:
    """The id of a consolidation tick sent in ``slot`` (milliseconds): marked apart from
    the stack's work ticks, whose ids are slots alone (:func:`slot_of` reads none in it)."""
    return f"{tick_id(stack, slot)}-sleep"


def kind_of(tick: str) -> TickKind:
    """Whether the tick ``tick`` names is a consolidation (see :func:`sleep_tick_id`)."""
    return TickKind.SLEEP if tick.endswith("-sleep") else TickKind.WORK


def slot_of(tick: str) -> int | None:
    """The slot a :func:`tick_id` was made from (``None`` for a foreign id)."""
    _stack, _sep, slot = tick.rpartition("/")
    return int(slot) if slot.isdigit() else None


class TickKind(StrEnum):
    WORK = "Work"
    """The team's agents take their steps."""
    SLEEP = "Sleep"
    """Consolidation: what was archived since the last one is folded into the stack's
    long-term memory (low priority, a lane of its own, one model call)."""


@dataclass(frozen=True)
class TickRequest(Record):
    stack: StackRef
    generation: int
    tick_id: str
    slot: int
    deadline: float
    """Unix time after which the tick must not start."""
    priority: Priority = Priority.NORMAL
    dispatched_at: float = field(default_factory=time.time)
    dispatched_by: str = ""
    """The operator replica that sent it (an audit trail: one leader acts at a time)."""
    uid: str = ""
    """The stack's uid when it was dispatched: a tick of a stack since deleted (or
    deleted and re-created under the same name) writes nothing."""
    traceparent: str = ""
    """W3C trace context of the operator's dispatch span (empty when tracing is off):
    the runner's spans of this tick join that trace (:mod:`agentstack_core.tracing`)."""
    kind: TickKind = TickKind.WORK


@dataclass(frozen=True)
class TickResult(Record):
    stack: StackRef
    tick_id: str
    generation: int
    outcome: Outcome
    reason: str
    """CamelCase reason (``Completed``, ``DeadlineExceeded``, ``StepFailed``…)."""
    message: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    tokens: int = 0
    steps: int = 0
    progressed: bool = False
    """Whether the tick changed anything (an artifact, the plan, a message, the feed)."""
    runner: str = ""
    tool_problems: str = ""
    """Tool servers the tick's agents could not use (down, slow, a header's Secret
    unreadable), and why; empty when every tool server answered."""
    approvals: int = 0
    """Approval records the tick asked for or moved on: the operator mirrors them."""
    cost: int = 0
    """Nano-dollars of the tick's priced LLM calls (:mod:`agentstack_core.pricing`)."""
    unpriced: int = 0
    """LLM calls of models without a price: the tick's cost is unknown if any."""
    cost_needed: int = 0
    """Nano-dollars a call refused by the dollar budget needed at the least (0: none
    was refused); the stack's budget counts as spent while less is left."""
    kind: TickKind = TickKind.WORK
    behind: bool = False
    """A consolidation that left archive items it did not reach (another is owed now)."""
    idle: str = ""
    """Why a tick that succeeded made no progress: a
    :class:`~agentstack_core.reasons.StallReason` (empty: it progressed, or it did not
    succeed)."""
    scores: str = ""
    """The evals' scores of what the tick produced, as JSON
    (:func:`~agentstack_core.evals.encode_scores`; empty: nothing scored)."""

    @property
    def duration(self) -> float:
        return max(0.0, self.finished_at - self.started_at)

    def history_entry(self) -> TickRecord:
        """The stack's history entry of this result (one shape for every writer)."""
        return TickRecord(
            tick_id=self.tick_id,
            generation=self.generation,
            outcome=self.outcome.value,
            reason=self.reason,
            message=self.message,
            started_at=self.started_at,
            finished_at=self.finished_at,
            duration_ms=round(self.duration * 1000),
            tokens=self.tokens,
            steps=self.steps,
            progressed=self.progressed,
            runner=self.runner,
            cost=self.cost,
            unpriced=self.unpriced,
            idle=self.idle,
            kind=self.kind,
            scores=self.scores,
        )


@dataclass(frozen=True)
class Wakeup(Record):
    """A stack received an input and asks for a tick at once (the read API sends it;
    the leading operator dispatches the tick). A hint only: a wake-up lost costs the
    input its promptness, never the input (it waits in the inbox for the next tick)."""

    stack: StackRef
    uid: str = ""
    input: int = 0
    at: float = field(default_factory=time.time)
    reason: str = ""
    """An Event to post on the stack with it (e.g. ``ToolCallApproved``); empty: none."""
    message: str = ""
