"""The dispatcher: one heap of next ticks for the fleet, popped in batches and sent.

Data flow::

    reschedule(record, cause) ──► TimingHeap (next due time per stack)
    wake(record) (an input) ────►     (due now, a slot of its own: see .waking)
                                      │ step(): pop every stack due now (a batch)
                                      ▼
    build_request() (pure) ──► TickRequest ─┬─ pool: FairQueue (one queue per namespace)
                                            │     │ take(room): deficit round robin
                                            │     ▼
                                            │   TickSink.send() (one pipelined XADD)
                                            └─ job:  JobCreator.create_job() (one Job each)
                                      │
                                      └─► reschedule(record, "next", after=its slot)

One loop serves the whole fleet instead of a timer per stack, and a batch of due
ticks costs one round trip to Redis. Between batches the loop sleeps until the
earliest due time, or until a reschedule wakes it (a new stack must not wait for the
sleep to run out) — but never less than :data:`DISPATCH_GAP_SECONDS` after the previous
batch: on a big fleet a tick falls due every few hundred microseconds, and a batch per
due tick would spend the operator's CPU on round trips (measured at 1,000 stacks:
most of the dispatcher's time was in socket writes). Ticks due within the gap go out
together, at most the gap late.

The lanes are kept short: a pool tick goes out only while the requests no runner has
received yet are fewer than what the runners take in a few hundredths of a second
(:class:`~.fairshare.Room`, at most ``dispatch_backlog``). When the runners fall behind,
the rest wait here, one queue per namespace, and go out in the namespaces' fair shares
as the runners make room (:class:`~.fairshare.FairQueue`), so a noisy namespace cannot
fill the lanes ahead of a quiet one.

Tick ids come from the stack's slot on its grid or calendar (:mod:`.scheduling`), so a
tick sent twice (a restart, a second replica during a failover) is the same tick and runs once.
A Job-executor stack has at most one Job at a time: while one runs, its due ticks are
skipped and counted (``JobStillRunning``) rather than queued up behind it.

The dispatcher decides nothing about leadership: the coordinator runs its loop only
while this replica leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from opentelemetry.trace import SpanKind

from agentstack_core import protocol, tracing
from agentstack_core.kube.jobs import Job
from agentstack_core.messages import slot_of
from agentstack_core.protocol import RedisClient, TickKind, TickRequest, TickResult
from agentstack_core.reasons import EventReason, SkipReason
from agentstack_core.spec import Executor, MissedTickPolicy, Priority, StackSpec
from agentstack_operator import metrics
from agentstack_operator.config import OperatorConfig
from agentstack_operator.fairshare import (
    DEFAULT_WEIGHT,
    RUNNING_GRACE_SECONDS,
    FairQueue,
    Held,
    Room,
    Running,
)
from agentstack_operator.jobs import build_job, job_name, job_state
from agentstack_operator.scheduling import (
    Calendar,
    Cause,
    TimingHeap,
    current_slot,
    grid_offset,
    next_slot,
    plan_fire,
    slot_id,
)
from agentstack_operator.stackstate import Event, EventPoster, StackRecord, utc_timestamp
from agentstack_operator.waking import carried

logger = logging.getLogger(__name__)

JOB_CONCURRENCY = 8
"""Job creations in flight at once (each is one API-server call)."""
IDLE_WAKE_SECONDS = 1.0
"""Longest sleep between looks at the heap, so a clock jump is noticed soon."""
QUEUE_DEPTH_SECONDS = 5.0
DISPATCH_GAP_SECONDS = 0.05
"""Shortest time between two batches (the most a tick waits for the next batch)."""
RELEASE_GAP_SECONDS = 0.01
"""Shortest time between two batches while ticks are held for room in the lanes: the
lanes then hold only a few batches' worth (:class:`~.fairshare.Room`), so they are
refilled more often, lest the runners wait for work."""
SEND_RETRY_SECONDS = 1.0
"""How soon ticks that could not be sent are tried again (same slot, same tick id)."""
HELD_SWEEP_SECONDS = 1.0
"""How often held ticks are swept for expired ones while the lanes have no room."""
DEFAULT_FIRE_WINDOW = 3600.0
"""How long the last fire of a schedule that fires no more may wait to start."""
MIN_FIRE_WINDOW = 1.0
"""A scheduled tick may always wait this long to start (a starting deadline of 0)."""


class TickSink(Protocol):
    """Where pool ticks go: the priority lanes the runners consume."""

    async def send(self, requests: Sequence[TickRequest]) -> None: ...

    async def pending(self) -> int:
        """Requests sent but not yet received by any runner."""
        ...

    async def waiting_work(self) -> int:
        """Work requests (not consolidations) sent but not yet received by any runner."""
        ...


class JobCreator(Protocol):
    """Creates a tick's Job (the Job executor); ``False`` when it exists already."""

    async def create_job(self, namespace: str, body: dict[str, Any]) -> bool: ...

    async def read_job(self, namespace: str, name: str) -> Job | None: ...


