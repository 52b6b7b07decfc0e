"""The result folder: results into records, counters and budgets, failed Jobs."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest

from agentstack_core.approvals import Approval
from agentstack_core.keys import StackRef
from agentstack_core.kube.jobs import Job
from agentstack_core.protocol import Outcome, TickResult
from agentstack_core.records import GoalRecord, GoalState
from agentstack_operator.folding import ResultFolder
from agentstack_operator.index import StackIndex, epoch
from agentstack_operator.jobs import STACK_LABEL, TICK_ANNOTATION
from agentstack_operator.stackstate import LastTick, StackRecord, conditions_for, phase_for

from .operator_fakes import FakeEvents, FakeResults, FakeScheduler, FakeStatus, indexed, manifest

AT = 1_800_000_000.0
"""After the stacks' creation: results from before it belong to an older incarnation."""


def _folder(
    index: StackIndex, results: FakeResults | None = None
) -> tuple[ResultFolder, FakeResults, FakeScheduler, FakeStatus, FakeEvents]:
    results = results or FakeResults()
    scheduler, status, events = FakeScheduler(), FakeStatus(), FakeEvents()
    folder = ResultFolder(
        index,
        stream=results,
        usage=results,
        ledger=results,
        approvals=results,
        scheduler=scheduler,
        status=status,
        events=events,
        clock=lambda: AT + 100,
    )
    return folder, results, scheduler, status, events


def _conditions(record: StackRecord) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in conditions_for(record, AT)}


def _result(outcome: Outcome, n: int, name: str = "demo") -> TickResult:
    return TickResult(
        stack=StackRef("team", name),
        tick_id=f"team/{name}/{n}",
        generation=1,
        outcome=outcome,
        reason="Completed" if outcome is Outcome.SUCCEEDED else "StepFailed",
        started_at=AT + n - 1,
        finished_at=AT + n,
        progressed=True,
    )


@pytest.mark.asyncio
async def test_a_folded_result_updates_the_record_and_marks_it_dirty() -> None:
    index = indexed("demo")
    folder, results, scheduler, status, events = _folder(index)
    results.usage["team/demo"] = {"ticks": "5", "tokens": "1200"}
    await folder.fold([_result(Outcome.SUCCEEDED, 1)])
    record = index["team/demo"]
    assert record.last_tick is not None
    assert record.last_tick.tick_id == "team/demo/1"
    assert (record.usage.ticks, record.usage.tokens) == (5, 1200)  # as Redis counted them
    assert status.marks == [("team/demo", False)]  # routine: the writer may wait
    assert scheduler.calls == []
    assert events.posted == []
    assert scheduler.ended_ticks == ["team/demo/1"]  # no longer counted as running


@pytest.mark.asyncio
async def test_a_result_of_a_stack_gone_still_ends_its_tick() -> None:
    folder, _results, scheduler, _status, _events = _folder(indexed("demo"))
    await folder.fold([_result(Outcome.SUCCEEDED, 1, name="gone")])
    assert scheduler.ended_ticks == ["team/gone/1"]


@pytest.mark.asyncio
async def test_failures_in_a_row_degrade_the_stack_and_stretch_its_interval() -> None:
    index = indexed("demo")
    folder, results, scheduler, status, events = _folder(index)
    results.usage["team/demo"] = {"ticks": "3", "failures": "3"}  # as the runners counted
    await folder.fold([_result(Outcome.FAILED, n) for n in (1, 2, 3)])
    record = index["team/demo"]
    assert events.posted == [("team/demo", "Degraded")]
    assert scheduler.calls == [("team/demo", "interval")]  # failure back-off starts
    assert status.marks == [("team/demo", False)]  # one mark per stack and batch
    assert record.urgent  # the Degraded condition itself is urgent


@pytest.mark.asyncio
async def test_a_spent_budget_stops_the_stack_and_a_raised_one_resumes_it() -> None:
    index = indexed("demo", budget={"maxTicks": 3})
    folder, results, scheduler, status, events = _folder(index)
    record = index["team/demo"]
    results.usage["team/demo"] = {"ticks": "3"}
    await folder.refresh_usage([record])
    await folder.refresh_usage([record])  # still spent: said once
    assert record.budget_message
    assert scheduler.calls == [("team/demo", None)]
    assert events.posted == [("team/demo", "BudgetExceeded")]
    assert status.marks == [("team/demo", True)]

    index.observe(manifest(generation=2, budget={"maxTicks": 10}))
    await folder.refresh_usage([record])
    assert record.budget_message == ""
    assert scheduler.calls[-1] == ("team/demo", "resume")
    assert status.marks[-1] == ("team/demo", True)


