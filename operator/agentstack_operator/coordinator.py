"""The coordinator: wires the operator's parts together and runs their loops.

Data flow::

    watch events (Kopf) ──► observe() ──► StackIndex (index.py) ──► Observation
                                │ Finalizer (finalizing.py): add it; deleted: clean up
                                │ new generation: publish the spec to Redis, check
                                │ Secrets (secretchecking.py), refresh usage, reschedule
                                ▼
    Dispatcher (dispatching.py) ── due ticks in batches ──► tick lanes (pool) / Jobs
    ResultFolder (folding.py) ── {agentstack}:results ──► records (dirty)
    WakeupReader (waking.py) ── {agentstack}:wakeups (inputs) ──► Dispatcher.wake
    TriggerHub (triggering.py) ── one watch per kind ──► inputs (then wake-ups)
    StatusWriter (statuswriting.py) ── dirty records, rate-limited ──► PATCH /status
    LeaderEvents (statuswriting.py) ── transitions ──► Events
    BudgetKeeper (budgets.py) ── namespaces' ledgers ──► AgentBudget status, stack holds
                             └── fair-share weights ──► Dispatcher's FairQueue (fairshare.py)

Each part owns one concern and its own state (the index its records, the dispatcher
its heap, the writer its dirty set and write budget) and reaches its neighbours
through small protocols, so it is tested alone against fakes. What the operator
reaches outside itself — the API server, Redis — comes in as
:class:`~.parts.OperatorParts`, so the whole coordinator is tested against fakes too.
What is left here is the wiring, and the rules that span parts:

- every replica observes (so a standby's index is warm); only the leader dispatches,
  folds, writes status and posts Events (:mod:`.leadership`);
- gaining the leadership reschedules every stack with cause ``start`` and marks its
  status urgent (the current period's tick goes out again; its deterministic id makes
  that harmless), and losing it clears the fleet gauges and drops the ticks held for
  room in the lanes (the next leader sends the current periods again);
- a stack that is gone leaves the index, the heap and the dirty set together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from agentstack_core.keys import StackRef
from agentstack_core.kube.jobs import Job
from agentstack_core.protocol import slot_of
from agentstack_core.reasons import EventReason
from agentstack_core.spec import Executor
from agentstack_operator import metrics
from agentstack_operator.budgets import CHECK_SECONDS, BudgetKeeper
from agentstack_operator.config import OperatorConfig
from agentstack_operator.dispatching import Dispatcher
from agentstack_operator.finalizing import Finalizer
from agentstack_operator.folding import ResultFolder
from agentstack_operator.index import StackIndex
from agentstack_operator.jobs import STACK_LABEL, job_state, job_tick, pod_failure
from agentstack_operator.leadership import Leadership
from agentstack_operator.parts import OperatorParts
from agentstack_operator.secretchecking import SECRET_RECHECK_SECONDS, check_secrets
from agentstack_operator.stackstate import StackRecord
from agentstack_operator.statuswriting import LeaderEvents, StatusWriter, clear_fleet_gauges
from agentstack_operator.tickcredentials import (
    CREDENTIALS_REFRESH_SECONDS,
    check_tick_credentials,
)
from agentstack_operator.triggering import ACCESS_CACHE_SECONDS, RECHECK_SECONDS
from agentstack_operator.waking import WakeupReader

logger = logging.getLogger(__name__)

ERROR_BACKOFF_MIN = 0.5
ERROR_BACKOFF_MAX = 10.0
STANDBY_WAIT_SECONDS = 5.0
REDIS_CHECK_SECONDS = 5.0
STALL_SECONDS = 180.0
"""A loop that has not turned for this long is stuck (the longest legitimate turn is a
status batch against an API server that times out every call: well under this)."""


def _folded(record: StackRecord, tick: str) -> bool:
    """Whether ``tick`` is the stack's last folded tick or older than it."""
    last = record.last_tick
    slot, last_slot = slot_of(tick), slot_of(last.tick_id) if last else None
    return slot is not None and last_slot is not None and slot <= last_slot


