"""The dispatcher: when each stack ticks next, and what goes out when it is due."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from typing import Any

import pytest

from agentstack_core import protocol
from agentstack_core.budget import Usage
from agentstack_core.protocol import Outcome, TickKind, TickRequest, TickResult, kind_of
from agentstack_core.spec import Priority
from agentstack_operator import dispatching
from agentstack_operator.config import OperatorConfig
from agentstack_operator.dispatching import Dispatcher, build_request
from agentstack_operator.fairshare import MIN_ROOM, RUNNING_GRACE_SECONDS
from agentstack_operator.index import StackIndex
from agentstack_operator.scheduling import slot_id
from agentstack_operator.stackstate import fold_result
from tests.helpers import Clock

from .operator_fakes import FakeKube, FakeLanes, indexed, manifest, sample

SKIPPED = "agentstack_scheduler_ticks_skipped_total"


def _dispatcher(
    index: StackIndex, batch: int = 500, backlog: int = 1000, **parts: Any
) -> tuple[Dispatcher, FakeLanes, FakeKube, Clock]:
    """A dispatcher over ``index`` and fakes; ``parts``: more of its keyword arguments
    (``weight``, ``concurrency``)."""
    lanes, kube, clock = FakeLanes(), FakeKube(), Clock()
    config = OperatorConfig(dispatch_batch=batch, job_grace_seconds=60, dispatch_backlog=backlog)
    # A second between any two looks at the monotonic clock: the batch gap never holds a
    # step back here (its own test below uses a clock that moves only when told).
    seconds = itertools.count()
    dispatcher = Dispatcher(
        index,
        lanes,
        kube,
        config,
        clock=clock,
        monotonic=lambda: float(next(seconds)),
        **parts,
    )
    return dispatcher, lanes, kube, clock


def test_a_request_is_a_function_of_the_record_and_its_slot() -> None:
    record = indexed("demo", priority="High")["team/demo"]
    request = build_request(record, 1000.0, 1001.5, job_grace_seconds=60)
    assert request.tick_id == "team/demo/1000000"
    assert request.slot == 1_000_000
    assert request.deadline == 1010.0  # a pool tick must start before the next is due
    assert request.dispatched_at == 1001.5
    assert request.priority is Priority.HIGH
    assert request == build_request(record, 1000.0, 1001.5, job_grace_seconds=60)


def test_a_job_tick_may_start_for_the_whole_lifetime_of_its_job() -> None:
    record = indexed("demo", executor="job", tickTimeoutSeconds=30)["team/demo"]
    assert build_request(record, 1000.0, 1000.0, job_grace_seconds=60).deadline == 1090.0


def test_a_stack_without_a_valid_spec_has_no_request() -> None:
    record = indexed("demo", goal=" ")["team/demo"]
    with pytest.raises(ValueError, match="no valid spec"):
        build_request(record, 1000.0, 1000.0, job_grace_seconds=60)


@pytest.mark.asyncio
async def test_start_sends_this_periods_tick_at_once_then_the_next_slot() -> None:
    index = indexed("demo")
    dispatcher, lanes, _kube, clock = _dispatcher(index)
    record = index["team/demo"]
    dispatcher.reschedule(record, "start")
    assert record.next_due == clock.now
    assert record.next_slot is not None
    slot = record.next_slot
    assert clock.now - 10 < slot <= clock.now
    await dispatcher.step()
    assert [[r.tick_id for r in batch] for batch in lanes.batches] == [
        [f"team/demo/{slot_id(slot)}"]
    ]
    assert record.next_due == record.next_slot == slot + 10  # the grid's next slot
    assert "team/demo" in dispatcher.heap


@pytest.mark.asyncio
async def test_due_stacks_go_out_in_batches_of_dispatch_batch() -> None:
    names = [f"s{n}" for n in range(5)]
    index = indexed(*names)
    dispatcher, lanes, _kube, _clock = _dispatcher(index, batch=2)
    for name in names:
        dispatcher.reschedule(index[f"team/{name}"], "start")
    for _ in range(3):
        await dispatcher.step()
    assert [len(batch) for batch in lanes.batches] == [2, 2, 1]
    assert len(dispatcher.heap) == 5  # every one has its next tick


def test_a_stack_that_may_not_tick_leaves_the_heap() -> None:
    index = indexed("demo", executionState="Paused")
    dispatcher, *_ = _dispatcher(index)
    record = index["team/demo"]
    record.next_due = 5.0
    dispatcher.reschedule(record, "start")
    assert "team/demo" not in dispatcher.heap
    assert record.next_due is None


def test_keep_leaves_the_scheduled_tick_and_resume_skips_missed_ones() -> None:
    index = indexed("once", missedTickPolicy="RunOnce")
    index.observe(manifest("skip"))  # the default policy, Skip
    dispatcher, _lanes, _kube, clock = _dispatcher(index)
    skip = index["team/skip"]
    dispatcher.reschedule(skip, "start")
    due = skip.next_due
    clock.now += 3
    dispatcher.reschedule(skip, "keep")
    assert skip.next_due == due
    dispatcher.reschedule(skip, "resume")
    assert skip.next_due is not None
    assert skip.next_due > clock.now  # the next slot: missed ticks are not replayed
    once = index["team/once"]
    dispatcher.reschedule(once, "resume")
    assert once.next_due == clock.now  # RunOnce: one catch-up tick at once


@pytest.mark.asyncio
async def test_a_job_stack_with_a_job_still_running_is_skipped() -> None:
    index = indexed("demo", executor="job")
    dispatcher, lanes, kube, _clock = _dispatcher(index)
    record = index["team/demo"]
    record.active_job = "team/demo/1"
    dispatcher.reschedule(record, "start")
    before = sample(SKIPPED, reason="JobStillRunning")
    await dispatcher.step()
    assert sample(SKIPPED, reason="JobStillRunning") == before + 1
    assert kube.jobs == []
    assert lanes.batches == []
    assert record.active_job == "team/demo/1"
    assert "team/demo" in dispatcher.heap  # the next slot may find it finished


@pytest.mark.asyncio
async def test_a_job_stack_gets_one_job_per_tick() -> None:
    index = indexed("demo", executor="job")
    dispatcher, lanes, kube, _clock = _dispatcher(index)
    record = index["team/demo"]
    dispatcher.reschedule(record, "start")
    await dispatcher.step()
    assert lanes.batches == []
    [(namespace, body)] = kube.jobs
    assert namespace == "team"
    assert body["metadata"]["annotations"]["agentstack.dev/tick-id"] == record.active_job


@pytest.mark.asyncio
async def test_a_job_that_could_not_be_created_frees_the_stack() -> None:
    index = indexed("demo", executor="job")
    dispatcher, _lanes, kube, _clock = _dispatcher(index)
    kube.job_error = RuntimeError("forbidden")
    record = index["team/demo"]
    dispatcher.reschedule(record, "start")
    await dispatcher.step()
    assert record.active_job is None


@pytest.mark.asyncio
async def test_stacks_gone_or_paused_since_they_were_scheduled_are_not_sent() -> None:
    index = indexed("gone", "paused")
    dispatcher, lanes, _kube, _clock = _dispatcher(index)
    for key in ("team/gone", "team/paused"):
        dispatcher.reschedule(index[key], "start")
    index.remove("team/gone")
    index.observe(manifest("paused", generation=2, executionState="Paused"))
    await dispatcher.step()
    assert lanes.batches == []


@pytest.mark.asyncio
async def test_a_reschedule_wakes_the_sleeping_dispatcher(monkeypatch: Any) -> None:
    monkeypatch.setattr(dispatching, "IDLE_WAKE_SECONDS", 60.0)
    index = indexed("demo")
    dispatcher, *_ = _dispatcher(index)
    sleeping = asyncio.create_task(dispatcher.step())  # nothing scheduled: it sleeps
    await asyncio.sleep(0)
    assert not sleeping.done()  # asleep (for a minute), not returned at once
    dispatcher.reschedule(index["team/demo"], "start")
    await asyncio.wait_for(sleeping, 5)  # woken: it returns long before the minute


@pytest.mark.asyncio
async def test_the_queue_depth_gauge_reports_what_waits_in_the_lanes(monkeypatch: Any) -> None:
    monkeypatch.setattr(dispatching, "QUEUE_DEPTH_SECONDS", 0.0)
    dispatcher, lanes, *_ = _dispatcher(StackIndex())
    lanes.waiting = 17
    await dispatcher.report_queue_depth()
    assert sample("agentstack_tick_queue_depth") == 17


@pytest.mark.asyncio
async def test_a_tick_whose_job_already_finished_does_not_wedge_its_stack() -> None:
    """After a restart the current slot is sent again; its Job exists (409) and has
    finished: the stack must be free for the next slot's Job."""
    index = indexed("demo", executor="job")
    dispatcher, _lanes, kube, clock = _dispatcher(index)
    record = index["team/demo"]
    dispatcher.reschedule(record, "start")
    await dispatcher.step()
    ((_ns, job),) = kube.jobs
    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    record.active_job = None  # a restarted operator knows nothing of it
    dispatcher.reschedule(record, "start")  # the same slot again
    await dispatcher.step()
    assert len(kube.jobs) == 1  # 409: not created twice
    assert record.active_job is None  # and the finished Job does not hold the stack
    clock.now = record.next_due or clock.now
    await dispatcher.step()
    assert len(kube.jobs) == 2  # the next slot gets its Job
    running = kube.jobs[1][1]["metadata"]["annotations"]["agentstack.dev/tick-id"]
    record.active_job = None  # restarted again, while this Job still runs
    dispatcher.reschedule(record, "start")  # its slot again: 409, and it is running
    await dispatcher.step()
    assert len(kube.jobs) == 2
    assert record.active_job == running  # a running Job does hold the stack


