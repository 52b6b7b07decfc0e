"""The status writer: records marked dirty go out as ``/status`` patches, rate-limited.

Data flow::

    observe / fold / budget / Secrets ── mark(record, urgent) ──► dirty set
                                                                    │ step(): every
                                                                    │ 0.2 s, or at once
                                                                    │ on an urgent mark
                                                                    ▼
    ready = urgent, or not written for min_interval ──► WriteBudget (token
          bucket, status_writes_per_second) ──► PATCH /status (StatusSink), then (every
          few seconds) the fleet gauges

Status is a function of the record (:func:`.stackstate.status_for`), so a write sends
the record as it stands and many changes in between fold into one write. That is what
keeps the API server's write load flat: at most ``status_writes_per_second`` across
the fleet, however many stacks there are and however often they tick. Routine
changes (a tick's counters) of one stack are written at most every
``status_min_interval``; when more stacks are waiting than the budget lets through,
they go in the order they changed, the longest-waiting first, so the budget goes round
the fleet and a stack's status is rewritten every *waiting stacks ÷ budget* seconds
(1,000 ticking stacks at 20 writes/s: every 50 s). Keeping them in that order (the
dirty records are an insertion-ordered dict) makes picking the next few a look at the
front, not a walk over every dirty record of a big fleet. So freshness, not the write
rate, gives way as a fleet grows — the live values are in Redis and the agentstack API
anyway — and the ``agentstack_operator_status_age_seconds`` gauge shows by how much.
Condition changes are urgent: they skip the interval (and go first), never the fleet-wide budget.

A write races the loops that change records: the record's revision is taken before
the body is built, and a record that changed meanwhile stays dirty for the next round.
A stack found gone (404) is handed back to the coordinator to drop.

Events (:class:`LeaderEvents`) live here too, as the other half of what the operator
tells the API server about a stack; like status, only the leader posts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, KeysView, Mapping, Sequence, Sized
from typing import Any, Protocol

from agentstack_core.keys import StackRef
from agentstack_core.reasons import Phase
from agentstack_operator import metrics
from agentstack_operator.stackstate import Event, StackRecord, phase_for, status_for

logger = logging.getLogger(__name__)

STATUS_CONCURRENCY = 8
"""Status patches in flight at once."""
STATUS_POLL_SECONDS = 0.2
"""How long routine changes wait to be batched; an urgent mark wakes the writer."""
GAUGE_SECONDS = 5.0
"""How often the fleet gauges are recounted (a walk over every record: not per batch)."""


class StatusSink(Protocol):
    """Merge-patches a stack's ``/status``; ``False`` when the stack no longer exists."""

    async def patch_status(self, ref: StackRef, body: dict[str, Any]) -> bool: ...


class EventSink(Protocol):
    """Records a Kubernetes Event on a stack (best effort)."""

    async def post_event(
        self, ref: StackRef, uid: str, reason: str, message: str, *, warning: bool = False
    ) -> None: ...


class WriteBudget:
    """A token bucket: ``rate`` writes a second on average, bursts of ``rate`` at most
    (and of one write at least: a rate below one a second still writes, less often)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.clock = clock
        self.tokens = self.capacity
        self._at = clock()

    def available(self) -> int:
        """Refill for the time passed; how many whole writes may go out now."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._at) * self.rate)
        self._at = now
        return int(self.tokens)

    def spend(self, writes: int) -> None:
        self.tokens -= writes


