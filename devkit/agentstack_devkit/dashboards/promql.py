"""PromQL read back out of dashboards and alert rules, ready to evaluate.

The tests prove every query against a real Prometheus, which knows nothing of Grafana:
:func:`substitute` puts values in for Grafana's variables (``$namespace``,
``$__rate_interval``, …), :func:`label_values_query` turns a ``label_values(…)``
variable into the PromQL that lists the same values, and :func:`measured` takes from an
alert expression what it measures (its threshold comparison removed), which returns
data on a healthy fleet where the alert itself, rightly, returns nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_LABEL_VALUES = re.compile(r"label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)", re.S)
_THRESHOLD = re.compile(
    r"^(?P<measured>.*?)\s*(?:==|!=|>=|<=|>|<)\s*(?:bool\s+)?[-+]?(?:\d+\.?\d*|\.\d+)"
    r"(?:e[-+]?\d+)?\s*$",
    re.S | re.I,
)
_ABSENT = re.compile(r"^absent\((?P<inner>.*)\)$", re.S)


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel."""

    dashboard: str
    panel: str
    ref_id: str
    expr: str


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The panels that show data (rows are only headings), nested ones included."""
    for panel in dashboard.get("panels") or []:
        if panel.get("type") == "row":
            yield from panel.get("panels") or []
        else:
            yield panel


def queries(dashboard: Mapping[str, Any]) -> list[PanelQuery]:
    return [
        PanelQuery(dashboard["uid"], panel["title"], target["refId"], target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets") or []
    ]


def query_variables(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``query`` variables, in the order Grafana resolves them."""
    return [v for v in dashboard["templating"]["list"] if v["type"] == "query"]


def label_values_query(query: str) -> tuple[str, str]:
    """``label_values(selector, label)`` → (PromQL listing the values, the label)."""
    found = _LABEL_VALUES.fullmatch(query.strip())
    if found is None:
        raise ValueError(f"not a label_values(...) query: {query!r}")
    selector = found.group("selector") or '{__name__=~".+"}'
    label = found.group("label")
    return f"count by ({label}) ({selector.strip()})", label


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """``expr`` with each ``$name`` / ``${name}`` replaced; a variable without a value
    raises, so nothing reaches Prometheus half-substituted."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no value for ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(value, expr)


def _split_top_level(expr: str, keyword: str) -> list[str]:
    """``expr`` split at ``keyword`` where it stands outside brackets and strings."""
    parts: list[str] = []
    depth = 0
    start = 0
    quote: str | None = None
    index = 0
    pattern = re.compile(rf"\b{keyword}\b", re.I)
    while index < len(expr):
        char = expr[index]
        if quote is not None:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = None
        elif char in "\"'`":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif (
            depth == 0
            and (found := pattern.match(expr, index)) is not None
            and (index == 0 or not (expr[index - 1].isalnum() or expr[index - 1] == "_"))
        ):
            parts.append(expr[start:index])
            start = index = found.end()
            continue
        index += 1
    parts.append(expr[start:])
    return [part.strip() for part in parts]


def measured(expr: str) -> list[str]:
    """What an alert expression measures: each operand of a top-level ``and`` without
    its final comparison with a number, and the argument of ``absent(…)``.

    ``sum(x) < 1`` gives ``sum(x)``; ``a > 5 and deriv(b) > 0`` gives ``a`` and
    ``deriv(b)``; ``absent(up == 1)`` gives ``up == 1`` (the series whose absence
    alerts). On a healthy fleet these return data while the alert returns none.
    """
    result = []
    for part in _split_top_level(expr.strip(), "and"):
        absent = _ABSENT.fullmatch(part)
        if absent is not None:
            result.append(absent.group("inner").strip())
            continue
        threshold = _THRESHOLD.fullmatch(part)
        result.append(threshold.group("measured").strip() if threshold else part)
    return result