@pytest.mark.asyncio
async def test_ticks_that_could_not_be_sent_are_retried_under_their_own_slot() -> None:
    index = indexed("demo")
    dispatcher, lanes, _kube, clock = _dispatcher(index)
    record = index["team/demo"]
    dispatcher.reschedule(record, "start")
    slot = record.next_slot
    lanes.error = ConnectionError("Redis is down")
    with pytest.raises(ConnectionError):
        await dispatcher.step()
    assert record.next_slot == slot  # the same tick (same id) goes out again ...
    lanes.error = None
    clock.now = record.next_due or clock.now
    await dispatcher.step()
    assert [r.slot for r in lanes.sent] == [round((slot or 0) * 1000)]  # ... once sent


@pytest.mark.asyncio
async def test_ticks_falling_due_within_the_gap_after_a_batch_go_out_together() -> None:
    """A batch per due tick would cost a round trip each: after a batch, the next one
    waits out the gap, and takes everything due by then."""
    index = indexed("a", "b", "c")
    lanes, kube, clock, monotonic = FakeLanes(), FakeKube(), Clock(), Clock(0.0)
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:  # time passes only when someone waits
        pauses.append(seconds)
        clock.now += seconds
        monotonic.now += seconds

    dispatcher = Dispatcher(
        index, lanes, kube, OperatorConfig(), clock=clock, monotonic=monotonic, sleep=sleep
    )
    dispatcher.reschedule(index["team/a"], "start")
    await dispatcher.step()
    assert [str(r.stack) for r in lanes.sent] == ["team/a"]
    for name, later in (("b", 0.005), ("c", 0.015)):  # both due within the gap
        dispatcher.heap.schedule(f"team/{name}", clock.now + later)
        index[f"team/{name}"].next_slot = None
    await dispatcher.step()  # waits out the gap, and ends its turn
    assert pauses == [dispatching.DISPATCH_GAP_SECONDS]
    assert len(lanes.batches) == 1
    await dispatcher.step()
    assert [[str(r.stack) for r in batch] for batch in lanes.batches] == [
        ["team/a"],
        ["team/b", "team/c"],
    ]


