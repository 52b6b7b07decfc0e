"""The timing heap against a model: whatever the order of schedules, cancels, forgets
and pops, it holds at most one live entry per stack and a pop never raises.

A stack deleted and re-created under the same name is forgotten and scheduled again;
the heap must not revive the old entry (defect: versions restarted at 1 after
``forget``, two live entries for one key made ``pop_due`` raise ``KeyError``, and the
other stacks of that batch were never rescheduled).
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from agentstack_operator.scheduling import TimingHeap

KEYS = st.sampled_from(["ns/a", "ns/b", "ns/c", "other/a"])
TIMES = st.integers(min_value=0, max_value=20).map(float)


class HeapMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.heap = TimingHeap()
        self.model: dict[str, float] = {}

    @rule(key=KEYS, due=TIMES)
    def schedule(self, key: str, due: float) -> None:
        self.heap.schedule(key, due)
        self.model[key] = due

    @rule(key=KEYS)
    def cancel(self, key: str) -> None:
        self.heap.cancel(key)
        self.model.pop(key, None)

    @rule(key=KEYS)
    def forget(self, key: str) -> None:
        self.heap.forget(key)
        self.model.pop(key, None)

    @rule(now=TIMES, limit=st.integers(min_value=1, max_value=5))
    def pop_due(self, now: float, limit: int) -> None:
        popped = self.heap.pop_due(now, limit)
        due = sorted((when, key) for key, when in self.model.items() if when <= now)
        assert len(popped) == min(limit, len(due))
        assert len({key for key, _ in popped}) == len(popped)  # each stack once
        for key, when in popped:
            assert self.model.pop(key) == when
        # earliest first: nothing left behind was due before what was popped
        if popped:
            latest = max(when for _, when in popped)
            assert all(when >= latest for when, key in due if key in self.model)

    @invariant()
    def matches_the_model(self) -> None:
        assert len(self.heap) == len(self.model)
        assert all(key in self.heap for key in self.model)
        earliest = min(self.model.values(), default=None)
        assert self.heap.peek() == earliest


HeapMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
TestTimingHeap = HeapMachine.TestCase


def test_a_forgotten_stack_scheduled_again_is_popped_once_with_its_batch() -> None:
    heap = TimingHeap()
    heap.schedule("ns/a", 1.0)
    heap.forget("ns/a")  # deleted ...
    heap.schedule("ns/a", 2.0)  # ... and re-created under the same name
    heap.schedule("ns/b", 3.0)
    assert heap.pop_due(10.0, 10) == [("ns/a", 2.0), ("ns/b", 3.0)]
    assert len(heap) == 0
