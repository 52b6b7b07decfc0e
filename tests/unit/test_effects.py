"""From actions to domain operations: the rules applied to what a model asks for."""

from __future__ import annotations

import json
from typing import TypeVar

from agentstack_core.context import AgentContext, InboxMessage
from agentstack_core.operations import (
    AdvanceCursor,
    Archive,
    Deliver,
    MarkInputRead,
    RemoveArtifact,
    SaveArtifact,
    SaveGoal,
    SavePlan,
)
from agentstack_core.reasons import StallReason
from agentstack_core.records import (
    ArchiveKind,
    ArtifactRecord,
    ArtifactStatus,
    GoalRecord,
    GoalState,
    TaskRecord,
    TaskStatus,
)
from agentstack_core.spec import JUDGE_ROLE, AgentSpec, StackSpec, parse_spec
from agentstack_runner.actions import parse_reply
from agentstack_runner.effects import (
    ACCEPTED_KEPT,
    MAX_ARTIFACTS,
    MAX_MEMORY_KEYS,
    MAX_PLAN_TASKS,
    Effects,
    plan_effects,
)
from agentstack_runner.workingset import WorkingSet

T = TypeVar("T")
SPEC = parse_spec(
    {"goal": "g", "agents": [{"name": n} for n in ("planner", "builder", "reviewer")]}
)
FINITE = parse_spec({"goal": "g", "completion": {"criterion": "shipped"}})
JUDGED = parse_spec({"goal": "g", "completion": {"criterion": "shipped", "confirmBy": "Judge"}})


def _agent(name: str, spec: StackSpec = SPEC) -> AgentSpec:
    if name == JUDGE_ROLE:
        return AgentSpec(name=name, role=name, models=())
    return next(agent for agent in spec.agents if agent.name == name)


def _context(**overrides: object) -> AgentContext:
    values: dict[str, object] = {
        "plan": (),
        "artifacts": {},
        "feed": [],
        "memory": {},
        "inbox": [],
    }
    values.update(overrides)
    return AgentContext(**values)  # type: ignore[arg-type]


def _effects(
    agent: str,
    actions: list[dict[str, object]],
    context: AgentContext | None = None,
    spec: StackSpec = SPEC,
) -> Effects:
    context = context or _context()
    return plan_effects(
        spec=spec,
        agent=_agent(agent, spec),
        tick_id="team/demo/1",
        reply=parse_reply(json.dumps({"actions": actions})),
        context=context,
        shown=WorkingSet(inbox=list(context.inbox)),
        now=1.0,
    )


def _of(effects: Effects, kind: type[T]) -> list[T]:
    return [op for op in effects.operations if isinstance(op, kind)]


def test_messages_go_to_teammates_only() -> None:
    effects = _effects(
        "planner",
        [
            {"type": "send_message", "to": "builder", "content": "start t1"},
            {"type": "send_message", "to": "ghost", "content": "hello?"},
            {"type": "send_message", "to": "planner", "content": "note to self"},
        ],
    )
    assert effects.applied == ["message to builder"]
    assert len(effects.refused) == 2
    (delivered,) = _of(effects, Deliver)
    assert (delivered.to, delivered.message.sender) == ("builder", "planner")
    assert effects.progressed


def test_review_updates_artifact_and_linked_task() -> None:
    context = _context(
        plan=(TaskRecord(id="t1", title="draft", status=TaskStatus.REVIEW),),
        artifacts={"t1.md": ArtifactRecord(content="x", version=1, task_id="t1")},
    )
    effects = _effects(
        "reviewer",
        [{"type": "review_artifact", "name": "t1.md", "verdict": "revise", "feedback": "more"}],
        context,
    )
    saved, plan = effects.operations
    assert isinstance(saved, SaveArtifact)
    assert (saved.name, saved.artifact.status) == ("t1.md", ArtifactStatus.REVISE)
    assert saved.artifact.feedback == "more"
    assert isinstance(plan, SavePlan)
    assert [task.to_dict() for task in plan.tasks] == [
        {"id": "t1", "title": "draft", "status": "todo", "note": "more"}
    ]


def test_reviewing_a_missing_artifact_is_refused_not_fatal() -> None:
    effects = _effects(
        "reviewer", [{"type": "review_artifact", "name": "nope.md", "verdict": "accept"}]
    )
    assert effects.operations == []
    assert effects.refused == ["review_artifact 'nope.md': no such artifact"]
    assert not effects.progressed


