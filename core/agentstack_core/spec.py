"""The ``AgentStack`` spec as every process sees it, parsed from the resource's ``spec``.

The CRD's schema rejects malformed manifests at admission; this module checks what a
schema cannot (agent names that collide, a message addressed to nobody, a fallback
that repeats the primary) and turns the manifest into typed values with defaults
filled in. The operator calls :func:`parse_spec` to report problems as a condition
before it dispatches anything; the runner calls it again on the spec the operator
published to Redis, and the read API to summarise a stack, so all agree on what a
field means.

Every default lives once, as the default of a dataclass field below; the CRD's
``default:`` values must equal them (a unit test compares the two).

Field names follow the CRD (camelCase in the manifest, snake_case here).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from agentstack_core.cron import CronError, CronExpression
from agentstack_core.evals import Eval, parse_evals
from agentstack_core.matching import Condition, ConditionError, LabelSelector, label_selector

DEFAULT_TEAM = ("planner", "builder", "reviewer", "communicator")
"""The built-in roles, in the order they act within a tick."""

JUDGE_ROLE = "judge"
"""The role of a finite goal's judge: a step the engine runs itself, never a member."""
CONSOLIDATOR_ROLE = "consolidator"
"""The role of a consolidation's step (a sleep tick), run by the engine itself."""

PROVIDERS = ("groq", "openai", "scripted")

DEFAULT_MODELS = {
    "groq": "llama-3.3-70b-versatile",
    "openai": "gpt-4o-mini",
    "scripted": "scripted-v1",
}


class ExecutionState(StrEnum):
    RUNNING = "Running"
    PAUSED = "Paused"
    STOPPED = "Stopped"


class Priority(StrEnum):
    HIGH = "High"
    NORMAL = "Normal"
    LOW = "Low"


class Executor(StrEnum):
    """Where ticks run: the shared runner pool, or one Kubernetes Job per tick."""

    POOL = "pool"
    JOB = "job"


class MissedTickPolicy(StrEnum):
    """What resuming a paused stack does about the ticks it missed meanwhile."""

    SKIP = "Skip"
    RUN_ONCE = "RunOnce"


class StepFailurePolicy(StrEnum):
    """What a failed agent step (no valid output after repair, LLM exhausted) does."""

    CONTINUE = "Continue"
    FAIL_TICK = "FailTick"


class WhilePending(StrEnum):
    """What an agent does while a tool call it asked for waits for a person."""

    CONTINUE = "Continue"
    PAUSE_AGENT = "PauseAgent"


class SpecError(ValueError):
    """The spec is well-formed YAML but makes no sense; ``problems`` says why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ModelRef:
    provider: str
    name: str

    def __str__(self) -> str:
        return f"{self.provider}:{self.name}"


@dataclass(frozen=True)
class SecretKeyRef:
    """A key of a Kubernetes Secret in the stack's namespace (never the value itself)."""

    name: str
    key: str


@dataclass(frozen=True)
class ProviderConfig:
    secret_ref: SecretKeyRef | None = None
    base_url: str | None = None


@dataclass(frozen=True)
class AgentSpec:
    name: str
    role: str
    models: tuple[ModelRef, ...]
    """Primary model first, then fallbacks in the order to try them."""
    system_prompt: str | None = None


@dataclass(frozen=True)
class Budget:
    max_tokens: int | None = None
    max_ticks: int | None = None
    max_cost_usd: float | None = None
    """Dollars the stack's LLM calls may cost in total (priced by the runners' table)."""


@dataclass(frozen=True)
class ToolHeader:
    """An HTTP header sent to a tool server, its value a key of a Secret in the stack's
    namespace (the stack author's own: it goes only to the server the author named)."""

    name: str
    secret_ref: SecretKeyRef


class ToolProtocol(StrEnum):
    """How agents reach a tool server (``spec.tools.servers[].protocol``)."""

    MCP = "MCP"
    """An MCP server (Streamable HTTP): its tools are the tools."""
    A2A = "A2A"
    """An A2A agent (another stack, or any agent that speaks A2A): each skill of its
    agent card is a tool that sends it a message and answers with what it replied."""


