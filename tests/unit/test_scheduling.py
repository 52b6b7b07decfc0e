"""Tick times on a per-stack grid, back-off, and the timing heap."""

from __future__ import annotations

import random

import pytest

from agentstack_operator.scheduling import (
    IdleBackoff,
    TimingHeap,
    current_slot,
    effective_interval,
    grid_offset,
    next_slot,
    slot_id,
)


def test_grid_is_deterministic_and_spreads_stacks() -> None:
    assert grid_offset("uid-1", 10) == grid_offset("uid-1", 10)
    offsets = {grid_offset(f"uid-{n}", 10) for n in range(200)}
    assert len(offsets) > 150  # spread, not all at the same instant
    assert all(0 <= offset < 10 for offset in offsets)


def test_slots_fall_on_the_grid() -> None:
    interval, offset = 5.0, 1.25
    assert current_slot(101.0, interval, offset) == 96.25
    assert next_slot(101.0, interval, offset) == 101.25
    assert next_slot(101.25, interval, offset) == 106.25  # strictly after
    assert current_slot(101.25, interval, offset) == 101.25
    # Two replicas computing the slot for the same moment agree on the tick id.
    assert slot_id(current_slot(103.9, interval, offset)) == slot_id(
        current_slot(102.0, interval, offset)
    )


def test_idle_backoff_grows_to_the_cap_and_failures_double() -> None:
    idle = IdleBackoff(after_idle_ticks=3, factor=2, max_interval_seconds=60)
    assert effective_interval(5, idle_streak=2, idle=idle) == 5
    assert effective_interval(5, idle_streak=3, idle=idle) == 10
    assert effective_interval(5, idle_streak=4, idle=idle) == 20
    assert effective_interval(5, idle_streak=10, idle=idle) == 60
    assert effective_interval(5, failures=2) == 5
    assert effective_interval(5, failures=3) == 10
    assert effective_interval(5, failures=4) == 20
    assert effective_interval(5, failures=50) == 160  # 32x at most
    assert effective_interval(3600, failures=50) == 3600  # never shorter than the spec


def test_heap_pops_due_keys_in_order_and_skips_moved_ones() -> None:
    heap = TimingHeap()
    heap.schedule("a", 3)
    heap.schedule("b", 1)
    heap.schedule("c", 2)
    heap.schedule("a", 0.5)  # moved earlier
    heap.cancel("c")
    assert heap.peek() == 0.5
    assert heap.pop_due(now=2.5, limit=10) == [("a", 0.5), ("b", 1)]
    assert len(heap) == 0
    assert heap.peek() is None


def test_heap_respects_the_batch_limit_and_stays_compact() -> None:
    heap = TimingHeap()
    rng = random.Random(3)
    for round_ in range(50):
        for n in range(100):
            heap.schedule(f"s{n}", rng.uniform(0, 100) + round_)
    assert len(heap) == 100
    assert len(heap._heap) <= 2 * 100 + 64
    first = heap.pop_due(now=1000, limit=30)
    assert len(first) == 30
    assert [due for _key, due in first] == sorted(due for _key, due in first)
    rest = heap.pop_due(now=1000, limit=1000)
    assert len(rest) == 70


@pytest.mark.parametrize("interval", [1.0, 2.5, 30.0, 86400.0])
def test_next_slot_is_within_one_interval(interval: float) -> None:
    offset = grid_offset("x", interval)
    for now in (0.0, 12345.678, 1.7e9):
        due = next_slot(now, interval, offset)
        assert now < due <= now + interval + 1e-6