def test_memory_is_capped_and_notes_alone_are_not_progress() -> None:
    full = _context(memory={f"k{n}": "v" for n in range(MAX_MEMORY_KEYS)})
    effects = _effects(
        "planner",
        [
            {"type": "update_memory", "key": "k1", "value": "overwrite is fine"},
            {"type": "update_memory", "key": "new", "value": "no room"},
            {"type": "post_update", "content": "nothing to do"},
        ],
        full,
    )
    assert effects.applied == ["remembered k1", "posted an update"]
    assert effects.refused == ["update_memory 'new': memory is full"]
    assert not effects.progressed


def test_consumed_inbox_advances_the_cursor() -> None:
    context = _context(
        inbox=[InboxMessage("5-0", "planner", "go", "t"), InboxMessage("9-1", "planner", "go", "t")]
    )
    effects = _effects("builder", [], context)
    assert effects.operations == [AdvanceCursor(agent="builder", message_id="9-1")]


def test_a_closed_task_leaves_the_plan_for_the_archive() -> None:
    context = _context(
        plan=(
            TaskRecord(id="t1", title="draft", status=TaskStatus.REVIEW),
            TaskRecord(id="t2", title="polish"),
            TaskRecord(id="t3", title="ship"),
        ),
        artifacts={"t1.md": ArtifactRecord(content="x", version=1, task_id="t1")},
    )
    effects = _effects(
        "reviewer",
        [
            {"type": "review_artifact", "name": "t1.md", "verdict": "accept"},
            {
                "type": "update_plan",
                "tasks": [{"id": "t2", "title": "polish", "status": "dropped"}],
            },
        ],
        context,
    )
    (plan,) = _of(effects, SavePlan)
    assert [task.id for task in plan.tasks] == ["t3"]  # open work only
    archived = {(a.entry.kind, a.entry.ref): a.entry.text for a in _of(effects, Archive)}
    assert archived == {
        (ArchiveKind.TASK, "t1"): "draft (done)",
        (ArchiveKind.TASK, "t2"): "polish (dropped)",
    }
    assert "closed t1 (done)" in effects.applied
    assert effects.progressed


def test_a_full_plan_refuses_new_tasks_and_the_step_is_idle_for_it() -> None:
    full = _context(plan=tuple(TaskRecord(id=f"t{n}", title="x") for n in range(MAX_PLAN_TASKS)))
    effects = _effects(
        "planner",
        [{"type": "update_plan", "tasks": [{"id": "new", "title": "more", "status": "todo"}]}],
        full,
    )
    assert effects.refused == ["update_plan 'new': plan is full"]
    assert _of(effects, SavePlan) == []
    assert not effects.progressed
    assert effects.idle is StallReason.PLAN_FULL


def test_an_update_that_changes_nothing_is_no_progress() -> None:
    context = _context(plan=(TaskRecord(id="t1", title="draft"),))
    same = [{"type": "update_plan", "tasks": [{"id": "t1", "title": "draft", "status": "todo"}]}]
    effects = _effects("planner", same, context)
    assert (effects.applied, effects.progressed) == ([], False)
    assert effects.idle is StallReason.NOTHING_TO_DO
    refused = _effects("planner", [{"type": "send_message", "to": "ghost", "content": "?"}])
    assert refused.idle is StallReason.ACTIONS_REFUSED


def test_work_is_archived_as_it_is_done() -> None:
    effects = _effects(
        "builder",
        [
            {"type": "write_artifact", "name": "a.md", "content": "# A"},
            {"type": "send_message", "to": "reviewer", "content": "a.md is ready"},
            {"type": "post_update", "content": "a.md written"},
        ],
    )
    archived = [(a.entry.kind, a.entry.ref, a.entry.text) for a in _of(effects, Archive)]
    assert archived == [
        (ArchiveKind.ARTIFACT, "a.md@v1", "# A"),
        (ArchiveKind.MESSAGE, "reviewer", "a.md is ready"),
        (ArchiveKind.POST, "feed", "a.md written"),
    ]
    assert {a.entry.tick_id for a in _of(effects, Archive)} == {"team/demo/1"}


def test_finished_artifacts_beyond_the_newest_few_are_retired_to_the_archive() -> None:
    accepted = {
        f"a{n}.md": ArtifactRecord(status=ArtifactStatus.ACCEPTED, updated_at=n / 100)
        for n in range(ACCEPTED_KEPT)
    }  # all older than the review below (at 1.0)
    waiting = {"w.md": ArtifactRecord(status=ArtifactStatus.REVIEW, updated_at=0.5)}
    context = _context(artifacts={**accepted, **waiting})
    assert _of(_effects("reviewer", [], context), RemoveArtifact) == []  # as many as kept
    effects = _effects(
        "reviewer", [{"type": "review_artifact", "name": "w.md", "verdict": "accept"}], context
    )
    assert _of(effects, RemoveArtifact) == [RemoveArtifact("a0.md")]  # the oldest accepted
    assert "retired a0.md" in effects.applied


