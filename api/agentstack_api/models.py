"""Response models of the API: they *are* the published OpenAPI schema.

Every endpoint declares its model, so ``/openapi.json`` describes exactly what is
served, and schema-driven fuzzing (schemathesis) can check responses against it.
Field names are camelCase, like the Kubernetes objects they summarise.

A stored record (:mod:`agentstack_core.records`, :mod:`agentstack_core.approvals`)
becomes its model by one rule, :func:`from_record`, never by a hand mapping per kind:
the model lists what is shown, the record's field names say where it comes from.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentstack_core.evals import decode_scores
from agentstack_core.pricing import known_usd

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class ErrorBody(_Model):
    status: int = Field(description="The HTTP status code.")
    code: str = Field(description="CamelCase error code (NotFound, InvalidParameter…).")
    message: str = Field(description="What went wrong, for people.")


class ErrorResponse(_Model):
    error: ErrorBody


class StackSummary(_Model):
    namespace: str
    name: str
    executionState: str = Field(description="Running, Paused or Stopped (requested).")
    phase: str | None = Field(description="One-word summary written by the operator.")
    ready: str = Field(description="Status of the Ready condition: True, False or Unknown.")
    stalled: bool = Field(
        description="Whether the Stalled condition is True: its last ticks changed nothing."
    )
    ticks: int = Field(description="Ticks executed so far.")
    tokensUsed: int = Field(description="LLM tokens the stack's ticks used so far.")
    costUSD: float | None = Field(
        description="US dollars the stack's LLM calls cost so far; null while unknown (a "
        "call of a model without a price) or not yet counted."
    )
    lastTickTime: str | None
    lastTickResult: str | None


class StackList(_Model):
    items: list[StackSummary]
    nextCursor: str | None = Field(description="Pass as `cursor` for the next page.")


class AgentSpecSummary(_Model):
    name: str
    role: str
    models: list[str] = Field(description="provider:model, primary first, then fallbacks.")
    customPrompt: bool = Field(description="Whether the agent overrides its role's prompt.")


class ProviderSummary(_Model):
    name: str
    usesSecret: bool = Field(description="Whether a Secret reference supplies the key.")
    baseURL: str | None


class ScheduleSummary(_Model):
    cron: str
    timeZone: str
    startingDeadlineSeconds: float | None
    jitterSeconds: float


class SpecSummary(_Model):
    goal: str
    executionState: str
    tickIntervalSeconds: float | None = Field(
        description="Seconds between ticks; null for a stack on a schedule."
    )
    schedule: ScheduleSummary | None = Field(
        default=None, description="The calendar a scheduled stack ticks on (null: an interval)."
    )
    tickTimeoutSeconds: float
    priority: str
    executor: str
    missedTickPolicy: str
    budget: dict[str, float] = Field(description="maxTokens, maxTicks, maxCostUSD as set.")
    agents: list[AgentSpecSummary]
    providers: list[ProviderSummary]


class StackDetail(StackSummary):
    uid: str
    generation: int
    spec: SpecSummary
    status: dict[str, Any] = Field(description="The stack's status as the operator wrote it.")


class AgentInfo(AgentSpecSummary):
    memoryKeys: int = Field(description="Keys in the agent's working memory.")
    inboxMessages: int = Field(description="Messages kept in the agent's inbox stream.")


class AgentList(_Model):
    items: list[AgentInfo]


class TickEntry(_Model):
    id: str = Field(description="Stream id of the entry (the pagination cursor).")
    tickId: str
    outcome: str
    reason: str
    message: str
    startedAt: float | None
    finishedAt: float | None
    durationMs: int | None
    tokens: int
    costUSD: float | None = Field(
        description="US dollars of the tick's LLM calls; null when a model had no price."
    )
    steps: int
    progressed: bool
    idle: str = Field(
        description="Why a tick that succeeded made no progress: NothingToDo, ActionsRefused "
        "or PlanFull (empty when it progressed)."
    )
    runner: str
    kind: str = Field(description="Work (the team's steps) or Sleep (a consolidation).")
    scores: dict[str, float] = Field(
        default_factory=dict, description="The evals' scores of the tick (spec.evals), 0 to 1."
    )

    @field_validator("scores", mode="before")
    @classmethod
    def _decoded(cls, value: Any) -> Any:
        """The history entry keeps them as JSON text."""
        return decode_scores(value) if isinstance(value, str) else value


class TickPage(_Model):
    items: list[TickEntry]
    nextCursor: str | None


class Attempt(_Model):
    model: str
    outcome: str
    seconds: float


class ToolUse(_Model):
    tool: str = Field(description="server/tool.")
    outcome: str = Field(
        description="ok, error, timeout, unreachable, invalid (never sent), refused (not "
        "offered) or awaiting-approval (not made: it waits for a person)."
    )
    seconds: float
    chars: int = Field(description="Characters of the result the agent was shown.")
    error: str


class RecallUse(_Model):
    query: str
    hits: list[str] = Field(description="Archive ids of the items shown, best first.")
    mode: str = Field(description="lexical (BM25) or semantic (fused with embeddings).")


class TraceEntry(_Model):
    id: str
    tickId: str
    agent: str
    role: str
    outcome: str
    reason: str
    model: str
    fallback: bool
    attempts: list[Attempt]
    prompt: str = Field(description="A one-line summary of what the agent was shown.")
    promptTokens: int
    completionTokens: int
    latencyMs: int
    thought: str
    actions: list[str]
    refused: list[str]
    error: str
    at: float | None
    tools: list[ToolUse] = Field(description="The step's tool calls, in order.")
    recalls: list[RecallUse] = Field(description="The step's recalls of the archive, in order.")
    costUSD: float | None = Field(
        description="US dollars of the step's LLM calls; null when a model had no price."
    )
    idle: str = Field(
        description="Why a step that succeeded changed no shared work: NothingToDo, "
        "ActionsRefused or PlanFull (empty when it did)."
    )


class TracePage(_Model):
    items: list[TraceEntry]
    nextCursor: str | None


class FeedEntry(_Model):
    id: str
    agent: str
    content: str
    tickId: str
    at: float | None


class FeedPage(_Model):
    items: list[FeedEntry]
    nextCursor: str | None


class Message(_Model):
    id: str
    sender: str = Field(alias="from")
    to: str
    content: str
    tickId: str
    at: float | None


class MessagePage(_Model):
    items: list[Message]
    nextCursor: str | None


class Memory(_Model):
    plan: list[dict[str, Any]] = Field(description="The shared plan's tasks.")
    agents: dict[str, dict[str, str]] = Field(description="Each agent's working memory.")
    usage: dict[str, int] = Field(
        description="Counters: tokens, ticks, cost (nano-dollars), unpriced (calls of models "
        "without a price)."
    )
    costUSD: float | None = Field(
        description="US dollars spent; null while some call's cost is unknown (no price)."
    )
    longTerm: dict[str, list[str]] = Field(
        description="The long-term memory consolidation keeps (decisions, facts, delivered, "
        "open_threads, lessons; newest first)."
    )
    consolidations: int = Field(description="Consolidations that wrote it so far.")


class Artifact(_Model):
    name: str
    status: str
    version: int
    author: str
    reviewer: str | None
    taskId: str | None
    feedback: str
    tickId: str
    updatedAt: float | None
    content: str


class ArtifactList(_Model):
    items: list[Artifact]


class ArchiveHit(_Model):
    id: str = Field(description="The item's id in the stack's archive stream.")
    kind: str = Field(description="task, artifact, input, message, post or note.")
    ref: str = Field(
        description="What it is within its kind: a task id, name@vN of an artifact "
        "version, #N of an input, a message's recipient."
    )
    agent: str = Field(description="Who wrote or sent it.")
    tickId: str
    at: float | None
    text: str
    score: float = Field(description="BM25 score: higher is a better match.")


class SearchResult(_Model):
    query: str
    terms: list[str] = Field(
        description="The query's words as the index reads them (empty: nothing searchable)."
    )
    archived: int = Field(description="Items in the stack's archive when it was searched.")
    items: list[ArchiveHit] = Field(description="The best matches, best first.")


class Health(_Model):
    status: str


# -- steering ------------------------------------------------------------------------


MAX_INPUT_CHARS = 8192
"""The most characters an input may have whatever the stack allows: 4 UTF-8 bytes
each at most, so the CRD's largest ``maxBytes`` (32768) takes any input this admits."""


