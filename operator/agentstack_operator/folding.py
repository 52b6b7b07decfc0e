"""The result folder: tick results from the runners become the records' run side.

Data flow::

    runners ──XADD──► {agentstack}:results ──► ResultStream.receive()
                          (XAUTOCLAIM what a previous leader left pending, else
                           XREADGROUP "operator")
                                │
                                ▼ fold(): fold_result() per result (last tick, Job)
                                ▼ refresh_usage(): every counter from Redis
    apply_usage() ── failures/idle moved the interval ──► reschedule
                  ── Degraded/Recovered ──► Events
    budget rule ── spent ──► unschedule, BudgetExceeded (urgent)
                └─ raised ──► reschedule ("resume") (urgent)
                                │
                                ▼ mark dirty (status writer), then XACK

Results are acknowledged only after they are folded, so a leader that dies mid-batch
leaves them pending and the next leader claims them (a look for such results every
:data:`RESULTS_CLAIM_EVERY` seconds): a result recorded is a result folded. Results of
a big fleet arrive one by one, a few hundred a second; the folder reads them in
batches, waiting :data:`RESULTS_GATHER_SECONDS` after a short one, so that the round
trips per batch (read, counters, acknowledge) are not paid per result.

Folding is idempotent — a result folded twice, or late, changes nothing —
because counters are never summed from results: the atomic finish of each tick keeps
them (ticks, tokens, consecutive failures and idle ticks) in the stack's usage hash,
the one source of truth budgets are enforced against, and the folder copies them. A
failed Job whose runner never recorded its tick (killed, deadline) is recorded here
(:meth:`ResultFolder.job_failed`), through the same atomic finish the runners use, so
it is counted once and folded like any other — once the lease a killed runner held has
expired (until then the atomic finish refuses: the tick might still be running).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from redis.exceptions import ResponseError

from agentstack_core import protocol
from agentstack_core.approvals import Approval
from agentstack_core.budget import Usage
from agentstack_core.keys import FleetKeys, StackKeys, StackRef
from agentstack_core.kube.jobs import Job
from agentstack_core.pricing import usd
from agentstack_core.protocol import RedisClient, TickResult, kind_of
from agentstack_core.reasons import EventReason, Outcome, TickReason
from agentstack_core.records import GoalRecord
from agentstack_core.redis.approvals import read_approvals
from agentstack_core.redis.tick import Finished, TickStore
from agentstack_operator import metrics
from agentstack_operator.index import epoch
from agentstack_operator.jobs import job_failure
from agentstack_operator.scheduling import Cause
from agentstack_operator.stackstate import (
    Event,
    EventPoster,
    StackRecord,
    apply_approvals,
    apply_goal,
    apply_usage,
    budget_message,
    fold_result,
    tools_event,
)
from agentstack_operator.waking import answered

logger = logging.getLogger(__name__)

HANDED_BACK = "it ended without recording the tick (stopped mid-tick, it handed the tick back)"
"""Why a completed Job's tick is recorded as failed: nothing was recorded for it."""

RESULTS_BLOCK_MS = 1000
RESULTS_BATCH = 1000
RESULTS_CLAIM_IDLE = 30.0
"""Seconds a result may sit unacknowledged before a (new) leader claims it."""
RESULTS_CLAIM_EVERY = 5.0
"""Seconds between looks for such results (at once on the first read)."""
RESULTS_GATHER_SECONDS = 0.25
"""How long the folder lets results gather after a batch smaller than RESULTS_BATCH."""
UNRECORDED_RETRY_SECONDS = 5.0
"""How often a failed Job's tick that a dead runner still held is tried again."""
UNRECORDED_GIVE_UP_SECONDS = 600.0
"""After this long (far past any runner's lease), such a tick is no longer tried."""


class ResultStream(Protocol):
    """The results stream, as the operator's consumer group reads it."""

    async def receive(self) -> list[tuple[str, TickResult]]:
        """A batch of ``(entry id, result)``; empty after a short wait with nothing new."""
        ...

    async def acknowledge(self, entry_ids: Sequence[str]) -> None: ...