def test_too_many_open_artifacts_refuse_a_new_one() -> None:
    waiting = _context(
        artifacts={f"w{n}.md": ArtifactRecord(updated_at=1.0) for n in range(MAX_ARTIFACTS)}
    )
    refused = _effects(
        "builder", [{"type": "write_artifact", "name": "new.md", "content": "n"}], waiting
    )
    assert refused.refused == ["write_artifact 'new.md': too many artifacts"]
    assert refused.idle is StallReason.ACTIONS_REFUSED


def test_only_the_messages_shown_are_read() -> None:
    inbox = [
        InboxMessage("5-0", "planner", "go", "t", input=3),
        InboxMessage("9-1", "planner", "go", "t", input=4),
    ]
    context = _context(inbox=inbox)
    effects = plan_effects(
        spec=SPEC,
        agent=_agent("builder"),
        tick_id="team/demo/1",
        reply=parse_reply('{"actions": []}'),
        context=context,
        shown=WorkingSet(inbox=inbox[:1]),
        now=1.0,
    )
    assert _of(effects, AdvanceCursor) == [AdvanceCursor(agent="builder", message_id="5-0")]
    assert [op.number for op in _of(effects, MarkInputRead)] == [3]


def _declared(spec: StackSpec, by: str = "planner") -> AgentContext:
    goal = GoalRecord(goal_id=spec.goal_id, state=GoalState.DECLARED, summary="v2", declared_by=by)
    return _context(goal=goal)


def test_a_finite_goal_is_declared_then_confirmed_by_the_reviewer() -> None:
    declare = [{"type": "declare_goal_met", "summary": "v2 shipped"}]
    ongoing = _effects("planner", declare)
    assert ongoing.refused == [
        "declare_goal_met: the goal is ongoing (the stack has no spec.completion)"
    ]
    declared = _effects("planner", declare, spec=FINITE)
    (saved,) = _of(declared, SaveGoal)
    assert (saved.goal.goal_id, saved.goal.state, saved.goal.summary) == (
        FINITE.goal_id,
        GoalState.DECLARED,
        "v2 shipped",
    )
    assert declared.progressed
    again = _effects("planner", declare, _declared(FINITE), spec=FINITE)
    assert again.refused == ["declare_goal_met: declared already; awaiting its confirmation"]

    confirm = [{"type": "confirm_goal_met", "verdict": "accept", "reason": "it is"}]
    by_builder = _effects("builder", confirm, _declared(FINITE), spec=FINITE)
    assert by_builder.refused == ["confirm_goal_met: only the reviewer confirms"]
    met = _effects("reviewer", confirm, _declared(FINITE), spec=FINITE)
    (saved,) = _of(met, SaveGoal)
    assert (saved.goal.state, saved.goal.decided_by, saved.goal.verdict) == (
        GoalState.MET,
        "reviewer",
        "it is",
    )
    nothing = _effects("reviewer", confirm, spec=FINITE)
    assert nothing.refused == ["confirm_goal_met: nobody declared the goal met"]
    rejected = _effects(
        "reviewer", [{"type": "confirm_goal_met", "verdict": "reject"}], _declared(FINITE), FINITE
    )
    assert _of(rejected, SaveGoal)[0].goal.state is GoalState.REJECTED


def test_a_declaration_of_an_earlier_goal_counts_for_nothing() -> None:
    earlier = parse_spec({"goal": "another goal", "completion": {}})
    confirm = [{"type": "confirm_goal_met", "verdict": "accept"}]
    stale = _effects("reviewer", confirm, _declared(earlier), spec=FINITE)
    assert stale.refused == ["confirm_goal_met: nobody declared the goal met"]


def test_the_judge_only_confirms_and_only_the_judge_confirms_a_judged_goal() -> None:
    confirm = [{"type": "confirm_goal_met", "verdict": "accept", "reason": "criterion holds"}]
    by_reviewer = _effects("reviewer", confirm, _declared(JUDGED), spec=JUDGED)
    assert by_reviewer.refused == ["confirm_goal_met: only the judge confirms"]
    judged = _effects(
        JUDGE_ROLE,
        [*confirm, {"type": "post_update", "content": "judged"}],
        _declared(JUDGED),
        spec=JUDGED,
    )
    assert [op.goal.state for op in _of(judged, SaveGoal)] == [GoalState.MET]
    assert judged.refused == ["post_update: the judge may not act so"]