class InputRequest(_Model):
    """``POST …/inputs``: a message for one of the stack's agents."""

    agent: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$",
        description="The agent whose inbox receives it (default: the stack's first agent).",
    )
    content: str = Field(
        min_length=1,
        max_length=MAX_INPUT_CHARS,
        description=f"The message: at most {MAX_INPUT_CHARS} characters, and at most the "
        "stack's spec.inputs.maxBytes UTF-8 bytes.",
    )


class InputAccepted(_Model):
    number: int = Field(description="The input's number within the stack (1, 2, …).")
    agent: str
    sender: str = Field(
        description="Who sent it: the caller's Kubernetes user name, or the webhook's name."
    )
    messageId: str = Field(description="Its id in the agent's inbox stream.")
    wakes: bool = Field(description="Whether the stack gets a tick at once for it.")


class InputEntry(_Model):
    id: str = Field(description="Stream id of the entry (the pagination cursor).")
    number: int
    agent: str
    sender: str
    content: str
    at: float | None
    state: str = Field(description="Queued (not read yet) or Read.")
    readBy: str | None = Field(description="The agent that read it.")
    tickId: str | None = Field(description="The tick it was read in (see its trace).")
    readAt: float | None


class InputPage(_Model):
    items: list[InputEntry]
    nextCursor: str | None


