"""Which Kubernetes objects a trigger takes: label selectors and CEL conditions.

A trigger (``spec.triggers[].object``) names a kind, a label selector written the way a
Deployment's is (``matchLabels``, ``matchExpressions``), and a condition in CEL — the
language Kubernetes itself uses for validation rules and admission policies — over
``object`` (the object as the API server serves it). The operator's one watch of a kind
serves every stack that declares a trigger on it, so the selector and the condition
are applied here, on each object the watch delivers, not by the API server.

A condition that cannot be evaluated on an object (a field it reads is absent, a type
it does not expect) is false for that object: CEL's ``has()`` guards optional fields,
as in Kubernetes' own rules. What a condition reads (:attr:`Condition.paths`, its
``object.a.b`` paths) is what an input shows of the object besides its name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cel

PATH = re.compile(r"\bobject((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
SHOWN_VALUE_CHARS = 300
"""A value an input shows is cut to this many characters of JSON."""


class ConditionError(ValueError):
    """A condition that does not compile as CEL."""


@dataclass(frozen=True)
class Requirement:
    """One of a selector's ``matchExpressions``."""

    key: str
    operator: str
    """``In``, ``NotIn``, ``Exists`` or ``DoesNotExist``."""
    values: tuple[str, ...] = ()

    def holds(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        if self.operator == "In":
            return labels.get(self.key) in self.values
        return labels.get(self.key) not in self.values  # NotIn: absent counts as not in


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes label selector; the empty one selects everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = field(default=())

    def selects(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(key) == value for key, value in self.match_labels) and all(
            requirement.holds(labels) for requirement in self.match_expressions
        )


def label_selector(raw: Any) -> LabelSelector:
    """A selector from its manifest form (``None``: select everything)."""
    if not raw:
        return LabelSelector()
    return LabelSelector(
        match_labels=tuple(
            sorted((str(k), str(v)) for k, v in (raw.get("matchLabels") or {}).items())
        ),
        match_expressions=tuple(
            Requirement(
                key=str(item["key"]),
                operator=str(item["operator"]),
                values=tuple(str(v) for v in item.get("values") or ()),
            )
            for item in raw.get("matchExpressions") or ()
        ),
    )


class Condition:
    """A CEL expression over ``object``, compiled once; the empty one is always true."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._program: cel.Program | None = None
        if source.strip():
            try:
                self._program = cel.compile(source)
            except (ValueError, RuntimeError) as exc:
                raise ConditionError(str(exc).splitlines()[0]) from exc
        self.paths: tuple[tuple[str, ...], ...] = tuple(
            dict.fromkeys(tuple(m.group(1)[1:].split(".")) for m in PATH.finditer(source))
        )
        """The ``object.a.b`` paths the expression names, in order, without repeats."""

    def holds(self, obj: Mapping[str, Any]) -> bool:
        """Whether the condition is true of ``obj`` (not: false, or not evaluable)."""
        if self._program is None:
            return True
        try:
            return self._program.execute({"object": obj}) is True
        except Exception:  # a field it reads is absent, a type it does not expect
            return False

    def shown(self, obj: Mapping[str, Any]) -> dict[str, str]:
        """What the condition read of ``obj``: each path's value (for a path that ends
        in a function, such as ``.exists``, the longest part that resolves), as JSON
        cut to :data:`SHOWN_VALUE_CHARS`."""
        shown: dict[str, str] = {}
        for path in self.paths:
            value: Any = obj
            reached: list[str] = []
            for part in path:
                if not isinstance(value, Mapping) or part not in value:
                    break
                value = value[part]
                reached.append(part)
            if reached:
                text = json.dumps(value, separators=(",", ":"), default=str)
                if len(text) > SHOWN_VALUE_CHARS:
                    text = text[: SHOWN_VALUE_CHARS - 1] + "…"
                shown[".".join(reached)] = text
        return shown
