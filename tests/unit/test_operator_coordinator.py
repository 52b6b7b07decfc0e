"""The coordinator's own rules: only the leader acts, leadership gained restarts every
stack's schedule, and a stack gone leaves every part at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentstack_core.keys import StackRef
from agentstack_core.kube.errors import ForbiddenError
from agentstack_core.protocol import Outcome, TickResult
from agentstack_operator import coordinator
from agentstack_operator.config import OperatorConfig
from agentstack_operator.coordinator import Operator
from agentstack_operator.jobs import STACK_LABEL, TICK_ANNOTATION
from agentstack_operator.stackstate import fold_result
from tests.helpers import until

from .operator_fakes import (
    GROQ_FROM_SECRET,
    FakeFleet,
    FakeKube,
    FakeResults,
    fake_parts,
    manifest,
    sample,
)


def _operator_with_results() -> tuple[Operator, FakeKube, FakeResults]:
    """An operator whose parts are all fakes; nothing here reaches Redis."""
    kube, results = FakeKube(), FakeResults()
    return Operator(OperatorConfig(), fake_parts(kube, results)), kube, results


def _operator() -> tuple[Operator, FakeKube]:
    operator, kube, _results = _operator_with_results()
    return operator, kube


@contextlib.asynccontextmanager
async def _elected(operator: Operator) -> AsyncIterator[None]:
    """The operator's leader election runs (and wins the fake Lease) while inside."""
    election = asyncio.create_task(operator.leadership.run())
    try:
        await asyncio.wait_for(operator.leadership.acquired.wait(), 5)
        yield
    finally:
        election.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await election


@pytest.mark.asyncio
async def test_a_standby_waits_and_the_leader_acts(monkeypatch: pytest.MonkeyPatch) -> None:
    operator, _kube = _operator()
    steps: list[str] = []

    async def step() -> None:
        steps.append("acted")

    # A standby's turn waits for the lease, a while, and ends without acting.
    monkeypatch.setattr(coordinator, "STANDBY_WAIT_SECONDS", 0.01)
    await asyncio.wait_for(operator._as_leader(step)(), 5)
    assert steps == []
    # A turn that waits while the lease is won acts.
    monkeypatch.setattr(coordinator, "STANDBY_WAIT_SECONDS", 60.0)
    waiting = asyncio.create_task(operator._as_leader(step)())
    async with _elected(operator):
        await asyncio.wait_for(waiting, 5)
    assert steps == ["acted"]


@pytest.mark.asyncio
async def test_only_the_leader_records_a_failed_job() -> None:
    operator, _kube, ledger = _operator_with_results()
    operator.index.observe(manifest(executor="job"))
    failed = {
        "metadata": {
            "namespace": "team",
            "labels": {STACK_LABEL: "demo"},
            "annotations": {TICK_ANNOTATION: "team/demo/7"},
        },
        "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "Evicted"}]},
    }
    await operator.job_seen(failed)
    assert ledger.recorded == {}
    async with _elected(operator):
        await operator.job_seen(failed)
    assert set(ledger.recorded) == {"team/demo/7"}


def _tick_job(tick: str, condition: str | None) -> dict[str, Any]:
    conditions = [{"type": condition, "status": "True"}] if condition else []
    return {
        "metadata": {
            "namespace": "team",
            "labels": {STACK_LABEL: "demo"},
            "annotations": {TICK_ANNOTATION: tick},
        },
        "status": {"conditions": conditions},
    }


@pytest.mark.asyncio
@pytest.mark.parametrize("finished", ["Complete", "Failed"])
async def test_any_finished_job_frees_its_stack_on_every_replica(finished: str) -> None:
    """A Job that ended without a result (a duplicate run exits 0) must free its stack,
    or every later tick is skipped as JobStillRunning (the Job-executor wedge)."""
    operator, _kube = _operator()
    operator.index.observe(manifest(executor="job"))
    record = operator.index["team/demo"]
    await operator.job_seen(_tick_job("team/demo/7", None))  # a Job another leader made
    assert record.active_job == "team/demo/7"
    await operator.job_seen(_tick_job("team/demo/7", finished))
    assert record.active_job is None