class StatusWriter:
    """The dirty set and the one loop that writes it out."""

    def __init__(
        self,
        records: Mapping[str, StackRecord],
        sink: StatusSink,
        *,
        min_interval: float,
        writes_per_second: float,
        scheduled: Sized,
        gone: Callable[[StackRef], None],
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.records = records
        self.sink = sink
        self.min_interval = min_interval
        self.budget = WriteBudget(writes_per_second, monotonic)
        self.scheduled = scheduled
        """What the ``agentstack_scheduler_scheduled_stacks`` gauge counts (the heap)."""
        self.gone = gone
        self.clock = clock
        self._dirty: dict[str, None] = {}
        """Keys of records whose status differs from what was last written, in the
        order they became so."""
        self._urgent: dict[str, None] = {}
        """The urgent ones among them, in the same order."""
        self.monotonic = monotonic
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(STATUS_CONCURRENCY)
        self._gauges_at = -math.inf

    @property
    def dirty(self) -> KeysView[str]:
        return self._dirty.keys()

    def mark(self, record: StackRecord, *, urgent: bool) -> None:
        """The record changed: write its status (at once when ``urgent``)."""
        record.mark_dirty(urgent=urgent)
        self._dirty.setdefault(record.key, None)
        if record.urgent:
            self._urgent.setdefault(record.key, None)
        if urgent:
            self._wake.set()

    def discard(self, key: str) -> None:
        self._dirty.pop(key, None)
        self._urgent.pop(key, None)

    async def step(self) -> None:
        await self.wait_for_change()
        await self.write_due()

    async def wait_for_change(self) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), STATUS_POLL_SECONDS)

    async def write_due(self) -> None:
        """Write the records that may be written now, as many as the budget allows."""
        allowed = self.budget.available()
        if not allowed or not self._dirty:
            return
        now = self.clock()
        batch = self._pick(allowed, now)
        if not batch:
            return
        self.budget.spend(len(batch))
        routine = [r.last_status_write for r in batch if not r.urgent and r.last_status_write]
        if routine:
            metrics.STATUS_AGE.set(now - min(routine))
        await asyncio.gather(*(self._write(record, now) for record in batch))
        if self.monotonic() - self._gauges_at >= GAUGE_SECONDS:
            self.update_gauges()

    def _pick(self, allowed: int, now: float) -> list[StackRecord]:
        """Up to ``allowed`` records to write: urgent ones first, then the others past
        the minimum interval, each in the order they changed. A record made urgent
        without a :meth:`mark` (the index and the folder set the flag themselves) is
        not in the urgent queue, but is taken in its turn all the same."""
        batch: list[StackRecord] = []
        taken: set[str] = set()
        gone: list[str] = []
        for queue, urgent_only in ((self._urgent, True), (self._dirty, False)):
            for key in queue:
                if len(batch) == allowed:
                    break
                record = self.records.get(key)
                if record is None:
                    gone.append(key)
                elif key not in taken and (
                    record.urgent
                    or (not urgent_only and now - record.last_status_write >= self.min_interval)
                ):
                    taken.add(key)
                    batch.append(record)
        for key in gone:
            self.discard(key)
        return batch

    async def _write(self, record: StackRecord, now: float) -> None:
        revision = record.revision
        body = status_for(record, now)
        async with self._slots:
            try:
                exists = await self.sink.patch_status(record.ref, body)
            except Exception as exc:
                logger.warning("status of %s not written: %s", record.ref, exc)
                return
        metrics.STATUS_WRITES.inc()
        record.conditions = {c["type"]: c for c in body["conditions"]}
        record.last_status_write = now
        if not exists:
            self.gone(record.ref)
        elif record.revision == revision:  # nothing changed while we wrote
            record.urgent = False
            self.discard(record.key)
        else:  # changed meanwhile: written again, behind the others that waited
            self._dirty.pop(record.key, None)
            self._dirty[record.key] = None
            if not record.urgent:
                self._urgent.pop(record.key, None)

    def update_gauges(self) -> None:
        self._gauges_at = self.monotonic()
        phases = Counter(phase_for(record) for record in self.records.values())
        for phase in Phase:  # every phase, zeros included
            metrics.STACKS.labels(phase).set(phases.get(phase, 0))
        metrics.SCHEDULED.set(len(self.scheduled))
        metrics.APPROVALS_WAITING.set(sum(len(r.awaiting) for r in self.records.values()))
        metrics.STALLED.set(sum(1 for record in self.records.values() if record.stalled))


def clear_fleet_gauges() -> None:
    """A standby's fleet gauges would be stale: only the leader reports them."""
    metrics.STACKS.clear()
    metrics.SCHEDULED.set(0)
    metrics.APPROVALS_WAITING.set(0)
    metrics.STALLED.set(0)
    metrics.PER_STACK.clear()
    metrics.STATUS_AGE.set(0)
    metrics.HELD.set(0)


class LeaderEvents:
    """Posts a stack's Events, while this replica leads (a standby sees the same
    transitions in its own index, and must not post them twice)."""

    def __init__(self, sink: EventSink, leading: Callable[[], bool]) -> None:
        self.sink = sink
        self.leading = leading

    async def post(self, record: StackRecord, events: Sequence[Event]) -> None:
        if not events or not self.leading():
            return
        for event in events:
            metrics.EVENTS.labels(event.reason).inc()
            await self.sink.post_event(
                record.ref, record.uid, event.reason, event.message, warning=event.warning
            )