@pytest.mark.asyncio
async def test_a_consolidation_is_sent_when_owed_one_at_a_time_in_the_sleep_lane() -> None:
    index = indexed("demo", memory={"consolidateEveryTicks": 5})
    dispatcher, lanes, _kube, clock = _dispatcher(index)
    record = index["team/demo"]
    record.usage = Usage(ticks=4)
    dispatcher.consolidate(record)
    assert record.sleep_tick is None  # not owed yet
    record.usage = Usage(ticks=5)
    dispatcher.consolidate(record)
    dispatcher.consolidate(record)  # on its way already: not sent twice
    await dispatcher.step()
    ((sleep,),) = lanes.batches
    assert (sleep.kind, protocol.lane_of(sleep)) == (TickKind.SLEEP, protocol.SLEEP_LANE)
    assert sleep.tick_id == record.sleep_tick == f"team/demo/{slot_id(clock.now)}-sleep"
    assert kind_of(sleep.tick_id) is TickKind.SLEEP
    assert sleep.deadline == clock.now + dispatching.SLEEP_DEADLINE_SECONDS
    assert "team/demo" not in dispatcher.heap  # the grid of work ticks is untouched

    result = TickResult(
        stack=record.ref,
        tick_id=sleep.tick_id,
        generation=1,
        outcome=Outcome.SUCCEEDED,
        reason="Completed",
        started_at=record.created_at + 10,
        finished_at=record.created_at + 11,
        kind=TickKind.SLEEP,
    )
    fold_result(record, result)
    assert record.sleep_tick is None
    assert record.last_tick is None  # a consolidation is not the stack's last tick
    record.usage = Usage(ticks=7, sleeps=1)
    assert not record.consolidation_due  # the next one after ten ticks
    record.sleep_tick = "team/demo/2-sleep"
    fold_result(record, dataclasses.replace(result, tick_id="team/demo/2-sleep", behind=True))
    assert record.consolidation_due  # it did not reach every item: the next one at once
    record.sleep_tick = "team/demo/3-sleep"
    fold_result(record, dataclasses.replace(result, tick_id="team/demo/3-sleep"))
    assert not record.consolidation_due
    record.usage = Usage(ticks=10, sleeps=1)
    assert record.consolidation_due
    off = indexed("off", memory={"consolidateEveryTicks": 0})["team/off"]
    off.usage = Usage(ticks=1000)
    assert not off.consolidation_due


