"""The end of a finite goal, once: when is a stack's goal met?

A goal is ongoing unless the spec gives it a ``completion``. Then it is met when its
record says so for this very goal (the team declared it and the reviewer or a judge
confirmed it: the goal record's id is the spec's :attr:`~agentstack_core.spec.StackSpec.goal_id`),
or when ``maxTicks`` ticks have run. The runner checks it before it starts a tick (a
met goal drops the tick), the operator after it folds results (the stack stops being
scheduled and says so in its ``Completed`` condition); both read the same record and
counters, and word the answer the same way. Pure: no Redis.
"""

from __future__ import annotations

from agentstack_core.budget import Usage
from agentstack_core.reasons import ConditionReason
from agentstack_core.records import GoalRecord, GoalState
from agentstack_core.spec import StackSpec


def goal_met(
    spec: StackSpec, usage: Usage, goal: GoalRecord | None
) -> tuple[ConditionReason, str] | None:
    """Why the stack's goal is met, or ``None`` while it is not (or is ongoing)."""
    completion = spec.completion
    if completion is None:
        return None
    if goal is not None and goal.goal_id == spec.goal_id and goal.state is GoalState.MET:
        by = f", confirmed by {goal.decided_by}" if goal.decided_by else ""
        return ConditionReason.GOAL_MET, f"the goal was met{by}: {goal.summary}"
    if completion.max_ticks is not None and usage.ticks >= completion.max_ticks:
        return (
            ConditionReason.MAX_TICKS_REACHED,
            f"{usage.ticks} ticks have run (completion.maxTicks is {completion.max_ticks})",
        )
    return None


def pending(spec: StackSpec, goal: GoalRecord | None) -> GoalRecord | None:
    """A declaration of this goal that waits for its confirmation, if any."""
    if spec.completion is None or goal is None:
        return None
    if goal.goal_id == spec.goal_id and goal.state is GoalState.DECLARED:
        return goal
    return None
