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

A stack with ``spec.schedule`` ticks on its :class:`Calendar` instead: the fires of
its cron expression, each moved by the stack's jitter (derived from its uid like the
grid's offset, so its fire times — and tick ids — are as stable). :func:`plan_fire`
decides which fire comes next, and whether a fire missed (an operator outage, a
pause) still runs or is skipped for its starting deadline.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
from dataclasses import dataclass, field
from typing import Literal

from agentstack_core.cron import CronExpression
from agentstack_core.spec import IdleBackoff, Schedule

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


@dataclass(frozen=True)
class Calendar:
    """A scheduled stack's fires: its cron expression's, each moved by its jitter."""

    expression: CronExpression
    jitter: float = 0.0
    """Seconds every fire is moved by (within ``jitterSeconds``; fixed per stack)."""
    starting_deadline: float | None = None
    usual_gap: float = 0.0
    """Seconds between the first two fires after the stack was created: the interval
    idle and failure back-off stretch, as they stretch an interval stack's."""

    def next_after(self, instant: float) -> float | None:
        """The first fire strictly after ``instant`` (``None``: it never fires again)."""
        fire = self.expression.next_after(instant - self.jitter)
        return None if fire is None else fire + self.jitter

    def last_at_or_before(self, instant: float) -> float | None:
        fire = self.expression.last_at_or_before(instant - self.jitter)
        return None if fire is None else fire + self.jitter

    def late(self, fire: float, now: float) -> bool:
        """Whether ``fire`` is past its starting deadline at ``now``."""
        return self.starting_deadline is not None and now - fire > self.starting_deadline


def calendar_of(schedule: Schedule, uid: str, created_at: float) -> Calendar:
    """The calendar of a stack with ``schedule`` (a valid one: the spec parsed)."""
    expression = CronExpression(schedule.cron, schedule.time_zone)
    jitter = grid_offset(uid, schedule.jitter_seconds) if schedule.jitter_seconds else 0.0
    first = expression.next_after(created_at)
    second = expression.next_after(first) if first is not None else None
    return Calendar(
        expression=expression,
        jitter=jitter,
        starting_deadline=schedule.starting_deadline_seconds,
        usual_gap=second - first if first is not None and second is not None else 0.0,
    )


@dataclass(frozen=True)
class Fire:
    """Which fire of a calendar a stack ticks in next, and when it is sent."""

    slot: float | None
    """The fire (its tick id's slot); ``None``: the expression fires no more."""
    due: float
    """When the dispatcher sends it: the fire's time, or now for a fire that is late."""
    skipped: float | None = None
    """A fire missed by more than the starting deadline, not run (said with an Event)."""


def plan_fire(
    calendar: Calendar,
    *,
    now: float,
    missed: bool,
    after: float | None,
    created_at: float,
    last_ran: float | None,
    extra_wait: float = 0.0,
) -> Fire:
    """The next fire of a scheduled stack.

    ``missed`` (the operator starts or takes over, or the stack resumes with
    ``RunOnce``): the latest fire at or before ``now`` runs at once if it came after
    the stack was created, the stack has not ticked since, and it is within the
    starting deadline — late, it is skipped. Otherwise the first fire after ``after``
    (the slot just sent; ``None``: now) — while back-off stretches the wait, the first
    after ``after + extra_wait``, so a regular schedule's ticks are the stretched
    interval apart. Fires that went by while the operator could not send
    them are not sent one by one: the latest runs, or is skipped when late.
    """
    if missed:
        latest = calendar.last_at_or_before(now)
        if latest is not None and latest >= created_at and (last_ran is None or latest > last_ran):
            if not calendar.late(latest, now):
                return Fire(latest, now)
            return _upcoming(calendar, now, skipped=latest)
        return _upcoming(calendar, now)
    if after is None:
        return _upcoming(calendar, now)
    slot = calendar.next_after(after + extra_wait)
    if slot is None or slot > now:
        return Fire(slot, slot if slot is not None else now)
    latest = calendar.last_at_or_before(now) or slot  # behind: the latest fire only
    if calendar.late(latest, now):
        return _upcoming(calendar, now, skipped=latest)
    return Fire(latest, now)


def _upcoming(calendar: Calendar, now: float, skipped: float | None = None) -> Fire:
    slot = calendar.next_after(now)
    return Fire(slot, slot if slot is not None else now, skipped)


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