def result_of(request: TickRequest) -> TickResult:
    """The result a runner would publish for ``request`` (it succeeded)."""
    return TickResult(
        stack=request.stack,
        tick_id=request.tick_id,
        generation=request.generation,
        outcome=Outcome.SUCCEEDED,
        reason="Completed",
        started_at=request.dispatched_at,
        finished_at=request.dispatched_at + 1,
    )


def _in(namespace: str, name: str, **fields: Any) -> dict[str, Any]:
    body = manifest(name, **fields)
    body["metadata"]["namespace"] = namespace
    return body


def _tenants(noisy: int, quiet: int) -> StackIndex:
    """``noisy`` stacks in namespace ``noisy`` and ``quiet`` in ``quiet``."""
    index = StackIndex()
    for namespace, count in (("noisy", noisy), ("quiet", quiet)):
        for number in range(count):
            index.observe(_in(namespace, f"s{number}"))
    return index


def _start_all(dispatcher: Dispatcher, index: StackIndex) -> None:
    for record in index.values():
        dispatcher.reschedule(record, "start")


async def _held_behind_full_lanes(
    stacks: int,
) -> tuple[StackIndex, Dispatcher, FakeLanes, Clock]:
    """``stacks`` stacks of namespace ``noisy`` started while the lanes are full: every
    tick held."""
    index = _tenants(noisy=stacks, quiet=0)
    dispatcher, lanes, _kube, clock = _dispatcher(index)
    lanes.waiting = MIN_ROOM  # the runners are behind
    _start_all(dispatcher, index)
    await dispatcher.step()
    assert lanes.sent == []
    assert len(dispatcher.held) == stacks
    return index, dispatcher, lanes, clock


@pytest.mark.asyncio
async def test_while_the_lanes_are_full_due_ticks_wait_and_go_out_as_room_appears() -> None:
    _index, dispatcher, lanes, _clock = await _held_behind_full_lanes(3)
    assert sample("agentstack_dispatch_held_ticks") == 3
    lanes.waiting -= 2  # the runners took two (the room follows their pace, at least 16)
    await dispatcher.step()
    assert len(lanes.sent) == 2
    assert len(dispatcher.held) == 1
    lanes.waiting = 0
    await dispatcher.step()
    assert sorted(r.tick_id.split("/")[1] for r in lanes.sent) == ["s0", "s1", "s2"]
    assert sample("agentstack_dispatch_held_ticks") == 0


@pytest.mark.asyncio
async def test_a_quiet_namespace_is_not_queued_behind_a_noisy_ones_backlog() -> None:
    index = _tenants(noisy=50, quiet=2)
    dispatcher, lanes, _kube, _clock = _dispatcher(index)
    lanes.waiting = MIN_ROOM - 4  # room for four
    _start_all(dispatcher, index)  # the noisy namespace's fifty first
    await dispatcher.step()
    namespaces = [r.stack.namespace for r in lanes.sent]
    assert namespaces.count("quiet") == 2  # both of its ticks, in the first room
    assert namespaces.count("noisy") == 2
    assert dispatcher.held.waiting("noisy") == 48


@pytest.mark.asyncio
async def test_a_namespace_weight_buys_it_that_many_ticks_a_turn() -> None:
    index = _tenants(noisy=20, quiet=20)
    dispatcher, lanes, _kube, _clock = _dispatcher(
        index, backlog=4, weight={"noisy": 1, "quiet": 3}.__getitem__
    )
    _start_all(dispatcher, index)
    await dispatcher.step()
    assert sorted(r.stack.namespace for r in lanes.sent) == ["noisy", *["quiet"] * 3]