@pytest.mark.asyncio
async def test_a_finite_goal_declared_then_met_completes_the_stack_and_a_new_goal_restarts_it() -> (
    None
):
    index = indexed("demo", completion={"criterion": "shipped"})
    folder, results, scheduler, status, events = _folder(index)
    record = index["team/demo"]
    assert record.spec is not None
    goal_id = record.spec.goal_id
    declared = GoalRecord(goal_id, GoalState.DECLARED, summary="v2 out", declared_by="planner")
    results.goals["team/demo"] = declared
    await folder.refresh_usage([record])
    assert events.posted == [("team/demo", "GoalDeclared")]
    completed = _conditions(record)["Completed"]
    assert (completed["status"], completed["reason"]) == ("False", "NotMet")
    assert "waiting for the reviewer" in completed["message"]

    met = dataclasses.replace(declared, state=GoalState.MET, decided_by="reviewer")
    results.goals["team/demo"] = met
    await folder.refresh_usage([record])
    await folder.refresh_usage([record])  # still met: said once
    assert events.posted[1:] == [("team/demo", "Completed")]
    assert scheduler.calls == [("team/demo", None)]
    assert status.marks[-1] == ("team/demo", True)
    assert not record.should_tick
    assert phase_for(record) == "Completed"
    conditions = _conditions(record)
    assert (conditions["Completed"]["status"], conditions["Completed"]["reason"]) == (
        "True",
        "GoalMet",
    )
    assert conditions["Ready"]["status"] == "True"  # nothing is wrong with it
    assert (conditions["Ticking"]["status"], conditions["Ticking"]["reason"]) == (
        "False",
        "Completed",
    )

    index.observe(manifest(generation=2, goal="a new goal", completion={"criterion": "shipped"}))
    await folder.refresh_usage([record])
    assert record.met is None  # the goal met was another one
    assert record.should_tick


@pytest.mark.asyncio
async def test_a_finite_goal_completes_after_its_max_ticks() -> None:
    index = indexed("demo", completion={"maxTicks": 5})
    folder, results, _scheduler, _status, events = _folder(index)
    record = index["team/demo"]
    results.usage["team/demo"] = {"ticks": "5"}
    await folder.refresh_usage([record])
    assert record.met is not None
    assert record.met[0] == "MaxTicksReached"
    assert events.posted == [("team/demo", "Completed")]
    ongoing = indexed("other")
    other = ongoing["team/other"]
    folder, results, *_ = _folder(ongoing)
    results.usage["team/other"] = {"ticks": "5000"}
    await folder.refresh_usage([other])
    assert other.met is None
    assert _conditions(other)["Completed"]["reason"] == "Ongoing"


@pytest.mark.asyncio
async def test_results_are_acknowledged_after_they_are_folded() -> None:
    index = indexed("demo")
    folded_at_ack: list[LastTick | None] = []

    class Stream(FakeResults):
        async def acknowledge(self, entry_ids: Sequence[str]) -> None:
            folded_at_ack.append(index["team/demo"].last_tick)
            await super().acknowledge(entry_ids)

    folder, results, *_ = _folder(index, Stream())
    results.pending = [
        ("1-0", _result(Outcome.SUCCEEDED, 1)),
        ("2-0", _result(Outcome.SUCCEEDED, 2, name="ghost")),  # unknown: dropped
    ]
    await folder.step()
    assert results.acked == ["1-0", "2-0"]
    [last] = folded_at_ack
    assert last is not None
    assert last.tick_id == "team/demo/1"
    await folder.step()  # nothing new: nothing to acknowledge
    assert results.acked == ["1-0", "2-0"]