class Progress(NamedTuple):
    """What the runners keep of a stack's run: its counters and its finite goal."""

    usage: Usage
    goal: GoalRecord | None


class UsageCounters(Protocol):
    """Each stack's usage hash (``ticks``, ``tokens``…) and goal, as the runners keep them."""

    async def read(self, refs: Sequence[StackRef]) -> list[Progress]: ...


class ApprovalReader(Protocol):
    """A stack's approval records (:mod:`agentstack_core.approvals`)."""

    async def approvals(self, ref: StackRef) -> list[Approval]: ...


class TickLedger(Protocol):
    """Records a tick as done, once, and publishes its result."""

    async def record_failure(self, result: TickResult) -> bool:
        """``False`` when it was not recorded now: its runner recorded it already, or
        is still running it (and will)."""
        ...

    async def outcome(self, ref: StackRef, tick_id: str) -> TickResult | None:
        """The result a tick was recorded with (a Job's runner records it there only)."""
        ...


class Scheduler(Protocol):
    def reschedule(self, record: StackRecord, cause: Cause, after: float | None = None) -> None: ...

    def unschedule(self, record: StackRecord) -> None: ...

    def wake(self, record: StackRecord) -> None: ...

    def consolidate(self, record: StackRecord) -> None: ...

    def ended(self, result: TickResult) -> None: ...


class StatusMarks(Protocol):
    def mark(self, record: StackRecord, *, urgent: bool) -> None: ...


class RedisResults:
    """The three Redis-side neighbours of the folder, over one client."""

    def __init__(self, redis: RedisClient, consumer: str) -> None:
        self.redis: Any = redis  # see RedisClient: redis-py's annotations don't fit
        self.consumer = consumer
        self._claim_at = 0.0
        """When to look for results nobody acknowledged next (monotonic)."""

    async def receive(self) -> list[tuple[str, TickResult]]:
        try:
            entries = await self._claim() if time.monotonic() >= self._claim_at else []
            if not entries:
                reply = await self.redis.xreadgroup(
                    protocol.OPERATOR_GROUP,
                    self.consumer,
                    {FleetKeys.results: ">"},
                    count=RESULTS_BATCH,
                    block=RESULTS_BLOCK_MS,
                )
                entries = [entry for _stream, batch in reply or [] for entry in batch]
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await protocol.ensure_groups(self.redis)  # Redis was flushed or replaced
            self._claim_at = 0.0
            return []
        decoded: list[tuple[str, TickResult]] = []
        for entry_id, fields in entries:
            try:
                decoded.append((entry_id, TickResult.from_fields(fields)))
            except ValueError as exc:  # RecordError: not a result (a foreign or broken entry)
                # Acknowledged at once: left pending, it would come back with every
                # batch claimed, forever, and hold the good results of that batch.
                logger.error("undecodable result %s (%s): %r", entry_id, exc, fields)
                await self.acknowledge([entry_id])
        return decoded

    async def _claim(self) -> list[tuple[str, dict[str, str]]]:
        """Results a previous leader received but never acknowledged; once there are
        none left, the next look is :data:`RESULTS_CLAIM_EVERY` seconds away."""
        _cursor, claimed, *_ = await self.redis.xautoclaim(
            FleetKeys.results,
            protocol.OPERATOR_GROUP,
            self.consumer,
            int(RESULTS_CLAIM_IDLE * 1000),
            "0-0",
            count=RESULTS_BATCH,
        )
        entries = [(entry_id, fields) for entry_id, fields in claimed if fields]
        if not entries:
            self._claim_at = time.monotonic() + RESULTS_CLAIM_EVERY
        return entries

    async def acknowledge(self, entry_ids: Sequence[str]) -> None:
        await self.redis.xack(FleetKeys.results, protocol.OPERATOR_GROUP, *entry_ids)

    async def read(self, refs: Sequence[StackRef]) -> list[Progress]:
        pipe = self.redis.pipeline(transaction=False)
        for ref in refs:
            keys = StackKeys(ref)
            pipe.hgetall(keys.usage)
            pipe.get(keys.goal)
        replies = await pipe.execute()
        return [
            Progress(Usage.from_hash(dict(usage)), GoalRecord.from_json(goal) if goal else None)
            for usage, goal in zip(replies[::2], replies[1::2], strict=True)
        ]

    async def approvals(self, ref: StackRef) -> list[Approval]:
        return await read_approvals(self.redis, ref)

    async def outcome(self, ref: StackRef, tick_id: str) -> TickResult | None:
        return await TickStore(self.redis, ref).outcome(tick_id)

    async def record_failure(self, result: TickResult) -> bool:
        finished = await TickStore(self.redis, result.stack).finish_tick(result=result, token=None)
        if finished is not Finished.RECORDED:
            return False
        await protocol.publish_results(self.redis, [result])
        return True