@pytest.mark.asyncio
async def test_a_tick_that_waited_past_its_deadline_is_dropped_and_counted() -> None:
    index, dispatcher, lanes, clock = await _held_behind_full_lanes(1)
    record = index["noisy/s0"]
    before = sample(SKIPPED, reason="RunnersBusy")
    clock.now += record.interval + 1  # its deadline passes; the next slot falls due
    lanes.waiting = 0
    await dispatcher.step()
    assert sample(SKIPPED, reason="RunnersBusy") == before + 1
    assert [r.slot for r in lanes.sent] == [round((record.next_slot - record.interval) * 1000)]


@pytest.mark.asyncio
async def test_a_held_tick_of_a_stack_paused_meanwhile_is_not_sent() -> None:
    index, dispatcher, lanes, _clock = await _held_behind_full_lanes(1)
    index.observe(_in("noisy", "s0", generation=2, executionState="Paused"))
    assert not index["noisy/s0"].should_tick
    lanes.waiting = 0
    await dispatcher.step()
    assert lanes.sent == []
    assert len(dispatcher.held) == 0


@pytest.mark.asyncio
async def test_a_replica_that_loses_the_leadership_drops_what_it_held() -> None:
    _index, dispatcher, lanes, _clock = await _held_behind_full_lanes(2)
    dispatcher.drop_held()
    lanes.waiting = 0
    await dispatcher.step()
    assert lanes.sent == []
    assert sample("agentstack_dispatch_held_ticks") == 0


@pytest.mark.asyncio
async def test_a_backlog_of_0_sends_everything_first_come_first_served() -> None:
    index = _tenants(noisy=3, quiet=1)
    dispatcher, lanes, _kube, _clock = _dispatcher(index, backlog=0)
    lanes.waiting = 10_000
    _start_all(dispatcher, index)
    await dispatcher.step()
    assert len(lanes.sent) == 4


@pytest.mark.asyncio
async def test_a_namespace_runs_no_more_ticks_at_once_than_its_quota() -> None:
    index = _tenants(noisy=4, quiet=0)
    dispatcher, lanes, _kube, clock = _dispatcher(index, concurrency={"noisy": 2}.get)
    _start_all(dispatcher, index)
    await dispatcher.step()
    assert len(lanes.sent) == 2  # two of four: the others wait for one to end
    first = lanes.sent[0]
    dispatcher.ended(result_of(first))
    await dispatcher.step()
    assert len(lanes.sent) == 3
    before = sample(SKIPPED, reason="ConcurrencyQuota")
    clock.now += 11  # the last one's deadline passes while two still run
    await dispatcher.step()
    assert sample(SKIPPED, reason="ConcurrencyQuota") == before + 1


@pytest.mark.asyncio
async def test_a_tick_whose_result_never_comes_frees_its_quota_after_its_latest_end() -> None:
    index = _tenants(noisy=2, quiet=0)
    dispatcher, lanes, _kube, clock = _dispatcher(index, concurrency={"noisy": 1}.get)
    dispatcher.reschedule(index["noisy/s0"], "start")
    await dispatcher.step()
    (lost,) = lanes.sent  # its runner is lost with it
    timeout = index["noisy/s0"].spec.tick_timeout_seconds  # type: ignore[union-attr]
    clock.now = lost.deadline + timeout + RUNNING_GRACE_SECONDS
    dispatcher.reschedule(index["noisy/s1"], "start")
    await dispatcher.step()
    assert [r.stack.name for r in lanes.sent] == ["s0", "s1"]


@pytest.mark.asyncio
async def test_a_tick_that_could_not_be_sent_does_not_count_against_the_quota() -> None:
    index = _tenants(noisy=1, quiet=0)
    dispatcher, lanes, _kube, clock = _dispatcher(index, concurrency={"noisy": 1}.get)
    dispatcher.reschedule(index["noisy/s0"], "start")
    lanes.error = ConnectionError("Redis is down")
    with pytest.raises(ConnectionError):
        await dispatcher.step()
    assert dispatcher.running.count("noisy", clock.now) == 0
    lanes.error = None
    clock.now += dispatching.SEND_RETRY_SECONDS
    await dispatcher.step()
    assert len(lanes.sent) == 1  # the retry went out: the quota was free


@pytest.mark.asyncio
async def test_within_a_namespace_a_high_priority_tick_goes_out_first() -> None:
    index = StackIndex()
    for name, priority in (("low", "Low"), ("normal", "Normal"), ("high", "High")):
        index.observe(_in("team", name, priority=priority))
    dispatcher, lanes, _kube, _clock = _dispatcher(index, backlog=1)  # room for one
    _start_all(dispatcher, index)
    for _ in range(3):
        await dispatcher.step()
        lanes.waiting = 0
    assert [r.stack.name for r in lanes.sent] == ["high", "normal", "low"]