class StateRequest(_Model):
    """``POST …/state``: the execution state the stack should be in."""

    executionState: Literal["Running", "Paused", "Stopped"]


class StackState(_Model):
    namespace: str
    name: str
    executionState: str = Field(description="What spec.executionState now says.")


class ApprovalEntry(_Model):
    id: str
    agent: str = Field(description="The agent that asked.")
    tool: str = Field(description="server/tool.")
    arguments: str = Field(description="The call's arguments, as JSON text.")
    tickId: str = Field(description="The tick whose step asked.")
    requestedAt: float
    expiresAt: float
    state: str = Field(
        description="Pending, Approved, Denied, Expired, Running, Executed or Interrupted."
    )
    decidedBy: str
    reason: str
    result: str = Field(description="What the approved call answered (cut).")


class ApprovalList(_Model):
    items: list[ApprovalEntry]


class DecisionRequest(_Model):
    """``POST …/approvals/{id}``: a person's decision on a waiting tool call."""

    decision: Literal["Approved", "Denied"]
    reason: str = Field(default="", max_length=1000)


class DecisionResult(_Model):
    id: str
    state: str = Field(description="The approval's state after the decision.")
    decidedBy: str


NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
"""A Kubernetes object name (DNS subdomain); namespaces and stacks alike."""


class CheckpointEntry(_Model):
    tickId: str = Field(description="The tick whose finish kept the state.")
    seq: int = Field(description="Its sequence number: 1 for the stack's first checkpoint.")
    bytes: int = Field(description="The size of the state kept.")


class CheckpointList(_Model):
    items: list[CheckpointEntry] = Field(description="Oldest first.")
    recent: int = Field(description="The newest this many are kept for every tick.")
    every: int = Field(description="Older ones: one in this many is kept.")
    maxBytes: int = Field(description="The most a stack's checkpoints may hold, summed.")


TICK_PATTERN = r"^([a-z0-9][-a-z0-9.]*/[a-z0-9][-a-z0-9.]*/)?[0-9]{1,20}(-sleep)?$"
"""A tick id (``namespace/name/slot``, ``-sleep`` for a consolidation) or its slot part."""


