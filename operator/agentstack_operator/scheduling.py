"""When each stack ticks next, and the one heap that holds every stack's next tick.

One scheduler serves the whole fleet (not a timer or task per stack): a binary heap of
``(due time, stack)`` that the dispatcher pops in batches. Entries are invalidated by
version rather than removed, so pausing, editing or deleting a stack is O(1) and the
stale entry is skipped when it surfaces.

Tick times sit on a per-stack grid: slot ``k`` is due at ``k * interval + offset``,
where the offset is derived from the stack's uid. The grid makes tick ids
deterministic — every replica and every restart of the operator computes the same
slot, and so the same tick id, for the same period — and the offsets spread stacks
with equal intervals across the period instead of firing them all at once.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
from dataclasses import dataclass, field
from typing import Literal

from agentstack_core.spec import IdleBackoff

Cause = Literal["start", "resume", "spec", "keep", "next", "interval"]
"""Why a stack's next tick moves:

- ``start``: the stack (or this leader) starts: this period's tick goes out now;
- ``resume``: back from Paused or from a spent budget: the next slot, or this
  period's at once with ``missedTickPolicy: RunOnce``;
- ``spec``, ``interval``: a new interval (an edit, idle or failure back-off): the
  next slot of the new grid;
- ``keep``: an edit that leaves the interval alone: the scheduled tick stays;
- ``next``: a tick was dispatched: the slot after it.
"""

FAILURE_BACKOFF_AFTER = 3
"""Consecutive failed ticks before the interval starts doubling."""
FAILURE_BACKOFF_MAX_FACTOR = 32.0
FAILURE_BACKOFF_CEILING = 900.0
"""Failure back-off never stretches the interval beyond this many seconds (unless the
stack's own interval is longer)."""


def grid_offset(uid: str, interval: float) -> float:
    """The stack's phase within its interval, stable for its uid (milliseconds grain)."""
    digest = int.from_bytes(hashlib.sha256(uid.encode()).digest()[:8], "big")
    period_ms = max(1, round(interval * 1000))
    return (digest % period_ms) / 1000.0


def current_slot(now: float, interval: float, offset: float) -> float:
    """Due time of the slot whose period contains ``now`` (at or before ``now``)."""
    k = math.floor((now - offset) / interval)
    return k * interval + offset


def next_slot(after: float, interval: float, offset: float) -> float:
    """Due time of the first slot strictly after ``after``."""
    k = math.floor((after - offset) / interval) + 1
    return k * interval + offset


def slot_id(due: float) -> int:
    """The integer slot number that goes into the tick id: the due time in milliseconds."""
    return round(due * 1000)


def effective_interval(
    base: float,
    *,
    idle_streak: int = 0,
    failures: int = 0,
    idle: IdleBackoff | None = None,
) -> float:
    """The interval in force: the spec's, stretched by idle and by failure back-off."""
    interval = base
    if idle is not None and idle_streak >= idle.after_idle_ticks:
        steps = idle_streak - idle.after_idle_ticks + 1
        interval = min(idle.max_interval_seconds, base * idle.factor**steps)
        interval = max(interval, base)
    if failures >= FAILURE_BACKOFF_AFTER:
        factor = min(FAILURE_BACKOFF_MAX_FACTOR, 2.0 ** (failures - FAILURE_BACKOFF_AFTER + 1))
        interval = max(interval, min(base * factor, max(base, FAILURE_BACKOFF_CEILING)))
    return interval


@dataclass(order=True)
class _Entry:
    due: float
    seq: int
    key: str = field(compare=False)
    version: int = field(compare=False)


class TimingHeap:
    """Next due time per key; at most one live entry per key.

    Every :meth:`schedule` takes a fresh number from one counter that never restarts,
    so an entry is live only while its number is the one recorded for its key. A key
    cancelled, forgotten (a deleted stack) and scheduled again — a stack re-created
    under the same name — can therefore never revive an old entry, and :meth:`pop_due`
    never meets two live entries of one key.
    """

    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._live: dict[str, int] = {}
        """Key → version of its one live entry."""
        self._due: dict[str, float] = {}
        self._versions = itertools.count(1)
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, key: str) -> bool:
        return key in self._due

    def schedule(self, key: str, due: float) -> None:
        """Set (or move) ``key``'s next due time."""
        version = next(self._versions)
        self._live[key] = version
        self._due[key] = due
        heapq.heappush(self._heap, _Entry(due, next(self._seq), key, version))
        self._compact()

    def cancel(self, key: str) -> None:
        """Take ``key`` off the schedule (its entry goes stale and is skipped)."""
        self._due.pop(key, None)
        self._live.pop(key, None)

    def forget(self, key: str) -> None:
        """Cancel ``key`` for good (a deleted stack): nothing of it is kept."""
        self.cancel(key)

    def peek(self) -> float | None:
        """The earliest live due time, or ``None`` when nothing is scheduled."""
        self._drop_stale()
        return self._heap[0].due if self._heap else None

    def pop_due(self, now: float, limit: int) -> list[tuple[str, float]]:
        """Remove and return up to ``limit`` keys due at or before ``now``, earliest first."""
        popped: list[tuple[str, float]] = []
        while len(popped) < limit:
            self._drop_stale()
            if not self._heap or self._heap[0].due > now:
                break
            entry = heapq.heappop(self._heap)
            self._live.pop(entry.key, None)
            self._due.pop(entry.key, None)
            popped.append((entry.key, entry.due))
        return popped

    def _is_live(self, entry: _Entry) -> bool:
        return self._live.get(entry.key) == entry.version

    def _drop_stale(self) -> None:
        while self._heap and not self._is_live(self._heap[0]):
            heapq.heappop(self._heap)

    def _compact(self) -> None:
        # Stale entries pile up when stacks are rescheduled often; rebuild when they
        # outnumber live ones, so memory stays proportional to the fleet.
        if len(self._heap) > 2 * len(self._due) + 64:
            self._heap = [e for e in self._heap if self._is_live(e)]
            heapq.heapify(self._heap)