class RedisLanes:
    """The tick lanes in Redis (:mod:`agentstack_core.protocol`)."""

    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis

    async def send(self, requests: Sequence[TickRequest]) -> None:
        await protocol.dispatch(self.redis, requests)

    async def pending(self) -> int:
        return await protocol.pending_count(self.redis)

    async def waiting_work(self) -> int:
        return await protocol.pending_count(self.redis, protocol.WORK_LANES)


def build_request(
    record: StackRecord,
    slot_due: float,
    now: float,
    *,
    job_grace_seconds: int,
    dispatched_by: str = "",
) -> TickRequest:
    """The request for ``record``'s tick in the slot due at ``slot_due``.

    A pool tick must start before the next one is due; a Job's pod may take a while to
    be scheduled (no second Job starts meanwhile), so it gets the Job's whole lifetime.
    """
    spec = record.spec
    if spec is None:
        raise ValueError(f"{record.ref} has no valid spec: it has no ticks")
    calendar = record.calendar
    if record.executor is Executor.JOB:
        lifetime = spec.tick_timeout_seconds + job_grace_seconds
    elif calendar is not None:
        lifetime = _fire_window(calendar, slot_due)
    else:
        lifetime = record.interval
    slot = slot_id(slot_due)
    tick = protocol.tick_id(record.ref, slot)
    return _request(record, spec, tick, slot, slot_due + lifetime, now, dispatched_by)


def _fire_window(calendar: Calendar, fire: float) -> float:
    """How long a scheduled pool tick may wait to start: until the next fire, and no
    longer than the starting deadline."""
    following = calendar.next_after(fire)
    window = following - fire if following is not None else DEFAULT_FIRE_WINDOW
    if calendar.starting_deadline is not None:
        window = min(window, max(calendar.starting_deadline, MIN_FIRE_WINDOW))
    return window


def _request(
    record: StackRecord,
    spec: StackSpec,
    tick: str,
    slot: int,
    deadline: float,
    now: float,
    dispatched_by: str,
    kind: TickKind = TickKind.WORK,
) -> TickRequest:
    return TickRequest(
        stack=record.ref,
        generation=record.generation,
        tick_id=tick,
        slot=slot,
        deadline=deadline,
        priority=spec.priority or Priority.NORMAL,
        dispatched_at=now,
        dispatched_by=dispatched_by,
        uid=record.uid,
        kind=kind,
    )


SLEEP_DEADLINE_SECONDS = 300.0
"""How long a consolidation tick may wait in its lane (behind every stack's work) before
it is dropped; a later one is sent when it is still owed."""


