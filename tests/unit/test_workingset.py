"""The working set: open work first, then the newest of the rest, within the budget;
what does not fit is counted, and the inbox is shown as a prefix."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agentstack_core.context import AgentContext, InboxMessage, tokens_of
from agentstack_core.records import ArtifactRecord, ArtifactStatus, TaskRecord, TaskStatus
from agentstack_runner.workingset import artifact_view, working_set


def _context(**values: object) -> AgentContext:
    base: dict[str, object] = {"plan": (), "artifacts": {}, "feed": [], "memory": {}, "inbox": []}
    base.update(values)
    return AgentContext(**base)  # type: ignore[arg-type]


BIG = "x" * 1200  # some 300 tokens once in a view


def test_everything_fits_a_generous_budget_and_nothing_is_omitted() -> None:
    context = _context(
        plan=(TaskRecord(id="t1", title="draft"),),
        artifacts={"a.md": ArtifactRecord(content="# a", status=ArtifactStatus.ACCEPTED)},
        feed=["one", "two"],
        memory={"k": "v"},
        inbox=[InboxMessage("1-0", "planner", "go", "t")],
    )
    shown = working_set(context, 10_000)
    assert (shown.plan, list(shown.artifacts), shown.feed) == (
        list(context.plan),
        ["a.md"],
        ["one", "two"],
    )
    assert (shown.memory, shown.inbox, shown.omitted) == ({"k": "v"}, context.inbox, {})


def test_open_work_comes_before_the_rest() -> None:
    context = _context(
        plan=(
            TaskRecord(id="t1", title=BIG),
            TaskRecord(id="t0", title="x", status=TaskStatus.DONE),
        ),
        artifacts={
            "old.md": ArtifactRecord(content=BIG, status=ArtifactStatus.ACCEPTED, updated_at=9.0),
            "new.md": ArtifactRecord(content=BIG, status=ArtifactStatus.REVISE, updated_at=1.0),
        },
        memory={"notes": BIG},
        feed=[BIG],
    )
    shown = working_set(context, 700)  # room for two big items
    assert [task.id for task in shown.plan] == ["t1"]  # a closed task is never shown
    assert list(shown.artifacts) == ["new.md"]  # waiting for a revision: open work
    assert shown.omitted == {"artifacts": 1, "memory": 1, "recent_updates": 1}
    assert shown.tokens <= 700


def test_the_rest_is_shown_newest_first() -> None:
    finished = {
        f"a{n}.md": ArtifactRecord(content=BIG, status=ArtifactStatus.ACCEPTED, updated_at=float(n))
        for n in range(5)
    }
    shown = working_set(_context(artifacts=finished, feed=[f"p{n}" for n in range(5)]), 700)
    assert sorted(shown.artifacts) == ["a3.md", "a4.md"]
    assert shown.feed == ["p0", "p1", "p2", "p3", "p4"]  # small posts came first, in order


def test_the_inbox_is_shown_as_a_prefix() -> None:
    inbox = [
        InboxMessage("1-0", "planner", "short", "t"),
        InboxMessage("2-0", "planner", BIG * 3, "t"),
        InboxMessage("3-0", "planner", "short too", "t"),
    ]
    shown = working_set(_context(inbox=inbox), 400)
    assert shown.inbox == inbox[:1]  # the third would fit, but the second is unread first
    assert shown.omitted == {"inbox": 2}


@given(
    budget=st.integers(min_value=256, max_value=5_000),
    sizes=st.lists(st.integers(min_value=0, max_value=3_000), max_size=30),
)
def test_what_is_shown_never_exceeds_the_budget(budget: int, sizes: list[int]) -> None:
    artifacts = {
        f"a{n}.md": ArtifactRecord(content="y" * size, updated_at=float(n))
        for n, size in enumerate(sizes)
    }
    shown = working_set(_context(artifacts=artifacts), budget)
    cost = sum(tokens_of(artifact_view(name, record)) for name, record in shown.artifacts.items())
    assert cost == shown.tokens <= budget
    assert len(shown.artifacts) + shown.omitted["artifacts"] == len(artifacts)
