"""The index of stacks: what a watch event changed, and the status a record adopts."""

from __future__ import annotations

from agentstack_core.budget import Usage
from agentstack_core.keys import StackRef
from agentstack_operator.index import StackIndex, epoch

from .operator_fakes import manifest


def test_a_new_stack_starts_and_a_repeated_generation_changes_nothing() -> None:
    index = StackIndex()
    first = index.observe(manifest())
    assert first.cause == "start"
    assert [e.reason for e in first.events] == ["Started"]
    assert index["team/demo"] is first.record
    # The echo of our own status write: same generation, nothing to act on.
    echo = index.observe(manifest(status={"ticks": 3, "phase": "Running"}))
    assert echo.cause is None
    assert echo.events == ()
    assert echo.record is first.record
    assert echo.record.usage.ticks == 0  # status is adopted only by a new record


def test_each_kind_of_edit_names_its_cause() -> None:
    index = StackIndex()
    index.observe(manifest())
    assert index.observe(manifest(generation=2, goal="other")).cause == "keep"
    assert index.observe(manifest(generation=3, tickIntervalSeconds=20)).cause == "spec"
    paused = index.observe(manifest(generation=4, tickIntervalSeconds=20, executionState="Paused"))
    assert [e.reason for e in paused.events] == ["Paused"]
    resumed = index.observe(manifest(generation=5, tickIntervalSeconds=20))
    assert resumed.cause == "resume"
    assert [e.reason for e in resumed.events] == ["Resumed"]


def test_a_new_record_continues_from_the_status_it_carries() -> None:
    status = {
        "ticks": 7,
        "tokensUsed": 900,
        "consecutiveFailures": 2,
        "lastTickId": "team/demo/5000",
        "lastTickResult": "Failed",
        "lastTickReason": "StepFailed",
        "lastTickTime": "2026-11-24T00:01:00Z",
        "lastTickDurationSeconds": 1.5,
        "conditions": [
            {"type": "Paused", "status": "False", "reason": "Resumed"},
            {"type": "Ready", "status": "True", "reason": "Accepted"},
        ],
    }
    record = StackIndex().observe(manifest(status=status)).record
    assert (record.usage.ticks, record.usage.tokens, record.usage.failures) == (7, 900, 2)
    assert record.last_tick is not None
    assert record.last_tick.tick_id == "team/demo/5000"
    assert record.last_tick.finished_at == epoch("2026-11-24T00:01:00Z")
    assert record.last_tick.duration == 1.5
    assert set(record.conditions) == {"Paused", "Ready"}
    assert record.resumed


def test_a_stack_being_deleted_is_reported_and_not_applied() -> None:
    index = StackIndex()
    index.observe(manifest())
    body = manifest(generation=2, executionState="Paused")
    body["metadata"]["deletionTimestamp"] = "2026-11-24T00:05:00Z"
    change = index.observe(body)
    assert change.deleting
    assert change.events == ()
    assert change.record.generation == 1


def test_a_new_uid_under_the_same_name_is_a_new_stack() -> None:
    index = StackIndex()
    old = index.observe(manifest(uid="u1")).record
    old.usage = Usage(ticks=40)
    new = index.observe(manifest(uid="u2", status={"ticks": 0}))
    assert new.record is not old
    assert new.record.usage.ticks == 0
    assert new.cause == "start"
    assert index["team/demo"] is new.record


def test_forget_leaves_a_newer_incarnation_alone() -> None:
    index = StackIndex()
    index.observe(manifest(uid="u2"))
    ref = StackRef("team", "demo")
    assert not index.forget(ref, "u1")  # the finalizer of the old one, running late
    assert "team/demo" in index
    assert index.forget(ref, "u2")
    assert "team/demo" not in index
    assert index.forget(ref, "u2")  # already gone: nothing left to keep


def test_remove_returns_the_record_once() -> None:
    index = StackIndex()
    record = index.observe(manifest()).record
    assert index.remove("team/demo") is record
    assert index.remove("team/demo") is None
    assert len(index) == 0


def test_epoch_reads_kubernetes_timestamps() -> None:
    assert epoch("1970-01-01T00:01:00Z") == 60.0
    assert epoch(None) == 0.0
    assert epoch("") == 0.0