def build_sleep_request(
    record: StackRecord, now: float, *, job_grace_seconds: int, dispatched_by: str = ""
) -> TickRequest:
    """A consolidation tick for ``record``, sent now, in a slot (milliseconds) of its own."""
    spec = record.spec
    if spec is None:
        raise ValueError(f"{record.ref} has no valid spec: it has no ticks")
    slot = slot_id(now)
    wait = SLEEP_DEADLINE_SECONDS
    if record.executor is Executor.JOB:
        wait += spec.tick_timeout_seconds + job_grace_seconds
    tick = protocol.sleep_tick_id(record.ref, slot)
    return _request(record, spec, tick, slot, now + wait, now, dispatched_by, TickKind.SLEEP)


@dataclass(frozen=True)
class Waiting:
    """A pool tick built and waiting for room in the lanes."""

    key: str
    request: TickRequest
    due: float
    """When it fell due (its dispatch lag is counted from here)."""


def traced(request: TickRequest, executor: Executor, *, lag: float) -> TickRequest:
    """``request`` carrying the context of its dispatch span, the root of the tick's
    trace (unchanged, and no span made, when tracing is off)."""
    if not tracing.enabled():
        return request
    attributes = {
        "agentstack.stack": str(request.stack),
        "agentstack.tick_id": request.tick_id,
        "agentstack.executor": executor.value,
        "agentstack.dispatch_lag_seconds": round(lag, 6),
        "messaging.operation.type": "send",
    }
    with tracing.span("dispatch tick", kind=SpanKind.PRODUCER, attributes=attributes):
        return replace(request, traceparent=tracing.carrier())


