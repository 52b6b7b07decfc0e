"""Typed records that one process writes to Redis and another reads back.

Redis streams hold flat string fields, so every record crosses a process boundary as
``dict[str, str]``. Each kind of record is one frozen dataclass here, and its
:meth:`Record.to_fields` is the only way it is written and :meth:`Record.from_fields`
the only way it is read: the runner writes ticks, traces, feed posts and messages; the
read API and the operator read them. The encoding rules live once, in this module:

- ``str`` as is; ``int`` and ``float`` as decimal text (``repr`` for floats, so a
  timestamp round-trips exactly); ``bool`` as ``true``/``false``;
- a ``StrEnum`` as its value, a :class:`~agentstack_core.keys.StackRef` as
  ``namespace/name``;
- a tuple (of strings, or of small dataclasses) as JSON;
- ``None`` (an optional value that is absent) is not written at all.

Decoding is lenient where data may be old and strict where it must be whole: a
missing or malformed field with a default takes its default (an entry written before
the field existed still reads; the stream records below default every field), while
a missing or malformed required field (the tick protocol's) raises
:class:`RecordError` — the caller decides whether to skip or report the entry.

Records kept as one JSON value (an artifact in the artifacts hash, the plan's tasks, a
step's record, what became of an input) are :class:`JsonRecord` s: the same dataclass
rule, the same leniency for old data, one JSON object each.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, ClassVar, Self, Union

import orjson

from agentstack_core.keys import StackRef


class RecordError(ValueError):
    """A stream entry lacks a required field or holds one that does not parse."""


_TRUE = ("true", "1", "True")


def encode_value(value: Any) -> str | None:
    """One value as record text (``None`` stays ``None``: the field is left out)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int | StackRef):
        return str(value)
    if isinstance(value, tuple):
        return json.dumps(
            [
                dataclasses.asdict(item)
                if dataclasses.is_dataclass(item) and not isinstance(item, type)
                else item
                for item in value
            ]
        )
    raise TypeError(f"no record encoding for {type(value).__name__}")


