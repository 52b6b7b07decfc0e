"""The status writer: on change, at most once per stack per interval (conditions at
once), within a fleet-wide budget; and Events, from the leader only."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentstack_core.keys import StackRef
from agentstack_operator import statuswriting
from agentstack_operator.index import StackIndex
from agentstack_operator.stackstate import Event
from agentstack_operator.statuswriting import LeaderEvents, StatusWriter, clear_fleet_gauges
from tests.helpers import Clock

from .operator_fakes import FakeKube, indexed, manifest, sample

WRITES = "agentstack_operator_status_writes_total"


class Writing:
    """A status writer over ``index`` with a fake API server and clocks."""

    def __init__(
        self, index: StackIndex, *, rate: float = 50.0, kube: FakeKube | None = None
    ) -> None:
        self.index = index
        self.kube = kube or FakeKube()
        self.clock = Clock()
        self.monotonic = Clock(0.0)
        self.gone: list[StackRef] = []
        self.scheduled = ["one", "two", "three"]
        self.writer = StatusWriter(
            index,
            self.kube,
            min_interval=10.0,
            writes_per_second=rate,
            scheduled=self.scheduled,
            gone=self.gone.append,
            clock=self.clock,
            monotonic=self.monotonic,
        )
        self.mark_all(urgent=True)  # as the coordinator does for a new stack

    def mark_all(self, *, urgent: bool) -> None:
        for record in self.index.values():
            self.writer.mark(record, urgent=urgent)

    async def written(self) -> list[str]:
        """Keys written by one round of the writer."""
        before = len(self.kube.patches)
        await self.writer.write_due()
        return [str(ref) for ref, _body in self.kube.patches[before:]]


@pytest.mark.asyncio
async def test_a_budget_of_two_writes_a_second_lets_two_of_five_through() -> None:
    writing = Writing(indexed(*(f"s{n}" for n in range(5))), rate=2.0)
    assert len(await writing.written()) == 2
    assert await writing.written() == []  # the budget is spent for this second
    writing.monotonic.now += 1.0
    assert len(await writing.written()) == 2
    writing.monotonic.now += 100.0
    assert len(await writing.written()) == 1  # the last one
    writing.mark_all(urgent=True)
    writing.monotonic.now += 100.0
    assert len(await writing.written()) == 2  # a quiet minute saves no burst beyond 2


@pytest.mark.asyncio
async def test_routine_changes_wait_for_the_interval_and_urgent_ones_do_not() -> None:
    writing = Writing(indexed("demo"))
    record = writing.index["team/demo"]
    assert await writing.written() == ["team/demo"]  # new: urgent
    writing.clock.now += 3
    writing.writer.mark(record, urgent=False)
    assert await writing.written() == []
    assert "team/demo" in writing.writer.dirty
    writing.writer.mark(record, urgent=True)  # a condition changed
    assert await writing.written() == ["team/demo"]
    writing.writer.mark(record, urgent=False)
    writing.clock.now += 9.9
    assert await writing.written() == []
    writing.clock.now += 0.1
    assert await writing.written() == ["team/demo"]
    assert writing.writer.dirty == set()


@pytest.mark.asyncio
async def test_urgent_records_go_first_when_the_budget_is_short() -> None:
    writing = Writing(indexed("routine", "urgent"), rate=1.0)
    writing.writer.mark(writing.index["team/routine"], urgent=False)
    writing.index["team/routine"].urgent = False
    writing.writer.mark(writing.index["team/urgent"], urgent=True)
    assert await writing.written() == ["team/urgent"]


@pytest.mark.asyncio
async def test_a_write_that_raced_a_change_keeps_the_record_dirty() -> None:
    index = indexed("demo")

    class Racing(FakeKube):
        async def patch_status(self, ref: StackRef, body: dict[str, Any]) -> bool:
            writing.writer.mark(index["team/demo"], urgent=False)  # a result folded meanwhile
            return await super().patch_status(ref, body)

    writing = Writing(index, kube=Racing())
    assert await writing.written() == ["team/demo"]
    assert "team/demo" in writing.writer.dirty


@pytest.mark.asyncio
async def test_a_stack_found_gone_is_handed_back_and_a_failed_write_retried() -> None:
    writing = Writing(indexed("gone", "flaky"))
    writing.kube.missing.add(StackRef("team", "gone"))
    writing.kube.patch_error = RuntimeError("API server away")
    before = sample(WRITES)
    await writing.writer.write_due()
    assert sample(WRITES) == before
    assert writing.writer.dirty == {"team/gone", "team/flaky"}
    assert writing.index["team/flaky"].last_status_write == 0.0

    writing.kube.patch_error = None
    writing.monotonic.now += 1
    await writing.writer.write_due()
    assert sample(WRITES) == before + 2
    assert writing.gone == [StackRef("team", "gone")]
    assert writing.writer.dirty == {"team/gone"}  # the coordinator's remove() drops it


@pytest.mark.asyncio
async def test_dirty_marks_of_stacks_no_longer_indexed_are_dropped() -> None:
    writing = Writing(indexed("demo", "ghost"))  # both marked, then one deleted
    writing.index.remove("team/ghost")
    assert await writing.written() == ["team/demo"]
    assert writing.writer.dirty == set()


@pytest.mark.asyncio
async def test_the_fleet_gauges_count_stacks_by_phase_and_the_heap() -> None:
    index = indexed("a", "b")
    index.observe(manifest("paused", executionState="Paused"))
    writing = Writing(index)
    await writing.writer.write_due()
    assert sample("agentstack_stacks", phase="Running") == 2
    assert sample("agentstack_stacks", phase="Paused") == 1
    assert sample("agentstack_stacks", phase="Invalid") == 0
    assert sample("agentstack_scheduler_scheduled_stacks") == 3
    clear_fleet_gauges()
    assert sample("agentstack_stacks", phase="Running") == 0
    assert sample("agentstack_scheduler_scheduled_stacks") == 0


@pytest.mark.asyncio
async def test_an_urgent_mark_wakes_the_waiting_writer(monkeypatch: Any) -> None:
    monkeypatch.setattr(statuswriting, "STATUS_POLL_SECONDS", 60.0)
    writing = Writing(indexed("demo"))
    waiting = asyncio.create_task(writing.writer.wait_for_change())
    await asyncio.sleep(0)
    assert not waiting.done()  # waiting (for a minute), not returned at once
    writing.writer.mark(writing.index["team/demo"], urgent=True)
    await asyncio.wait_for(waiting, 5)  # woken: it returns long before the minute


@pytest.mark.asyncio
async def test_only_the_leader_posts_events() -> None:
    kube = FakeKube()
    leading = False
    events = LeaderEvents(kube, leading=lambda: leading)
    record = indexed("demo")["team/demo"]
    said = [Event("Paused", "ticks stop"), Event("Degraded", "failing", warning=True)]
    await events.post(record, said)
    assert kube.events == []
    leading = True
    before = sample("agentstack_operator_events_total", reason="Degraded")
    await events.post(record, said)
    assert kube.events == [(record.ref, "Paused", False), (record.ref, "Degraded", True)]
    assert sample("agentstack_operator_events_total", reason="Degraded") == before + 1


@pytest.mark.asyncio
async def test_a_fleet_bigger_than_the_budget_goes_round_it_stalest_first() -> None:
    """40 ticking stacks, 2 writes a second: each stack's status is rewritten every
    20 s (not every 10 s, the minimum), in turn, and the age gauge says so."""
    writing = Writing(indexed(*(f"s{n:02}" for n in range(40))), rate=2.0)
    written: dict[str, list[float]] = {}
    for _second in range(100):
        for key in await writing.written():
            written.setdefault(key, []).append(writing.clock.now)
        writing.mark_all(urgent=False)  # every stack ticked again
        writing.clock.now += 1.0
        writing.monotonic.now += 1.0
    gaps = {b - a for times in written.values() for a, b in itertools.pairwise(times)}
    assert len(written) == 40
    assert gaps == {20.0}
    assert sample("agentstack_operator_status_age_seconds") == 20.0


@pytest.mark.asyncio
async def test_the_fleet_gauges_are_recounted_every_few_seconds_not_every_batch() -> None:
    index = indexed("a")
    writing = Writing(index)
    await writing.writer.write_due()
    assert sample("agentstack_stacks", phase="Running") == 1
    writing.writer.mark(index.observe(manifest("b")).record, urgent=True)
    writing.monotonic.now += 1.0
    assert await writing.written() == ["team/b"]
    assert sample("agentstack_stacks", phase="Running") == 1  # not recounted yet
    writing.writer.mark(index["team/b"], urgent=True)
    writing.monotonic.now += statuswriting.GAUGE_SECONDS
    assert await writing.written() == ["team/b"]
    assert sample("agentstack_stacks", phase="Running") == 2


@settings(max_examples=60, deadline=None)
@given(
    stacks=st.integers(1, 60),
    rate=st.sampled_from([0.5, 1.0, 2.0, 5.0, 20.0]),
    steps=st.lists(st.tuples(st.floats(0.05, 7.0), st.booleans()), min_size=1, max_size=60),
)
def test_writes_never_exceed_the_budget_nor_come_faster_than_the_interval(
    stacks: int, rate: float, steps: list[tuple[float, bool]]
) -> None:
    """Whatever the fleet size, budget and timing: writes over any run stay within the
    token bucket (a burst of its capacity, then ``rate`` a second), and a stack's
    routine writes are at least the minimum interval apart."""

    async def run() -> None:
        writing = Writing(indexed(*(f"s{n}" for n in range(stacks))), rate=rate)
        start = writing.monotonic.now
        written_at: dict[str, float] = {}
        total = 0
        for advance, routine in steps:
            if routine:
                writing.mark_all(urgent=False)
            keys = await writing.written()
            for key in keys:
                if key in written_at:
                    assert writing.clock.now - written_at[key] >= writing.writer.min_interval
                written_at[key] = writing.clock.now
            total += len(keys)
            elapsed = writing.monotonic.now - start
            assert total <= writing.writer.budget.capacity + rate * elapsed
            writing.monotonic.now += advance
            writing.clock.now += advance

    asyncio.run(run())


@pytest.mark.asyncio
async def test_a_record_made_urgent_behind_the_writers_back_is_still_written() -> None:
    """The index and the folder set ``urgent`` on a record that is already dirty (a
    Degraded condition found while counters are copied) without marking it again."""
    writing = Writing(indexed("demo"))
    record = writing.index["team/demo"]
    assert await writing.written() == ["team/demo"]
    writing.writer.mark(record, urgent=False)  # a routine change, too soon to write
    record.mark_dirty(urgent=True)  # then a condition, set by the folder itself
    writing.monotonic.now += 1
    assert await writing.written() == ["team/demo"]
    assert writing.writer.dirty == set()