class Dispatcher:
    """Owns the heap: when each stack ticks next, and sending what is due."""

    def __init__(
        self,
        records: Mapping[str, StackRecord],
        lanes: TickSink,
        jobs: JobCreator,
        config: OperatorConfig,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        before_send: Callable[[], Awaitable[None]] | None = None,
        events: EventPoster | None = None,
        weight: Callable[[str], int] = lambda _namespace: DEFAULT_WEIGHT,
        concurrency: Callable[[str], int | None] = lambda _namespace: None,
    ) -> None:
        """``weight(namespace)``: the namespace's share of the runners while they are
        behind (:mod:`.fairshare`); ``concurrency(namespace)``: how many of its ticks
        may run at once (``None``: no limit)."""
        self.concurrency = concurrency
        self.running = Running()
        """The ticks of namespaces with a concurrency quota, sent and not ended."""
        self.records = records
        self.events = events
        """Where the Events of skipped fires go (``None``: nowhere, in tests)."""
        self._notices: list[tuple[StackRecord, Event]] = []
        """Events the schedule decided on, posted by the loop."""
        self.before_send = before_send
        """Awaited before each batch goes out (the coordinator makes sure the specs the
        runners need are in Redis)."""
        self.lanes = lanes
        self.jobs = jobs
        self.config = config
        self.clock = clock
        self.monotonic = monotonic
        self.sleep = sleep
        self.heap = TimingHeap()
        self._wake = asyncio.Event()
        self._batch_at = -DISPATCH_GAP_SECONDS
        """When the last batch went out (monotonic)."""
        self._sleeps: list[tuple[StackRecord, TickRequest]] = []
        """Consolidation ticks to send with the next batch."""
        self.held: FairQueue[Waiting] = FairQueue(weight, ranks=len(protocol.WORK_LANES))
        """Pool ticks due but not sent yet: the lanes had no room for them."""
        self._swept_at = 0.0
        self.room = Room(max(1, config.dispatch_backlog))
        """How many more the lanes may take (their backlog follows the runners' pace)."""

    # -- the schedule ----------------------------------------------------------------------

    def reschedule(self, record: StackRecord, cause: Cause, after: float | None = None) -> None:
        """Put the stack's next tick on the heap (or take it off) after ``cause``."""
        if not record.should_tick:
            self.unschedule(record)
            return
        if cause == "keep" and record.key in self.heap:
            return
        now = self.clock()
        calendar = record.calendar
        if calendar is not None:
            self._reschedule_calendar(record, calendar, cause, now, after)
            return
        interval = record.interval
        offset = grid_offset(record.uid, interval)
        if cause == "start" or (
            cause == "resume" and record.missed_tick_policy is MissedTickPolicy.RUN_ONCE
        ):
            # This period's tick (its slot is due already), dispatched now.
            slot, due = current_slot(now, interval, offset), now
        elif after is not None:
            slot = due = next_slot(max(after, now - interval), interval, offset)
        else:
            slot = due = next_slot(now, interval, offset)
        self.heap.schedule(record.key, due)
        record.next_due = due
        record.next_slot = slot
        self._wake.set()

    def _reschedule_calendar(
        self,
        record: StackRecord,
        calendar: Calendar,
        cause: Cause,
        now: float,
        after: float | None,
    ) -> None:
        last = slot_of(record.last_tick.tick_id) if record.last_tick is not None else None
        missed = cause == "start" or (
            cause == "resume" and record.missed_tick_policy is MissedTickPolicy.RUN_ONCE
        )
        if cause == "interval" and after is None and last is not None:
            after = last / 1000  # back-off moved: counted from the last tick
        fire = plan_fire(
            calendar,
            now=now,
            missed=missed,
            after=after,
            created_at=record.created_at,
            last_ran=None if last is None else last / 1000,
            extra_wait=record.extra_wait,
        )
        if fire.skipped is not None:
            metrics.SKIPPED.labels(SkipReason.STARTING_DEADLINE_EXCEEDED).inc()
            message = (
                f"the fire at {utc_timestamp(fire.skipped)} was {now - fire.skipped:.0f}s "
                f"late, more than startingDeadlineSeconds ({calendar.starting_deadline:g}); "
                "the next fire runs"
            )
            event = Event(EventReason.TICK_SKIPPED, message, warning=True)
            self._notices.append((record, event))
        if fire.slot is None:
            self.unschedule(record)
            return
        self.heap.schedule(record.key, fire.due)
        record.next_due, record.next_slot = fire.due, fire.slot
        self._wake.set()

    def wake(self, record: StackRecord) -> None:
        """Send the stack a tick at once, in a slot of its own (:mod:`.waking`); its
        scheduled ticks go on after it. A tick due already serves as well."""
        if not record.should_tick:
            return
        now = self.clock()
        if record.next_due is not None and record.next_due <= now:
            return
        self.heap.schedule(record.key, now)
        record.next_due = record.next_slot = now
        self._wake.set()

    def consolidate(self, record: StackRecord) -> None:
        """Send the stack a consolidation tick if one is owed (its own lane, sent with
        the next batch): after ``consolidateEveryTicks`` ticks, one at a time."""
        if not record.consolidation_due:
            return
        request = build_sleep_request(
            record,
            self.clock(),
            job_grace_seconds=self.config.job_grace_seconds,
            dispatched_by=self.config.operator_id,
        )
        record.sleep_tick = request.tick_id
        self._sleeps.append((record, request))
        self._wake.set()

    def unschedule(self, record: StackRecord) -> None:
        self.heap.cancel(record.key)
        record.next_due = record.next_slot = None

    def forget(self, key: str) -> None:
        """The stack is gone: drop its entry and all memory of it."""
        self.heap.forget(key)

    # -- the loop --------------------------------------------------------------------------

    async def step(self) -> None:
        """Send one batch of due ticks, or sleep until the next is due."""
        await self._post_notices()
        spacing = RELEASE_GAP_SECONDS if self.held else DISPATCH_GAP_SECONDS
        gap = self._batch_at + spacing - self.monotonic()
        if gap > 0:
            # A turn of its own: the coordinator checks the leadership again before the
            # next one (a replica hung here past its lease must not send when it wakes).
            await self.sleep(gap)
            return
        now = self.clock()
        due = self.heap.pop_due(now, self.config.dispatch_batch)
        if not due and not self._sleeps and not self.held:
            await self._sleep_until(self.heap.peek())
            return
        self._batch_at = self.monotonic()
        await self.dispatch(due, now)

    async def _post_notices(self) -> None:
        notices, self._notices = self._notices, []
        if self.events is None:
            return
        for record, event in notices:
            await self.events.post(record, [event])

    async def _sleep_until(self, due: float | None) -> None:
        self._wake.clear()
        timeout = IDLE_WAKE_SECONDS
        if due is not None:
            timeout = max(0.0, min(IDLE_WAKE_SECONDS, due - self.clock()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def dispatch(self, due: list[tuple[str, float]], now: float) -> None:
        """Send the ticks of the stacks popped from the heap (and the consolidation
        ticks owed), and schedule their next."""
        pool: list[TickRequest] = []
        jobs: list[tuple[StackRecord, TickRequest]] = []
        sleeps, self._sleeps = self._sleeps, []
        for sleeping, request in sleeps:
            if sleeping.executor is not Executor.JOB:
                pool.append(request)
            elif sleeping.active_job is None:
                sleeping.active_job = request.tick_id
                jobs.append((sleeping, request))
            else:
                sleeping.sleep_tick = None  # owed still: sent after the running Job
        for key, when in due:
            record = self.records.get(key)
            if record is None or record.spec is None or not record.should_tick:
                continue
            slot_due = record.next_slot if record.next_slot is not None else when
            request = build_request(
                record,
                slot_due,
                now,
                job_grace_seconds=self.config.job_grace_seconds,
                dispatched_by=self.config.operator_id,
            )
            request = traced(request, record.executor, lag=max(0.0, now - when))
            if record.executor is not Executor.JOB:
                # The lanes' own order (runners read higher priorities first).
                rank = protocol.WORK_LANES.index(protocol.lane_of(request))
                waiting = Waiting(key, request, when)
                self.held.push(Held(waiting, record.ref.namespace, rank, request.deadline))
            elif record.active_job is not None:
                metrics.SKIPPED.labels(SkipReason.JOB_STILL_RUNNING).inc()
            else:
                metrics.DISPATCH_LAG.observe(max(0.0, now - when))
                record.active_job = request.tick_id
                jobs.append((record, request))
                carried(record, request.tick_id)
            self.reschedule(record, "next", after=slot_due)
        try:
            pool.extend(await self._release(now))
        except Exception:
            if pool:
                self._retry_later(pool)  # the consolidations; held ticks stay held
            raise
        if pool:
            try:
                if self.before_send is not None:
                    await self.before_send()
                await self.lanes.send(pool)
            except Exception:
                self._retry_later(pool)
                raise  # the loop backs off (Redis is down or failing)
            metrics.DISPATCHED.labels("pool").inc(len(pool))
        if jobs:
            await self._create_jobs(jobs)

    async def _release(self, now: float) -> list[TickRequest]:
        """The held pool ticks that fit in the lanes now, in the namespaces' fair
        shares; those whose deadline passed while they waited are dropped and counted."""
        if not self.held:
            return []
        if self.config.dispatch_backlog <= 0:
            room = len(self.held)
        else:
            room = self.room.free(await self.lanes.waiting_work(), self.monotonic())
        taken, expired = self.held.take(room, now, lambda ns: self._allowance(ns, now))
        if now - self._swept_at >= HELD_SWEEP_SECONDS:
            # The lanes may have no room for long (the runners down): what expired
            # must not pile up behind it.
            self._swept_at = now
            expired += self.held.expire(now)
        for held in expired:
            capped = self._allowance(held.namespace, now) == 0
            reason = SkipReason.CONCURRENCY_QUOTA if capped else SkipReason.RUNNERS_BUSY
            metrics.SKIPPED.labels(reason).inc()
        released: list[TickRequest] = []
        for held in taken:
            waiting = held.item
            record = self.records.get(waiting.key)
            if record is None or not record.should_tick or record.spec is None:
                continue  # paused, held or deleted while it waited
            metrics.DISPATCH_LAG.observe(max(0.0, now - waiting.due))
            carried(record, waiting.request.tick_id)
            released.append(waiting.request)
            if self.concurrency(held.namespace) is not None:
                until = waiting.request.deadline + record.spec.tick_timeout_seconds
                self.running.started(
                    held.namespace, waiting.request.tick_id, until + RUNNING_GRACE_SECONDS
                )
        self.room.sent(len(released))
        metrics.HELD.set(len(self.held))
        return released

    def _allowance(self, namespace: str, now: float) -> int | None:
        """How many more of the namespace's ticks may go out now (``None``: any)."""
        quota = self.concurrency(namespace)
        return None if quota is None else max(0, quota - self.running.count(namespace, now))

    def ended(self, result: TickResult) -> None:
        """A tick's result came: it no longer counts against its namespace's quota."""
        self.running.ended(result.stack.namespace, result.tick_id)

    def drop_held(self) -> None:
        """Leadership is lost: the ticks held here are the next leader's to send (its
        start sends each stack's current period again, under the same tick ids; it
        counts as running only what it sends itself)."""
        self.held.clear()
        self.running.clear()
        metrics.HELD.set(0)

    def _retry_later(self, requests: Sequence[TickRequest]) -> None:
        """Ticks that could not be sent go back on the heap under their own slot (same
        tick id) while they can still start in time; the others are skipped, and said so.
        A consolidation is owed still: the stack's next result sends it again. None of
        them runs, so none counts against its namespace's concurrency quota."""
        now = self.clock()
        for request in requests:
            self.running.ended(request.stack.namespace, request.tick_id)
            record = self.records.get(str(request.stack))
            if record is not None and request.kind is TickKind.SLEEP:
                record.sleep_tick = None
                continue
            if record is None or not record.should_tick:
                continue
            if request.deadline <= now + SEND_RETRY_SECONDS:
                metrics.SKIPPED.labels(SkipReason.DISPATCH_FAILED).inc()
                continue
            due = now + SEND_RETRY_SECONDS
            self.heap.schedule(record.key, due)
            record.next_due, record.next_slot = due, request.slot / 1000
        logger.warning("could not send %d tick(s); retrying them", len(requests))

    async def _create_jobs(self, jobs: list[tuple[StackRecord, TickRequest]]) -> None:
        limit = asyncio.Semaphore(JOB_CONCURRENCY)

        async def create(record: StackRecord, request: TickRequest) -> None:
            assert record.spec is not None
            body = build_job(request, uid=record.uid, spec=record.spec, config=self.config)
            async with limit:
                try:
                    created = await self.jobs.create_job(record.ref.namespace, body)
                    existing = (
                        None
                        if created
                        else await self.jobs.read_job(record.ref.namespace, job_name(request))
                    )
                except Exception as exc:
                    # The slot is lost; the next one may create a Job again (and a
                    # consolidation is owed still).
                    record.active_job = None
                    if record.sleep_tick == request.tick_id:
                        record.sleep_tick = None
                    metrics.SKIPPED.labels(SkipReason.DISPATCH_FAILED).inc()
                    logger.warning("could not create the Job for %s: %s", request.tick_id, exc)
                    return
            if not created:
                # This tick's Job exists already (a restart or a failover sent the slot
                # again). Only a Job still running holds the stack; a finished one —
                # whose events came and went before this — must not wedge it.
                if existing is None or job_state(existing) != "Active":
                    record.active_job = None
                return
            metrics.DISPATCHED.labels("job").inc()

        await asyncio.gather(*(create(record, request) for record, request in jobs))

    async def report_queue_depth(self) -> None:
        """Every few seconds, how many sent ticks no runner has received yet (on every
        replica: the lanes are shared, so a standby's figure is as true)."""
        await asyncio.sleep(QUEUE_DEPTH_SECONDS)
        metrics.QUEUE_DEPTH.set(await self.lanes.pending())
