"""Scheduled stacks (``spec.schedule``): which fire the dispatcher sends, and when.

The operator's clock is the test's (:class:`~tests.helpers.Clock`), set to instants in
December 2026, after the stacks' creation (24 November 2026).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agentstack_core.budget import Usage
from agentstack_core.cron import CronExpression
from agentstack_core.messages import slot_of
from agentstack_core.spec import Schedule
from agentstack_operator.config import OperatorConfig
from agentstack_operator.dispatching import Dispatcher, build_request
from agentstack_operator.index import StackIndex
from agentstack_operator.scheduling import Calendar, calendar_of, plan_fire, slot_id
from agentstack_operator.stackstate import Event, StackRecord, conditions_for, status_for
from tests.helpers import Clock

from .operator_fakes import FakeKube, FakeLanes, manifest, sample

BERLIN = ZoneInfo("Europe/Berlin")
SKIPPED = "agentstack_scheduler_ticks_skipped_total"


def _at(*parts: int) -> float:
    """A Berlin wall-clock time as POSIX seconds."""
    return datetime(*parts, tzinfo=BERLIN).timestamp()  # type: ignore[misc]


def scheduled(name: str = "demo", **schedule: Any) -> dict[str, Any]:
    """A scheduled stack's manifest (no tickIntervalSeconds)."""
    spec = schedule.pop("spec", {})
    body = manifest(name, schedule={"timeZone": "Europe/Berlin", **schedule}, **spec)
    del body["spec"]["tickIntervalSeconds"]
    return body


