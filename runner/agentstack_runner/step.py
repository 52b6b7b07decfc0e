"""One agent's step within a tick: settle approvals, ask, repair, tool rounds, commit.

An :class:`AgentStep` reads the agent's context (plan, artifacts, feed, memory, unread
inbox) — or gets it from the previous step's commit, which reads it in the same round
trip — and then, each a method of its own:

- :meth:`~AgentStep.settle_approvals`: the agent's tool calls a person decided since it
  last looked (an approved one is made now, once);
- :meth:`~AgentStep.ask`: one call down the agent's model chain, within the budgets;
- :meth:`~AgentStep.answer`: the reply validated against the action schema, repaired
  once by showing the model its error;
- :meth:`~AgentStep.lookup_round`: the tools the reply calls and the recalls it asks
  for (the stack's archive searched, :mod:`.recall`), and what they found shown to the
  model for its next answer (a few rounds at most);
- :meth:`~AgentStep.commit`: the actions turned into domain operations (``effects``) —
  what they archive embedded first when the stack configures embeddings
  (:meth:`~AgentStep.embed`) — committed with the trace entry and the step's "done"
  record in one fenced call.

A step never raises for a model's misbehaviour, an LLM outage or a spent budget: it
commits a failed :class:`~agentstack_core.records.StepRecord` that the tick's failure
policy then weighs. Its mutable state (what the calls cost, what the model said, why
it stopped) lives on the object, each field set by one method.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from agentstack_core.approvals import Approval, ApprovalState
from agentstack_core.context import AgentContext
from agentstack_core.operations import (
    AppendTrace,
    Archive,
    ForgetApproval,
    Operation,
    SaveApproval,
)
from agentstack_core.pricing import (
    NANOS_PER_USD,
    Price,
    PriceTable,
    UnpricedError,
    affordable_output,
    prompt_bound,
)
from agentstack_core.reasons import Outcome, StepReason
from agentstack_core.records import Attempt as TracedAttempt
from agentstack_core.records import StepRecord, ToolUse, TraceRecord
from agentstack_core.redis.ledger import Refused
from agentstack_core.redis.tick import TickStore
from agentstack_core.spec import (
    CONSOLIDATOR_ROLE,
    JUDGE_ROLE,
    AgentSpec,
    ConfirmBy,
    ModelRef,
    StackSpec,
    WhilePending,
)
from agentstack_runner import metrics
from agentstack_runner.actions import (
    Action,
    CallTool,
    Lookup,
    Recall,
    Reply,
    ReplyError,
    parse_reply,
)
from agentstack_runner.effects import Effects, plan_effects
from agentstack_runner.embeddings import Embedder, Vector, encode_vector, unit, worst_case_tokens
from agentstack_runner.llm.base import ChatRequest, LLMError
from agentstack_runner.llm.router import (
    MIN_CALL_SECONDS,
    Attempt,
    ExhaustedError,
    ProviderSource,
    Router,
)
from agentstack_runner.namespacebudgets import Hold, NamespaceGate
from agentstack_runner.prompts import (
    context_document,
    render_context,
    render_round,
    summary,
    system_prompt,
)
from agentstack_runner.recall import MAX_RECALLS_PER_ROUND, Recollection, recall
from agentstack_runner.tools import (
    CALL_OK,
    MAX_CALLS_PER_ROUND,
    MAX_TOOL_ROUNDS,
    NOT_MADE,
    UNAVAILABLE,
    Offer,
    Toolbox,
)
from agentstack_runner.workingset import WorkingSet, budget, working_set

REPAIR_ECHO_CHARS = 2_000
TRACE_TEXT_CHARS = 500
MIN_OUTPUT_TOKENS = 32
"""A call the dollar budget lets answer with fewer tokens is not made: its reply could
not hold a valid answer, so it would spend money on a certain failure."""


@dataclass(frozen=True)
class StepInput:
    store: TickStore
    spec: StackSpec
    agent: AgentSpec
    tick_id: str
    token: str
    deadline: float
    """``time.monotonic()`` instant by which the whole tick must be done."""
    max_output_tokens: int
    """The most this step's calls may answer with (the spec's cap, or what is left of
    the stack's token budget if that is less)."""
    context: AgentContext | None = None
    """The agent's context if the previous step's commit read it (else read here)."""
    then: str | None = None
    """The agent whose step comes next: its context is read by this step's commit."""
    toolbox: Toolbox | None = None
    """The tools the agent may call (``None``: the stack declares none for it)."""
    tokens_left: int | None = None
    """What is left of the stack's token budget when the step starts (``None``: no
    budget): a repair or a tool round after the first call may answer with at most
    what is left then, and none starts once it is spent."""
    cost_left: int | None = None
    """Nano-dollars left of the stack's dollar budget when the step starts (``None``:
    no dollar budget): every call's worst case must fit in what is left then."""
    prices: PriceTable = field(default_factory=PriceTable.builtin)
    embedder: Embedder | None = None
    """The stack's embeddings endpoint (``None``: it configures none)."""
    gate: NamespaceGate | None = None
    """The namespace's budgets, held before each call (``None``: it has none, or this
    runner does not keep them: :mod:`.namespacebudgets`)."""