class ResultFolder:
    """Folds results into records, keeps counters and budgets, and marks them dirty."""

    def __init__(
        self,
        records: Mapping[str, StackRecord],
        *,
        stream: ResultStream,
        usage: UsageCounters,
        ledger: TickLedger,
        approvals: ApprovalReader,
        scheduler: Scheduler,
        status: StatusMarks,
        events: EventPoster,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.records = records
        self.stream = stream
        self.usage = usage
        self.ledger = ledger
        self.approvals = approvals
        self.scheduler = scheduler
        self.status = status
        self.events = events
        self.clock = clock
        self.unrecorded: dict[tuple[str, str], TickResult] = {}
        """Failed Jobs whose tick a dead runner still held (stack key, tick id) → the
        failure to record once its lease has expired (:meth:`record_failed_jobs`)."""
        self._unrecorded_at = 0.0

    async def step(self) -> None:
        """Fold one batch from the stream, then acknowledge it (and, now and then,
        record the failed Jobs whose dead runner's lease has expired since)."""
        if self.unrecorded and self.clock() >= self._unrecorded_at:
            self._unrecorded_at = self.clock() + UNRECORDED_RETRY_SECONDS
            await self.record_failed_jobs()
        entries = await self.stream.receive()
        if not entries:
            return
        await self.fold([result for _entry_id, result in entries])
        await self.stream.acknowledge([entry_id for entry_id, _result in entries])
        if len(entries) < RESULTS_BATCH:
            await asyncio.sleep(RESULTS_GATHER_SECONDS)

    async def fold(self, results: Sequence[TickResult]) -> None:
        """Fold a batch of results into the index (and reschedule on back-off changes)."""
        touched: dict[str, StackRecord] = {}
        for result in results:
            metrics.RESULTS.labels(result.outcome.value).inc()
            self.scheduler.ended(result)
            record = self.records.get(str(result.stack))
            if record is None:
                continue
            metrics.PER_STACK.observe(
                result.stack.namespace,
                result.stack.name,
                result.outcome.value,
                result.tokens,
                usd(result.cost),
                result.duration,
            )
            tools_before = record.tool_problems
            fold_result(record, result)
            if bool(record.tool_problems) != bool(tools_before):
                self.status.mark(record, urgent=True)
                await self.events.post(record, [tools_event(record.tool_problems)])
            if answered(record, result):
                self.scheduler.wake(record)
            if result.approvals:
                await self._approvals_moved(record)
            touched[record.key] = record
        await self.refresh_usage(list(touched.values()))
        for record in touched.values():
            self.status.mark(record, urgent=False)
            self.scheduler.consolidate(record)

    async def _approvals_moved(self, record: StackRecord) -> None:
        """A tick asked for approvals or moved some on: the ``AwaitingApproval``
        condition counts what waits, and each new request is announced once."""
        events = apply_approvals(record, await self.approvals.approvals(record.ref))
        self.status.mark(record, urgent=True)
        await self.events.post(record, events)

    async def refresh_usage(self, records: Sequence[StackRecord]) -> None:
        """Counters and the goal come from Redis (the runners' single source of truth),
        then a goal met and budgets hold or release the stack."""
        if not records:
            return
        progress = await self.usage.read([record.ref for record in records])
        for record, (usage, goal) in zip(records, progress, strict=True):
            cadence, met = record.cadence, record.met
            await self.events.post(record, [*apply_usage(record, usage), *apply_goal(record, goal)])
            if record.cadence != cadence:  # failure or idle back-off moved
                self.scheduler.reschedule(record, "interval")
            if record.met is not None and met is None:
                self.scheduler.unschedule(record)
                self.status.mark(record, urgent=True)
                await self.events.post(record, [Event(EventReason.COMPLETED, record.met[1])])
            elif met is not None and record.met is None:
                self.scheduler.reschedule(record, "resume")
                self.status.mark(record, urgent=True)
            message = budget_message(record.spec, record.usage)
            if message and not record.budget_message:
                record.budget_message = message
                self.scheduler.unschedule(record)
                self.status.mark(record, urgent=True)
                await self.events.post(
                    record, [Event(EventReason.BUDGET_EXCEEDED, message, warning=True)]
                )
            elif record.budget_message and not message:
                record.budget_message = ""
                self.scheduler.reschedule(record, "resume")
                self.status.mark(record, urgent=True)

    async def job_completed(self, record: StackRecord, tick: str, job: Job) -> None:
        """A tick's Job ended and its runner recorded the tick: fold what it recorded.
        A tick pod may not write the fleet's results stream (its Redis user sees only its
        namespace, :mod:`.tickcredentials`), so its result is read from its stack's keys.

        A Job can also complete with nothing recorded: its runner was stopped mid-tick
        (SIGTERM: a node shut down, its pod evicted) and handed the tick back, as a pool
        runner does — but no runner takes a Job's tick over. It is recorded as failed,
        as a failed Job's is, or the tick would stay unrecorded for ever."""
        result = await self.ledger.outcome(record.ref, tick)
        if result is not None:
            await self.fold([result])
            return
        await self.job_failed(record, tick, job, why=HANDED_BACK, condition="the Job completed")

    async def job_failed(
        self, record: StackRecord, tick: str, job: Job, why: str = "", condition: str = ""
    ) -> None:
        """A tick's Job failed (deadline, crash): record the tick as failed unless its
        runner recorded it (or still runs it, and will) — with what its pod said
        (``why``: :func:`~agentstack_operator.jobs.pod_failure`) — and fold what it
        recorded either way. ``condition``: how the Job ended, when not a failure."""
        condition = condition or job_failure(job) or "the Job failed"
        now = self.clock()
        result = TickResult(
            stack=record.ref,
            tick_id=tick,
            generation=record.generation,
            outcome=Outcome.FAILED,
            reason=TickReason.JOB_FAILED,
            message=f"{condition}; the runner: {why}" if why else condition,
            started_at=epoch(job.start_time) or now,
            finished_at=now,
            runner="job",
            kind=kind_of(tick),
        )
        if not await self._recorded(record, result):
            # Its runner was killed mid-tick (the pod deleted, the node lost) and its
            # lease has not expired yet: recorded once it has.
            self.unrecorded[(record.key, tick)] = result

    async def _recorded(self, record: StackRecord, failure: TickResult) -> bool:
        """Record ``failure``, or fold what the tick's runner recorded instead; ``False``
        while neither can be (the runner's lease still holds the tick)."""
        if await self.ledger.record_failure(failure):
            return True
        recorded = await self.ledger.outcome(record.ref, failure.tick_id)
        if recorded is None:
            return False
        await self.fold([recorded])
        return True

    async def record_failed_jobs(self) -> None:
        """Record the failed Jobs' ticks whose runner was killed holding them, now that
        their lease may have expired; a tick still held waits for the next round, one
        of a stack since deleted (or too old to matter) is dropped."""
        now = self.clock()
        for (key, tick), result in list(self.unrecorded.items()):
            record = self.records.get(key)
            if record is None or now - result.finished_at > UNRECORDED_GIVE_UP_SECONDS:
                del self.unrecorded[(key, tick)]
                continue
            if await self._recorded(record, result):
                del self.unrecorded[(key, tick)]
