"""Inputs that wake a stack: the extra tick's rules, and a model of them under load.

The rules (:mod:`agentstack_operator.waking`) decide when an input gets a tick at once;
the dispatcher gives that tick a slot of its own and lets the grid go on. The
hypothesis model runs them against a lease that lets one tick of the stack run at a
time (as the runners' lease does) and checks, after any interleaving of inputs, sends,
runs and folded results, that every input was read by a tick that began after it
arrived, that no two ticks ran at once, and that at most one wake tick was ever on its
way at a time.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentstack_core.keys import StackRef
from agentstack_core.messages import TickResult, Wakeup
from agentstack_core.reasons import Outcome
from agentstack_operator.config import OperatorConfig
from agentstack_operator.dispatching import Dispatcher
from agentstack_operator.scheduling import slot_id
from agentstack_operator.stackstate import StackRecord
from agentstack_operator.waking import answered, apply_wakeup, carried
from tests.helpers import Clock

from .operator_fakes import FakeKube, FakeLanes, indexed

REF = StackRef("team", "demo")


def _record(**spec: object) -> StackRecord:
    return indexed("demo", **spec)["team/demo"]


def _wakeup(record: StackRecord, **fields: object) -> Wakeup:
    return Wakeup(stack=record.ref, **{"uid": record.uid, **fields})  # type: ignore[arg-type]


def _result(
    tick: str, outcome: Outcome = Outcome.SUCCEEDED, reason: str = "Completed"
) -> TickResult:
    return TickResult(
        stack=REF, tick_id=tick, generation=1, outcome=outcome, reason=reason, finished_at=1.0
    )


BUSY = (Outcome.DROPPED, "StackBusy")


def test_a_wakeup_asks_for_a_tick_only_of_a_stack_that_may_tick_and_wakes() -> None:
    running = _record()
    assert apply_wakeup(running, _wakeup(running))
    assert running.wake_pending
    paused = _record(executionState="Paused")
    assert not apply_wakeup(paused, _wakeup(paused))
    assert not paused.wake_pending  # the input waits for the resumed stack's next tick
    quiet = _record(inputs={"wake": False})
    assert not apply_wakeup(quiet, _wakeup(quiet))
    other = _record()
    assert not apply_wakeup(other, _wakeup(other, uid="an-older-incarnation"))


def test_wakeups_while_a_wake_tick_is_on_its_way_send_no_second_tick() -> None:
    record = _record()
    assert apply_wakeup(record, _wakeup(record))
    carried(record, "team/demo/1")
    assert not apply_wakeup(record, _wakeup(record))  # it may still read this input too
    # Its result brings the pending wake-up back: one more tick, at once.
    assert answered(record, _result("team/demo/1"))
    carried(record, "team/demo/2")
    assert not answered(record, _result("team/demo/2"))
    assert (record.wake_pending, record.wake_tick) == (False, None)


def test_a_wake_tick_dropped_as_busy_waits_for_the_busy_ticks_result() -> None:
    record = _record()
    apply_wakeup(record, _wakeup(record))
    carried(record, "team/demo/wake")
    assert not answered(record, _result("team/demo/wake", *BUSY))
    assert record.wake_pending  # not read: the stack was busy
    # Another tick dropped as busy says the stack is still busy: waking now would spin.
    assert not answered(record, _result("team/demo/other", *BUSY))
    assert answered(record, _result("team/demo/grid"))  # the busy tick ended: wake now


def test_any_tick_sent_after_the_input_carries_it() -> None:
    record = _record()
    apply_wakeup(record, _wakeup(record))
    carried(record, "team/demo/grid")  # the scheduled tick went out first
    assert record.wake_tick == "team/demo/grid"
    assert not record.wake_pending
    assert not answered(record, _result("team/demo/grid"))


@pytest.mark.asyncio
async def test_the_extra_tick_has_a_slot_of_its_own_and_the_grid_goes_on() -> None:
    index = indexed("demo", tickIntervalSeconds=60)
    record = index["team/demo"]
    lanes, clock = FakeLanes(), Clock()
    seconds = itertools.count()
    dispatcher = Dispatcher(
        index,
        lanes,
        FakeKube(),
        OperatorConfig(),
        clock=clock,
        monotonic=lambda: float(next(seconds)),
    )
    dispatcher.reschedule(record, "spec")
    grid_slot = record.next_slot
    assert grid_slot is not None
    assert grid_slot > clock.now
    clock.now += 1.5
    apply_wakeup(record, _wakeup(record))
    dispatcher.wake(record)
    await dispatcher.step()
    (sent,) = lanes.sent
    assert sent.tick_id == f"team/demo/{slot_id(clock.now)}"
    assert record.wake_tick == sent.tick_id
    assert record.next_slot == grid_slot  # the scheduled tick is still due when it was
    # A tick due already serves as the wake-up: nothing is moved.
    clock.now = grid_slot + 0.01
    dispatcher.wake(record)
    assert record.next_due == grid_slot


# -- the model -----------------------------------------------------------------------------


@dataclass
class _Model:
    """One stack, its operator-side record, a queue of sent ticks and a one-holder lease."""

    record: StackRecord
    clock: int = 0
    due_now: bool = False
    queue: list[str] = field(default_factory=list)
    running: str | None = None
    running_began: int = 0
    results: list[TickResult] = field(default_factory=list)
    unread: list[int] = field(default_factory=list)
    """Arrival times of inputs no tick has read yet."""
    wake_ticks_in_flight_max: int = 0
    ids: itertools.count[int] = field(default_factory=itertools.count)

    def tick(self) -> None:
        self.clock += 1

    def arrive(self) -> None:
        self.clock += 1  # after any tick that began before it
        self.unread.append(self.clock)
        if apply_wakeup(self.record, _wakeup(self.record)):
            self.due_now = True

    def send(self, *, scheduled: bool) -> None:
        """The dispatcher sends a tick: a woken one, or one the grid made due."""
        if not (scheduled or self.due_now):
            return
        self.due_now = False
        tick = f"team/demo/{next(self.ids)}"
        carried(self.record, tick)
        self.queue.append(tick)
        in_flight = sum(1 for t in [*self.queue, self.running] if t == self.record.wake_tick)
        self.wake_ticks_in_flight_max = max(self.wake_ticks_in_flight_max, in_flight)

    def begin(self) -> None:
        """A runner takes the oldest sent tick: it runs if the lease is free."""
        if not self.queue:
            return
        tick = self.queue.pop(0)
        if self.running is not None:
            self.results.append(_result(tick, *BUSY))
            return
        self.running, self.running_began = tick, self.clock
        # The agent reads the inbox at the start of its step: what arrived before it.
        self.unread = [at for at in self.unread if at > self.clock]

    def finish(self) -> None:
        if self.running is not None:
            self.results.append(_result(self.running))
            self.running = None

    def fold(self) -> None:
        if self.results and answered(self.record, self.results.pop(0)):
            self.due_now = True

    def settle(self) -> None:
        """No more inputs: the system runs until nothing moves (no scheduled ticks)."""
        for _ in range(1000):
            if not (self.queue or self.running or self.results or self.due_now):
                return
            self.tick()
            self.send(scheduled=False)
            self.begin()
            self.finish()
            self.fold()
        raise AssertionError("the wake-ups never settled")


STEPS = st.lists(
    st.sampled_from(["arrive", "send", "grid", "begin", "finish", "fold", "tick"]), max_size=60
)


@settings(max_examples=300, deadline=None)
@given(STEPS)
def test_every_input_is_read_by_a_tick_after_it_and_wakes_never_pile_up(
    steps: list[str],
) -> None:
    model = _Model(_record())
    for step in steps:
        if step == "arrive":
            model.arrive()
        elif step == "send":
            model.send(scheduled=False)
        elif step == "grid":
            model.send(scheduled=True)
        else:
            getattr(model, step)()
    model.settle()
    assert model.unread == [], "an input was never read by a tick that began after it"
    assert model.wake_ticks_in_flight_max <= 1
    assert (model.record.wake_pending, model.record.wake_tick) == (False, None)