JUDGE = "(judge)"
"""The judge's name in traces and step records: no agent can bear it (agent names are
DNS labels), so its step never collides with a team member's."""


def judge_of(spec: StackSpec) -> AgentSpec | None:
    """The judge of a finite goal confirmed by a judge (``None`` otherwise): one call of
    the reviewer's models (the first agent's if there is no reviewer)."""
    if spec.completion is None or spec.completion.confirm_by is not ConfirmBy.JUDGE:
        return None
    models = next((a.models for a in spec.agents if a.role == "reviewer"), spec.agents[0].models)
    return AgentSpec(name=JUDGE, role=JUDGE_ROLE, models=models)


CONSOLIDATOR = "(sleep)"
"""The consolidator's name in traces and step records (no agent can bear it)."""


def consolidator_of(spec: StackSpec) -> AgentSpec:
    """The consolidator of a sleep tick: one call of the first agent's models."""
    return AgentSpec(name=CONSOLIDATOR, role=CONSOLIDATOR_ROLE, models=spec.agents[0].models)


class BudgetSpentError(Exception):
    """The step's calls so far spent what was left of a budget."""

    def __init__(self, budget: str = "token", needed: int = 0) -> None:
        super().__init__(f"the {budget} budget is spent")
        self.budget = budget
        self.needed = needed
        """Nano-dollars the refused call needed at the least (the dollar budget)."""