def _decode(kind: Any, value: Any) -> Any:
    """``value`` as a value of type ``kind``: record text (a stream field), or a JSON
    value (a field of a JSON record; a number written as text reads as a number).
    Raises ValueError, TypeError or KeyError."""
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        (inner,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return _decode(inner, value)
    if origin is tuple:
        element = typing.get_args(kind)[0]
        items = json.loads(value) if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ValueError("expected a JSON list")
        if isinstance(element, type) and issubclass(element, JsonRecord):
            return tuple(element.from_dict(item) for item in items if isinstance(item, dict))
        if isinstance(element, type) and dataclasses.is_dataclass(element):
            names = {f.name for f in dataclasses.fields(element)}
            return tuple(
                element(**{k: v for k, v in item.items() if k in names})
                for item in items
                if isinstance(item, dict)
            )
        return tuple(_decode(element, item) for item in items)
    if not isinstance(value, str):
        return _json_value(kind, value)
    if kind is bool:
        return value in _TRUE
    if kind is int:
        return int(float(value)) if "." in value or "e" in value else int(value)
    if kind is float:
        return float(value)
    if kind is StackRef:
        return StackRef.parse(value)
    if isinstance(kind, type) and issubclass(kind, StrEnum | str):
        return kind(value)
    raise TypeError(f"no record decoding for {kind!r}")


def _json_value(kind: Any, value: Any) -> Any:
    """A JSON number or boolean as a value of type ``kind``."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind is float and number:
        return float(value)
    if kind is int and number:
        return int(value)
    if kind is bool and isinstance(value, bool):
        return value
    raise TypeError(f"{value!r} is not a {kind}")


def _required(field: dataclasses.Field[Any]) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


@dataclasses.dataclass(frozen=True)
class Record:
    """Base of the records: subclasses are frozen dataclasses of encodable fields.

    A field's key in Redis is its name, unless ``field(metadata={"key": ...})`` says
    otherwise (``from`` cannot be a Python attribute).
    """

    _hints: ClassVar[dict[type, dict[str, Any]]] = {}

    @classmethod
    def _fields(cls) -> list[tuple[dataclasses.Field[Any], str, Any]]:
        hints = Record._hints.get(cls)
        if hints is None:
            hints = Record._hints[cls] = typing.get_type_hints(cls)
        return [(f, f.metadata.get("key", f.name), hints[f.name]) for f in dataclasses.fields(cls)]

    def to_fields(self) -> dict[str, str]:
        encoded: dict[str, str] = {}
        for field, key, _kind in self._fields():
            text = encode_value(getattr(self, field.name))
            if text is not None:
                encoded[key] = text
        return encoded

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Self:
        values: dict[str, Any] = {}
        for field, key, kind in cls._fields():
            required = _required(field)
            text = fields.get(key)
            if text is None:
                if required:
                    raise RecordError(f"{cls.__name__}: missing field {key!r}")
                continue
            try:
                values[field.name] = _decode(kind, text)
            except (ValueError, TypeError, KeyError) as exc:
                if required:
                    raise RecordError(f"{cls.__name__}.{key}: {exc}") from exc
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class TickRecord(Record):
    """One finished tick in the stack's history stream (runner and operator write it)."""

    tick_id: str = ""
    outcome: str = ""
    reason: str = ""
    generation: int = 0
    message: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    duration_ms: int | None = None
    tokens: int = 0
    steps: int = 0
    progressed: bool = False
    runner: str = ""
    cost: int = 0
    """Nano-dollars of the tick's priced LLM calls."""
    unpriced: int = 0
    """LLM calls of models without a price (then the tick's cost is unknown)."""
    idle: str = ""
    """Why a tick that succeeded made no progress (a
    :class:`~agentstack_core.reasons.StallReason`; empty: it progressed)."""
    kind: str = "Work"
    """``Work`` (the team's steps) or ``Sleep`` (a consolidation)."""
    scores: str = ""
    """The evals' scores of the tick, as JSON (:func:`~agentstack_core.evals.encode_scores`;
    empty: none scored)."""


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One call to one model within a step (the trace lists them in order)."""

    model: str = ""
    outcome: str = ""
    seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class ToolUse:
    """One tool call within a step (the trace lists them in order)."""

    tool: str = ""
    """``server/tool``."""
    outcome: str = ""
    """``ok``, ``error`` (the tool said so), ``timeout``, ``unreachable``, ``invalid``
    (arguments refused by its schema, never sent) or ``refused`` (not offered)."""
    seconds: float = 0.0
    chars: int = 0
    """Characters of the result the agent was shown (after the cut)."""
    error: str = ""


@dataclasses.dataclass(frozen=True)
class TraceRecord(Record):
    """One agent step in the stack's trace stream."""

    tick_id: str = ""
    agent: str = ""
    role: str = ""
    outcome: str = ""
    reason: str = ""
    model: str = ""
    fallback: bool = False
    """Whether the answer came from a model other than the first one tried."""
    attempts: tuple[Attempt, ...] = ()
    prompt: str = ""
    """A short summary of what the agent was shown (never the whole prompt)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: int = 0
    thought: str = ""
    actions: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()
    error: str = ""
    at: float | None = None
    tools: tuple[ToolUse, ...] = ()
    cost: int = 0
    """Nano-dollars of the step's priced LLM calls."""
    unpriced: int = 0
    """The step's LLM calls of models without a price (its cost is then unknown)."""
    idle: str = ""
    """Why a step that succeeded changed no shared work (a
    :class:`~agentstack_core.reasons.StallReason`; empty: it did)."""
    recalls: tuple[Recalled, ...] = ()
    """The step's recalls of the stack's archive, in order."""


@dataclasses.dataclass(frozen=True)
class FeedRecord(Record):
    """A progress update for people (the communicator posts them)."""

    agent: str = ""
    content: str = ""
    tick_id: str = ""
    at: float | None = None


@dataclasses.dataclass(frozen=True)
class MessageRecord(Record):
    """A message in an agent's inbox stream."""

    sender: str = dataclasses.field(default="", metadata={"key": "from"})
    content: str = ""
    tick_id: str = ""
    at: float | None = None
    input: int = 0
    """The number of the input this message is (0: a teammate's message)."""


@dataclasses.dataclass(frozen=True)
class InputRecord(Record):
    """One input in the stack's inputs log: who sent what to which agent."""

    number: int = 0
    agent: str = ""
    sender: str = dataclasses.field(default="", metadata={"key": "from"})
    content: str = ""
    at: float | None = None
    message: str = ""
    """The id of the message it became in the agent's inbox."""
    delivery: str | None = None
    """The id it was delivered under, for a sender that retries (a webhook's
    ``webhook/id``, an A2A message's ``a2a/messageId``): a retry finds this input."""


class JsonRecord:
    """Base of the records kept as one JSON object (subclasses are frozen dataclasses).

    Written by :meth:`to_json` only (``None`` fields left out, as in stream records; a
    field's JSON key is its name unless ``field(metadata={"key": ...})`` says
    otherwise), read by :meth:`from_json` only: unknown keys are ignored and missing
    or malformed ones take their defaults (a record written before a field existed, or
    by a version that spelled it otherwise, still reads), and a number written as text
    reads as a number; a missing or malformed required field raises
    :class:`RecordError`.
    """

    def to_dict(self) -> dict[str, Any]:
        data = {}
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if value is not None:
                data[field.metadata.get("key", field.name)] = _plain(value)
        return data

    def to_json(self) -> str:
        return orjson.dumps(self.to_dict()).decode()

    @classmethod
    def from_json(cls, raw: str | bytes) -> Self:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise RecordError(f"{cls.__name__}: not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise RecordError(f"{cls.__name__}: expected a JSON object")
        return cls.from_dict(data)

    _hints: ClassVar[dict[type, dict[str, Any]]] = {}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        hints = JsonRecord._hints.get(cls)
        if hints is None:  # resolving annotations costs more than decoding a record
            hints = JsonRecord._hints[cls] = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]
            key = field.metadata.get("key", field.name)
            if key not in data or data[key] is None:
                continue
            try:
                values[field.name] = _decode(hints[field.name], data[key])
            except (ValueError, TypeError, KeyError, RecordError) as exc:
                if _required(field):
                    raise RecordError(f"{cls.__name__}.{key}: {exc}") from exc
        try:
            return cls(**values)
        except TypeError as exc:  # a required field is missing
            raise RecordError(f"{cls.__name__}: {exc}") from exc


def _plain(value: Any) -> Any:
    if isinstance(value, JsonRecord):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


@dataclasses.dataclass(frozen=True)
class Recalled(JsonRecord):
    """One recall within a step (the trace lists them in order): what the agent looked
    for in the stack's archive, and what it was shown."""

    query: str = ""
    hits: tuple[str, ...] = ()
    """The archive ids of the items shown, best first."""
    mode: str = "lexical"
    """``lexical`` (BM25 over the index) or ``semantic`` (fused with embeddings' cosine)."""


class TaskStatus(StrEnum):
    TODO = "todo"
    DOING = "doing"
    REVIEW = "review"
    DONE = "done"
    DROPPED = "dropped"

    @property
    def open(self) -> bool:
        """Open work stays in the plan; a done or dropped task leaves it for the archive."""
        return self not in (TaskStatus.DONE, TaskStatus.DROPPED)


@dataclasses.dataclass(frozen=True)
class TaskRecord(JsonRecord):
    """One task of the stack's shared plan (the plan key holds a JSON list of them)."""

    id: str
    title: str
    status: TaskStatus = TaskStatus.TODO
    note: str | None = None
    """Why it was sent back (the reviewer's feedback), while it is being redone."""


class ArtifactStatus(StrEnum):
    REVIEW = "review"
    """Written or revised: waiting for a review."""
    ACCEPTED = "accepted"
    REVISE = "revise"
    """Sent back with feedback."""


@dataclasses.dataclass(frozen=True)
class ArtifactRecord(JsonRecord):
    """One artifact's current version (the artifacts hash: name → this, as JSON)."""

    content: str = ""
    status: ArtifactStatus = ArtifactStatus.REVIEW
    author: str = ""
    task_id: str | None = None
    version: int = 0
    tick_id: str = ""
    updated_at: float = 0.0
    feedback: str = ""
    reviewer: str | None = None


@dataclasses.dataclass(frozen=True)
class StepRecord(JsonRecord):
    """What a committed agent step leaves behind (the tick's steps hash: agent → this):
    a tick resumed by another runner skips the step and counts what it spent."""

    agent: str
    role: str
    outcome: str
    """``Succeeded`` or ``Failed`` (:class:`~agentstack_core.reasons.Outcome`)."""
    reason: str
    """:class:`~agentstack_core.reasons.StepReason`."""
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
    calls: int = 0
    """The step's answered LLM calls (chat and embeddings), priced or not."""
    cost_needed: int = 0
    """Nano-dollars the call the dollar budget refused needed at the least (0: none)."""
    idle: str = ""
    """Why the step, having succeeded, changed no shared work (empty: it did)."""
    tool_calls: int = 0
    """Tool calls the step made (refused ones, never sent, not counted)."""
    tool_failures: int = 0
    """Of those, the ones that did not answer ``ok``."""

    @property
    def failed(self) -> bool:
        return self.outcome != "Succeeded"


@dataclasses.dataclass(frozen=True)
class InputOutcome(JsonRecord):
    """What became of an input (the input outcomes hash: number → this): the agent that
    read it and the tick it read it in — so a person sees which tick's trace and
    history entry answer it."""

    agent: str
    tick_id: str = dataclasses.field(metadata={"key": "tickId"})
    at: float
    state: str = "Read"


@dataclasses.dataclass(frozen=True)
class PublishedSpec(Record):
    """The spec the operator published for runners (the stack's spec hash). Its
    presence is the stack's life in Redis: every write script checks it."""

    generation: int
    spec: str
    """The spec as JSON (keys sorted)."""
    state: str
    """``executionState`` as published."""
    uid: str = ""


class ArchiveKind(StrEnum):
    TASK = "task"
    """A task that left the plan (done or dropped)."""
    ARTIFACT = "artifact"
    """One version of an artifact, as written."""
    INPUT = "input"
    MESSAGE = "message"
    POST = "post"
    NOTE = "note"
    """A consolidation note of the long-term memory."""


@dataclasses.dataclass(frozen=True)
class ArchiveRecord(Record):
    """One item of the stack's archive: what left the working set (or never was in
    it), kept to be recalled and searched after the capped streams have moved on."""

    kind: ArchiveKind = ArchiveKind.NOTE
    ref: str = ""
    """What it is within its kind: a task id, ``name@vN``, ``#N`` of an input, the
    recipient of a message."""
    agent: str = ""
    """Who wrote or sent it."""
    tick_id: str = ""
    at: float | None = None
    text: str = ""
    """What was said or written: what search and recall read."""
    vector: str | None = None
    """Its embedding, when the stack configures one (``spec.memory.embeddings``): a unit
    vector of little-endian float32, base64 (semantic recall's cosine is then a dot
    product)."""
    terms: str | None = None
    """Set by the index as the item is appended, never by a writer: its length and its
    terms with their counts, so its postings leave the index with it when it is
    trimmed."""


class GoalState(StrEnum):
    DECLARED = "Declared"
    """The team says the goal is met; confirmation pending."""
    MET = "Met"
    """Confirmed: the stack completes."""
    REJECTED = "Rejected"
    """Not confirmed: the team works on (and may declare again)."""


@dataclasses.dataclass(frozen=True)
class GoalRecord(JsonRecord):
    """Where a finite goal stands (the stack's goal key), for the goal of ``goal_id``
    (:attr:`~agentstack_core.spec.StackSpec.goal_id`): a record of another goal id is
    about an earlier goal and counts as nothing."""

    goal_id: str
    state: GoalState
    summary: str = ""
    """What the declaring agent says was achieved."""
    declared_by: str = ""
    tick_id: str = ""
    """The tick of the last change."""
    at: float = 0.0
    decided_by: str = ""
    """The reviewer or judge that confirmed or rejected it."""
    verdict: str = ""
    """Why it was confirmed or rejected."""


@dataclasses.dataclass(frozen=True)
class LongTermMemory(JsonRecord):
    """What consolidation keeps of finished work, newest first in each section, within
    ``spec.memory.longTermTokens``; every agent sees it."""

    decisions: tuple[str, ...] = ()
    facts: tuple[str, ...] = ()
    """What people and systems said (inputs)."""
    delivered: tuple[str, ...] = ()
    open_threads: tuple[str, ...] = ()
    lessons: tuple[str, ...] = ()
    """What reviews taught."""

    def empty(self) -> bool:
        return not any(getattr(self, f.name) for f in dataclasses.fields(self))


@dataclasses.dataclass(frozen=True)
class LongTermRecord(Record):
    """The stack's long-term memory hash: the memory, and how far into the archive the
    consolidations that made it have read."""

    memory: str = ""
    """The :class:`LongTermMemory` as JSON."""
    watermark: str = "0-0"
    """The archive stream id up to which consolidation has covered (raw items up to it
    may be trimmed: what they said is in the memory)."""
    consolidations: int = 0
    lost: int = 0
    """Archive items trimmed before any consolidation covered them (over the hard cap)."""

    @property
    def long_term(self) -> LongTermMemory:
        return LongTermMemory.from_json(self.memory) if self.memory else LongTermMemory()