def _job(tick: str, *, failed: bool = True) -> Job:
    failure = {"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "late"}
    return Job.of(
        {
            "metadata": {
                "namespace": "team",
                "labels": {STACK_LABEL: "demo"},
                "annotations": {TICK_ANNOTATION: tick},
            },
            "status": {
                "startTime": "2026-11-24T00:02:00Z",
                "conditions": [failure] if failed else [],
            },
        }
    )


@pytest.mark.asyncio
async def test_a_failed_job_is_recorded_as_a_failed_tick() -> None:
    index = indexed("demo", executor="job")
    folder, results, *_ = _folder(index)
    await folder.job_failed(index["team/demo"], "team/demo/7", _job("team/demo/7"))
    result = results.recorded["team/demo/7"]
    assert result.outcome is Outcome.FAILED
    assert (result.reason, result.message, result.runner) == (
        "JobFailed",
        "DeadlineExceeded: late",
        "job",
    )
    assert result.started_at == epoch("2026-11-24T00:02:00Z")
    assert result.finished_at == AT + 100


@pytest.mark.asyncio
async def test_a_failed_jobs_tick_held_by_its_killed_runner_is_recorded_once_released() -> None:
    """The pod was deleted mid-tick: its runner's lease outlives it, so the failure
    cannot be recorded at once; it is, once the lease has expired, and only once."""
    index = indexed("demo", executor="job")
    folder, results, *_ = _folder(index)
    results.held.add("team/demo/7")
    await folder.job_failed(index["team/demo"], "team/demo/7", _job("team/demo/7"))
    assert results.recorded == {}
    assert list(folder.unrecorded) == [("team/demo", "team/demo/7")]
    await folder.record_failed_jobs()  # still held
    assert results.recorded == {}
    results.held.clear()  # the lease expired
    await folder.record_failed_jobs()
    assert results.recorded["team/demo/7"].reason == "JobFailed"
    assert folder.unrecorded == {}
    await folder.record_failed_jobs()
    assert len(results.recorded) == 1


@pytest.mark.asyncio
async def test_a_tool_server_down_degrades_the_stack_until_a_tick_uses_it_again() -> None:
    tools = {"servers": [{"name": "kb", "url": "http://kb/mcp", "allowedTools": ["lookup"]}]}
    index = indexed("demo", tools=tools)
    folder, _results, _scheduler, _status, events = _folder(index)
    record = index["team/demo"]
    down = dataclasses.replace(_result(Outcome.SUCCEEDED, 1), tool_problems="kb: timed out")
    await folder.fold([down])
    assert record.tool_problems == "kb: timed out"
    assert record.urgent
    degraded = _condition(record, "ToolsDegraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ToolServerUnavailable")
    assert degraded["message"] == "kb: timed out"
    # A dropped tick called no tool: it says nothing of the servers.
    busy = dataclasses.replace(_result(Outcome.DROPPED, 2), reason="StackBusy")
    await folder.fold([busy])
    assert record.tool_problems == "kb: timed out"
    await folder.fold([_result(Outcome.SUCCEEDED, 3)])
    assert _condition(record, "ToolsDegraded")["reason"] == "ToolServersAnswering"
    assert events.posted == [
        ("team/demo", "ToolServerUnavailable"),
        ("team/demo", "ToolServersRecovered"),
    ]
    plain = indexed("plain")["team/plain"]
    assert _condition(plain, "ToolsDegraded")["reason"] == "NoToolServers"


def _condition(record: Any, kind: str) -> dict[str, Any]:
    return next(c for c in conditions_for(record, AT) if c["type"] == kind)


@pytest.mark.asyncio
async def test_waiting_tool_calls_set_awaiting_approval_and_are_announced_once() -> None:
    index = indexed("demo")
    folder, results, _scheduler, status, events = _folder(index)
    record = index["team/demo"]
    asked = Approval("a1", "builder", "kb/lookup", '{"query":"x"}', "team/demo/1", AT, AT + 60)
    results.approval_records["team/demo"] = [asked]
    moved = dataclasses.replace(_result(Outcome.SUCCEEDED, 1), approvals=1)
    await folder.fold([moved])
    waiting = _condition(record, "AwaitingApproval")
    assert (waiting["status"], waiting["reason"]) == ("True", "ToolCallsWaiting")
    assert "a1 (builder: kb/lookup)" in waiting["message"]
    assert events.posted == [("team/demo", "ApprovalRequested")]
    assert ("team/demo", True) in status.marks
    # Folded again (a redelivery), nothing is announced twice; decided, nothing waits.
    await folder.fold([dataclasses.replace(moved, tick_id="team/demo/2", finished_at=AT + 2)])
    assert events.posted == [("team/demo", "ApprovalRequested")]
    results.approval_records["team/demo"] = [dataclasses.replace(asked, state="Denied")]
    await folder.fold([dataclasses.replace(moved, tick_id="team/demo/3", finished_at=AT + 3)])
    assert _condition(record, "AwaitingApproval")["status"] == "False"
    assert record.announced == set()
