"""One agent's step within a tick: read, ask the model, validate, act, record.

The step reads the agent's context (plan, artifacts, feed, memory, unread inbox) —
or gets it from the previous step's commit, which reads it in the same round trip —
asks its model chain for a reply, validates it against the action schema — repairing
once by showing the model its error — turns the actions into writes (``effects``),
and commits writes, trace entry and the step's "done" record in one fenced Lua call.
A step never raises for a model's misbehaviour: it returns a failed
:class:`StepRecord` that the tick's failure policy then weighs.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from agentstack_core.approvals import PENDING, Approval
from agentstack_core.pricing import (
    NANOS_PER_USD,
    PriceTable,
    UnpricedError,
    affordable_output,
    prompt_bound,
)
from agentstack_core.records import Attempt as TracedAttempt
from agentstack_core.records import ToolUse, TraceRecord
from agentstack_core.spec import AgentSpec, ModelRef, StackSpec, WhilePending
from agentstack_core.state import TRACE_MAXLEN, AgentContext, xadd_op
from agentstack_core.store import StackStore
from agentstack_runner import metrics
from agentstack_runner.actions import Action, CallTool, Reply, ReplyError, parse_reply
from agentstack_runner.effects import Effects, plan_effects
from agentstack_runner.llm.base import ChatMessage, ChatRequest, LLMError
from agentstack_runner.llm.router import Attempt, ExhaustedError, ProviderSource, Router
from agentstack_runner.prompts import (
    context_document,
    render_context,
    render_tool_results,
    summary,
    system_prompt,
)
from agentstack_runner.tools import (
    MAX_CALLS_PER_ROUND,
    MAX_TOOL_ROUNDS,
    UNAVAILABLE,
    Offer,
    Toolbox,
)

PAUSED_FOR_APPROVAL = "AwaitingApproval"
"""The reason of a step not taken: its agent waits for a decision (``PauseAgent``)."""
REPAIR_ECHO_CHARS = 2_000
TRACE_TEXT_CHARS = 500
MIN_OUTPUT_TOKENS = 32
"""A call the dollar budget lets answer with fewer tokens is not made: its reply could
not hold a valid answer, so it would spend money on a certain failure."""


@dataclass(frozen=True)
class StepRecord:
    """What a committed step leaves behind (also the resumption record)."""

    agent: str
    role: str
    outcome: str
    """``Succeeded`` or ``Failed``."""
    reason: str
    message: str = ""
    model: str = ""
    tokens: int = 0
    progressed: bool = False
    tool_problems: tuple[str, ...] = ()
    """Tool servers the agent could not use (unreachable, unreadable Secret), and why."""
    approvals: int = 0
    """Approval records the step asked for or moved on (the operator mirrors them)."""
    cost: int = 0
    """Nano-dollars of the step's priced LLM calls."""
    unpriced: int = 0
    """The step's LLM calls of models without a price."""
    cost_needed: int = 0
    """Nano-dollars the call the dollar budget refused needed at the least (0: none)."""

    @property
    def failed(self) -> bool:
        return self.outcome != "Succeeded"


@dataclass(frozen=True)
class StepInput:
    store: StackStore
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


class _BudgetSpentError(Exception):
    """The step's calls so far spent what was left of a budget."""

    def __init__(self, budget: str = "token", needed: int = 0) -> None:
        super().__init__(f"the {budget} budget is spent")
        self.budget = budget
        self.needed = needed
        """Nano-dollars the refused call needed at the least (the dollar budget)."""


@dataclass
class _Bill:
    """What a step's calls cost so far."""

    cost: int = 0
    unpriced: int = 0

    def charge(self, step: StepInput, model: ModelRef, prompt: int, completion: int) -> None:
        """Add one answered call (and count it in the runner's cost metrics)."""
        price = step.prices.price(model)
        label = (model.provider, metrics.model_label(model.name))
        if price is None:
            self.unpriced += 1
            metrics.LLM_UNPRICED.labels(*label).inc()
            return
        cost = price.cost(prompt, completion)
        self.cost += cost
        metrics.LLM_COST.labels(*label).inc(cost / NANOS_PER_USD)


