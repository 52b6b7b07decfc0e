"""The pure rules of a stack's state: manifests, results, conditions, status."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from agentstack_core.budget import Usage
from agentstack_core.keys import StackRef
from agentstack_core.protocol import Outcome, TickResult
from agentstack_operator.stackstate import (
    StackRecord,
    apply_manifest,
    apply_usage,
    budget_message,
    conditions_for,
    fold_result,
    status_for,
)

REF = StackRef("team", "demo")


def _manifest(generation: int, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"generation": generation}, "spec": {"goal": "g", **spec}}


def _result(outcome: Outcome, at: float, progressed: bool = True) -> TickResult:
    return TickResult(
        stack=REF,
        tick_id=f"team/demo/{at}",
        generation=1,
        outcome=outcome,
        reason="Completed" if outcome is Outcome.SUCCEEDED else "AllStepsFailed",
        message="" if outcome is Outcome.SUCCEEDED else "scripted: unknown model",
        started_at=at - 1,
        finished_at=at,
        progressed=progressed,
    )


def _record(**spec: Any) -> StackRecord:
    record = StackRecord(ref=REF, uid="u1", created_at=0)
    apply_manifest(record, _manifest(1, tickIntervalSeconds=10, **spec))
    return record


def _conditions(record: StackRecord, now: float = 100.0) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in conditions_for(record, now)}


def test_transitions_produce_the_events_users_expect() -> None:
    record = StackRecord(ref=REF, uid="u1")
    assert [e.reason for e in apply_manifest(record, _manifest(1))] == ["Started"]
    assert apply_manifest(record, _manifest(1)) == []  # same generation: nothing new
    paused = apply_manifest(record, _manifest(2, executionState="Paused"))
    assert [e.reason for e in paused] == ["Paused"]
    resumed = apply_manifest(record, _manifest(3, executionState="Running"))
    assert [e.reason for e in resumed] == ["Resumed"]
    assert _conditions(record)["Paused"]["reason"] == "Resumed"
    stopped = apply_manifest(record, _manifest(4, executionState="Stopped"))
    assert [e.reason for e in stopped] == ["Stopped"]
    assert _conditions(record)["Ready"]["reason"] == "Stopped"
    invalid = apply_manifest(record, _manifest(5, agents=[{"name": "x", "role": "poet"}]))
    assert [(e.reason, e.warning) for e in invalid] == [("InvalidSpec", True)]
    assert _conditions(record)["Ready"]["reason"] == "InvalidSpec"


def test_three_failures_degrade_back_off_and_a_success_recovers() -> None:
    record = _record()
    fold_result(record, _result(Outcome.FAILED, 3.0))
    events = [apply_usage(record, Usage(ticks=n, failures=n)) for n in (1, 2, 3)]
    assert [e.reason for batch in events for e in batch] == ["Degraded"]
    degraded = _conditions(record)["Degraded"]
    assert degraded["status"] == "True"
    assert "unknown model" in degraded["message"]
    assert record.interval == 20.0
    assert [e.reason for e in apply_usage(record, Usage(ticks=4, failures=0))] == ["Recovered"]
    assert record.interval == 10.0


def test_idle_ticks_stretch_the_interval_until_progress() -> None:
    record = _record(idleBackoff={"maxIntervalSeconds": 60, "afterIdleTicks": 2})
    apply_usage(record, Usage(ticks=3, idle=3))
    assert record.interval == 40.0
    apply_usage(record, Usage(ticks=4, idle=0))
    assert record.interval == 10.0


def test_idle_ticks_in_a_row_stall_the_stack_with_their_reason_until_progress() -> None:
    record = _record(stalledAfterIdleTicks=3)
    assert _conditions(record)["Stalled"]["status"] == "False"
    idle = replace(_result(Outcome.SUCCEEDED, 3.0, progressed=False), idle="PlanFull")
    fold_result(record, idle)
    events = [apply_usage(record, Usage(ticks=n, idle=n)) for n in (1, 2, 3, 4)]
    assert [(e.reason, e.warning) for batch in events for e in batch] == [("Stalled", True)]
    stalled = _conditions(record)["Stalled"]
    assert (stalled["status"], stalled["reason"]) == ("True", "PlanFull")
    assert stalled["message"].startswith("4 ticks in a row changed nothing: the plan holds")
    progressed = apply_usage(record, Usage(ticks=5, idle=0))
    assert [e.reason for e in progressed] == ["Progressing"]
    assert _conditions(record)["Stalled"]["reason"] == "Progressing"


def test_a_restarted_operator_keeps_the_stall_reason_its_status_said() -> None:
    record = _record(stalledAfterIdleTicks=2)
    said = {"type": "Stalled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    record.conditions = {"Stalled": {**said, "reason": "ActionsRefused"}}
    apply_usage(record, Usage(ticks=9, idle=9))
    assert _conditions(record)["Stalled"]["reason"] == "ActionsRefused"
    record.conditions = {"Stalled": {**said, "reason": "Nonsense"}}
    assert _conditions(record)["Stalled"]["reason"] == "NothingToDo"


def test_late_or_foreign_results_are_ignored() -> None:
    record = _record()
    fold_result(record, _result(Outcome.SUCCEEDED, 5.0))
    fold_result(record, _result(Outcome.FAILED, 4.0))  # older than the last
    assert record.last_tick is not None
    assert record.last_tick.finished_at == 5.0
    assert record.last_tick.outcome == "Succeeded"


def test_folding_a_result_twice_or_reading_the_same_counters_changes_nothing() -> None:
    """A batch folded but not acknowledged is claimed and folded again; counters come
    from Redis, so nothing is counted twice."""
    record = _record()
    failed = _result(Outcome.FAILED, 3.0)
    for _ in range(3):
        fold_result(record, failed)
        apply_usage(record, Usage(ticks=1, failures=1))
    assert record.usage.failures == 1
    assert record.usage.ticks == 1
    revision = record.revision
    fold_result(record, failed)
    assert apply_usage(record, Usage(ticks=1, failures=1)) == []
    assert record.revision == revision  # nothing changed: no status write called for


def test_transition_time_moves_only_when_the_status_flips() -> None:
    record = _record()
    first = _conditions(record, now=100.0)
    record.conditions = first
    record.usage = Usage(failures=1)
    assert (
        _conditions(record, now=200.0)["Degraded"]["lastTransitionTime"]
        == (first["Degraded"]["lastTransitionTime"])
    )
    record.usage = Usage(failures=3)
    assert (
        _conditions(record, now=200.0)["Degraded"]["lastTransitionTime"]
        != (first["Degraded"]["lastTransitionTime"])
    )


def test_status_body_and_budget() -> None:
    record = _record(budget={"maxTicks": 2})
    record.usage = Usage(ticks=2)
    record.budget_message = budget_message(record.spec, Usage(ticks=2))
    status = status_for(record, now=0.0)
    assert status["observedGeneration"] == 1
    assert status["phase"] == "BudgetExceeded"
    assert status["lastTickTime"] is None  # a merge patch clears what is unknown
    kinds = {c["type"]: c for c in status["conditions"]}
    assert kinds["BudgetExceeded"]["status"] == "True"
    assert kinds["Ticking"]["reason"] == "BudgetExceeded"
    assert budget_message(record.spec, Usage(ticks=1)) == ""
