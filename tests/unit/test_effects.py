"""From actions to domain operations: the rules applied to what a model asks for."""

from __future__ import annotations

import json

from agentstack_core.context import AgentContext, InboxMessage
from agentstack_core.operations import AdvanceCursor, Deliver, SaveArtifact, SavePlan
from agentstack_core.records import ArtifactRecord, ArtifactStatus, TaskRecord, TaskStatus
from agentstack_runner.actions import parse_reply
from agentstack_runner.effects import MAX_MEMORY_KEYS, Effects, plan_effects

TEAM = ("planner", "builder", "reviewer")


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
    agent: str, actions: list[dict[str, object]], context: AgentContext | None = None
) -> Effects:
    return plan_effects(
        agent=agent,
        team=TEAM,
        tick_id="team/demo/1",
        reply=parse_reply(json.dumps({"actions": actions})),
        context=context or _context(),
        now=1.0,
    )


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
    (delivered,) = effects.operations
    assert isinstance(delivered, Deliver)
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