@dataclass(frozen=True)
class ToolServer:
    """A server whose allow-listed tools agents may call: an MCP server, or an A2A
    agent whose skills are the tools (:class:`ToolProtocol`)."""

    name: str
    url: str
    """MCP: the Streamable HTTP endpoint. A2A: the agent's URL, below which its card is
    (``<url>/.well-known/agent-card.json``)."""
    allowed_tools: tuple[str, ...]
    """The only tools offered to agents (A2A: skill ids); any other is never called."""
    protocol: ToolProtocol = ToolProtocol.MCP
    agents: tuple[str, ...] = ()
    """The agents that may call them (empty: every agent)."""
    headers: tuple[ToolHeader, ...] = ()
    timeout_seconds: float = 10.0
    """The most one call (connection included) may take; then it fails, the step goes on."""
    require_approval: bool = False
    """Every call to this server's tools waits for a person's approval first."""
    approval_tools: tuple[str, ...] = ()
    """Tools whose calls wait for approval even when the server's others do not."""

    def needs_approval(self, tool: str) -> bool:
        return self.require_approval or tool in self.approval_tools

    @property
    def asks_approval(self) -> bool:
        """Whether any call to this server may wait for a person."""
        return self.require_approval or bool(self.approval_tools)

    def serves(self, agent: str) -> bool:
        return not self.agents or agent in self.agents


@dataclass(frozen=True)
class InputPolicy:
    """What people and systems may send a stack (``spec.inputs``): inputs are bounded
    per stack, so a flood fills neither Redis nor the runners' queue."""

    max_per_minute: int = 30
    """Inputs accepted per minute (fixed one-minute windows); more are refused (429)."""
    max_bytes: int = 4096
    """Largest input content in UTF-8 bytes; larger is refused (413)."""
    wake: bool = True
    """Whether an input gets the stack an extra tick at once (else it waits for the
    next scheduled tick)."""


class WebhookFormat(StrEnum):
    """How a webhook's caller signs its deliveries."""

    GITHUB = "GitHub"
    """``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``, delivery id in
    ``X-GitHub-Delivery`` (GitHub signs no timestamp)."""
    STANDARD = "StandardWebhooks"
    """The Standard Webhooks scheme: ``webhook-id``, ``webhook-timestamp`` and
    ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``."""


@dataclass(frozen=True)
class Webhook:
    """An endpoint that turns signed deliveries into inputs (``spec.webhooks``), for
    callers without a Kubernetes identity: GitHub, a CI system, a SaaS."""

    name: str
    secret_ref: SecretKeyRef
    """The key deliveries are signed with."""
    format: WebhookFormat = WebhookFormat.GITHUB
    agent: str | None = None
    """The agent the inputs go to (``None``: the first)."""
    max_body_bytes: int = 65_536
    """A larger delivery is refused (413) unread."""
    tolerance_seconds: int = 300
    """How far a signed timestamp may be from now (``StandardWebhooks``)."""


FORBIDDEN_TRIGGER_KINDS = frozenset({("", "Secret")})
"""(API group, kind) pairs no trigger may watch: a trigger's input carries fields of the
object it saw, and a Secret's would be its values."""


@dataclass(frozen=True)
class EventMatch:
    """Which Kubernetes Events of the stack's namespace fire a trigger (every field
    set must match; an empty match takes every Event)."""

    reasons: tuple[str, ...] = ()
    """The Event's ``reason`` is one of these (empty: any)."""
    involved_kind: str | None = None
    """The kind of the Event's ``involvedObject`` (``Pod``)."""
    type: str | None = None
    """``Normal`` or ``Warning`` (``None``: either)."""


@dataclass(frozen=True)
class ObjectMatch:
    """Which objects of the stack's namespace fire a trigger: those of a kind, within a
    label selector, whose state satisfies a CEL condition."""

    api_version: str
    """``v1``, ``apps/v1``: the group and version, as in a manifest."""
    kind: str
    selector: LabelSelector = field(default_factory=LabelSelector)
    """Which objects of the kind (empty: all), as a Deployment's selector says it."""
    condition: str = ""
    """A CEL expression over ``object`` that is true when the trigger fires (empty:
    every change of a matching object fires it)."""

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]


@dataclass(frozen=True)
class Trigger:
    """Send an agent an input when something happens in the stack's namespace
    (``spec.triggers``): one Event or object state, once per object and window."""

    name: str
    service_account_name: str
    """The ServiceAccount of the stack's namespace whose rights the trigger uses: it
    watches only what that account may list and watch (a stack never gains the
    operator's rights)."""
    event: EventMatch | None = None
    object: ObjectMatch | None = None
    agent: str | None = None
    """The agent the inputs go to (``None``: the first)."""
    window_seconds: int = 300
    """One input per object per window: an object that keeps matching (a crash-looping
    pod, an Event counted again) sends again only in the next window."""

    @property
    def watched(self) -> tuple[str, str, str]:
        """(API group, version, kind) of what the trigger watches."""
        if self.object is not None:
            group, _, version = self.object.api_version.rpartition("/")
            return group, version, self.object.kind
        return "", "v1", "Event"


