"""The domain operations an agent step commits: what changes, in the stack's words.

The runner's rules (``agentstack_runner.effects``) turn a model's actions into these;
the tick store (:mod:`agentstack_core.redis.tick`) alone turns them into Redis
commands, inside the step's one atomic, fenced commit. Neither side spells the other's
part: the runner never names a key or a command, the store never weighs an action.
Every record they carry is a typed record of :mod:`agentstack_core.records`.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentstack_core.approvals import Approval
from agentstack_core.records import (
    ArchiveRecord,
    ArtifactRecord,
    FeedRecord,
    GoalRecord,
    InputOutcome,
    LongTermRecord,
    MessageRecord,
    TaskRecord,
    TraceRecord,
)


@dataclass(frozen=True)
class Deliver:
    """A message into a teammate's inbox."""

    to: str
    message: MessageRecord


@dataclass(frozen=True)
class Remember:
    """A note in the agent's own working memory."""

    agent: str
    key: str
    value: str


@dataclass(frozen=True)
class Forget:
    agent: str
    key: str


@dataclass(frozen=True)
class SaveArtifact:
    """An artifact's new version: written, revised or reviewed."""

    name: str
    artifact: ArtifactRecord


@dataclass(frozen=True)
class RemoveArtifact:
    """An artifact leaves the current artifacts (its versions stay in the archive)."""

    name: str


@dataclass(frozen=True)
class Archive:
    """An item kept in the stack's archive, for recall and search."""

    entry: ArchiveRecord


@dataclass(frozen=True)
class SavePlan:
    """The shared plan as it stands after the step."""

    tasks: tuple[TaskRecord, ...]


@dataclass(frozen=True)
class Post:
    """A progress update on the stack's feed, for people."""

    entry: FeedRecord


@dataclass(frozen=True)
class AdvanceCursor:
    """The agent has read its inbox up to and including ``message_id``."""

    agent: str
    message_id: str


@dataclass(frozen=True)
class MarkInputRead:
    number: int
    outcome: InputOutcome


@dataclass(frozen=True)
class SaveApproval:
    """An approval record: a new request (kept if one with its id exists already — a
    resumed step asks again under the same id) or one that moved on."""

    approval: Approval
    new: bool = False


@dataclass(frozen=True)
class ForgetApproval:
    """A decided approval, reported long ago, leaves the stack's approvals."""

    id: str


@dataclass(frozen=True)
class SaveGoal:
    """Where the finite goal stands: declared met, confirmed, or rejected."""

    goal: GoalRecord


@dataclass(frozen=True)
class SaveLongTerm:
    """A consolidation's outcome: the long-term memory, and how far into the archive it
    has read (``record.lost`` is the trim's to count, never written here)."""

    record: LongTermRecord


@dataclass(frozen=True)
class AppendTrace:
    """The step's entry in the stack's trace."""

    entry: TraceRecord


Operation = (
    Deliver
    | Remember
    | Forget
    | SaveArtifact
    | RemoveArtifact
    | Archive
    | SavePlan
    | Post
    | AdvanceCursor
    | MarkInputRead
    | SaveApproval
    | ForgetApproval
    | SaveGoal
    | SaveLongTerm
    | AppendTrace
)