@dataclass
class Bill:
    """What a step's calls used and cost so far."""

    namespace: str = ""
    """The stack's namespace: the label of the per-namespace cost metrics."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: int = 0
    unpriced: int = 0
    calls: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def charge(self, prices: PriceTable, model: ModelRef, prompt: int, completion: int) -> int:
        """Add one answered call (and count it in the runner's cost metrics, by model and
        by namespace); returns its cost in nano-dollars (0 if its model has no price)."""
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.calls += 1
        price = prices.price(model)
        label = (model.provider, metrics.model_label(model.name))
        metrics.NAMESPACE_LLM_TOKENS.labels(self.namespace).inc(prompt + completion)
        if price is None:
            self.unpriced += 1
            metrics.LLM_UNPRICED.labels(*label).inc()
            return 0
        cost = price.cost(prompt, completion)
        self.cost += cost
        metrics.LLM_COST.labels(*label).inc(cost / NANOS_PER_USD)
        metrics.NAMESPACE_LLM_COST.labels(self.namespace).inc(cost / NANOS_PER_USD)
        return cost


def follow_up(request: ChatRequest, said: str, answer: str, *, left: int | None) -> ChatRequest:
    """``request`` continued: the model's last reply, then ``answer`` (a repair request
    or tool results), for the next call — answering with at most ``left`` tokens (what
    the budget has left; ``None``: no budget). :class:`BudgetSpentError` if nothing is."""
    if left is not None and left <= 0:
        raise BudgetSpentError
    return ChatRequest(
        model="",
        messages=[
            *request.messages,
            {"role": "assistant", "content": said[:REPAIR_ECHO_CHARS]},
            {"role": "user", "content": answer},
        ],
        max_tokens=request.max_tokens if left is None else min(request.max_tokens, left),
        temperature=request.temperature,
        timeout=request.timeout,
        headers=request.headers,
    )


class AgentStep:
    """One step of one agent; :meth:`run` it once."""

    def __init__(self, step: StepInput, router: Router, providers: ProviderSource) -> None:
        self.step, self.router, self.providers = step, router, providers
        self.request = ChatRequest(model="", messages=[])
        """The next call to make: the first prompt, then continued by repairs and tool
        results."""
        self.said = ""
        """What the model answered last."""
        self.model = ""
        """The model that answered last (``""``: none did)."""
        self.attempts: list[Attempt] = []
        self.bill = Bill(namespace=step.store.stack.namespace)
        self.reply: Reply | None = None
        """The last valid reply (its tool calls answered, if any)."""
        self.actions: list[Action] = []
        """The actions of every valid reply, tool calls left out."""
        self.refused: list[str] = []
        self.uses: list[ToolUse] = []
        self.recollections: list[Recollection] = []
        self.rounds = 0
        self.reason = StepReason.SUCCEEDED
        self.error = ""
        self.needed = 0
        """Nano-dollars the call the dollar budget refused needed at the least."""

    async def run(self) -> tuple[StepRecord, AgentContext | None]:
        """Run the step; returns its record and the context of ``step.then``."""
        started = time.monotonic()
        step = self.step
        context = (
            step.context if step.context is not None else await step.store.context(step.agent.name)
        )
        offer = await step.toolbox.offer() if step.toolbox is not None else Offer()
        told, settled = await self.settle_approvals()
        shown = working_set(context, budget(step.spec, step.agent))
        document = context_document(
            step.spec,
            step.agent,
            shown,
            stack=str(step.store.stack),
            tick_id=step.tick_id,
            tools=[tool.for_prompt() for tool in offer.tools],
            approvals=told,
            goal=context.goal,
        )
        self.request = ChatRequest(
            model="",
            messages=[
                {"role": "system", "content": system_prompt(step.agent)},
                {"role": "user", "content": render_context(document)},
            ],
            max_tokens=step.max_output_tokens,
            temperature=step.spec.temperature,
            timeout=step.spec.request_timeout_seconds,
            headers={"X-Agentstack-Agent": step.agent.name, "X-Agentstack-Tick": step.tick_id},
        )
        pausing = step.spec.while_pending is WhilePending.PAUSE_AGENT
        if pausing and any(t["state"] == ApprovalState.PENDING for t in told):
            self.reason = StepReason.AWAITING_APPROVAL  # it sits this step out; its inbox waits
        else:
            await self.converse()
        record, following = await self.commit(
            context, shown, summary(document), settled, offer, started
        )
        metrics.STEP_DURATION.labels(metrics.role_label(step.agent.role), record.outcome).observe(
            time.monotonic() - started
        )
        return record, following

    async def settle_approvals(self) -> tuple[list[dict[str, Any]], list[Approval]]:
        """The agent's approvals that moved since it last looked: what to tell it, and
        the records to commit with the step (calls made now go to :attr:`uses`)."""
        toolbox, step = self.step.toolbox, self.step
        if toolbox is None or not toolbox.needs_approvals:
            return [], []
        told, settled, uses = await toolbox.settle(
            step.store.client,
            step.store.stack,
            token=step.token,
            tick=step.tick_id,
            now=time.time(),
        )
        self.uses.extend(uses)
        return told, settled

    async def converse(self) -> None:
        """Answers and tool rounds until the model answers without calling a tool (or
        no round is left); a failure sets :attr:`reason` and :attr:`error`."""
        try:
            while (answer := await self.answer()) is not None:
                self.reply = answer
                lookups = [a for a in answer.actions if isinstance(a, Lookup)]
                self.actions.extend(a for a in answer.actions if not isinstance(a, Lookup))
                if not lookups or not await self.lookup_round(lookups):
                    return
        except BudgetSpentError as exc:
            self.needed = exc.needed
            if self.reply is None:  # the first call, or a repair, was due: no valid answer
                self.reason = StepReason.BUDGET_EXCEEDED
                self.error = (
                    f"the {exc.budget} budget has too little left for a call of "
                    f"{self.step.agent.name}"
                )
            else:  # lookups' results came back, but no call may read them
                self.refused.append(f"lookup results not read: the {exc.budget} budget is spent")
        except UnpricedError as exc:
            self.reason = StepReason.UNPRICED_MODEL
            self.error = f"{exc}: a dollar budget cannot be kept"
        except ExhaustedError as exc:
            self.attempts.extend(exc.attempts)
            self.reason, self.error = exc.reason, str(exc)
        except LLMError as exc:
            self.reason, self.error = exc.reason, str(exc)

    async def answer(self) -> Reply | None:
        """A valid reply: the model's answer, or its one repair. ``None`` (reason
        ``InvalidOutput``) when the repair is invalid too."""
        for attempt in range(2):
            content = await self.ask()
            try:
                return parse_reply(content)
            except ReplyError as exc:
                self.error = str(exc)
                if attempt == 1:
                    self.reason = StepReason.INVALID_OUTPUT
                    return None
                self.request = follow_up(
                    self.request,
                    content,
                    f"That reply was rejected: {self.error}. Answer again with only the JSON "
                    "object described in the instructions.",
                    left=self._tokens_left(),
                )
        return None  # not reached: the loop returns on its second pass

    async def ask(self) -> str:
        """One call of :attr:`request` down the agent's model chain, answering with at
        most what the budgets leave room for; returns what the model said."""
        step = self.step
        self.request = self._affordable(self.request)
        hold = await self._hold_namespace()
        try:
            routed = await self.router.complete(
                self.providers, step.agent.models, self.request, deadline=step.deadline
            )
        except BaseException:
            if hold is not None and step.gate is not None:
                await step.gate.settle(hold, 0, 0)  # no model answered: nothing to charge
            raise
        self.attempts.extend(routed.attempts)
        self.model = str(routed.model)
        used = routed.completion
        cost = self.bill.charge(
            step.prices, routed.model, used.prompt_tokens, used.completion_tokens
        )
        if hold is not None and step.gate is not None:
            await step.gate.settle(hold, cost, used.prompt_tokens + used.completion_tokens)
        self.said = used.content
        return used.content

    async def _hold_namespace(self) -> Hold | None:
        """Hold the worst case of :attr:`request` in the namespace's budgets, shortening
        its answer to what their room allows if it must (:mod:`.namespacebudgets`);
        :class:`BudgetSpentError` if not even the shortest answer fits.

        At most three tries: the answer as asked, then as long as the room reported
        allows, then the shortest (:data:`MIN_OUTPUT_TOKENS`) — whose refusal the ledger
        records as what the window needs."""
        step, gate = self.step, self.step.gate
        if gate is None:
            return None
        prices = [(model, step.prices.price(model)) for model in step.agent.models]
        prompt = prompt_bound(self.request.messages)
        seconds = max(0.0, step.deadline - time.monotonic())
        wanted = self.request.max_tokens
        for attempt in range(3):
            shortest = wanted <= MIN_OUTPUT_TOKENS or attempt == 2
            if shortest:
                wanted = min(wanted, MIN_OUTPUT_TOKENS)
            worst = _worst_cost(prices, prompt, wanted) if gate.caps_cost else 0
            answer = await gate.hold(worst, prompt + wanted, seconds=seconds, needed=shortest)
            if not isinstance(answer, Refused):
                self.request = replace(self.request, max_tokens=wanted)
                return answer
            if shortest:
                # The stack's own budget is short of nothing: what the namespace needs
                # is in its ledger.
                raise BudgetSpentError(f"namespace's {answer.budget}")
            fits = wanted - 1
            if answer.room_tokens is not None:
                fits = min(fits, answer.room_tokens - prompt)
            if answer.room_cost is not None:
                fits = min(fits, affordable_output(prices, prompt, answer.room_cost, wanted))
            wanted = max(fits, MIN_OUTPUT_TOKENS)
        raise AssertionError("not reached: the third try is the shortest")

    async def lookup_round(self, lookups: list[Lookup]) -> bool:
        """Make a reply's tool calls and recalls and show the model what they found;
        ``False`` when no round may be made (they are refused instead)."""
        toolbox = self.step.toolbox
        calls = [c for c in lookups if isinstance(c, CallTool)]
        recalls = [r for r in lookups if isinstance(r, Recall)]
        if toolbox is None:
            why = "no tools are offered to this agent"
            self.refused.extend(f"call_tool {c.tool}: {why}" for c in calls)
            calls = []
        if self.rounds == MAX_TOOL_ROUNDS:
            self.refused.extend(f"call_tool {c.tool}: no rounds left" for c in calls)
            self.refused.extend(f"recall {r.query!r}: no rounds left" for r in recalls)
            return False
        if not calls and not recalls:
            return False
        self.rounds += 1
        self.refused.extend(
            f"call_tool {c.tool}: too many calls in one round" for c in calls[MAX_CALLS_PER_ROUND:]
        )
        self.refused.extend(
            f"recall {r.query!r}: too many recalls in one round"
            for r in recalls[MAX_RECALLS_PER_ROUND:]
        )
        results = []
        if toolbox is not None:
            tick = self.step.tick_id
            results = [
                await toolbox.call(c.tool, c.arguments, tick=tick)
                for c in calls[:MAX_CALLS_PER_ROUND]
            ]
        self.uses.extend(result.use for result in results)
        found = [await self.recall(r) for r in recalls[:MAX_RECALLS_PER_ROUND]]
        self.recollections.extend(found)
        self.request = follow_up(
            self.request,
            self.said,
            render_round(
                [result.for_prompt() for result in results], [r.for_prompt() for r in found]
            ),
            left=self._tokens_left(),
        )
        return True

    async def recall(self, action: Recall) -> Recollection:
        """One recall of the stack's archive (semantic when the stack has embeddings)."""
        store = self.step.store
        semantic = self._query_vector if self.step.embedder is not None else None
        return await recall(store.client, store.stack, action, semantic)

    async def _query_vector(self, query: str) -> Vector | None:
        vectors = await self.embed([query])
        return unit(vectors[0]) if vectors else None

    async def embed(self, texts: Sequence[str]) -> list[list[float]] | None:
        """Vectors of ``texts`` from the stack's embeddings endpoint, charged to the
        step; ``None`` — and why, in :attr:`refused` — when the stack has none, what is
        left of a budget could not pay the call's worst case, or the call failed."""
        step, embedder = self.step, self.step.embedder
        if embedder is None or not texts:
            return None
        worst = worst_case_tokens(texts)
        left = self._tokens_left()
        price = step.prices.price(embedder.model)
        seconds = min(step.spec.request_timeout_seconds, step.deadline - time.monotonic())
        why = ""
        if seconds < MIN_CALL_SECONDS:
            why = "the tick's time is up"
        elif left is not None and left < worst:
            why = "the token budget has too little left"
        elif step.cost_left is not None and price is None:
            why = f"{embedder.model} has no price, and a dollar budget must be kept"
        elif (
            step.cost_left is not None
            and price is not None
            and (price.cost(worst, 0) > step.cost_left - self.bill.cost)
        ):
            why = "the dollar budget has too little left"
        hold: Hold | None = None
        if not why and step.gate is not None:
            if step.gate.caps_cost and price is None:
                why = f"{embedder.model} has no price, and the namespace's budget caps dollars"
            else:
                cost = price.cost(worst, 0) if price is not None and step.gate.caps_cost else 0
                held = await step.gate.hold(cost, worst, seconds=seconds, needed=False)
                if isinstance(held, Refused):
                    why = f"the namespace's {held.budget} has too little left"
                else:
                    hold = held
        if why:
            self.refused.append(f"embeddings not made: {why}")
            return None
        try:
            embedded = await embedder.embed(texts, seconds=seconds, headers=self.request.headers)
        except LLMError as exc:
            if hold is not None and step.gate is not None:
                await step.gate.settle(hold, 0, 0)
            self.refused.append(f"embeddings failed: {exc}"[:TRACE_TEXT_CHARS])
            return None
        cost = self.bill.charge(step.prices, embedder.model, embedded.prompt_tokens, 0)
        if hold is not None and step.gate is not None:
            await step.gate.settle(hold, cost, embedded.prompt_tokens)
        return embedded.vectors

    async def with_vectors(self, operations: Sequence[Operation]) -> list[Operation]:
        """``operations`` with a vector on each item they archive (when the stack has
        embeddings and they could be had; else as they are)."""
        archived = [
            (i, op)
            for i, op in enumerate(operations)
            if isinstance(op, Archive) and op.entry.text.strip()
        ]
        vectors = await self.embed([op.entry.text for _i, op in archived])
        done = list(operations)
        for (i, op), vector in zip(archived, vectors or [], strict=False):
            done[i] = Archive(replace(op.entry, vector=encode_vector(unit(vector))))
        return done

    def _tokens_left(self) -> int | None:
        left = self.step.tokens_left
        return None if left is None else left - self.bill.tokens

    def _affordable(self, request: ChatRequest) -> ChatRequest:
        """``request`` answering with at most what the dollar budget leaves room for.

        Every model of the agent's chain may be the one that answers, so the most
        expensive bounds the call. :class:`BudgetSpentError` if fewer than
        :data:`MIN_OUTPUT_TOKENS` fit; :class:`~agentstack_core.pricing.UnpricedError`
        if a model has no price.
        """
        step = self.step
        if step.cost_left is None:
            return request
        prices = [(model, step.prices.price(model)) for model in step.agent.models]
        prompt = prompt_bound(request.messages)
        fits = affordable_output(
            prices, prompt, step.cost_left - self.bill.cost, request.max_tokens
        )
        if fits < MIN_OUTPUT_TOKENS:
            needed = max(p.cost(prompt, MIN_OUTPUT_TOKENS) for _m, p in prices if p is not None)
            raise BudgetSpentError("dollar", needed)
        return replace(request, max_tokens=fits)

    def effects(self, context: AgentContext, shown: WorkingSet) -> Effects:
        """The domain operations of the actions the step's replies took (having been
        shown ``shown``)."""
        if self.reply is None or self.reason is not StepReason.SUCCEEDED:
            return Effects()
        step = self.step
        return plan_effects(
            spec=step.spec,
            agent=step.agent,
            tick_id=step.tick_id,
            reply=Reply(thought=self.reply.thought, actions=self.actions),
            context=context,
            shown=shown,
        )

    async def commit(
        self,
        context: AgentContext,
        shown: WorkingSet,
        prompt: str,
        settled: list[Approval],
        offer: Offer,
        started: float,
    ) -> tuple[StepRecord, AgentContext | None]:
        """Commit the step's operations, its trace entry and its record, at once."""
        step = self.step
        agent = step.agent
        effects = self.effects(context, shown)
        archived = await self.with_vectors(effects.operations)
        requested = step.toolbox.requested if step.toolbox is not None else []
        forgotten = step.toolbox.forgotten if step.toolbox is not None else []
        taken = self.reason.taken
        at = time.time()  # the trace entry's time, and the day its bill is counted on
        record = StepRecord(
            agent=agent.name,
            role=agent.role,
            outcome=Outcome.SUCCEEDED if taken else Outcome.FAILED,
            reason=self.reason,
            message="" if taken else self.error[:TRACE_TEXT_CHARS],
            model=self.model,
            tokens=self.bill.tokens,
            progressed=effects.progressed,
            approvals=len(settled) + len(requested),
            tool_problems=(
                *offer.problems,
                *(
                    f"{u.tool}: {u.outcome}: {u.error}"
                    for u in self.uses
                    if u.outcome in UNAVAILABLE
                ),
            ),
            cost=self.bill.cost,
            unpriced=self.bill.unpriced,
            calls=self.bill.calls,
            cost_needed=self.needed,
            idle=(effects.idle or "") if self.reason is StepReason.SUCCEEDED else "",
            tool_calls=len(made := [u for u in self.uses if u.outcome not in NOT_MADE]),
            tool_failures=sum(1 for u in made if u.outcome != CALL_OK),
        )
        operations: list[Operation] = [
            *archived,
            *(SaveApproval(approval) for approval in settled),
            *(SaveApproval(approval, new=True) for approval in requested),
            *(ForgetApproval(approval) for approval in forgotten),
            AppendTrace(self._trace(record, prompt, effects, started, at)),
        ]
        following = await step.store.commit_step(
            token=step.token,
            tick_id=step.tick_id,
            record=record,
            operations=operations,
            then=step.then,
            at=at,
        )
        return record, following

    def _trace(
        self, record: StepRecord, prompt: str, effects: Effects, started: float, at: float
    ) -> TraceRecord:
        attempts = self.attempts
        return TraceRecord(
            tick_id=self.step.tick_id,
            agent=record.agent,
            role=record.role,
            outcome=record.outcome,
            reason=record.reason,
            model=record.model,
            fallback=bool(attempts) and str(attempts[0].model) != record.model,
            attempts=tuple(
                TracedAttempt(model=str(a.model), outcome=a.outcome, seconds=round(a.seconds, 3))
                for a in attempts
            ),
            prompt=prompt,
            prompt_tokens=self.bill.prompt_tokens,
            completion_tokens=self.bill.completion_tokens,
            latency_ms=round((time.monotonic() - started) * 1000),
            thought=(self.reply.thought if self.reply else "")[:TRACE_TEXT_CHARS],
            actions=tuple(effects.applied),
            refused=tuple([*self.refused, *effects.refused]),
            tools=tuple(self.uses),
            recalls=tuple(r.traced() for r in self.recollections),
            error=record.message,
            at=at,
            cost=self.bill.cost,
            unpriced=self.bill.unpriced,
            idle=record.idle,
        )


def _worst_cost(prices: Sequence[tuple[ModelRef, Price | None]], prompt: int, answer: int) -> int:
    """The most a call of ``prompt`` tokens answering with ``answer`` may cost, whichever
    model of the chain answers; :class:`UnpricedError` if one has no price."""
    worst = 0
    for model, price in prices:
        if price is None:
            raise UnpricedError(model)
        worst = max(worst, price.cost(prompt, answer))
    return worst