class Posted:
    """EventPoster: keeps what was posted."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Event]] = []

    async def post(self, record: StackRecord, events: Sequence[Event]) -> None:
        self.events.extend((record.key, event) for event in events)


def _setup(
    *bodies: dict[str, Any], now: float
) -> tuple[StackIndex, Dispatcher, FakeLanes, Clock, Posted]:
    index = StackIndex()
    for body in bodies:
        index.observe(body)
    lanes, clock, posted = FakeLanes(), Clock(now), Posted()
    seconds = itertools.count()
    dispatcher = Dispatcher(
        index,
        lanes,
        FakeKube(),
        OperatorConfig(job_grace_seconds=60),
        clock=clock,
        monotonic=lambda: float(next(seconds)),
        events=posted,
    )
    return index, dispatcher, lanes, clock, posted


@pytest.mark.asyncio
async def test_the_latest_fire_missed_runs_at_start_then_the_next_fire_is_due() -> None:
    index, dispatcher, lanes, _clock, _posted = _setup(
        scheduled(cron="0 9 * * *"), now=_at(2026, 12, 7, 10, 0)
    )
    record = index["team/demo"]
    dispatcher.reschedule(record, "start")
    await dispatcher.step()
    assert [r.tick_id for r in lanes.sent] == [f"team/demo/{slot_id(_at(2026, 12, 7, 9, 0))}"]
    assert record.next_due == record.next_slot == _at(2026, 12, 8, 9, 0)
    assert status_for(record, 0.0)["nextTickTime"] == "2026-12-08T08:00:00Z"  # UTC
    ticking = {c["type"]: c for c in conditions_for(record, 0.0)}["Ticking"]
    assert ticking["message"] == "ticks on schedule '0 9 * * *' (Europe/Berlin)"


@pytest.mark.asyncio
async def test_a_fire_later_than_its_starting_deadline_is_skipped_and_said() -> None:
    index, dispatcher, lanes, _clock, posted = _setup(
        scheduled(cron="0 9 * * *", startingDeadlineSeconds=600), now=_at(2026, 12, 7, 10, 0)
    )
    record = index["team/demo"]
    before = sample(SKIPPED, reason="StartingDeadlineExceeded")
    dispatcher.reschedule(record, "start")
    await dispatcher.step()
    assert lanes.sent == []
    assert record.next_due == _at(2026, 12, 8, 9, 0)
    assert sample(SKIPPED, reason="StartingDeadlineExceeded") == before + 1
    [(key, event)] = posted.events
    assert key == "team/demo"
    assert event.reason == "TickSkipped"
    assert event.warning
    assert event.message == (
        "the fire at 2026-12-07T08:00:00Z was 3600s late, more than "
        "startingDeadlineSeconds (600); the next fire runs"
    )


@pytest.mark.asyncio
async def test_a_fire_within_its_starting_deadline_still_runs() -> None:
    index, dispatcher, lanes, _clock, posted = _setup(
        scheduled(cron="0 9 * * *", startingDeadlineSeconds=600), now=_at(2026, 12, 7, 9, 9)
    )
    dispatcher.reschedule(index["team/demo"], "start")
    await dispatcher.step()
    assert [slot_of(r.tick_id) for r in lanes.sent] == [slot_id(_at(2026, 12, 7, 9, 0))]
    assert posted.events == []


def test_a_fire_the_stack_ran_or_that_came_before_it_existed_does_not_run_again() -> None:
    ran = scheduled("ran", cron="0 9 * * *", spec={})
    ran["status"] = {
        "lastTickId": f"team/ran/{slot_id(_at(2026, 12, 7, 9, 0))}",
        "lastTickTime": "2026-12-07T08:00:03Z",
    }
    young = scheduled("young", cron="0 9 * * *")
    young["metadata"]["creationTimestamp"] = "2026-12-07T08:30:00Z"  # 09:30 in Berlin
    index, dispatcher, *_ = _setup(ran, young, now=_at(2026, 12, 7, 10, 0))
    for key in ("team/ran", "team/young"):
        dispatcher.reschedule(index[key], "start")
        assert index[key].next_due == _at(2026, 12, 8, 9, 0), key


def test_jitter_moves_every_fire_by_a_delay_fixed_per_stack() -> None:
    bodies = [scheduled(f"s{n}", cron="0 9 * * *", jitterSeconds=300) for n in range(50)]
    index, dispatcher, *_ = _setup(*bodies, now=_at(2026, 12, 7, 9, 30))
    delays = set()
    for key, record in index.items():
        dispatcher.reschedule(record, "spec")
        assert record.next_due is not None
        delay = record.next_due - _at(2026, 12, 8, 9, 0)
        assert 0 <= delay < 300, key
        delays.add(delay)
        # The same delay on every fire, and on every replica (it comes from the uid).
        dispatcher.reschedule(record, "next", after=record.next_due)
        assert record.next_due - _at(2026, 12, 9, 9, 0) == delay
    assert len(delays) > 40  # spread, not one instant


def test_back_off_skips_fires_and_a_tick_waits_no_longer_than_the_next_fire() -> None:
    index, dispatcher, _lanes, _clock, _posted = _setup(
        scheduled(cron="* * * * *"), now=_at(2026, 12, 7, 10, 0, 30)
    )
    record = index["team/demo"]
    after = _at(2026, 12, 7, 10, 0)
    request = build_request(record, after, after, job_grace_seconds=60)
    assert request.deadline == after + 60  # a pool tick must start before the next fire
    dispatcher.reschedule(record, "next", after=after)
    assert record.next_due == _at(2026, 12, 7, 10, 1)
    record.usage = Usage(failures=4)  # failure back-off: the interval quadruples
    assert record.interval == 240
    dispatcher.reschedule(record, "next", after=after)
    assert record.next_due == _at(2026, 12, 7, 10, 4)  # three fires skipped
    ticking = {c["type"]: c for c in conditions_for(record, 0.0)}["Ticking"]
    assert "skipping fires while backed off (240s between ticks)" in ticking["message"]
    record.usage = Usage()
    dispatcher.reschedule(record, "interval")  # recovered: from the last tick, no wait
    assert record.next_due == _at(2026, 12, 7, 10, 1)


def test_resuming_runs_the_missed_fire_only_with_run_once() -> None:
    index, dispatcher, *_ = _setup(
        scheduled("skip", cron="0 9 * * *"),
        scheduled("once", cron="0 9 * * *", spec={"missedTickPolicy": "RunOnce"}),
        now=_at(2026, 12, 7, 12, 0),
    )
    dispatcher.reschedule(index["team/skip"], "resume")
    dispatcher.reschedule(index["team/once"], "resume")
    assert index["team/skip"].next_due == _at(2026, 12, 8, 9, 0)
    assert index["team/once"].next_due == _at(2026, 12, 7, 12, 0)
    assert index["team/once"].next_slot == _at(2026, 12, 7, 9, 0)


def test_an_edit_of_the_schedule_moves_the_next_tick() -> None:
    index, dispatcher, *_ = _setup(scheduled(cron="0 9 * * *"), now=_at(2026, 12, 7, 10, 0))
    record = index["team/demo"]
    dispatcher.reschedule(record, "spec")
    edited = scheduled(cron="0 18 * * *")
    edited["metadata"]["generation"] = 2
    change = index.observe(edited)
    assert change.cause == "spec"
    dispatcher.reschedule(record, change.cause)
    assert record.next_due == _at(2026, 12, 7, 18, 0)
    same = scheduled(cron="0 18 * * *", spec={"priority": "High"})
    same["metadata"]["generation"] = 3
    assert index.observe(same).cause == "keep"


def test_when_the_operator_fell_behind_only_the_latest_fire_runs() -> None:
    calendar = Calendar(CronExpression("* * * * *"), starting_deadline=None, usual_gap=60)
    now = _at(2026, 12, 7, 10, 30, 30)
    fire = plan_fire(
        calendar, now=now, missed=False, after=_at(2026, 12, 7, 10, 0), created_at=0, last_ran=None
    )
    assert (fire.slot, fire.due, fire.skipped) == (_at(2026, 12, 7, 10, 30), now, None)
    late = Calendar(CronExpression("* * * * *"), starting_deadline=10, usual_gap=60)
    fire = plan_fire(
        late, now=now, missed=False, after=_at(2026, 12, 7, 10, 0), created_at=0, last_ran=None
    )
    assert (fire.slot, fire.skipped) == (_at(2026, 12, 7, 10, 31), _at(2026, 12, 7, 10, 30))


def test_the_usual_gap_is_the_first_one_after_creation() -> None:
    created = _at(2026, 12, 4, 12, 0)  # a Friday
    weekdays = calendar_of(
        Schedule(cron="0 9 * * MON-FRI", time_zone="Europe/Berlin"), "uid", created
    )
    assert weekdays.usual_gap == 86_400  # Monday to Tuesday
    assert weekdays.jitter == 0