class RollbackRequest(_Model):
    """``POST …/rollback``: the checkpoint to roll the stack back to."""

    to: str = Field(
        pattern=TICK_PATTERN,
        max_length=600,
        description="The tick whose checkpoint to restore: its id, or its slot (``42``).",
    )


class RollbackResult(_Model):
    tickId: str
    seq: int
    inputsKept: int = Field(description="Inputs sent after the checkpoint, kept unread.")
    executionState: str = Field(description="Paused: resume the stack when ready.")


MAX_OVERRIDES = 8
MAX_OVERRIDE_CHARS = 8500
"""Enough for an 8,000-character systemPrompt with its path."""


class ForkRequest(_Model):
    """``POST …/fork``: a new stack from a checkpoint of this one."""

    name: str = Field(pattern=NAME_PATTERN, max_length=253, description="The fork's name.")
    namespace: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        max_length=253,
        description="Where to create it (default: the source's namespace).",
    )
    at: str | None = Field(
        default=None,
        pattern=TICK_PATTERN,
        max_length=600,
        description="The tick whose checkpoint it starts from (default: the newest).",
    )
    set: list[Annotated[str, Field(max_length=MAX_OVERRIDE_CHARS)]] = Field(
        default_factory=list,
        max_length=MAX_OVERRIDES,
        description="Overrides, ``spec.path=value`` (value as JSON, else as text).",
    )
    mirror: bool = Field(
        default=False, description="Send it every input the source accepts from now on."
    )
    paused: bool = Field(default=False, description="Leave it paused once seeded.")


class ForkResult(_Model):
    namespace: str
    name: str
    uid: str
    forkedFrom: str = Field(description="namespace/name@tick of the source's checkpoint.")
    mirror: bool
    executionState: str


# -- the mapping rule -----------------------------------------------------------------


ModelT = TypeVar("ModelT", bound=BaseModel)


def camel(name: str) -> str:
    """A record's field name as a response's: ``tick_id`` → ``tickId``."""
    head, *words = name.split("_")
    return head + "".join(word.capitalize() for word in words)


def _shown(value: Any) -> Any:
    """``value`` as JSON-like data under camelCase names: a nested record as a dict, a
    tuple as a list."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {camel(f.name): _shown(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_shown(item) for item in value]
    return value


def from_record(model: type[ModelT], record: DataclassInstance, **values: Any) -> ModelT:
    """``record`` as the response ``model``.

    Each of the record's fields is the model's field of the same name in camelCase
    (``started_at`` → ``startedAt``), nested records and tuples alike; a record's
    ``cost`` (nano-dollars) with its ``unpriced`` calls is ``costUSD`` (dollars, or null
    while a call had no price). ``values`` give what the record does not hold (a stream
    entry's id). Fields the model does not show are left out, and a model field that
    neither the record nor ``values`` fill fails validation: a record field renamed
    cannot go missing from the API silently.
    """
    shown: dict[str, Any] = _shown(record)
    if "cost" in shown and "unpriced" in shown:
        shown["costUSD"] = known_usd(shown["cost"], shown["unpriced"])
    return model.model_validate({**shown, **values})


class UsageItem(_Model):
    day: str = Field(description="The UTC day, YYYY-MM-DD.")
    stack: str = Field(description="The stack's name (in the path's namespace).")
    model: str = Field(description="provider:model of the calls (a step's last answer).")
    costUSD: str = Field(
        description="US dollars of the priced calls, as a decimal string (unpriced calls "
        "left out: see unpricedCalls)."
    )
    tokens: int
    calls: int = Field(description="Answered LLM calls (chat and embeddings).")
    unpricedCalls: int = Field(description="Calls of a model without a price: cost unknown.")


class UsageTotals(_Model):
    costUSD: str
    tokens: int
    calls: int
    unpricedCalls: int


class UsageReport(_Model):
    from_: str = Field(alias="from", description="The first day read (UTC), YYYY-MM-DD.")
    to: str = Field(description="The last day read (UTC, included), YYYY-MM-DD.")
    items: list[UsageItem] = Field(description="By day, stack and model.")
    totals: UsageTotals