@dataclass(frozen=True)
class Schedule:
    """Tick when a cron expression fires (``spec.schedule``), instead of every
    ``tickIntervalSeconds`` (:mod:`agentstack_core.cron` evaluates it)."""

    cron: str
    """Five fields (minute hour day-of-month month day-of-week), or six, seconds first."""
    time_zone: str = "UTC"
    """The IANA zone the expression is read in (``Europe/Berlin``)."""
    starting_deadline_seconds: float | None = None
    """How late a fire may still start — after an operator outage, or on resuming with
    ``missedTickPolicy: RunOnce`` — before it is skipped with a reason; ``None``: no
    limit (the latest fire missed runs)."""
    jitter_seconds: float = 0.0
    """Every fire moves later by a delay within this window, fixed per stack (its uid),
    so stacks on one minute do not all start in one instant."""


@dataclass(frozen=True)
class IdleBackoff:
    """Stretch the interval while ticks make no progress (``spec.idleBackoff``)."""

    max_interval_seconds: float
    after_idle_ticks: int = 3
    factor: float = 2.0


EMBEDDING_PROVIDERS = ("openai", "groq")
"""Providers whose SDK has an embeddings endpoint (the offline ``scripted`` has none)."""


@dataclass(frozen=True)
class EmbeddingsPolicy:
    """Where the vectors of semantic recall come from (``spec.memory.embeddings``): a
    provider's embeddings endpoint, reached with the stack's credentials and base URL
    for that provider, as chat is."""

    provider: str
    model: str
    dimensions: int | None = None
    """Ask the model for vectors this long (models that take it, e.g. OpenAI's
    ``text-embedding-3-*``); ``None``: the model's own length."""


@dataclass(frozen=True)
class MemoryPolicy:
    """How much of the stack's state one agent's prompt carries (``spec.memory``).

    The state an agent is shown is its *working set*: open work first (the plan's open
    tasks, artifacts waiting for a review or a revision, its unread inbox), then the
    newest of the rest (its memory, the recent feed, finished artifacts), until the
    budget is spent; what does not fit is counted, never silently dropped, and stays
    in the stack's archive. So a prompt — and a tick's cost — stays flat however long
    the stack lives.
    """

    context_tokens: int = 4000
    """The most the state in one agent's prompt may take, in tokens (estimated at four
    characters a token)."""
    long_term_tokens: int = 1000
    """The bound of the stack's long-term memory: what consolidation folds finished
    work into, and every agent sees (re-consolidated before it would exceed it)."""
    consolidate_every_ticks: int = 25
    """A consolidation ("sleep") tick after every this many ticks (0: never)."""
    embeddings: EmbeddingsPolicy | None = None
    """Embeddings for semantic recall (``None``: recall ranks lexically only)."""


class ConfirmBy(StrEnum):
    """Who confirms that a finite goal is met once the team declares it."""

    REVIEWER = "Reviewer"
    """The stack's reviewer, in its next step."""
    JUDGE = "Judge"
    """One call of the reviewer's model with the stated criterion."""


@dataclass(frozen=True)
class Completion:
    """A finite goal (``spec.completion``): when it is met the stack completes — no
    further ticks, memory kept. Without it the goal is ongoing and never completes."""

    confirm_by: ConfirmBy = ConfirmBy.REVIEWER
    criterion: str = ""
    """What "met" means, for whoever confirms it (the judge needs one)."""
    max_ticks: int | None = None
    """The goal counts as met after this many ticks, declared or not."""


