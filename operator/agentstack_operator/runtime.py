"""The operator's moving parts: index, scheduler, dispatcher, result folding, status.

Data flow::

    watch events (Kopf) ──► observe() ──► index (StackRecord per stack)
                                │              │
                                │ spec changed │ publish spec to Redis, check Secrets,
                                ▼              ▼ (re)schedule on the TimingHeap
    dispatch loop ── pops due stacks in batches ──► tick lanes (pool) / Jobs (job)
    results loop ── {agentstack}:results ──► fold_result() ──► record (dirty)
    status loop  ── dirty records, rate-limited ──► PATCH /status, Events

Every replica observes (so a standby's index is warm); only the leader dispatches,
folds, writes status and posts Events. Handlers stay thin: the rules live in the pure
modules ``scheduling``, ``stackstate`` and ``jobs``.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from redis.exceptions import ResponseError

from agentstack_core import protocol
from agentstack_core.keys import FleetKeys, StackKeys, StackRef
from agentstack_core.protocol import Outcome, RedisClient, TickRequest, TickResult
from agentstack_core.records import TickRecord
from agentstack_core.spec import Executor, MissedTickPolicy, Priority
from agentstack_core.store import StackStore, delete_stack, publish_spec
from agentstack_operator import metrics
from agentstack_operator.config import OperatorConfig
from agentstack_operator.jobs import STACK_LABEL, build_job, job_failure
from agentstack_operator.kube import Kube
from agentstack_operator.leadership import Leadership
from agentstack_operator.scheduling import (
    TimingHeap,
    current_slot,
    grid_offset,
    next_slot,
    slot_id,
)
from agentstack_operator.stackstate import (
    Event,
    LastTick,
    StackRecord,
    apply_manifest,
    budget_message,
    fold_result,
    phase_for,
    status_for,
)

logger = logging.getLogger(__name__)

RESULTS_BLOCK_MS = 1000
RESULTS_BATCH = 1000
RESULTS_CLAIM_IDLE = 30.0
SECRET_RECHECK_SECONDS = 10.0
STATUS_CONCURRENCY = 8
JOB_CONCURRENCY = 8
ERROR_BACKOFF_MIN = 0.5
ERROR_BACKOFF_MAX = 10.0


def _epoch(timestamp: str | None) -> float:
    if not timestamp:
        return 0.0
    return float(calendar.timegm(time.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ")))


class Operator:
    def __init__(self, config: OperatorConfig, kube: Kube, redis: RedisClient) -> None:
        self.config = config
        self.kube = kube
        self.redis: Any = redis  # see RedisClient: redis-py's annotations don't fit
        self.index: dict[str, StackRecord] = {}
        self.heap = TimingHeap()
        self.leadership = Leadership(
            kube,
            namespace=config.operator_namespace,
            identity=config.operator_id,
            name=config.lease_name,
            lease_seconds=config.lease_seconds,
        )
        self._wake_dispatcher = asyncio.Event()
        self._wake_status = asyncio.Event()
        self._dirty: set[str] = set()
        self._write_slots = asyncio.Semaphore(STATUS_CONCURRENCY)
        self._write_tokens = config.status_writes_per_second
        self._tokens_at = time.monotonic()

    # -- watch side (every replica) -----------------------------------------------------

    async def observe(self, body: dict[str, Any]) -> None:
        """Take a stack's manifest from a watch event into the index."""
        meta = body.get("metadata") or {}
        ref = StackRef(meta["namespace"], meta["name"])
        record = self.index.get(str(ref))
        if record is None or record.uid != meta.get("uid"):
            record = StackRecord(
                ref=ref, uid=str(meta.get("uid")), created_at=_epoch(meta.get("creationTimestamp"))
            )
            self._adopt_status(record, body.get("status") or {})
            self.index[record.key] = record
        if meta.get("deletionTimestamp"):
            self._unschedule(record)
            return
        previous_generation = record.generation
        previous_interval = record.interval if record.spec else None
        was_paused = record.state.value == "Paused" if record.raw_spec else False
        events = apply_manifest(record, body)
        if record.generation != previous_generation:
            await publish_spec(self.redis, ref, record.generation, record.raw_spec)
            events += await self._check_secrets(record)
            await self._refresh_usage([record])
            cause = "start" if previous_interval is None else "spec"
            if was_paused and record.resumed:
                cause = "resume"
            elif previous_interval is not None and previous_interval == record.interval:
                cause = "keep"
            self._reschedule(record, cause)
        # The watch also echoes our own status writes (same generation, nothing new):
        # marking those dirty would write the same status again a moment later.
        if record.generation != previous_generation or events:
            self._mark(record, urgent=bool(events))
        await self._post(record, events)

    def _adopt_status(self, record: StackRecord, status: dict[str, Any]) -> None:
        """Continue from the status a previous operator wrote (restart, failover)."""
        record.conditions = {c["type"]: c for c in status.get("conditions") or []}
        record.ticks = int(status.get("ticks") or 0)
        record.tokens = int(status.get("tokensUsed") or 0)
        record.failures = int(status.get("consecutiveFailures") or 0)
        if status.get("lastTickId"):
            record.last_tick = LastTick(
                tick_id=str(status["lastTickId"]),
                outcome=str(status.get("lastTickResult") or ""),
                reason=str(status.get("lastTickReason") or ""),
                message=str(status.get("lastTickMessage") or ""),
                finished_at=_epoch(status.get("lastTickTime")),
                duration=float(status.get("lastTickDurationSeconds") or 0.0),
            )
        paused = record.conditions.get("Paused")
        record.resumed = bool(paused and paused.get("reason") == "Resumed")

    async def forget(self, ref: StackRef, uid: str) -> None:
        """The stack is being deleted: stop it and remove its Redis keys and Jobs."""
        record = self.index.pop(str(ref), None)
        if record is not None and record.uid != uid:
            self.index[str(ref)] = record  # a newer incarnation: keep it
        else:
            self.heap.forget(str(ref))
            self._dirty.discard(str(ref))
        deleted = await delete_stack(self.redis, ref)
        await self.kube.delete_jobs(ref.namespace, f"{STACK_LABEL}={ref.name}")
        logger.info("cleaned up %s: %d Redis keys", ref, deleted)

    def remove(self, ref: StackRef) -> None:
        record = self.index.pop(str(ref), None)
        if record is not None:
            self.heap.forget(record.key)
            self._dirty.discard(record.key)

    async def _check_secrets(self, record: StackRecord) -> list[Event]:
        before = list(record.missing_secrets)
        missing: list[str] = []
        if record.spec is not None:
            for provider in record.spec.providers_used:
                settings = record.spec.providers.get(provider)
                ref = settings.secret_ref if settings else None
                if ref is not None and not await self.kube.secret_has_key(
                    record.ref.namespace, ref.name, ref.key
                ):
                    missing.append(f"Secret {ref.name!r} with key {ref.key!r} (for {provider})")
        record.missing_secrets = missing
        if missing and missing != before:
            return [Event("SecretNotFound", "waiting for " + ", ".join(missing), warning=True)]
        if before and not missing:
            return [Event("SecretFound", "the referenced Secrets are available")]
        return []

    # -- scheduling ------------------------------------------------------------------------

    def _reschedule(self, record: StackRecord, cause: str, after: float | None = None) -> None:
        """Put the stack's next tick on the heap (or take it off) after ``cause``."""
        if not record.should_tick:
            self._unschedule(record)
            return
        if cause == "keep" and record.key in self.heap:
            return
        now = time.time()
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
        self._wake_dispatcher.set()

    def _unschedule(self, record: StackRecord) -> None:
        self.heap.cancel(record.key)
        record.next_due = record.next_slot = None

    async def _dispatch_step(self) -> None:
        await self.leadership.acquired.wait()
        now = time.time()
        due = self.heap.pop_due(now, self.config.dispatch_batch)
        if not due:
            await self._sleep_until(self.heap.peek())
            return
        await self._dispatch(due, now)

    async def _sleep_until(self, due: float | None) -> None:
        self._wake_dispatcher.clear()
        timeout = 1.0 if due is None else max(0.0, min(1.0, due - time.time()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake_dispatcher.wait(), timeout)

    async def _dispatch(self, due: list[tuple[str, float]], now: float) -> None:
        pool: list[TickRequest] = []
        jobs: list[tuple[StackRecord, TickRequest]] = []
        for key, when in due:
            record = self.index.get(key)
            if record is None or record.spec is None or not record.should_tick:
                continue
            slot_due = record.next_slot if record.next_slot is not None else when
            slot = slot_id(slot_due)
            job = record.executor is Executor.JOB
            # A pool tick must start before the next one is due; a Job's pod may take a
            # while to be scheduled (no second Job starts meanwhile), so it gets the Job's
            # whole lifetime.
            lifetime = (
                record.spec.tick_timeout_seconds + self.config.job_grace_seconds
                if job
                else record.interval
            )
            request = TickRequest(
                stack=record.ref,
                generation=record.generation,
                tick_id=protocol.tick_id(record.ref, slot),
                slot=slot,
                deadline=slot_due + lifetime,
                priority=record.spec.priority or Priority.NORMAL,
                dispatched_at=now,
            )
            metrics.DISPATCH_LAG.observe(max(0.0, now - when))
            if job:
                if record.active_job is not None:
                    metrics.SKIPPED.labels("JobStillRunning").inc()
                else:
                    record.active_job = request.tick_id
                    jobs.append((record, request))
            else:
                pool.append(request)
            self._reschedule(record, "next", after=slot_due)
        if pool:
            await protocol.dispatch(self.redis, pool)
            metrics.DISPATCHED.labels("pool").inc(len(pool))
        if jobs:
            await self._create_jobs(jobs)

    async def _create_jobs(self, jobs: list[tuple[StackRecord, TickRequest]]) -> None:
        limit = asyncio.Semaphore(JOB_CONCURRENCY)

        async def create(record: StackRecord, request: TickRequest) -> None:
            assert record.spec is not None
            body = build_job(request, uid=record.uid, spec=record.spec, config=self.config)
            async with limit:
                try:
                    await self.kube.create_job(record.ref.namespace, body)
                except Exception as exc:
                    record.active_job = None
                    logger.warning("could not create the Job for %s: %s", request.tick_id, exc)
                    return
            metrics.DISPATCHED.labels("job").inc()

        await asyncio.gather(*(create(record, request) for record, request in jobs))

    # -- results ---------------------------------------------------------------------------

    async def _results_step(self) -> None:
        await self.leadership.acquired.wait()
        consumer = self.config.operator_id
        try:
            # Results a previous leader received but never acknowledged come first.
            _cursor, claimed, *_ = await self.redis.xautoclaim(
                FleetKeys.results,
                protocol.OPERATOR_GROUP,
                consumer,
                int(RESULTS_CLAIM_IDLE * 1000),
                "0-0",
                count=RESULTS_BATCH,
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await protocol.ensure_groups(self.redis)  # Redis was flushed or replaced
            return
        entries = [(entry_id, fields) for entry_id, fields in claimed if fields]
        if not entries:
            reply = await self.redis.xreadgroup(
                protocol.OPERATOR_GROUP,
                consumer,
                {FleetKeys.results: ">"},
                count=RESULTS_BATCH,
                block=RESULTS_BLOCK_MS,
            )
            entries = [entry for _stream, batch in reply or [] for entry in batch]
        if not entries:
            return
        await self.fold([TickResult.from_fields(fields) for _id, fields in entries])
        await self.redis.xack(
            FleetKeys.results, protocol.OPERATOR_GROUP, *[entry_id for entry_id, _ in entries]
        )

    async def fold(self, results: list[TickResult]) -> None:
        """Fold a batch of results into the index (and reschedule on back-off changes)."""
        touched: dict[str, StackRecord] = {}
        for result in results:
            metrics.RESULTS.labels(result.outcome.value).inc()
            record = self.index.get(str(result.stack))
            if record is None:
                continue
            interval = record.interval
            events = fold_result(record, result)
            if record.interval != interval:
                self._reschedule(record, "interval")
            touched[record.key] = record
            await self._post(record, events)
        await self._refresh_usage(list(touched.values()))
        for record in touched.values():
            self._mark(record, urgent=False)

    async def _refresh_usage(self, records: list[StackRecord]) -> None:
        """Counters come from Redis (the runners' single source of truth), then budgets."""
        if not records:
            return
        pipe = self.redis.pipeline(transaction=False)
        for record in records:
            pipe.hgetall(StackKeys(record.ref).usage)
        usages = await pipe.execute()
        for record, usage in zip(records, usages, strict=True):
            record.ticks = int(usage.get("ticks", record.ticks))
            record.tokens = int(usage.get("tokens", record.tokens))
            message = budget_message(record.spec, record.tokens, record.ticks)
            if message and not record.budget_message:
                record.budget_message = message
                self._unschedule(record)
                self._mark(record, urgent=True)
                await self._post(record, [Event("BudgetExceeded", message, warning=True)])
            elif record.budget_message and not message:
                record.budget_message = ""
                self._reschedule(record, "resume")
                self._mark(record, urgent=True)

    async def job_finished(self, job: dict[str, Any]) -> None:
        """A Job failed (deadline, crash) without its runner recording the tick: record it."""
        failure = job_failure(job)
        meta = job.get("metadata") or {}
        tick = (meta.get("annotations") or {}).get("agentstack.dev/tick-id")
        stack_name = (meta.get("labels") or {}).get(STACK_LABEL)
        if failure is None or not tick or not stack_name or not self.leadership.is_leader:
            return
        record = self.index.get(f"{meta['namespace']}/{stack_name}")
        if record is None:
            return
        now = time.time()
        result = TickResult(
            stack=record.ref,
            tick_id=tick,
            generation=record.generation,
            outcome=Outcome.FAILED,
            reason="JobFailed",
            message=failure,
            started_at=_epoch((job.get("status") or {}).get("startTime")) or now,
            finished_at=now,
            runner="job",
        )
        recorded = await StackStore(self.redis, record.ref).finish_tick(
            token="",
            tick_id=tick,
            entry=TickRecord(
                tick_id=tick,
                generation=result.generation,
                outcome=result.outcome.value,
                reason=result.reason,
                message=failure,
                started_at=result.started_at,
                finished_at=result.finished_at,
                runner=result.runner,
            ),
            tokens=0,
        )
        if recorded:
            await protocol.publish_results(self.redis, [result])
        elif record.active_job == tick:
            record.active_job = None

    # -- status and events -----------------------------------------------------------------

    def _mark(self, record: StackRecord, *, urgent: bool) -> None:
        record.mark_dirty(urgent=urgent)
        self._dirty.add(record.key)
        if urgent:
            self._wake_status.set()

    async def _post(self, record: StackRecord, events: list[Event]) -> None:
        if not events or not self.leadership.is_leader:
            return
        for event in events:
            metrics.EVENTS.labels(event.reason).inc()
            await self.kube.post_event(
                record.ref, record.uid, event.reason, event.message, warning=event.warning
            )

    async def _status_step(self) -> None:
        await self.leadership.acquired.wait()
        self._wake_status.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake_status.wait(), 0.2)
        rate = self.config.status_writes_per_second
        now_mono = time.monotonic()
        self._write_tokens = min(rate, self._write_tokens + (now_mono - self._tokens_at) * rate)
        self._tokens_at = now_mono
        now = time.time()
        for key in [key for key in self._dirty if key not in self.index]:
            self._dirty.discard(key)
        ready = [
            record
            for key in self._dirty
            if (record := self.index[key]).urgent
            or now - record.last_status_write >= self.config.status_min_interval
        ]
        ready.sort(key=lambda r: (not r.urgent, r.last_status_write))
        batch = ready[: int(self._write_tokens)]
        if not batch:
            return
        self._write_tokens -= len(batch)
        await asyncio.gather(*(self._write_status(record, now) for record in batch))
        self._update_gauges()

    async def _write_status(self, record: StackRecord, now: float) -> None:
        revision = record.revision
        body = status_for(record, now)
        async with self._write_slots:
            try:
                exists = await self.kube.patch_status(record.ref, body)
            except Exception as exc:
                logger.warning("status of %s not written: %s", record.ref, exc)
                return
        metrics.STATUS_WRITES.inc()
        record.conditions = {c["type"]: c for c in body["conditions"]}
        record.last_status_write = now
        if not exists:
            self.remove(record.ref)
        elif record.revision == revision:  # nothing changed while we wrote
            record.dirty = record.urgent = False
            self._dirty.discard(record.key)

    def _update_gauges(self) -> None:
        phases = Counter(phase_for(record) for record in self.index.values())
        for phase in (
            "Running",
            "Paused",
            "Stopped",
            "Invalid",
            "Waiting",
            "Degraded",
            "BudgetExceeded",
        ):
            metrics.STACKS.labels(phase).set(phases.get(phase, 0))
        metrics.SCHEDULED.set(len(self.heap))

    async def _secrets_step(self) -> None:
        """Stacks waiting for a Secret are re-checked until it appears."""
        await asyncio.sleep(SECRET_RECHECK_SECONDS)
        for record in [r for r in self.index.values() if r.missing_secrets]:
            events = await self._check_secrets(record)
            if not record.missing_secrets:
                self._reschedule(record, "start")
            self._mark(record, urgent=bool(events))
            await self._post(record, events)

    async def _queue_depth_step(self) -> None:
        await asyncio.sleep(5)
        metrics.QUEUE_DEPTH.set(await protocol.pending_count(self.redis))

    async def _leadership_step(self) -> None:
        """On becoming leader: a fresh schedule for every stack (the current period's
        tick is dispatched again; its deterministic id makes that harmless)."""
        await self.leadership.acquired.wait()
        for record in list(self.index.values()):
            self._reschedule(record, "start")
            self._mark(record, urgent=True)
        await self.leadership.lost.wait()
        # A standby's fleet gauges would be stale: only the leader reports them.
        metrics.STACKS.clear()
        metrics.SCHEDULED.set(0)

    # -- running ---------------------------------------------------------------------------

    def loops(self) -> list[Coroutine[None, None, None]]:
        """The operator's background loops; each survives its own errors."""
        return [
            self.leadership.run(),
            _forever("leadership", self._leadership_step),
            _forever("dispatch", self._dispatch_step),
            _forever("results", self._results_step),
            _forever("status", self._status_step),
            _forever("secrets", self._secrets_step),
            _forever("queue-depth", self._queue_depth_step),
        ]


async def _forever(name: str, step: Callable[[], Awaitable[None]]) -> None:
    """Run ``step`` again and again; an error is logged and retried with back-off, so
    a Redis or API-server outage pauses the loop instead of killing the operator."""
    backoff = ERROR_BACKOFF_MIN
    while True:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("%s loop failed; retrying in %.1fs", name, backoff)
            await asyncio.sleep(backoff)
            backoff = min(ERROR_BACKOFF_MAX, backoff * 2)
        else:
            backoff = ERROR_BACKOFF_MIN
