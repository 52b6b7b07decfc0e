"""Execute one tick of one stack, exactly once in effect, whatever the delivery did.

Order of checks for a delivered :class:`~agentstack_core.protocol.TickRequest`:

1. already done (its id is in the stack's done window) → duplicate: nothing runs; for
   the newest ticks the recorded result is returned, so the caller publishes it again
   (a result lost between recording and publishing is never lost for good);
2. the stack's lease: held for this very tick id → it runs elsewhere (its owner
   reports it; this delivery stays pending, to be claimed again, in case the run
   elsewhere fails and this is the delivery it ran); held for another tick → dropped
   as ``StackBusy`` (missed ticks are skipped), recorded only if this tick id is not
   running elsewhere meanwhile, with what an earlier attempt of it committed (a
   consolidation committed before Redis went away stands, and its tokens count);
3. under the lease: no published spec (the stack was deleted), a newer generation, a
   spec that does not parse, a stack not ``Running``, a missed deadline, a spent
   budget, a finite goal met → *dropped* with a reason, recorded as done so a
   redelivery is a duplicate;
4. run the agents in order under the lease (renewed in the background, and with it the
   delivery kept alive), within the tick timeout; committed steps of an interrupted
   earlier attempt are not re-run;
5. finish under the lease: the done record with the outcome, history entry and
   counters, once, releasing the lease — and, for a tick that ran steps, a checkpoint
   of the state it leaves (:mod:`agentstack_core.redis.checkpoints`).

A tick starts when it holds the lease: ``started_at`` is taken then. Checks 1 and 2,
and everything 3 weighs and 4 resumes from (spec, counters, committed steps), come in
one round trip (:meth:`~agentstack_core.redis.tick.TickStore.begin`).

Losing the lease mid-tick raises :class:`~agentstack_core.redis.errors.LeaseLostError`: the
caller must not acknowledge, so the request is claimed again and resumed. A stack that
no longer exists (deleted, or re-created under its name) ends the tick with nothing
written (:class:`~agentstack_core.redis.errors.StackGoneError` is turned into an empty
:class:`Execution`): the caller acknowledges it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field

import orjson
from opentelemetry.trace import SpanKind
from redis.exceptions import RedisError

from agentstack_core import tracing
from agentstack_core.budget import Usage, cost_left, exhausted
from agentstack_core.completion import goal_met, pending
from agentstack_core.context import AgentContext
from agentstack_core.evals import Produced, encode_scores, tick_scores
from agentstack_core.pricing import PriceTable
from agentstack_core.protocol import RedisClient, TickKind, TickRequest, TickResult
from agentstack_core.reasons import DropReason, Outcome, StallReason, TickReason
from agentstack_core.records import StepRecord
from agentstack_core.redis.errors import LeaseLostError, StackGoneError
from agentstack_core.redis.tick import Finished, TickStart, TickStore, lease_prefix, lease_token
from agentstack_core.spec import (
    AgentSpec,
    ExecutionState,
    SpecError,
    StackSpec,
    StepFailurePolicy,
    parse_spec,
)
from agentstack_runner import metrics, spans
from agentstack_runner.embeddings import embedder_for
from agentstack_runner.llm.router import Router
from agentstack_runner.namespacebudgets import NamespaceBudgets, NamespaceGate
from agentstack_runner.providers import ProviderRegistry
from agentstack_runner.step import AgentStep, StepInput, consolidator_of, judge_of
from agentstack_runner.tools import ListingCache, Toolbox

logger = logging.getLogger(__name__)

DEFAULT_LEASE_TTL = 30.0
RELEASE_RETRY_SECONDS = 0.25
RELEASE_RETRY_MAX_SECONDS = 0.5
"""A lease that could not be given back is tried again this soon, then less often."""
TOOL_PROBLEMS_CHARS = 500

KeepAlive = Callable[[], Awaitable[None]]
"""Called after every lease renewal (the runner refreshes its delivery)."""


@dataclass(frozen=True)
class Execution:
    """What executing a request came to."""

    result: TickResult | None
    """The result to publish: this execution's, or — for a duplicate of a finished
    tick — the one recorded then. ``None``: nothing to publish (running elsewhere, or
    the stack is gone)."""
    duplicate: bool = False
    """Nothing ran here because the tick had run (or is running) already."""
    settled: bool = True
    """Whether the delivery may be acknowledged. Not while the tick runs elsewhere: the
    runner holding its lease may be running this very delivery (claimed from it while
    Redis was unreachable), and if that run fails, only this delivery, still pending,
    brings the tick back."""


class _DropError(Exception):
    """Admission refused the tick: ``reason`` and ``message`` say why."""

    def __init__(self, reason: DropReason, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


def _admit(start: TickStart, request: TickRequest, now: float) -> StackSpec:
    """The spec to run ``request`` under, or :class:`_DropError` saying why not (pure:
    everything it weighs came with the lease)."""
    if start.published is None:
        raise StackGoneError(f"{request.stack} has no published spec")
    generation = start.published.generation
    if request.generation < generation:
        raise _DropError(
            DropReason.OUTDATED_GENERATION,
            f"scheduled under generation {request.generation}, spec is at {generation}",
        )
    if request.generation > generation:
        raise _DropError(
            DropReason.SPEC_NOT_PUBLISHED, f"generation {request.generation} is not published"
        )
    try:
        spec = parse_spec(orjson.loads(start.published.spec))
    except (SpecError, orjson.JSONDecodeError) as exc:
        raise _DropError(DropReason.INVALID_SPEC, str(exc)) from exc
    if spec.execution_state is not ExecutionState.RUNNING:
        raise _DropError(DropReason.NOT_RUNNING, f"the stack is {spec.execution_state.value}")
    if now > request.deadline:
        raise _DropError(
            DropReason.DEADLINE_EXCEEDED, f"started {now - request.deadline:.1f}s late"
        )
    met = goal_met(spec, start.usage, start.goal)
    if met is not None:
        raise _DropError(DropReason.GOAL_MET, met[1])
    spent = exhausted(spec.budget, start.usage)
    if spent is not None:
        raise _DropError(DropReason.BUDGET_EXCEEDED, spent)
    return spec


def _idle(records: Sequence[StepRecord]) -> str:
    """Why a tick made no progress, from its steps (empty: one of them progressed): a
    full plan is the most telling, then refused actions, then nothing to do."""
    if any(record.progressed for record in records):
        return ""
    reasons = {record.idle for record in records}
    for reason in (StallReason.PLAN_FULL, StallReason.ACTIONS_REFUSED):
        if reason in reasons:
            return reason
    return StallReason.NOTHING_TO_DO


def _next_to_run(spec: StackSpec, position: int, committed: Collection[str]) -> str | None:
    """The agent after ``position`` if it has a step to run (its context is then read
    by this step's commit, saving a round trip)."""
    following = spec.agents[position + 1 : position + 2]
    return following[0].name if following and following[0].name not in committed else None


class _TickRun:
    """The steps of one tick, run one after the other under its lease.

    The budget is checked before every step, not only before the tick: no LLM call
    starts once the stack's tokens (as counted when the tick started, plus this tick's
    so far) reach ``maxTokens``, and each call may answer with at most what is left;
    the dollar budget likewise, each call's worst case fitting in what is left
    (:mod:`agentstack_core.pricing`). Only one tick of a stack runs at a time (the
    lease), so no other tick spends meanwhile.
    """

    def __init__(
        self,
        engine: Engine,
        store: TickStore,
        request: TickRequest,
        spec: StackSpec,
        begun: TickStart,
        token: str,
        deadline: float,
    ) -> None:
        self.engine, self.store, self.request, self.spec = engine, store, request, spec
        self.begun, self.token, self.deadline = begun, token, deadline
        self.providers = engine.registry.for_stack(request.stack.namespace, spec)
        self.embedder = embedder_for(self.providers, spec)
        self.records: list[StepRecord] = []
        self.context: AgentContext | None = None
        """The next agent's context, read by the last commit."""

    def _spent(self) -> Usage:
        """The stack's counters as they stand with this tick's steps so far."""
        usage, records = self.begun.usage, self.records
        return Usage(
            tokens=usage.tokens + sum(record.tokens for record in records),
            ticks=usage.ticks,
            cost=usage.cost + sum(record.cost for record in records),
            needed=max([usage.needed, *(record.cost_needed for record in records)]),
        )

    async def step(self, agent: AgentSpec, then: str | None) -> tuple[TickReason, str] | None:
        """Run ``agent``'s step (or count the one an earlier attempt committed); a
        reason and message when the tick must stop here."""
        committed = self.begun.committed.get(agent.name)
        if committed is not None:
            self.records.append(committed)
            self.context = None
            return None
        spec, now = self.spec, self._spent()
        spent = exhausted(spec.budget, now)
        if spent is not None:
            return TickReason.BUDGET_EXCEEDED, f"stopped before {agent.name}: {spent}"
        limit = spec.budget.max_tokens
        left = None if limit is None else limit - now.tokens
        step = StepInput(
            self.store,
            spec,
            agent,
            self.request.tick_id,
            self.token,
            self.deadline,
            max_output_tokens=min(
                spec.max_output_tokens,
                spec.max_output_tokens if limit is None else limit - now.tokens,
            ),
            context=self.context,
            then=then,
            toolbox=self.engine._toolbox(self.request, spec, agent),
            tokens_left=left,
            cost_left=cost_left(spec.budget, now),
            prices=self.engine.prices,
            embedder=self.embedder,
            gate=await self.engine.namespace_gate(self.request.stack.namespace),
        )
        with tracing.span(
            f"invoke_agent {agent.name}", attributes=spans.step_attributes(agent)
        ) as current:
            record, self.context = await AgentStep(step, self.engine.router, self.providers).run()
            spans.step_done(
                current,
                outcome=record.outcome,
                reason=record.reason,
                tokens=record.tokens,
                cost=record.cost,
                unpriced=record.unpriced,
            )
        self.records.append(record)
        if record.failed and spec.step_failure_policy is StepFailurePolicy.FAIL_TICK:
            return TickReason.STEP_FAILED, f"{record.agent}: {record.reason}: {record.message}"
        return None


@dataclass
class Engine:
    client: RedisClient
    registry: ProviderRegistry
    router: Router
    runner_id: str
    lease_ttl: float = DEFAULT_LEASE_TTL
    listings: ListingCache = field(default_factory=ListingCache)
    """Tool servers' listings, shared by the steps this engine runs."""
    prices: PriceTable = field(default_factory=PriceTable.builtin)
    """What LLM calls cost (the defaults plus ``AGENTSTACK_PRICES``)."""
    budgets: NamespaceBudgets | None = None
    """The namespaces' budgets this engine keeps before each call (``None``: a tick
    pod's engine, which may not reach the ledgers: :mod:`.namespacebudgets`)."""
    _releasing: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)
    """Leases being given back after Redis could not be reached (:meth:`_give_back`)."""

    async def namespace_gate(self, namespace: str) -> NamespaceGate | None:
        """What ``namespace``'s budgets let a step's calls spend (``None``: no limit
        beyond the stack's own budget)."""
        return await self.budgets.gate(namespace) if self.budgets is not None else None

    async def execute(self, request: TickRequest, keep_alive: KeepAlive | None = None) -> Execution:
        """Run ``request`` (see the module docstring for the order of checks)."""
        store = TickStore(self.client, request.stack, request.uid)
        with tracing.span(
            "tick",
            kind=SpanKind.CONSUMER,
            attributes=spans.tick_attributes(request, self.runner_id),
            traceparent=request.traceparent,
        ) as current:
            try:
                execution = await self._execute(store, request, keep_alive)
            except StackGoneError:
                logger.info("%s: the stack no longer exists; nothing recorded", request.tick_id)
                metrics.TICKS.labels(Outcome.DROPPED, DropReason.STACK_GONE).inc()
                execution = Execution(None)
            spans.tick_done(current, execution.result, duplicate=execution.duplicate)
            return execution

    async def _execute(
        self, store: TickStore, request: TickRequest, keep_alive: KeepAlive | None
    ) -> Execution:
        token = lease_token(request.tick_id, self.runner_id, uuid.uuid4().hex[:8])
        try:
            start = await store.begin(request.tick_id, token, self.lease_ttl)
        except (RedisError, OSError):
            # The begin may have taken the lease before its answer was lost (the
            # primary died): give the token back rather than leave the stack held.
            await self._give_back(store, token)
            raise
        if start.done:
            metrics.DUPLICATES.inc()
            return Execution(start.recorded, duplicate=True)
        holder = start.holder
        if holder is not None:
            if holder.startswith(lease_prefix(request.tick_id)):
                metrics.DUPLICATES.inc()
                return Execution(None, duplicate=True, settled=False)
            # An earlier attempt may have committed steps before it handed the tick back
            # (Redis went away) and another tick took the lease: what they did stands.
            busy = _DropError(DropReason.STACK_BUSY, "another tick of this stack is running")
            return await self._drop(
                store, request, busy, time.time(), token=None, committed=[*start.committed.values()]
            )
        started = time.time()  # the tick starts when it holds the lease
        execution: Execution | None = None
        try:
            try:
                spec = _admit(start, request, started)
            except _DropError as drop:
                # Steps an earlier attempt committed spent tokens and money that count
                # even though the tick goes no further.
                committed = list(start.committed.values())
                execution = await self._drop(
                    store, request, drop, started, token=token, committed=committed
                )
                return execution
            metrics.QUEUE_LAG.observe(max(0.0, started - request.dispatched_at))
            metrics.TICKS_IN_FLIGHT.inc()
            try:
                execution = await self._run(store, request, spec, start, token, started, keep_alive)
                return execution
            finally:
                metrics.TICKS_IN_FLIGHT.dec()
        finally:
            if execution is None:  # the finish (which releases the lease) did not happen
                await self._give_back(store, token)

    async def _give_back(self, store: TickStore, token: str) -> None:
        """Release the lease of a tick that did not finish; if Redis cannot be reached
        (its primary died), keep trying in the background until the lease would have
        expired anyway.

        With one attempt, a Redis failover held every stack that had a tick in flight
        for the whole lease TTL: the attempt met the dead primary, and the promoted
        replica kept the lease it had replicated (30 s by default: the
        ``bench.redis_failover`` figures in bench/RESULTS.md). Giving a token back is
        safe whenever it lands: the script deletes the lease only while it holds this
        very token."""
        try:
            await store.release_lease(token)
        except (RedisError, OSError):
            deadline = time.monotonic() + self.lease_ttl
            task = asyncio.create_task(self._release_until(store, token, deadline))
            self._releasing.add(task)  # kept referenced until it ends
            task.add_done_callback(self._releasing.discard)
        except Exception:  # never let the release hide what ended the tick
            logger.debug("could not release the lease %s", token.split("|")[0], exc_info=True)

    async def _release_until(self, store: TickStore, token: str, deadline: float) -> None:
        delay = RELEASE_RETRY_SECONDS
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            try:
                await store.release_lease(token)
            except (RedisError, OSError):
                delay = min(delay * 2, RELEASE_RETRY_MAX_SECONDS)
            else:
                return

    async def _drop(
        self,
        store: TickStore,
        request: TickRequest,
        drop: _DropError,
        started: float,
        *,
        token: str | None,
        committed: Sequence[StepRecord] = (),
    ) -> Execution:
        result = TickResult(
            stack=request.stack,
            tick_id=request.tick_id,
            generation=request.generation,
            outcome=Outcome.DROPPED,
            reason=drop.reason,
            message=drop.message,
            started_at=started,
            finished_at=time.time(),
            runner=self.runner_id,
            kind=request.kind,
            tokens=sum(record.tokens for record in committed),
            cost=sum(record.cost for record in committed),
            unpriced=sum(record.unpriced for record in committed),
            # What its committed steps did stands: a consolidation committed before the
            # tick was dropped (resumed past its deadline) wrote the long-term memory.
            steps=len(committed),
            progressed=any(record.progressed for record in committed),
        )
        finished = await store.finish_tick(result=result, token=token, ran=False)
        return self._reported(finished, result)

    def _reported(self, finished: Finished, result: TickResult) -> Execution:
        if finished is Finished.RECORDED:
            metrics.TICKS.labels(result.outcome.value, result.reason).inc()
            return Execution(result)
        metrics.DUPLICATES.inc()
        return Execution(None, duplicate=True)

    async def _run(
        self,
        store: TickStore,
        request: TickRequest,
        spec: StackSpec,
        start: TickStart,
        token: str,
        started: float,
        keep_alive: KeepAlive | None,
    ) -> Execution:
        clock_start = time.monotonic()
        lease_lost = asyncio.Event()
        over = asyncio.Event()
        steps = asyncio.create_task(self._steps(store, request, spec, start, token, clock_start))
        renewer = asyncio.create_task(
            self._renew(store, token, lease_lost, steps, keep_alive, over)
        )
        try:
            records, reason, message = await steps
        except asyncio.CancelledError:
            if lease_lost.is_set():
                raise LeaseLostError(f"lease of {request.stack} expired") from None
            raise
        finally:
            over.set()  # the renewer stops on this even if a cancel were lost
            renewer.cancel()
            steps.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
        failed = [record for record in records if record.failed]
        if reason is TickReason.COMPLETED and records and len(failed) == len(records):
            reason = TickReason.ALL_STEPS_FAILED
            message = f"{failed[0].agent}: {failed[0].reason}: {failed[0].message}"
        elif reason is TickReason.COMPLETED and failed:
            message = ", ".join(f"{r.agent} failed ({r.reason})" for r in failed)
        outcome = Outcome.SUCCEEDED if reason is TickReason.COMPLETED else Outcome.FAILED
        working = request.kind is TickKind.WORK
        # A consolidation that could not reach every item asks for the next at once.
        behind = not working and bool((await store.sleep_context(count=2)).archive)
        tokens = sum(record.tokens for record in records)
        needed = max((record.cost_needed for record in records), default=0)
        tool_problems = "; ".join(p for record in records for p in record.tool_problems)
        scores = await self._scores(store, request, spec, records) if working else {}
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
            tool_problems=tool_problems[:TOOL_PROBLEMS_CHARS],
            approvals=sum(record.approvals for record in records),
            cost=sum(record.cost for record in records),
            unpriced=sum(record.unpriced for record in records),
            cost_needed=needed,
            kind=request.kind,
            behind=behind,
            idle=_idle(records) if working and outcome is Outcome.SUCCEEDED else "",
            scores=encode_scores(scores),
        )
        team = [agent.name for agent in spec.agents]
        finished = await store.finish_tick(result=result, token=token, agents=team)
        if finished is Finished.RECORDED:
            metrics.TICK_DURATION.labels(outcome.value).observe(time.monotonic() - clock_start)
        return self._reported(finished, result)

    async def _scores(
        self, store: TickStore, request: TickRequest, spec: StackSpec, records: list[StepRecord]
    ) -> dict[str, float]:
        """The evals' scores of what the tick produced (none declared: nothing read)."""
        if not spec.evals:
            return {}
        produced = Produced(
            artifacts=await store.artifacts_of(request.tick_id),
            tool_calls=sum(record.tool_calls for record in records),
            tool_failures=sum(record.tool_failures for record in records),
        )
        scores = tick_scores(spec.evals, produced)
        for score in scores.values():
            metrics.EVAL_SCORES.labels(request.stack.namespace).observe(score)
        return scores

    async def _steps(
        self,
        store: TickStore,
        request: TickRequest,
        spec: StackSpec,
        begun: TickStart,
        token: str,
        start: float,
    ) -> tuple[list[StepRecord], TickReason, str]:
        """Run the agents in order — then, for a finite goal judged by a judge, the judge
        if a declaration waits — and return their records, a reason and a message."""
        run = _TickRun(self, store, request, spec, begun, token, start + spec.tick_timeout_seconds)
        try:
            async with asyncio.timeout(run.deadline - time.monotonic()):
                if request.kind is TickKind.SLEEP:
                    return await self._consolidate(run)
                for position, agent in enumerate(spec.agents):
                    stopped = await run.step(agent, _next_to_run(spec, position, begun.committed))
                    if stopped is not None:
                        return run.records, *stopped
                judge = judge_of(spec)
                if judge is not None and (
                    judge.name in begun.committed or pending(spec, await store.goal())
                ):
                    stopped = await run.step(judge, None)
                    if stopped is not None:
                        return run.records, *stopped
        except TimeoutError:
            late = f"not finished within {spec.tick_timeout_seconds:g}s"
            return run.records, TickReason.TICK_TIMEOUT, late
        return run.records, TickReason.COMPLETED, ""

    async def _consolidate(self, run: _TickRun) -> tuple[list[StepRecord], TickReason, str]:
        """A sleep tick: one step of the consolidator over the archive items after the
        watermark (none: nothing to do, no call made)."""
        consolidator = consolidator_of(run.spec)
        if consolidator.name not in run.begun.committed:
            run.context = await run.store.sleep_context()
            if not run.context.archive:
                return [], TickReason.COMPLETED, "nothing archived since the last consolidation"
        stopped = await run.step(consolidator, None)
        if stopped is not None:
            return run.records, *stopped
        return run.records, TickReason.COMPLETED, ""

    def _toolbox(self, request: TickRequest, spec: StackSpec, agent: AgentSpec) -> Toolbox | None:
        """The agent's tools, if any server of the stack serves it."""
        if not any(server.serves(agent.name) for server in spec.tool_servers):
            return None
        return Toolbox(
            request.stack.namespace, spec, agent, self.registry.credentials, self.listings
        )

    async def _renew(
        self,
        store: TickStore,
        token: str,
        lost: asyncio.Event,
        work: asyncio.Task[object],
        keep_alive: KeepAlive | None,
        finished: asyncio.Event,
    ) -> None:
        """Keep the lease (and the delivery) alive while the work runs; if the lease is
        lost, stop the work at once (no wasted calls, and nothing more is written:
        every write is fenced).

        It ends when ``finished`` is set, not only when cancelled: a cancellation that
        lands inside a Redis call can be lost in the client library, and a renewer that
        outlived its tick would hold the stack's lease — and its delivery — for ever.
        """
        while not finished.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), self.lease_ttl / 3)
            if finished.is_set() or work.done():
                return
            try:
                renewed = await store.renew_lease(token, self.lease_ttl)
                if renewed and keep_alive is not None and not finished.is_set():
                    await keep_alive()
            except Exception:  # Redis hiccup: try again next period, the TTL has slack
                logger.warning("could not renew the lease %s", token.split("|")[0])
                continue
            if not renewed:
                lost.set()
                work.cancel()
                return
