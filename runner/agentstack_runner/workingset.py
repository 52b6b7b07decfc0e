"""The working set: what of the stack's state one agent's prompt carries, by one rule.

A stack lives for months; its plan, artifacts, memory and inbox must not all ride in
every prompt, or every tick costs more than the one before. Each agent is shown its
working set, filled in this order until ``spec.memory.contextTokens`` is spent:

1. open work — the plan's open tasks (in plan order), the artifacts waiting for a
   review or a revision (newest first), and the agent's unread inbox (oldest first);
2. the stack's long-term memory (bounded on its own by ``longTermTokens``) — and, for a
   consolidation, the archive items it is to fold in (oldest first);
3. then the newest of the rest — the agent's memory, the recent feed (newest first),
   finished artifacts (newest first).

An item that does not fit is left out and counted (``omitted`` in the prompt, so the
agent knows there is more); a later, smaller item may still fit — except in the inbox
and the archive, which are shown as a prefix: a message the agent was not shown stays
unread (its cursor stops before it) and comes first in its next step, and archive
items a consolidation was not shown wait for the next one (its watermark stops
before them). Nothing is deleted here: what is
not shown stays where it is, and finished work stays in the stack's archive.

Sizes are estimated at four characters a token (:func:`tokens_of`), the estimate the
offline provider counts with too; a model's own tokenizer may count a little more.
Pure: no Redis, no model.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from agentstack_core.context import AgentContext, InboxMessage, tokens_of
from agentstack_core.records import (
    ArchiveRecord,
    ArtifactRecord,
    ArtifactStatus,
    LongTermMemory,
    TaskRecord,
)
from agentstack_core.spec import CONSOLIDATOR_ROLE, AgentSpec, StackSpec

ARTIFACT_PREVIEW_CHARS = 1_500
"""The most of one artifact's content a prompt shows (its start)."""
ARCHIVE_VIEW_CHARS = 300
"""The most of one archive item a consolidation is shown: enough to fold it into short
notes (the whole item stays in the archive, for recall and search)."""
CONSOLIDATION_FACTOR = 4
"""A consolidation's prompt may take this many times ``contextTokens``: it must reach
what the archive gains between two consolidations (each item a few dozen tokens), or
its watermark falls behind and the archive cannot be trimmed."""


def budget(spec: StackSpec, agent: AgentSpec) -> int:
    """The tokens ``agent``'s working set may take (a consolidator's is larger)."""
    factor = CONSOLIDATION_FACTOR if agent.role == CONSOLIDATOR_ROLE else 1
    return spec.memory.context_tokens * factor


def artifact_view(name: str, record: ArtifactRecord) -> dict[str, Any]:
    """An artifact as an agent sees it (its content cut to a preview)."""
    return {
        "name": name,
        "status": record.status,
        "version": record.version,
        "author": record.author,
        "task_id": record.task_id,
        "feedback": record.feedback,
        "content": record.content[:ARTIFACT_PREVIEW_CHARS],
    }


def inbox_view(message: InboxMessage) -> dict[str, Any]:
    """A message as the agent sees it; an input (from a person or a system, not a
    teammate) carries its number."""
    entry: dict[str, Any] = {"from": message.sender, "content": message.content}
    if message.input:
        entry["input"] = message.input
    return entry


def archive_view(entry_id: str, record: ArchiveRecord) -> dict[str, Any]:
    """An archive item as a consolidation sees it."""
    return {
        "id": entry_id,
        "kind": record.kind,
        "ref": record.ref,
        "agent": record.agent,
        "text": record.text[:ARCHIVE_VIEW_CHARS],
    }


@dataclass
class WorkingSet:
    """The sections of an agent's view that fit, and how many items each left out."""

    plan: list[TaskRecord] = field(default_factory=list)
    artifacts: dict[str, ArtifactRecord] = field(default_factory=dict)
    inbox: list[InboxMessage] = field(default_factory=list)
    """The unread messages shown: a prefix of the unread inbox (the agent has read
    these, and only these, once its step commits)."""
    memory: dict[str, str] = field(default_factory=dict)
    feed: list[str] = field(default_factory=list)
    long_term: LongTermMemory = field(default_factory=LongTermMemory)
    archive: list[tuple[str, ArchiveRecord]] = field(default_factory=list)
    """For a consolidation: the archive items shown, a prefix of those after its
    watermark (these, and only these, are consolidated once its step commits)."""
    omitted: Counter[str] = field(default_factory=Counter)
    tokens: int = 0
    """The estimated tokens of what is shown."""

    def sections(self) -> dict[str, Any]:
        """The sections as the prompt's document carries them (the long-term memory and
        the archive only when there are)."""
        sections: dict[str, Any] = {
            "plan": [task.to_dict() for task in self.plan],
            "artifacts": [artifact_view(n, r) for n, r in sorted(self.artifacts.items())],
            "recent_updates": self.feed,
            "memory": self.memory,
            "inbox": [inbox_view(m) for m in self.inbox],
        }
        if not self.long_term.empty():
            sections["long_term_memory"] = self.long_term.to_dict()
        if self.archive:
            sections["archive"] = [archive_view(i, r) for i, r in self.archive]
        return sections


class _Filler:
    def __init__(self, budget: int) -> None:
        self.left = budget
        self.shown = WorkingSet()

    def fits(self, section: str, view: Any) -> bool:
        cost = tokens_of(view)
        if cost > self.left:
            self.shown.omitted[section] += 1
            return False
        self.left -= cost
        self.shown.tokens += cost
        return True


def working_set(context: AgentContext, budget_tokens: int) -> WorkingSet:
    """What of ``context`` one agent is shown within ``budget_tokens`` (the rule above)."""
    filler = _Filler(budget_tokens)
    shown = filler.shown
    for task in context.plan:
        if task.status.open and filler.fits("plan", task.to_dict()):
            shown.plan.append(task)
    newest = sorted(context.artifacts.items(), key=lambda item: -item[1].updated_at)
    waiting = (ArtifactStatus.REVIEW, ArtifactStatus.REVISE)
    for name, record in newest:
        if record.status in waiting and filler.fits("artifacts", artifact_view(name, record)):
            shown.artifacts[name] = record
    for position, message in enumerate(context.inbox):
        if not filler.fits("inbox", inbox_view(message)):
            shown.omitted["inbox"] += len(context.inbox) - position - 1
            break
        shown.inbox.append(message)
    long_term = context.longterm.long_term
    if not long_term.empty() and filler.fits("long_term_memory", long_term.to_dict()):
        shown.long_term = long_term
    for position, (entry_id, item) in enumerate(context.archive):
        if not filler.fits("archive", archive_view(entry_id, item)):
            shown.omitted["archive"] += len(context.archive) - position - 1
            break
        shown.archive.append((entry_id, item))
    for key, value in sorted(context.memory.items()):
        if filler.fits("memory", {key: value}):
            shown.memory[key] = value
    posts = [post for post in reversed(context.feed) if filler.fits("recent_updates", post)]
    shown.feed = posts[::-1]  # shown oldest first, as they were posted
    for name, record in newest:
        if record.status not in waiting and filler.fits("artifacts", artifact_view(name, record)):
            shown.artifacts[name] = record
    return shown
