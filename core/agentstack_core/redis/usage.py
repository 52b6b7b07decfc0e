"""Chargeback: what a namespace's stacks spent, by UTC day, stack and model.

The commit of every agent step that made calls adds the step's bill — its cost
(nano-dollars), tokens, calls and calls of unpriced models — to the stack's buckets
(:attr:`~agentstack_core.keys.StackKeys.usage_days`, fields
``<day>|<provider:model>|<counter>``), in the same script that appends the step's trace
entry (``commit_step.lua``). So a stack's buckets add up to exactly what its trace
entries say, and a tick resumed elsewhere, whose committed steps are skipped, adds
nothing twice. A step's whole bill goes to the model that answered it last (a fallback
model, the embeddings of what it archived: the same step, the same row).

This module names the day a step is counted on (:func:`day_of`), checks the range a
caller asks for (:func:`date_range`) and reads the buckets back as rows
(:func:`read_usage`; the parsing itself, :func:`rows_of`, is pure).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.protocol import RedisClient

COUNTERS = ("cost", "tokens", "calls", "unpriced")
"""The counters of one (day, model) bucket, the last part of each field."""
DEFAULT_DAYS = 30
"""The range read when the caller names none: the last 30 days, today included."""
MAX_DAYS = 366
"""The longest range one read covers (a leap year), its last days kept: an answer stays
a page, not an export."""


def day_of(at: float) -> str:
    """The UTC day (``YYYY-MM-DD``) of the unix time ``at``: the bucket a step counts in."""
    return datetime.fromtimestamp(at, UTC).date().isoformat()


def date_range(first: date | None, last: date | None, today: date) -> tuple[date, date]:
    """The days ``first`` to ``last`` (both included) to read.

    Missing ends default to the last :data:`DEFAULT_DAYS` days up to ``today`` (a missing
    start: that many days up to the end). A start after the end is an empty range (it
    reads nothing); a range longer than :data:`MAX_DAYS` keeps its last ``MAX_DAYS``
    days — the answer says which days it covers. Every date is a valid request: the
    API's schema says dates, and any two dates have an answer.
    """
    end = last if last is not None else today
    start = first if first is not None else end - timedelta(DEFAULT_DAYS - 1)
    if (end - start).days + 1 > MAX_DAYS:
        start = end - timedelta(MAX_DAYS - 1)
    return start, end


@dataclass(frozen=True)
class Spent:
    """What some calls spent: ``cost`` in nano-dollars (``unpriced`` calls left out)."""

    cost: int = 0
    tokens: int = 0
    calls: int = 0
    unpriced: int = 0

    def __add__(self, other: Spent) -> Spent:
        return Spent(
            self.cost + other.cost,
            self.tokens + other.tokens,
            self.calls + other.calls,
            self.unpriced + other.unpriced,
        )


@dataclass(frozen=True)
class UsageRow:
    """One stack's calls of one model on one day."""

    day: str
    stack: str
    model: str
    spent: Spent


@dataclass(frozen=True)
class UsageReport:
    """Rows by (day, stack, model), and their sum."""

    first: date
    last: date
    rows: tuple[UsageRow, ...]
    total: Spent


def rows_of(stack: str, fields: Mapping[str, str], first: date, last: date) -> list[UsageRow]:
    """The rows of one stack's bucket hash whose day lies in ``first``..``last``.

    Fields this version does not know (another counter, a malformed name) are skipped,
    so an older reader never fails on a newer writer's hash.
    """
    low, high = first.isoformat(), last.isoformat()
    buckets: dict[tuple[str, str], dict[str, int]] = {}
    for name, value in fields.items():
        day, _, rest = name.partition("|")
        model, _, counter = rest.rpartition("|")
        if counter not in COUNTERS or not low <= day <= high:
            continue
        try:
            count = int(value)
        except ValueError:
            continue
        buckets.setdefault((day, model), {})[counter] = count
    return [
        UsageRow(day=day, stack=stack, model=model, spent=Spent(**counts))
        for (day, model), counts in sorted(buckets.items())
    ]


def report_of(rows: Iterable[UsageRow], first: date, last: date) -> UsageReport:
    """``rows`` in (day, stack, model) order, with their sum."""
    ordered = tuple(sorted(rows, key=lambda row: (row.day, row.stack, row.model)))
    total = Spent()
    for row in ordered:
        total += row.spent
    return UsageReport(first=first, last=last, rows=ordered, total=total)


async def read_usage(
    client: RedisClient, namespace: str, stacks: Sequence[str], first: date, last: date
) -> UsageReport:
    """The buckets of ``namespace``'s ``stacks`` between ``first`` and ``last``: one
    pipelined ``HGETALL`` per stack (each its own slot on a cluster)."""
    redis: Any = client  # see RedisClient: redis-py's annotations don't fit
    pipe = redis.pipeline(transaction=False)
    for name in stacks:
        pipe.hgetall(StackKeys(StackRef(namespace, name)).usage_days)
    answers = await pipe.execute() if stacks else []
    rows = [
        row
        for name, fields in zip(stacks, answers, strict=True)
        for row in rows_of(name, fields, first, last)
    ]
    return report_of(rows, first, last)