def _affordable(step: StepInput, request: ChatRequest, bill: _Bill) -> ChatRequest:
    """``request`` answering with at most what the dollar budget leaves room for.

    Every model of the agent's chain may be the one that answers, so the most expensive
    bounds the call. :class:`_BudgetSpentError` if fewer than :data:`MIN_OUTPUT_TOKENS`
    fit; :class:`~agentstack_core.pricing.UnpricedError` if a model has no price.
    """
    if step.cost_left is None:
        return request
    prices = [(model, step.prices.price(model)) for model in step.agent.models]
    prompt = prompt_bound(request.messages)
    left = step.cost_left - bill.cost
    fits = affordable_output(prices, prompt, left, request.max_tokens)
    if fits < MIN_OUTPUT_TOKENS:
        needed = max(p.cost(prompt, MIN_OUTPUT_TOKENS) for _m, p in prices if p is not None)
        raise _BudgetSpentError("dollar", needed)
    return replace(request, max_tokens=fits)


def _left(step: StepInput, spent: int) -> int | None:
    return None if step.tokens_left is None else step.tokens_left - spent


def _follow_up(request: ChatRequest, said: str, answer: str, *, left: int | None) -> ChatRequest:
    """``request`` continued: the model's last reply, then ``answer`` (a repair request
    or tool results), for the next call — answering with at most ``left`` tokens (what
    the budget has left; ``None``: no budget). :class:`_BudgetSpentError` if nothing is."""
    if left is not None and left <= 0:
        raise _BudgetSpentError
    return ChatRequest(
        model="",
        messages=[
            *request.messages,
            {"role": "assistant", "content": said},
            {"role": "user", "content": answer},
        ],
        max_tokens=request.max_tokens if left is None else min(request.max_tokens, left),
        temperature=request.temperature,
        timeout=request.timeout,
        headers=request.headers,
    )


