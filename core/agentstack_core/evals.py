"""Evals: deterministic scores of what each tick produced (``spec.evals``).

An eval scores, after every work tick that ran, either

- the **artifacts** the tick wrote (or reviewed) whose names match its ``artifacts``
  glob — each with the checks it declares: ``jsonSchema`` (the content parses as JSON
  and validates), ``pattern`` (a regular expression found in it, RE2 syntax — matched
  in linear time, so no pattern can hang a shared runner), ``minLength`` /
  ``maxLength`` (characters), ``sections`` (each a line of its own, e.g. ``## Risks``) —
  an artifact's score being the share of its checks that hold, the tick's the mean over
  its artifacts; or
- the **tick's tool calls** (``toolSuccess: true``): the share that succeeded.

A tick with nothing to score (no matching artifact, no tool call) has no score for that
eval, rather than a zero. Scores are in [0, 1]. They go into the tick's result and
history entry, the stack's status (a rolling mean per eval, :func:`rolling`) and
Prometheus; ``kubectl agentstack compare`` sets two stacks' side by side
(:mod:`agentstack_core.comparing`). Pure: the runner hands in what the tick left.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema
import re2  # type: ignore[import-untyped]

MAX_EVALS = 20
ROLLING_WEIGHT = 0.1
"""The weight of the newest score in an eval's rolling mean (an exponential moving
average: about the last 20 scored ticks count)."""
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")


@dataclass(frozen=True)
class Eval:
    """One scorer of ``spec.evals``."""

    name: str
    artifacts: str | None = None
    """A glob of artifact names (``None``: the eval scores the tick's tool calls)."""
    json_schema: Mapping[str, Any] | None = None
    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    sections: tuple[str, ...] = ()
    tool_success: bool = False

    def checks(self, content: str) -> list[bool]:
        """Whether each declared check holds for ``content`` (an artifact's)."""
        found: list[bool] = []
        if self.json_schema is not None:
            found.append(_valid(content, self.json_schema))
        if self.pattern is not None:
            found.append(_compiled(self.pattern).search(content) is not None)
        if self.min_length is not None:
            found.append(len(content) >= self.min_length)
        if self.max_length is not None:
            found.append(len(content) <= self.max_length)
        if self.sections:
            lines = {line.strip() for line in content.splitlines()}
            found.extend(section.strip() in lines for section in self.sections)
        return found


def _valid(content: str, schema: Mapping[str, Any]) -> bool:
    try:
        jsonschema.validate(json.loads(content), schema)
    except (ValueError, jsonschema.ValidationError):
        return False
    except Exception:  # a schema it cannot apply (a $ref that resolves nowhere)
        return False  # fails the check, never the tick
    return True


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> Any:
    """``pattern`` compiled by RE2 (multi-line: ``^``/``$`` at each line), once."""
    return re2.compile(f"(?m){pattern}")


def parse_evals(raw: Any, problems: list[str]) -> tuple[Eval, ...]:
    """``spec.evals`` as :class:`Eval` records; what is wrong goes to ``problems``."""
    evals: list[Eval] = []
    for index, item in enumerate(raw or []):
        where = f"spec.evals[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected an object")
            continue
        name = item.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            problems.append(f"{where}.name: lowercase letters, digits and '-', at most 40")
            continue
        if any(known.name == name for known in evals):
            problems.append(f"{where}.name: duplicate eval {name!r}")
            continue
        made = _eval(item, name, where, problems)
        if made is not None:
            evals.append(made)
    if len(evals) > MAX_EVALS:
        problems.append(f"spec.evals: at most {MAX_EVALS}")
    return tuple(evals)


def _eval(item: dict[str, Any], name: str, where: str, problems: list[str]) -> Eval | None:
    schema, pattern = item.get("jsonSchema"), item.get("pattern")
    if schema is not None:
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            problems.append(f"{where}.jsonSchema: not a JSON schema: {exc.message}")
            return None
    if pattern is not None:
        try:
            _compiled(pattern)
        except re2.error as exc:
            said = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
            problems.append(f"{where}.pattern: not a regular expression RE2 takes: {said}")
            return None
    made = Eval(
        name=name,
        artifacts=item.get("artifacts"),
        json_schema=schema,
        pattern=pattern,
        min_length=item.get("minLength"),
        max_length=item.get("maxLength"),
        sections=tuple(item.get("sections") or ()),
        tool_success=bool(item.get("toolSuccess", False)),
    )
    if made.tool_success and made.artifacts is not None:
        problems.append(f"{where}: toolSuccess scores the tick, not artifacts: drop one")
        return None
    if not made.tool_success and (made.artifacts is None or not made.checks("")):
        problems.append(
            f"{where}: needs artifacts and at least one check (jsonSchema, pattern, "
            "minLength, maxLength, sections), or toolSuccess: true"
        )
        return None
    return made


@dataclass(frozen=True)
class Produced:
    """What one tick left to score."""

    artifacts: Mapping[str, str]
    """Name → content of the artifacts the tick wrote or reviewed."""
    tool_calls: int = 0
    tool_failures: int = 0


def tick_scores(evals: Sequence[Eval], produced: Produced) -> dict[str, float]:
    """Each eval's score of the tick (see the module docstring); evals with nothing to
    score are left out."""
    scores: dict[str, float] = {}
    for scorer in evals:
        if scorer.tool_success:
            if produced.tool_calls:
                done = produced.tool_calls - produced.tool_failures
                scores[scorer.name] = round(done / produced.tool_calls, 4)
            continue
        shares = []
        for name, content in sorted(produced.artifacts.items()):
            if fnmatch.fnmatchcase(name, scorer.artifacts or "*"):
                checks = scorer.checks(content)
                shares.append(sum(checks) / len(checks))
        if shares:
            scores[scorer.name] = round(sum(shares) / len(shares), 4)
    return scores


def rolling(
    previous: Mapping[str, Mapping[str, float]], scores: Mapping[str, float]
) -> dict[str, dict[str, float]]:
    """The rolling means after a tick's ``scores``: per eval, ``mean`` (an exponential
    moving average, :data:`ROLLING_WEIGHT`; the first score as it is) and ``ticks``
    (how many ticks were scored)."""
    updated = {name: dict(values) for name, values in previous.items()}
    for name, score in scores.items():
        before = updated.get(name)
        if before is None or not before.get("ticks"):
            updated[name] = {"mean": score, "ticks": 1}
            continue
        mean = before["mean"] + ROLLING_WEIGHT * (score - before["mean"])
        updated[name] = {"mean": round(mean, 4), "ticks": before["ticks"] + 1}
    return updated


def encode_scores(scores: Mapping[str, float]) -> str:
    """A tick's scores as the text its result and history entry carry (empty: none)."""
    return json.dumps(dict(sorted(scores.items())), separators=(",", ":")) if scores else ""


def decode_scores(text: str) -> dict[str, float]:
    """:func:`encode_scores` read back; anything else is no scores."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(raw, dict):
        return {}
    return {str(k): float(v) for k, v in raw.items() if isinstance(v, int | float)}