@pytest.mark.asyncio
async def test_the_leader_folds_what_a_finished_jobs_runner_recorded() -> None:
    """A tick pod writes no results stream (its Redis user sees only its namespace): the
    leader reads the tick's recorded result once the Job is done."""
    operator, _kube, results = _operator_with_results()
    operator.index.observe(manifest(executor="job"))
    record = operator.index["team/demo"]
    results.recorded["team/demo/7"] = TickResult(
        stack=StackRef("team", "demo"),
        tick_id="team/demo/7",
        generation=1,
        outcome=Outcome.SUCCEEDED,
        reason="Completed",
        message="",
        started_at=record.created_at + 1,
        finished_at=record.created_at + 2,
    )
    await operator.job_seen(_tick_job("team/demo/7", "Complete"))
    assert record.last_tick is None  # a standby folds nothing
    async with _elected(operator):
        await operator.job_seen(_tick_job("team/demo/7", "Complete"))
    assert record.last_tick is not None
    assert record.last_tick.tick_id == "team/demo/7"


@pytest.mark.asyncio
async def test_a_failed_job_is_recorded_with_what_its_pod_said() -> None:
    operator, kube, results = _operator_with_results()
    operator.index.observe(manifest(executor="job"))
    job = _tick_job("team/demo/8", "Failed")
    job["metadata"]["name"] = "demo-tick-abc"
    ended = {"terminated": {"reason": "OOMKilled", "exitCode": 137}}
    kube.pods[("team", "demo-tick-abc")] = [
        {"metadata": {}, "status": {"containerStatuses": [{"name": "runner", "state": ended}]}}
    ]
    async with _elected(operator):
        await operator.job_seen(job)
    recorded = results.recorded["team/demo/8"]
    assert recorded.outcome is Outcome.FAILED
    assert "OOMKilled (exit code 137)" in recorded.message

    # Pods that cannot be read (no right, an outage) leave the failure to record.
    kube.pods_error = ForbiddenError(403, "Forbidden", "")
    job = _tick_job("team/demo/9", "Failed")
    async with _elected(operator):
        await operator.job_seen(job)
    assert results.recorded["team/demo/9"].outcome is Outcome.FAILED


@pytest.mark.asyncio
async def test_leadership_gained_restarts_every_schedule_and_status() -> None:
    operator, _kube = _operator()
    for name in ("a", "b"):
        operator.index.observe(manifest(name))
    operator.index.observe(manifest("paused", executionState="Paused"))
    for record in operator.index.values():
        record.urgent = False  # as after their last status write
    leading = asyncio.create_task(operator._leadership_step())
    await asyncio.sleep(0)  # it runs, up to its wait for the lease
    assert len(operator.heap) == 0  # a standby schedules nothing
    assert operator.status_writer.dirty == set()
    async with _elected(operator):
        # It marks every stack last, once it has rescheduled them all.
        await until(lambda: len(operator.status_writer.dirty) == 3, "every stack marked")
        scheduled = [key for key in ("team/a", "team/b", "team/paused") if key in operator.heap]
        assert scheduled == ["team/a", "team/b"]
        record = operator.index["team/a"]
        assert record.next_slot is not None
        assert record.next_due is not None
        assert record.next_slot <= record.next_due  # this period's tick, at once ("start")
        assert operator.status_writer.dirty == {"team/a", "team/b", "team/paused"}
        assert all(record.urgent for record in operator.index.values())
        await operator.status_writer.write_due()
        assert sample("agentstack_stacks", phase="Running") == 2
    await operator.leadership.release()
    await asyncio.wait_for(leading, 5)
    assert sample("agentstack_stacks", phase="Running") == 0  # a standby reports no fleet