@dataclass(frozen=True)
class StackSpec:
    goal: str
    agents: tuple[AgentSpec, ...]
    execution_state: ExecutionState = ExecutionState.RUNNING
    tick_interval_seconds: float = 30.0
    """Seconds between ticks (ignored when :attr:`schedule` is set)."""
    schedule: Schedule | None = None
    """``None``: tick every ``tick_interval_seconds``."""
    tick_timeout_seconds: float = 120.0
    priority: Priority = Priority.NORMAL
    executor: Executor = Executor.POOL
    missed_tick_policy: MissedTickPolicy = MissedTickPolicy.SKIP
    idle_backoff: IdleBackoff | None = None
    providers: dict[str, ProviderConfig] = field(default_factory=dict)
    request_timeout_seconds: float = 30.0
    max_output_tokens: int = 1024
    temperature: float = 0.2
    step_failure_policy: StepFailurePolicy = StepFailurePolicy.CONTINUE
    budget: Budget = field(default_factory=Budget)
    inputs: InputPolicy = field(default_factory=InputPolicy)
    tool_servers: tuple[ToolServer, ...] = ()
    approval_timeout_seconds: float = 3600.0
    """A call waiting for approval longer than this expires (it never runs)."""
    while_pending: WhilePending = WhilePending.CONTINUE
    memory: MemoryPolicy = field(default_factory=MemoryPolicy)
    stalled_after_idle_ticks: int = 10
    """Idle ticks in a row (no agent changed anything) after which the stack is
    ``Stalled``."""
    completion: Completion | None = None
    """``None``: an ongoing goal (it never completes)."""
    webhooks: tuple[Webhook, ...] = ()
    triggers: tuple[Trigger, ...] = ()
    evals: tuple[Eval, ...] = ()
    """Scorers of what each work tick produced (:mod:`agentstack_core.evals`)."""

    @property
    def goal_id(self) -> str:
        """What the team works towards, as a short digest of the goal and, for a finite
        goal, its criterion: a goal met is met for this digest only, so a new goal (or
        a changed criterion) starts the stack again."""
        criterion = self.completion.criterion if self.completion else ""
        text = f"{self.goal}\0{criterion}".encode()
        return hashlib.sha256(text).hexdigest()[:16]

    @property
    def providers_used(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for agent in self.agents:
            for model in agent.models:
                seen.setdefault(model.provider)
        return tuple(seen)


def _model(raw: Any, where: str, problems: list[str]) -> ModelRef | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected an object with provider and name")
        return None
    provider = raw.get("provider", "scripted")
    if provider not in PROVIDERS:
        problems.append(f"{where}.provider: unknown provider {provider!r} (one of {PROVIDERS})")
        return None
    name = raw.get("name") or DEFAULT_MODELS[provider]
    if not isinstance(name, str):
        problems.append(f"{where}.name: expected a string")
        return None
    return ModelRef(provider, name)


def _models(primary: Any, fallbacks: Any, where: str, problems: list[str]) -> tuple[ModelRef, ...]:
    chain: list[ModelRef] = []
    first = _model(primary, f"{where}.model", problems)
    if first is not None:
        chain.append(first)
    for index, raw in enumerate(fallbacks or []):
        model = _model(raw, f"{where}.fallbackModels[{index}]", problems)
        if model is None:
            continue
        if model in chain:
            problems.append(f"{where}.fallbackModels[{index}]: {model} is already in the chain")
            continue
        chain.append(model)
    return tuple(chain)


def _agents(raw: dict[str, Any], problems: list[str]) -> tuple[AgentSpec, ...]:
    llm = raw.get("llm") or {}
    default_model = llm.get("model") or {"provider": "scripted"}
    default_fallbacks = llm.get("fallbackModels") or []
    declared = raw.get("agents") or [{"name": role, "role": role} for role in DEFAULT_TEAM]
    agents: list[AgentSpec] = []
    names: set[str] = set()
    for index, item in enumerate(declared):
        where = f"spec.agents[{index}]"
        name = item.get("name")
        role = item.get("role") or name
        if not name or not isinstance(name, str):
            problems.append(f"{where}.name: required")
            continue
        if name in names:
            problems.append(f"{where}.name: duplicate agent name {name!r}")
            continue
        names.add(name)
        prompt = item.get("systemPrompt")
        if role not in DEFAULT_TEAM and not prompt:
            problems.append(
                f"{where}: role {role!r} is not a built-in role "
                f"({', '.join(DEFAULT_TEAM)}), so it needs a systemPrompt"
            )
        uses_own_model = "model" in item
        models = _models(
            item["model"] if uses_own_model else default_model,
            item.get("fallbackModels") if uses_own_model else default_fallbacks,
            where if uses_own_model else "spec.llm",
            problems,
        )
        agents.append(AgentSpec(name=name, role=role, models=models, system_prompt=prompt))
    if not agents and not problems:
        problems.append("spec.agents: a stack needs at least one agent")
    return tuple(agents)


def _providers(raw: dict[str, Any], problems: list[str]) -> dict[str, ProviderConfig]:
    providers: dict[str, ProviderConfig] = {}
    for provider, config in ((raw.get("llm") or {}).get("providers") or {}).items():
        if provider not in PROVIDERS:
            problems.append(f"spec.llm.providers.{provider}: unknown provider")
            continue
        secret = (config or {}).get("secretRef")
        ref = None
        if secret is not None:
            if not secret.get("name") or not secret.get("key"):
                problems.append(f"spec.llm.providers.{provider}.secretRef: needs name and key")
            else:
                ref = SecretKeyRef(secret["name"], secret["key"])
        providers[provider] = ProviderConfig(secret_ref=ref, base_url=(config or {}).get("baseURL"))
    return providers


DEFAULTS = StackSpec(goal="", agents=())
"""A spec with every default: where code that reads a raw manifest finds them."""
_IDLE = IdleBackoff(max_interval_seconds=0.0)


def _optional_float(raw: Any) -> float | None:
    return None if raw is None else float(raw)


def _idle_backoff(raw: Any) -> IdleBackoff | None:
    if not raw:
        return None
    return IdleBackoff(
        max_interval_seconds=float(raw["maxIntervalSeconds"]),
        after_idle_ticks=int(raw.get("afterIdleTicks", _IDLE.after_idle_ticks)),
        factor=float(raw.get("factor", _IDLE.factor)),
    )


def _inputs(raw: Any) -> InputPolicy:
    if not raw:
        return InputPolicy()
    d = InputPolicy()
    return InputPolicy(
        max_per_minute=int(raw.get("maxPerMinute", d.max_per_minute)),
        max_bytes=int(raw.get("maxBytes", d.max_bytes)),
        wake=bool(raw.get("wake", d.wake)),
    )


_TOOL_SERVER = ToolServer(name="", url="", allowed_tools=())


def _tool_servers(
    raw: Any, agents: tuple[AgentSpec, ...], problems: list[str]
) -> tuple[ToolServer, ...]:
    servers: list[ToolServer] = []
    team = {agent.name for agent in agents}
    for index, item in enumerate((raw or {}).get("servers") or []):
        where = f"spec.tools.servers[{index}]"
        name, url = item.get("name"), item.get("url")
        if not name or not url:
            problems.append(f"{where}: needs a name and a url")
            continue
        if any(server.name == name for server in servers):
            problems.append(f"{where}.name: duplicate tool server {name!r}")
            continue
        unknown = [a for a in item.get("agents") or [] if a not in team]
        if unknown:
            problems.append(f"{where}.agents: not in the team: {', '.join(unknown)}")
        headers = []
        for h, header in enumerate(item.get("headers") or []):
            ref = (header or {}).get("secretKeyRef") or {}
            if not header.get("name") or not ref.get("name") or not ref.get("key"):
                problems.append(f"{where}.headers[{h}]: needs a name and a secretKeyRef")
                continue
            headers.append(ToolHeader(header["name"], SecretKeyRef(ref["name"], ref["key"])))
        servers.append(
            ToolServer(
                name=str(name),
                url=str(url),
                allowed_tools=tuple(item.get("allowedTools") or ()),
                protocol=ToolProtocol(item.get("protocol", _TOOL_SERVER.protocol)),
                agents=tuple(item.get("agents") or ()),
                headers=tuple(headers),
                timeout_seconds=float(item.get("timeoutSeconds", _TOOL_SERVER.timeout_seconds)),
                require_approval=bool(item.get("requireApproval", _TOOL_SERVER.require_approval)),
                approval_tools=tuple(item.get("requireApprovalFor") or ()),
            )
        )
    return tuple(servers)


def _memory(raw: Any, problems: list[str]) -> MemoryPolicy:
    if not raw:
        return MemoryPolicy()
    d = MemoryPolicy()
    return MemoryPolicy(
        context_tokens=int(raw.get("contextTokens", d.context_tokens)),
        long_term_tokens=int(raw.get("longTermTokens", d.long_term_tokens)),
        consolidate_every_ticks=int(raw.get("consolidateEveryTicks", d.consolidate_every_ticks)),
        embeddings=_embeddings(raw.get("embeddings"), problems),
    )


def _embeddings(raw: Any, problems: list[str]) -> EmbeddingsPolicy | None:
    if not raw:
        return None
    where = "spec.memory.embeddings"
    provider, model = raw.get("provider"), raw.get("model")
    if provider not in EMBEDDING_PROVIDERS:
        problems.append(f"{where}.provider: one of {', '.join(EMBEDDING_PROVIDERS)}")
        return None
    if not isinstance(model, str) or not model:
        problems.append(f"{where}.model: required")
        return None
    dimensions = raw.get("dimensions")
    return EmbeddingsPolicy(
        provider=provider,
        model=model,
        dimensions=None if dimensions is None else int(dimensions),
    )


_WEBHOOK = Webhook(name="", secret_ref=SecretKeyRef("", ""))


def _webhooks(raw: Any, agents: tuple[AgentSpec, ...], problems: list[str]) -> tuple[Webhook, ...]:
    hooks: list[Webhook] = []
    team = {agent.name for agent in agents}
    for index, item in enumerate(raw or []):
        where = f"spec.webhooks[{index}]"
        ref = item.get("secretRef") or {}
        name = item.get("name")
        if not name or not ref.get("name") or not ref.get("key"):
            problems.append(f"{where}: needs a name and a secretRef with name and key")
            continue
        if any(hook.name == name for hook in hooks):
            problems.append(f"{where}.name: duplicate webhook {name!r}")
            continue
        agent = item.get("agent")
        if agent is not None and agent not in team:
            problems.append(f"{where}.agent: {agent!r} is not in the team")
        hooks.append(
            Webhook(
                name=str(name),
                secret_ref=SecretKeyRef(ref["name"], ref["key"]),
                format=WebhookFormat(item.get("format", _WEBHOOK.format)),
                agent=agent,
                max_body_bytes=int(item.get("maxBodyBytes", _WEBHOOK.max_body_bytes)),
                tolerance_seconds=int(item.get("toleranceSeconds", _WEBHOOK.tolerance_seconds)),
            )
        )
    return tuple(hooks)


_TRIGGER = Trigger(name="", service_account_name="")


def _trigger(item: dict[str, Any], where: str, problems: list[str]) -> Trigger | None:
    event, found = item.get("event"), item.get("object")
    if (event is None) == (found is None):
        problems.append(f"{where}: needs exactly one of event and object")
        return None
    match: ObjectMatch | None = None
    if found is not None:
        match = ObjectMatch(
            api_version=str(found.get("apiVersion") or ""),
            kind=str(found.get("kind") or ""),
            selector=label_selector(found.get("selector")),
            condition=str(found.get("condition") or ""),
        )
        if not match.api_version or not match.kind:
            problems.append(f"{where}.object: needs apiVersion and kind")
            return None
        if (match.group, match.kind) in FORBIDDEN_TRIGGER_KINDS:
            problems.append(f"{where}.object: {match.kind} may not be watched by a trigger")
            return None
        try:
            Condition(match.condition)
        except ConditionError as exc:
            problems.append(f"{where}.object.condition: {exc}")
            return None
    return Trigger(
        name=str(item.get("name") or ""),
        service_account_name=str(item.get("serviceAccountName") or ""),
        event=None
        if event is None
        else EventMatch(
            reasons=tuple(str(r) for r in event.get("reasons") or ()),
            involved_kind=event.get("involvedObjectKind"),
            type=event.get("type"),
        ),
        object=match,
        agent=item.get("agent"),
        window_seconds=int(item.get("windowSeconds", _TRIGGER.window_seconds)),
    )


def _triggers(raw: Any, agents: tuple[AgentSpec, ...], problems: list[str]) -> tuple[Trigger, ...]:
    triggers: list[Trigger] = []
    team = {agent.name for agent in agents}
    for index, item in enumerate(raw or []):
        where = f"spec.triggers[{index}]"
        trigger = _trigger(item, where, problems)
        if trigger is None:
            continue
        if not trigger.name or not trigger.service_account_name:
            problems.append(f"{where}: needs a name and a serviceAccountName")
        elif any(other.name == trigger.name for other in triggers):
            problems.append(f"{where}.name: duplicate trigger {trigger.name!r}")
        elif trigger.agent is not None and trigger.agent not in team:
            problems.append(f"{where}.agent: {trigger.agent!r} is not in the team")
        else:
            triggers.append(trigger)
    return tuple(triggers)


def _schedule(raw: dict[str, Any], problems: list[str]) -> Schedule | None:
    found = raw.get("schedule")
    if found is None:
        return None
    if "tickIntervalSeconds" in raw:
        problems.append("spec: set either tickIntervalSeconds or schedule, not both")
    d = Schedule(cron="")
    deadline = found.get("startingDeadlineSeconds")
    schedule = Schedule(
        cron=str(found.get("cron") or ""),
        time_zone=str(found.get("timeZone") or d.time_zone),
        starting_deadline_seconds=None if deadline is None else float(deadline),
        jitter_seconds=float(found.get("jitterSeconds", d.jitter_seconds)),
    )
    try:
        CronExpression(schedule.cron, schedule.time_zone)
    except CronError as exc:
        problems.append(f"spec.schedule: {exc}")
    return schedule


def _completion(raw: Any, problems: list[str]) -> Completion | None:
    if raw is None:
        return None
    d = Completion()
    completion = Completion(
        confirm_by=ConfirmBy(raw.get("confirmBy", d.confirm_by)),
        criterion=str(raw.get("criterion", d.criterion)),
        max_ticks=raw.get("maxTicks"),
    )
    if completion.confirm_by is ConfirmBy.JUDGE and not completion.criterion.strip():
        problems.append("spec.completion.criterion: a Judge needs a criterion to judge by")
    return completion


def execution_state_of(raw: dict[str, Any]) -> ExecutionState:
    """The state a manifest asks for, even when the rest of it does not parse."""
    try:
        return ExecutionState(raw.get("executionState", DEFAULTS.execution_state))
    except ValueError:
        return DEFAULTS.execution_state


def parse_spec(raw: dict[str, Any]) -> StackSpec:
    """Turn a manifest's ``spec`` into a :class:`StackSpec`, or raise :class:`SpecError`."""
    problems: list[str] = []
    goal = raw.get("goal")
    if not isinstance(goal, str) or not goal.strip():
        problems.append("spec.goal: required and not blank")
    agents = _agents(raw, problems)
    providers = _providers(raw, problems)
    llm = raw.get("llm") or {}
    budget = raw.get("budget") or {}
    d = DEFAULTS
    try:
        spec = StackSpec(
            goal=str(goal or ""),
            agents=agents,
            execution_state=ExecutionState(raw.get("executionState", d.execution_state)),
            tick_interval_seconds=float(raw.get("tickIntervalSeconds", d.tick_interval_seconds)),
            schedule=_schedule(raw, problems),
            tick_timeout_seconds=float(raw.get("tickTimeoutSeconds", d.tick_timeout_seconds)),
            priority=Priority(raw.get("priority", d.priority)),
            executor=Executor(raw.get("executor", d.executor)),
            missed_tick_policy=MissedTickPolicy(raw.get("missedTickPolicy", d.missed_tick_policy)),
            idle_backoff=_idle_backoff(raw.get("idleBackoff")),
            providers=providers,
            request_timeout_seconds=float(
                llm.get("requestTimeoutSeconds", d.request_timeout_seconds)
            ),
            max_output_tokens=int(llm.get("maxOutputTokens", d.max_output_tokens)),
            temperature=float(llm.get("temperature", d.temperature)),
            step_failure_policy=StepFailurePolicy(llm.get("onStepFailure", d.step_failure_policy)),
            budget=Budget(
                max_tokens=budget.get("maxTokens"),
                max_ticks=budget.get("maxTicks"),
                max_cost_usd=_optional_float(budget.get("maxCostUSD")),
            ),
            inputs=_inputs(raw.get("inputs")),
            tool_servers=_tool_servers(raw.get("tools"), agents, problems),
            while_pending=WhilePending(
                (raw.get("tools") or {}).get("whilePending", d.while_pending)
            ),
            approval_timeout_seconds=float(
                (raw.get("tools") or {}).get("approvalTimeoutSeconds", d.approval_timeout_seconds)
            ),
            memory=_memory(raw.get("memory"), problems),
            stalled_after_idle_ticks=int(
                raw.get("stalledAfterIdleTicks", d.stalled_after_idle_ticks)
            ),
            completion=_completion(raw.get("completion"), problems),
            webhooks=_webhooks(raw.get("webhooks"), agents, problems),
            triggers=_triggers(raw.get("triggers"), agents, problems),
            evals=parse_evals(raw.get("evals"), problems),
        )
    except (TypeError, ValueError, KeyError) as exc:
        problems.append(f"spec: {exc}")
    if problems:
        raise SpecError(problems)
    return spec