class Operator:
    def __init__(self, config: OperatorConfig, parts: OperatorParts) -> None:
        self.config = config
        self.kube = kube = parts.kube
        self.fleet = parts.fleet
        self.publications = 0
        """The fleet's publications counter as this operator last saw it."""
        self.leadership = Leadership(
            kube,
            namespace=config.operator_namespace,
            identity=config.operator_id,
            name=config.lease_name,
            lease_seconds=config.lease_seconds,
        )
        self.index = StackIndex(config.endpoints)
        self.events = LeaderEvents(kube, leading=lambda: self.leadership.is_leader)
        self.dispatcher = Dispatcher(
            self.index,
            parts.lanes,
            kube,
            config,
            before_send=self._ensure_published,
            events=self.events,
            weight=lambda namespace: self.budgets.weight(namespace),
            concurrency=lambda namespace: self.budgets.concurrency(namespace),
        )
        self.heap = self.dispatcher.heap
        self.status_writer = StatusWriter(
            self.index,
            kube,
            min_interval=config.status_min_interval,
            writes_per_second=config.status_writes_per_second,
            scheduled=self.heap,
            gone=self.remove,
        )
        self.finalizer = Finalizer(kube, self.forget, on_gave_up=self._cleanup_gave_up)
        self.wakeups = WakeupReader(parts.wakeups, self.index, self.dispatcher.wake, self.events)
        self.triggers = parts.triggers
        self.credentials = parts.credentials
        self._trigger_turns = 0
        self.progress: dict[str, float] = {}
        """Loop name → when it last turned (monotonic), for the liveness probe."""
        self.budgets = BudgetKeeper(
            kube, parts.ledgers, stacks=self.index.values, changed=self._budget_changed
        )
        self.folder = ResultFolder(
            self.index,
            stream=parts.results,
            usage=parts.results,
            ledger=parts.results,
            approvals=parts.results,
            scheduler=self.dispatcher,
            status=self.status_writer,
            events=self.events,
        )

    # -- watch side (every replica) -----------------------------------------------------

    async def observe(self, body: dict[str, Any]) -> None:
        """Take a stack's manifest from a watch event into the index, and act on it."""
        change = self.index.observe(body)
        record = change.record
        if change.deleting:
            self.dispatcher.unschedule(record)
        await self.finalizer.observe(body)  # added to a new stack; cleanup when deleted
        if change.deleting:
            return
        events = list(change.events)
        if change.cause is not None:
            self._published(await self.fleet.publish(record))
            events += await check_secrets(self.kube, record)
            events += await check_tick_credentials(self.credentials, record)
            events += await self.triggers.check(record)
            await self.folder.refresh_usage([record])
            self.dispatcher.reschedule(record, change.cause)
        # The watch also echoes our own status writes (same generation, nothing new):
        # marking those dirty would write the same status again a moment later.
        if change.cause is not None or events:
            self.status_writer.mark(record, urgent=bool(events))
        await self.events.post(record, events)

    async def forget(self, ref: StackRef, uid: str) -> None:
        """The stack is being deleted: stop it and remove its Redis keys and Jobs."""
        if self.index.forget(ref, uid):
            self._drop(str(ref))
        deleted = await self.fleet.delete(ref)
        await self.kube.delete_jobs(ref.namespace, f"{STACK_LABEL}={ref.name}")
        logger.info("cleaned up %s: %d Redis keys", ref, deleted)

    async def _cleanup_gave_up(self, ref: StackRef, uid: str, error: str) -> None:
        if self.leadership.is_leader:
            await self.kube.post_event(
                ref,
                uid,
                EventReason.CLEANUP_FAILED,
                f"released without removing its Redis keys or Jobs: {error}",
                warning=True,
            )

    def remove(self, ref: StackRef) -> None:
        """The stack is gone from the API server (deleted, or a status write found it
        missing)."""
        if self.index.remove(str(ref)) is not None:
            self._drop(str(ref))

    def _drop(self, key: str) -> None:
        self.dispatcher.forget(key)
        self.triggers.unsubscribe(key)
        self.status_writer.discard(key)
        ref = StackRef.parse(key)
        metrics.PER_STACK.forget(ref.namespace, ref.name)

    # -- leader side -------------------------------------------------------------------

    async def job_seen(self, job: dict[str, Any]) -> None:
        """A tick Job was added or changed (every replica keeps track, so a new leader
        knows which stacks have a Job running).

        A running Job holds its stack (no second Job starts); any finished one — done,
        failed, or the no-op of a tick that had run already — frees it. A failed Job
        whose runner never recorded its tick is recorded as failed, by the leader.
        """
        seen = Job.of(job)
        found = job_tick(seen)
        record = self.index.get(found[0]) if found else None
        if found is None or record is None:
            return
        tick = found[1]
        state = job_state(seen)
        if state == "Active":
            # A Job's object stays active a while after its runner reported the tick
            # (until its pod is seen to end): a tick already folded holds nothing.
            if record.active_job is None and not _folded(record, tick):
                record.active_job = tick
            return
        if record.active_job == tick:
            record.active_job = None
        if not self.leadership.is_leader:
            return
        if state == "Failed":
            name = seen.meta.name
            try:
                why = pod_failure(await self.kube.job_pods(record.ref.namespace, name))
            except Exception as exc:  # no right to list pods, an outage: record it all the same
                logger.warning("could not read the pods of Job %s: %s", name, exc)
                why = ""
            await self.folder.job_failed(record, tick, seen, why=why)
        elif not _folded(record, tick):
            await self.folder.job_completed(record, tick, seen)

    def budget_seen(self, body: dict[str, Any]) -> None:
        """An ``AgentBudget`` was created or changed (every replica keeps them)."""
        self.budgets.seen(body)

    def budget_gone(self, namespace: str, name: str) -> None:
        self.budgets.gone(namespace, name)

    def _budget_changed(self, record: StackRecord, resumed: bool) -> None:
        """The stack's namespace budget moved: its status says so at once; a held stack
        leaves the schedule, a resumed one ticks now, a throttled one waits longer from
        its next tick on."""
        self.status_writer.mark(record, urgent=True)
        self.dispatcher.reschedule(record, "start" if resumed else "keep")

    async def _budgets_step(self) -> None:
        """The leader's turn over the namespaces' budgets (:mod:`.budgets`)."""
        await asyncio.sleep(CHECK_SECONDS)
        await self.budgets.step()

    async def _leadership_step(self) -> None:
        """On becoming leader: a fresh schedule for every stack (the current period's
        tick is dispatched again; its deterministic id makes that harmless)."""
        await self.leadership.acquired.wait()
        self.wakeups.restart()
        for record in list(self.index.values()):
            self.dispatcher.reschedule(record, "start")
            self.status_writer.mark(record, urgent=True)
        await self.leadership.lost.wait()
        self.dispatcher.drop_held()
        self.triggers.stop()
        clear_fleet_gauges()

    async def _secrets_step(self) -> None:
        """Stacks waiting for a Secret, or for their tick pods' credentials, are
        re-checked until they have them (every replica: the index must be right when a
        standby takes over)."""
        await asyncio.sleep(SECRET_RECHECK_SECONDS)
        waiting = [r for r in self.index.values() if r.missing_secrets or r.credentials_problem]
        for record in waiting:
            events = await check_secrets(self.kube, record)
            events += await check_tick_credentials(self.credentials, record)
            if record.hold is None:
                self.dispatcher.reschedule(record, "start")
            self.status_writer.mark(record, urgent=bool(events))
            await self.events.post(record, events)

    async def _credentials_step(self) -> None:
        """The leader installs the tick pods' ACL users again, and rotates their
        passwords when due (:mod:`.tickcredentials`)."""
        await asyncio.sleep(CREDENTIALS_REFRESH_SECONDS)
        await self.credentials.refresh(
            {
                record.ref.namespace
                for record in self.index.values()
                if record.spec is not None and record.spec.executor is Executor.JOB
            }
        )

    async def _triggers_step(self) -> None:
        """Stacks whose triggers were not allowed are checked again every
        :data:`~.triggering.RECHECK_SECONDS`, every stack with triggers once a minute
        (a right granted or revoked since); every replica, as for Secrets."""
        await asyncio.sleep(RECHECK_SECONDS)
        self._trigger_turns += 1
        everyone = self._trigger_turns % round(ACCESS_CACHE_SECONDS / RECHECK_SECONDS) == 0
        for record in list(self.index.values()):
            if record.spec is None or not record.spec.triggers:
                continue
            if not (record.forbidden_triggers or everyone):
                continue
            held = bool(record.forbidden_triggers)
            events = await self.triggers.check(record)
            if held and not record.forbidden_triggers:
                self.dispatcher.reschedule(record, "start")
            if events:
                self.status_writer.mark(record, urgent=True)
                await self.events.post(record, events)

    async def _redis_step(self) -> None:
        """Every few seconds (and before every batch of ticks is sent, through the
        dispatcher): :meth:`_ensure_published`."""
        await asyncio.sleep(REDIS_CHECK_SECONDS)
        await self._ensure_published()

    async def _ensure_published(self) -> None:
        """Notice that Redis lost its data or went back in time, and put back what the
        fleet needs: the consumer groups and every stack's spec.

        Lost: the leader keeps a marker key in Redis; when it is missing, Redis is not
        the one the specs were published to (restarted without persistence, flushed).
        Back in time: the publications counter (raised with every spec published) is
        lower than this operator last saw — Redis was restored from an earlier snapshot,
        or a failover lost its latest writes — so specs published since may be missing
        or old (a stack would drop every tick as ``SpecNotPublished``). Checked before
        every batch of ticks is sent, so no tick reaches a runner before its stack's spec
        is back (a tick of a stack with no spec writes nothing, as for a deleted one).
        """
        lost, count = await self.fleet.check(self.config.operator_id)
        went_back = count < self.publications
        if lost or went_back:
            if lost:
                await self.fleet.ensure_groups()
            records = list(self.index.values())
            for record in records:
                self._published(await self.fleet.publish(record))
            await self.fleet.raise_publications(self.publications)
            await self.folder.refresh_usage(records)
            why = (
                "had no marker"
                if lost
                else f"went back ({count} < {self.publications} publications)"
            )
            logger.warning("Redis %s: published %d spec(s) again", why, len(records))
        self._published(count)

    def _published(self, count: int) -> None:
        """The publications counter as last seen (it only goes up while Redis keeps its
        writes)."""
        self.publications = max(self.publications, count)

    def _as_leader(self, step: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """``step``, run only while this replica leads (it waits for the lease first,
        a few seconds at a time so that a standby's loops still turn)."""

        async def leading_step() -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.leadership.acquired.wait(), STANDBY_WAIT_SECONDS)
            if self.leadership.is_leader:  # past its deadline, a leader no longer acts
                await step()

        return leading_step

    # -- running ---------------------------------------------------------------------------

    def healthy(self) -> bool:
        """Liveness: the election and every loop have turned recently. A loop stuck on
        a call that never returns makes the process unhealthy, so it is restarted."""
        now = time.monotonic()
        stalled = [name for name, at in self.progress.items() if now - at > STALL_SECONDS]
        if now - self.leadership.last_attempt > STALL_SECONDS:
            stalled.append("leader-election")
        if stalled:
            logger.error("loops not turning: %s", ", ".join(stalled))
        return not stalled

    def loops(self) -> list[Coroutine[None, None, None]]:
        """The operator's background loops; each survives its own errors."""
        return [
            self.leadership.run(),
            self._forever("leadership", self._leadership_step, watched=False),
            self._forever("dispatch", self._as_leader(self.dispatcher.step)),
            self._forever("results", self._as_leader(self.folder.step)),
            self._forever("wakeups", self._as_leader(self.wakeups.step)),
            self._forever("status", self._as_leader(self.status_writer.step)),
            self._forever("redis", self._as_leader(self._redis_step)),
            self._forever("budgets", self._as_leader(self._budgets_step)),
            self._forever("secrets", self._secrets_step),
            self._forever("tick-credentials", self._as_leader(self._credentials_step)),
            self._forever("trigger-access", self._triggers_step),
            self._forever("trigger-watches", self._as_leader(self.triggers.step)),
            self._forever("queue-depth", self.dispatcher.report_queue_depth),
        ]

    async def _forever(
        self, name: str, step: Callable[[], Awaitable[None]], *, watched: bool = True
    ) -> None:
        """Run ``step`` again and again; an error is logged and retried with back-off, so
        a Redis or API-server outage pauses the loop instead of killing the operator.
        Every turn, failed or not, counts as progress for :meth:`healthy`."""
        backoff = ERROR_BACKOFF_MIN
        while True:
            if watched:
                self.progress[name] = time.monotonic()
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
