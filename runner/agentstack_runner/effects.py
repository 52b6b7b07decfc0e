"""From validated actions to domain operations: pure, so every rule is testable alone.

:func:`plan_effects` takes an agent's actions and the state it saw, applies the
project's rules (a message needs a teammate as recipient, memory has a size cap, a
review needs an existing artifact…), and returns the domain operations
(:mod:`agentstack_core.operations`) for the step's atomic commit, plus what was applied
and what was refused and why. A refused action does not fail the step: it is recorded
in the trace, as a model's mistakes should be. Which keys and commands an operation
becomes is the store's business (:mod:`agentstack_core.redis.tick`), not this module's.

Each action type has one handler (:class:`_Planner`'s method named after its ``type``);
handlers work on the step's own view of the plan and artifacts, so a later action of
the same reply sees what an earlier one changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from agentstack_core.completion import pending
from agentstack_core.context import AgentContext, InboxMessage, within
from agentstack_core.operations import (
    AdvanceCursor,
    Archive,
    Deliver,
    Forget,
    MarkInputRead,
    Operation,
    Post,
    Remember,
    RemoveArtifact,
    SaveArtifact,
    SaveGoal,
    SaveLongTerm,
    SavePlan,
)
from agentstack_core.reasons import StallReason
from agentstack_core.records import (
    ArchiveKind,
    ArchiveRecord,
    ArtifactRecord,
    ArtifactStatus,
    FeedRecord,
    GoalRecord,
    GoalState,
    InputOutcome,
    LongTermMemory,
    MessageRecord,
    TaskRecord,
    TaskStatus,
)
from agentstack_core.spec import CONSOLIDATOR_ROLE, JUDGE_ROLE, AgentSpec, ConfirmBy, StackSpec
from agentstack_runner.actions import (
    Action,
    CallTool,
    ConfirmGoalMet,
    DeclareGoalMet,
    PostUpdate,
    Recall,
    Reply,
    ReviewArtifact,
    SendMessage,
    UpdateLongTermMemory,
    UpdateMemory,
    UpdatePlan,
    WriteArtifact,
)
from agentstack_runner.workingset import WorkingSet

_ONLY: dict[str, type[Action]] = {
    JUDGE_ROLE: ConfirmGoalMet,
    CONSOLIDATOR_ROLE: UpdateLongTermMemory,
}
"""The one action each of the roles the engine runs itself may take (and that only it
may take, for the consolidator's)."""
MAX_MEMORY_KEYS = 100
MAX_PLAN_TASKS = 200
MAX_ARTIFACTS = 500
"""Current artifacts at the most (open ones and the newest finished ones)."""
ACCEPTED_KEPT = 25
"""Accepted artifacts kept current (and so in the working set's reach); older ones are
retired to the archive."""


@dataclass
class Effects:
    operations: list[Operation] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    """One short line per applied action, for the trace."""
    refused: list[str] = field(default_factory=list)
    """One line per refused action: what and why."""
    progressed: bool = False
    """Whether shared work moved: a message, an artifact, a task of the plan, a review.

    Memory notes and feed posts alone do not count, nor an action that was refused: a
    team that only reports "nothing to do", or whose every action bounces, is idle —
    the operator backs its interval off, and after a while reports it Stalled.
    """
    plan_full: bool = False
    """A new task was refused because the plan holds :data:`MAX_PLAN_TASKS` open ones."""

    @property
    def idle(self) -> StallReason | None:
        """Why the step made no progress (``None``: it did)."""
        if self.progressed:
            return None
        if self.plan_full:
            return StallReason.PLAN_FULL
        return StallReason.ACTIONS_REFUSED if self.refused else StallReason.NOTHING_TO_DO


class _Planner:
    """The rules of one step's actions, over the step's view of the shared state."""

    def __init__(
        self, spec: StackSpec, agent: AgentSpec, tick_id: str, context: AgentContext, now: float
    ) -> None:
        self.spec, self.role = spec, agent.role
        self.agent, self.tick_id, self.now = agent.name, tick_id, now
        self.team = tuple(member.name for member in spec.agents)
        self.goal = context.goal
        self.longterm = context.longterm
        self.archive: Sequence[tuple[str, ArchiveRecord]] = ()
        """The archive items the consolidation was shown (set by :func:`plan_effects`)."""
        self.effects = Effects()
        self.plan = list(context.plan)
        self.plan_changed = False
        self.memory_keys = set(context.memory)
        self.artifacts = dict(context.artifacts)

    def apply(self, action: Action) -> None:
        only = _ONLY.get(self.role)
        if only is not None and not isinstance(action, only):
            self.effects.refused.append(f"{action.type}: the {self.role} may not act so")
            return
        if isinstance(action, UpdateLongTermMemory) and only is None:
            self.effects.refused.append(f"{action.type}: only a consolidation may")
            return
        handler: Callable[[Any], None] = getattr(self, action.type)
        handler(action)

    def _task_index(self, task_id: str | None) -> int | None:
        if not task_id:
            return None
        return next((i for i, task in enumerate(self.plan) if task.id == task_id), None)

    def _archive(self, kind: ArchiveKind, ref: str, text: str) -> None:
        entry = ArchiveRecord(
            kind=kind, ref=ref, agent=self.agent, tick_id=self.tick_id, at=self.now, text=text
        )
        self.effects.operations.append(Archive(entry))

    def send_message(self, action: SendMessage) -> None:
        if action.to not in self.team or action.to == self.agent:
            self.effects.refused.append(f"send_message to {action.to!r}: not a teammate")
            return
        message = MessageRecord(
            sender=self.agent, content=action.content, tick_id=self.tick_id, at=self.now
        )
        self.effects.operations.append(Deliver(to=action.to, message=message))
        self._archive(ArchiveKind.MESSAGE, action.to, action.content)
        self.effects.applied.append(f"message to {action.to}")
        self.effects.progressed = True

    def update_memory(self, action: UpdateMemory) -> None:
        if action.value is None:
            self.effects.operations.append(Forget(agent=self.agent, key=action.key))
            self.memory_keys.discard(action.key)
            self.effects.applied.append(f"forgot {action.key}")
            return
        if action.key not in self.memory_keys and len(self.memory_keys) >= MAX_MEMORY_KEYS:
            self.effects.refused.append(f"update_memory {action.key!r}: memory is full")
            return
        self.memory_keys.add(action.key)
        self.effects.operations.append(
            Remember(agent=self.agent, key=action.key, value=action.value)
        )
        self.effects.applied.append(f"remembered {action.key}")

    def write_artifact(self, action: WriteArtifact) -> None:
        previous = self.artifacts.get(action.name)
        if previous is None and len(self.artifacts) >= MAX_ARTIFACTS:
            self.effects.refused.append(f"write_artifact {action.name!r}: too many artifacts")
            return
        artifact = ArtifactRecord(
            content=action.content,
            status=ArtifactStatus.REVIEW,
            author=self.agent,
            task_id=action.task_id or (previous.task_id if previous else None),
            version=(previous.version if previous else 0) + 1,
            tick_id=self.tick_id,
            updated_at=self.now,
        )
        self._save(action.name, artifact)
        self._archive(ArchiveKind.ARTIFACT, f"{action.name}@v{artifact.version}", action.content)
        self.effects.applied.append(f"wrote {action.name} v{artifact.version}")
        self.effects.progressed = True

    def _retire(self) -> None:
        """Finished artifacts beyond the newest :data:`ACCEPTED_KEPT` leave the current
        artifacts (their versions are in the archive): what every step reads stays
        small however much the team has delivered."""
        accepted = sorted(
            (record.updated_at, name)
            for name, record in self.artifacts.items()
            if record.status is ArtifactStatus.ACCEPTED
        )
        for _at, name in accepted[: max(0, len(accepted) - ACCEPTED_KEPT)]:
            del self.artifacts[name]
            self.effects.operations.append(RemoveArtifact(name))
            self.effects.applied.append(f"retired {name}")

    def update_plan(self, action: UpdatePlan) -> None:
        changed = 0
        for new in action.tasks:
            task = TaskRecord.from_dict(new.model_dump(exclude_none=True))
            position = self._task_index(new.id)
            if position is not None:
                if self.plan[position] == task:
                    continue  # as it was: nothing moved
                self.plan[position] = task
            elif not task.status.open:
                self.effects.refused.append(f"update_plan {new.id!r}: no such open task")
                continue
            elif sum(1 for t in self.plan if t.status.open) >= MAX_PLAN_TASKS:
                self.effects.refused.append(f"update_plan {new.id!r}: plan is full")
                self.effects.plan_full = True
                continue
            else:
                self.plan.append(task)
            changed += 1
        if changed:
            self.plan_changed = True
            self.effects.applied.append(f"plan: {changed} task(s)")
            self.effects.progressed = True

    def review_artifact(self, action: ReviewArtifact) -> None:
        reviewed = self.artifacts.get(action.name)
        if reviewed is None:
            self.effects.refused.append(f"review_artifact {action.name!r}: no such artifact")
            return
        accepted = action.verdict == "accept"
        self._save(
            action.name,
            replace(
                reviewed,
                status=ArtifactStatus.ACCEPTED if accepted else ArtifactStatus.REVISE,
                feedback=action.feedback,
                reviewer=self.agent,
                updated_at=self.now,
            ),
        )
        position = self._task_index(reviewed.task_id)
        if position is not None:
            linked = self.plan[position]
            self.plan[position] = (
                replace(linked, status=TaskStatus.DONE, note=None)
                if accepted
                else replace(linked, status=TaskStatus.TODO, note=action.feedback or "revise")
            )
            self.plan_changed = True
        self.effects.applied.append(f"{action.verdict} {action.name}")
        self.effects.progressed = True

    def declare_goal_met(self, action: DeclareGoalMet) -> None:
        if self.spec.completion is None:
            self.effects.refused.append(
                "declare_goal_met: the goal is ongoing (the stack has no spec.completion)"
            )
            return
        if pending(self.spec, self.goal) is not None:
            self.effects.refused.append(
                "declare_goal_met: declared already; awaiting its confirmation"
            )
            return
        self._decide(
            GoalRecord(
                goal_id=self.spec.goal_id,
                state=GoalState.DECLARED,
                summary=action.summary,
                declared_by=self.agent,
            )
        )
        self.effects.applied.append("declared the goal met")

    def confirm_goal_met(self, action: ConfirmGoalMet) -> None:
        completion = self.spec.completion
        confirmer = (
            JUDGE_ROLE if completion and completion.confirm_by is ConfirmBy.JUDGE else "reviewer"
        )
        declared = pending(self.spec, self.goal)
        if self.role != confirmer:
            self.effects.refused.append(f"confirm_goal_met: only the {confirmer} confirms")
            return
        if declared is None:
            self.effects.refused.append("confirm_goal_met: nobody declared the goal met")
            return
        if declared.declared_by == self.agent:
            self.effects.refused.append("confirm_goal_met: not a declaration of one's own")
            return
        accepted = action.verdict == "accept"
        state = GoalState.MET if accepted else GoalState.REJECTED
        self._decide(replace(declared, state=state, decided_by=self.agent, verdict=action.reason))
        self.effects.applied.append("confirmed the goal met" if accepted else "rejected the goal")

    def update_long_term_memory(self, action: UpdateLongTermMemory) -> None:
        """The long-term memory as consolidated, within its bound, read up to the last
        archive item the consolidation was shown; the memory is archived as a note too,
        so search finds what it says after the raw items are gone."""
        if not self.archive:
            self.effects.refused.append(f"{action.type}: no archive items to consolidate")
            return
        memory = within(
            LongTermMemory(
                decisions=tuple(action.decisions),
                facts=tuple(action.facts),
                delivered=tuple(action.delivered),
                open_threads=tuple(action.open_threads),
                lessons=tuple(action.lessons),
            ),
            self.spec.memory.long_term_tokens,
        )
        record = replace(
            self.longterm,
            memory=memory.to_json(),
            watermark=self.archive[-1][0],
            consolidations=self.longterm.consolidations + 1,
        )
        self.effects.operations.append(SaveLongTerm(record))
        note = "\n".join(
            f"{name}: {entry}" for name, entries in memory.to_dict().items() for entry in entries
        )
        self._archive(ArchiveKind.NOTE, f"consolidation {record.consolidations}", note)
        self.effects.applied.append(f"consolidated {len(self.archive)} archive item(s)")
        self.effects.progressed = True

    def _decide(self, goal: GoalRecord) -> None:
        self.goal = replace(goal, tick_id=self.tick_id, at=self.now)
        self.effects.operations.append(SaveGoal(self.goal))
        self.effects.progressed = True

    def call_tool(self, action: CallTool) -> None:
        """Tool calls are made within the step (``agentstack_runner.step``): they write
        nothing here."""

    def recall(self, action: Recall) -> None:
        """Recalls are answered within the step (``agentstack_runner.recall``): they
        write nothing here."""

    def post_update(self, action: PostUpdate) -> None:
        entry = FeedRecord(
            agent=self.agent, content=action.content, tick_id=self.tick_id, at=self.now
        )
        self.effects.operations.append(Post(entry=entry))
        self._archive(ArchiveKind.POST, "feed", action.content)
        self.effects.applied.append("posted an update")

    def _save(self, name: str, artifact: ArtifactRecord) -> None:
        self.artifacts[name] = artifact
        self.effects.operations.append(SaveArtifact(name=name, artifact=artifact))

    def finish(self, read: Sequence[InboxMessage]) -> Effects:
        """The step's closing operations: the plan as changed (its closed tasks leave it
        for the archive), and the inbox read."""
        effects = self.effects
        self._retire()
        if self.plan_changed:
            for task in self.plan:
                if not task.status.open:
                    note = f": {task.note}" if task.note else ""
                    self._archive(ArchiveKind.TASK, task.id, f"{task.title} ({task.status}){note}")
                    effects.applied.append(f"closed {task.id} ({task.status})")
            open_tasks = tuple(task for task in self.plan if task.status.open)
            effects.operations.append(SavePlan(tasks=open_tasks))
        if read:
            effects.operations.append(AdvanceCursor(agent=self.agent, message_id=read[-1].id))
        for message in read:
            if message.input:
                outcome = InputOutcome(agent=self.agent, tick_id=self.tick_id, at=self.now)
                effects.operations.append(MarkInputRead(number=message.input, outcome=outcome))
                effects.applied.append(f"read input #{message.input}")
        return effects


def plan_effects(
    *,
    spec: StackSpec,
    agent: AgentSpec,
    tick_id: str,
    reply: Reply,
    context: AgentContext,
    shown: WorkingSet,
    now: float | None = None,
) -> Effects:
    """Translate ``reply``'s actions into domain operations against ``context``; the
    agent has read what its prompt showed (``shown``: its inbox messages, and for a
    consolidation the archive items)."""
    planner = _Planner(spec, agent, tick_id, context, time.time() if now is None else now)
    planner.archive = shown.archive
    for action in reply.actions:
        planner.apply(action)
    return planner.finish(shown.inbox)