@pytest.mark.asyncio
async def test_a_stack_found_gone_leaves_the_index_the_heap_and_the_dirty_set() -> None:
    operator, kube = _operator()
    record = operator.index.observe(manifest()).record
    operator.dispatcher.reschedule(record, "start")
    operator.status_writer.mark(record, urgent=True)
    kube.missing.add(StackRef("team", "demo"))
    await operator.status_writer.write_due()
    assert "team/demo" not in operator.index
    assert "team/demo" not in operator.heap
    assert operator.status_writer.dirty == set()


@pytest.mark.asyncio
async def test_a_secret_that_appears_starts_the_stack(monkeypatch: Any) -> None:
    monkeypatch.setattr(coordinator, "SECRET_RECHECK_SECONDS", 0.0)
    operator, kube = _operator()
    record = operator.index.observe(manifest(**GROQ_FROM_SECRET)).record
    record.missing_secrets = ["Secret 'keys' with key 'groq' (for groq)"]
    async with _elected(operator):
        await operator._secrets_step()
        assert "team/demo" not in operator.heap  # still missing
        kube.secrets.add(("team", "keys", "groq"))
        await operator._secrets_step()
    assert "team/demo" in operator.heap
    assert record.next_due is not None
    assert "team/demo" in operator.status_writer.dirty
    assert [(ref.name, reason) for ref, reason, _warning in kube.events] == [
        ("demo", "SecretFound")
    ]


@pytest.mark.asyncio
async def test_a_job_still_shown_active_after_its_tick_was_folded_holds_nothing() -> None:
    """A Job's object stays active until its pod is seen to end, after its runner has
    reported the tick: that Job must not hold the stack again."""
    operator, _kube = _operator()
    operator.index.observe(manifest(executor="job"))
    record = operator.index["team/demo"]
    fold_result(
        record,
        TickResult(
            stack=record.ref,
            tick_id="team/demo/7",
            generation=record.generation,
            outcome=Outcome.SUCCEEDED,
            reason="Completed",
            finished_at=record.created_at + 1,
        ),
    )
    await operator.job_seen(_tick_job("team/demo/7", None))
    assert record.active_job is None
    await operator.job_seen(_tick_job("team/demo/8", None))  # a newer one does
    assert record.active_job == "team/demo/8"


@pytest.mark.asyncio
async def test_redis_gone_back_in_time_gets_every_spec_again_once() -> None:
    """Restored from an earlier snapshot (or a failover that lost writes): the marker is
    there, but specs published since are old or missing, and the counter is lower."""
    kube = FakeKube()
    parts = fake_parts(kube)
    operator = Operator(OperatorConfig(), parts)
    fleet = parts.fleet
    assert isinstance(fleet, FakeFleet)
    for name in ("a", "b"):
        await operator.observe(manifest(name))
    await operator._ensure_published()  # the marker is set; nothing was lost
    assert fleet.published == {"team/a": 1, "team/b": 1}
    fleet.published.clear()
    fleet.publications = 1  # as the snapshot had it: one spec published back then
    await operator._ensure_published()
    assert fleet.published == {"team/a": 1, "team/b": 1}
    assert fleet.publications >= 2
    fleet.published.clear()
    await operator._ensure_published()  # caught up: nothing more to publish
    assert fleet.published == {}


@pytest.mark.asyncio
async def test_a_job_that_completed_without_recording_its_tick_is_recorded_as_failed() -> None:
    """Its runner was stopped mid-tick and handed the tick back (a node shut down): no
    runner takes a Job's tick over, so the leader records it, or it stays unrecorded."""
    operator, _kube, results = _operator_with_results()
    operator.index.observe(manifest(executor="job"))
    async with _elected(operator):
        await operator.job_seen(_tick_job("team/demo/10", "Complete"))
    recorded = results.recorded["team/demo/10"]
    assert recorded.outcome is Outcome.FAILED
    assert recorded.message.startswith("the Job completed; the runner: it ended without")
