"""Execute one tick of one stack, exactly once in effect, whatever the delivery did.

Order of checks for a delivered :class:`~agentstack_core.protocol.TickRequest`:

1. already done (its id is in the stack's done set) → duplicate: acknowledge, no result;
2. no published spec, a newer generation, a spec that does not parse, a stack not
   ``Running``, a missed deadline, a spent budget → *dropped* with a reason, recorded
   as done so a redelivery is a duplicate;
3. the stack's lease: held for this very tick id → it runs elsewhere (duplicate);
   held for another tick → dropped as ``StackBusy`` (missed ticks are skipped);
4. run the agents in order under the lease (renewed in the background), within the
   tick timeout; committed steps of an interrupted earlier attempt are not re-run;
5. finish: the done record, history entry and usage counters, once.

Losing the lease mid-tick raises :class:`~agentstack_core.store.LeaseLostError`: the
caller must not acknowledge, so the request is claimed again and resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass

from agentstack_core.budget import exhausted
from agentstack_core.protocol import Outcome, RedisClient, TickRequest, TickResult
from agentstack_core.records import TickRecord
from agentstack_core.spec import (
    ExecutionState,
    SpecError,
    StackSpec,
    StepFailurePolicy,
    parse_spec,
)
from agentstack_core.store import LeaseLostError, StackStore
from agentstack_runner import metrics
from agentstack_runner.agents import StepInput, StepRecord, run_step
from agentstack_runner.llm.router import Router
from agentstack_runner.providers import ProviderRegistry

logger = logging.getLogger(__name__)

DEFAULT_LEASE_TTL = 30.0


@dataclass
class Engine:
    client: RedisClient
    registry: ProviderRegistry
    router: Router
    runner_id: str
    lease_ttl: float = DEFAULT_LEASE_TTL

    async def execute(self, request: TickRequest) -> TickResult | None:
        """Run ``request``; ``None`` means it was a duplicate and nothing was recorded."""
        store = StackStore(self.client, request.stack)
        if await store.is_done(request.tick_id):
            metrics.DUPLICATES.inc()
            return None
        started = time.time()
        spec_or_reason = await self._admit(store, request, started)
        if isinstance(spec_or_reason, tuple):
            reason, message = spec_or_reason
            return await self._drop(store, request, reason, message, started)
        spec = spec_or_reason
        token = f"{request.tick_id}|{self.runner_id}|{uuid.uuid4().hex[:8]}"
        holder = await store.acquire_lease(token, self.lease_ttl)
        if holder is not None:
            if holder.startswith(f"{request.tick_id}|"):
                metrics.DUPLICATES.inc()
                return None
            return await self._drop(
                store, request, "StackBusy", "another tick of this stack is running", started
            )
        metrics.QUEUE_LAG.observe(max(0.0, started - request.dispatched_at))
        metrics.TICKS_IN_FLIGHT.inc()
        try:
            return await self._run(store, request, spec, token, started)
        finally:
            metrics.TICKS_IN_FLIGHT.dec()
            with contextlib.suppress(Exception):
                await store.release_lease(token)

    async def _admit(
        self, store: StackStore, request: TickRequest, now: float
    ) -> StackSpec | tuple[str, str]:
        published = await store.spec()
        if published is None:
            return "SpecNotPublished", "the operator has not published this stack's spec"
        generation, raw = published
        if request.generation < generation:
            return (
                "OutdatedGeneration",
                f"scheduled under generation {request.generation}, spec is at {generation}",
            )
        if request.generation > generation:
            return "SpecNotPublished", f"generation {request.generation} is not published yet"
        try:
            spec = parse_spec(raw)
        except SpecError as exc:
            return "InvalidSpec", str(exc)
        if spec.execution_state is not ExecutionState.RUNNING:
            return "NotRunning", f"the stack is {spec.execution_state.value}"
        if now > request.deadline:
            return "DeadlineExceeded", f"started {now - request.deadline:.1f}s after its deadline"
        spent = exhausted(spec.budget, await store.usage())
        if spent is not None:
            return "BudgetExceeded", spent
        return spec

    async def _drop(
        self, store: StackStore, request: TickRequest, reason: str, message: str, started: float
    ) -> TickResult | None:
        result = TickResult(
            stack=request.stack,
            tick_id=request.tick_id,
            generation=request.generation,
            outcome=Outcome.DROPPED,
            reason=reason,
            message=message,
            started_at=started,
            finished_at=time.time(),
            runner=self.runner_id,
        )
        recorded = await store.finish_tick(
            token="", tick_id=request.tick_id, entry=_history_entry(result), tokens=0, ran=False
        )
        if not recorded:
            metrics.DUPLICATES.inc()
            return None
        metrics.TICKS.labels(result.outcome.value, reason).inc()
        return result

    async def _run(
        self, store: StackStore, request: TickRequest, spec: StackSpec, token: str, started: float
    ) -> TickResult | None:
        clock_start = time.monotonic()
        lease_lost = asyncio.Event()
        steps = asyncio.create_task(self._steps(store, request, spec, token, clock_start))
        renewer = asyncio.create_task(self._renew(store, token, lease_lost, steps))
        try:
            records, reason, message = await steps
        except asyncio.CancelledError:
            if lease_lost.is_set():
                raise LeaseLostError(f"lease of {request.stack} expired") from None
            raise
        finally:
            renewer.cancel()
            steps.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
        failed = [record for record in records if record.failed]
        if reason == "Completed" and records and len(failed) == len(records):
            reason = "AllStepsFailed"
            message = f"{failed[0].agent}: {failed[0].reason}: {failed[0].message}"
        elif reason == "Completed" and failed:
            message = ", ".join(f"{r.agent} failed ({r.reason})" for r in failed)
        outcome = Outcome.SUCCEEDED if reason == "Completed" else Outcome.FAILED
        tokens = sum(record.tokens for record in records)
        result = TickResult(
            stack=request.stack,
            tick_id=request.tick_id,
            generation=request.generation,
            outcome=outcome,
            reason=reason,
            message=message[:1000],
            started_at=started,
            finished_at=time.time(),
            tokens=tokens,
            steps=len(records),
            progressed=any(record.progressed for record in records),
            runner=self.runner_id,
        )
        if not await store.finish_tick(
            token=token, tick_id=request.tick_id, entry=_history_entry(result), tokens=tokens
        ):
            metrics.DUPLICATES.inc()
            return None
        metrics.TICKS.labels(outcome.value, reason).inc()
        metrics.TICK_DURATION.labels(outcome.value).observe(time.monotonic() - clock_start)
        return result

    async def _steps(
        self, store: StackStore, request: TickRequest, spec: StackSpec, token: str, start: float
    ) -> tuple[list[StepRecord], str, str]:
        """Run the agents in order; returns their records, a reason and a message."""
        deadline = start + spec.tick_timeout_seconds
        providers = self.registry.for_stack(request.stack.namespace, spec)
        committed = await store.committed_steps(request.tick_id)
        records: list[StepRecord] = []
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                for agent in spec.agents:
                    if agent.name in committed:
                        records.append(StepRecord(**committed[agent.name]))
                        continue
                    step = StepInput(store, spec, agent, request.tick_id, token, deadline)
                    record = await run_step(step, self.router, providers)
                    records.append(record)
                    if record.failed and spec.step_failure_policy is StepFailurePolicy.FAIL_TICK:
                        return (
                            records,
                            "StepFailed",
                            f"{record.agent}: {record.reason}: {record.message}",
                        )
        except TimeoutError:
            return records, "TickTimeout", f"not finished within {spec.tick_timeout_seconds:g}s"
        return records, "Completed", ""

    async def _renew(
        self, store: StackStore, token: str, lost: asyncio.Event, work: asyncio.Task[object]
    ) -> None:
        """Keep the lease alive; if it is lost, stop the work at once (no wasted calls)."""
        while True:
            await asyncio.sleep(self.lease_ttl / 3)
            try:
                renewed = await store.renew_lease(token, self.lease_ttl)
            except Exception:  # Redis hiccup: try again next period, the TTL has slack
                logger.warning("could not renew the lease %s", token.split("|")[0])
                continue
            if not renewed:
                lost.set()
                work.cancel()
                return


def _history_entry(result: TickResult) -> TickRecord:
    return TickRecord(
        tick_id=result.tick_id,
        generation=result.generation,
        outcome=result.outcome.value,
        reason=result.reason,
        message=result.message,
        started_at=result.started_at,
        finished_at=result.finished_at,
        duration_ms=round(result.duration * 1000),
        tokens=result.tokens,
        steps=result.steps,
        progressed=result.progressed,
        runner=result.runner,
    )