async def run_step(
    step: StepInput, router: Router, providers: ProviderSource
) -> tuple[StepRecord, AgentContext | None]:
    """Run one step; returns its record and the context of ``step.then``."""
    started = time.monotonic()
    agent, spec, store = step.agent, step.spec, step.store
    context = step.context if step.context is not None else await store.context(agent.name)
    toolbox = step.toolbox
    offer = await toolbox.offer() if toolbox is not None else Offer()
    told: list[dict[str, Any]] = []
    settled: list[Approval] = []
    uses: list[ToolUse] = []
    if toolbox is not None and toolbox.needs_approvals:
        told, settled, uses = await toolbox.settle(
            store.client, store.stack, token=step.token, tick=step.tick_id, now=time.time()
        )
    document = context_document(
        spec,
        agent,
        context,
        stack=str(store.stack),
        tick_id=step.tick_id,
        tools=[tool.for_prompt() for tool in offer.tools],
        approvals=told,
    )
    messages: list[ChatMessage] = [
        {"role": "system", "content": system_prompt(agent)},
        {"role": "user", "content": render_context(document)},
    ]
    request = ChatRequest(
        model="",
        messages=messages,
        max_tokens=step.max_output_tokens,
        temperature=spec.temperature,
        timeout=spec.request_timeout_seconds,
        headers={"X-Agentstack-Agent": agent.name, "X-Agentstack-Tick": step.tick_id},
    )
    attempts: list[Attempt] = []
    bill = _Bill()
    needed = 0
    prompt_tokens = completion_tokens = 0
    reply: Reply | None = None
    model = ""
    reason, error = "Succeeded", ""
    actions: list[Action] = []
    refused: list[str] = []
    rounds = 0
    if spec.while_pending is WhilePending.PAUSE_AGENT and any(t["state"] == PENDING for t in told):
        reason = PAUSED_FOR_APPROVAL  # the agent sits this step out; its inbox waits
    try:
        while reason == "Succeeded":
            answer: Reply | None = None
            for attempt in range(2):  # the answer, and one repair
                request = _affordable(step, request, bill)
                routed = await router.complete(
                    providers, agent.models, request, deadline=step.deadline
                )
                attempts.extend(routed.attempts)
                model = str(routed.model)
                used = routed.completion
                prompt_tokens += used.prompt_tokens
                completion_tokens += used.completion_tokens
                bill.charge(step, routed.model, used.prompt_tokens, used.completion_tokens)
                try:
                    answer = parse_reply(routed.completion.content)
                    break
                except ReplyError as exc:
                    error = str(exc)
                    if attempt == 1:
                        reason = "InvalidOutput"
                        break
                    request = _follow_up(
                        request,
                        routed.completion.content[:REPAIR_ECHO_CHARS],
                        f"That reply was rejected: {error}. Answer again with only the JSON "
                        "object described in the instructions.",
                        left=_left(step, prompt_tokens + completion_tokens),
                    )
            if answer is None:
                break
            reply = answer
            calls = [a for a in answer.actions if isinstance(a, CallTool)]
            actions.extend(a for a in answer.actions if not isinstance(a, CallTool))
            if not calls:
                break
            if toolbox is None or rounds == MAX_TOOL_ROUNDS:
                why = "no tool rounds left" if toolbox else "no tools are offered to this agent"
                refused.extend(f"call_tool {c.tool}: {why}" for c in calls)
                break
            rounds += 1
            extra = calls[MAX_CALLS_PER_ROUND:]
            refused.extend(f"call_tool {c.tool}: too many calls in one round" for c in extra)
            results = [await toolbox.call(c.tool, c.arguments) for c in calls[:MAX_CALLS_PER_ROUND]]
            uses.extend(result.use for result in results)
            request = _follow_up(
                request,
                routed.completion.content[:REPAIR_ECHO_CHARS],
                render_tool_results([result.for_prompt() for result in results]),
                left=_left(step, prompt_tokens + completion_tokens),
            )
    except _BudgetSpentError as exc:
        needed = exc.needed
        if reply is None:  # the first call, or a repair, was due: no valid answer
            reason = "BudgetExceeded"
            error = f"the {exc.budget} budget has too little left for a call of {agent.name}"
        else:  # tool results came back, but no call may read them
            refused.append(f"tool results not read: the {exc.budget} budget is spent")
    except UnpricedError as exc:
        reason, error = "UnpricedModel", f"{exc}: a dollar budget cannot be kept"
    except ExhaustedError as exc:
        attempts.extend(exc.attempts)
        reason, error = exc.reason, str(exc)
    except LLMError as exc:
        reason, error = exc.reason, str(exc)
    if reply is not None:
        reply = Reply(thought=reply.thought, actions=actions)
    tokens = prompt_tokens + completion_tokens

    effects = (
        plan_effects(
            keys=store.keys,
            agent=agent.name,
            team=tuple(member.name for member in spec.agents),
            tick_id=step.tick_id,
            reply=reply,
            context=context,
        )
        if reply is not None and reason == "Succeeded"
        else Effects()
    )
    record = StepRecord(
        agent=agent.name,
        role=agent.role,
        outcome="Succeeded" if reason in ("Succeeded", PAUSED_FOR_APPROVAL) else "Failed",
        reason=reason,
        message=error[:TRACE_TEXT_CHARS]
        if reason not in ("Succeeded", PAUSED_FOR_APPROVAL)
        else "",
        model=model,
        tokens=tokens,
        progressed=effects.progressed,
        approvals=len(settled) + len(toolbox.requested if toolbox is not None else []),
        tool_problems=(
            *offer.problems,
            *(f"{u.tool}: {u.outcome}: {u.error}" for u in uses if u.outcome in UNAVAILABLE),
        ),
        cost=bill.cost,
        unpriced=bill.unpriced,
        cost_needed=needed,
    )
    trace = TraceRecord(
        tick_id=step.tick_id,
        agent=agent.name,
        role=agent.role,
        outcome=record.outcome,
        reason=reason,
        model=model,
        fallback=bool(attempts) and str(attempts[0].model) != model,
        attempts=tuple(
            TracedAttempt(model=str(a.model), outcome=a.outcome, seconds=round(a.seconds, 3))
            for a in attempts
        ),
        prompt=summary(document),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_ms=round((time.monotonic() - started) * 1000),
        thought=(reply.thought if reply else "")[:TRACE_TEXT_CHARS],
        actions=tuple(effects.applied),
        refused=tuple([*refused, *effects.refused]),
        tools=tuple(uses),
        error=record.message,
        at=time.time(),
        cost=bill.cost,
        unpriced=bill.unpriced,
    )
    requested = toolbox.requested if toolbox is not None else []
    ops = [
        *effects.ops,
        *(("HSET", store.keys.approvals, [a.id, a.encode()]) for a in settled),
        *(("HSETNX", store.keys.approvals, [a.id, a.encode()]) for a in requested),
        xadd_op(store.keys.trace, trace, TRACE_MAXLEN),
    ]
    following = await store.commit_step(
        token=step.token,
        tick_id=step.tick_id,
        agent=agent.name,
        record=asdict(record),
        ops=ops,
        then=step.then,
    )
    metrics.STEP_DURATION.labels(metrics.role_label(agent.role), record.outcome).observe(
        time.monotonic() - started
    )
    return record, following
