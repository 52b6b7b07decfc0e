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
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from enum import StrEnum
from typing import Any, ClassVar, Self, Union

from agentstack_core.keys import StackRef


class RecordError(ValueError):
    """A stream entry lacks a required field or holds one that does not parse."""


_TRUE = ("true", "1", "True")


def _encode(value: Any) -> str | None:
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


def _decode(kind: Any, text: str) -> Any:
    """``text`` as a value of type ``kind`` (raises ValueError, TypeError or KeyError)."""
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        (inner,) = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return _decode(inner, text)
    if origin is tuple:
        element = typing.get_args(kind)[0]
        items = json.loads(text)
        if not isinstance(items, list):
            raise ValueError("expected a JSON list")
        if isinstance(element, type) and dataclasses.is_dataclass(element):
            names = {f.name for f in dataclasses.fields(element)}
            return tuple(
                element(**{k: v for k, v in item.items() if k in names})
                for item in items
                if isinstance(item, dict)
            )
        return tuple(element(item) for item in items)
    if kind is bool:
        return text in _TRUE
    if kind is int:
        return int(float(text)) if "." in text or "e" in text else int(text)
    if kind is float:
        return float(text)
    if kind is StackRef:
        return StackRef.parse(text)
    if isinstance(kind, type) and issubclass(kind, StrEnum | str):
        return kind(text)
    raise TypeError(f"no record decoding for {kind!r}")


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
            text = _encode(getattr(self, field.name))
            if text is not None:
                encoded[key] = text
        return encoded

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Self:
        values: dict[str, Any] = {}
        for field, key, kind in cls._fields():
            required = (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            )
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
