"""A namespace's chargeback, as the API answers it: what its stacks spent by day, stack
and model, from the buckets each step's commit keeps (:mod:`agentstack_core.redis.usage`).

The route has already checked the caller's right (``get agentbudgets`` in the namespace,
:meth:`~.access.StackAccess.chargeable`), named the stacks and parsed the dates (a
malformed one is a 400); this service reads the range and turns nano-dollars into dollar
strings.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from agentstack_api import models
from agentstack_core.pricing import format_usd
from agentstack_core.protocol import RedisClient
from agentstack_core.redis.usage import Spent, date_range, read_usage


class Chargeback:
    """Reads of the namespaces' buckets."""

    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis

    @staticmethod
    def days(first: date | None, last: date | None) -> tuple[date, date]:
        """The days ``first`` to ``last`` (UTC, both included; by default the last 30
        days; :func:`~agentstack_core.redis.usage.date_range` says how a range is read)."""
        return date_range(first, last, datetime.now(UTC).date())

    async def report(
        self, namespace: str, stacks: list[str], days: tuple[date, date]
    ) -> models.UsageReport:
        """``stacks``' usage over ``days`` (:meth:`days`)."""
        start, end = days
        report = await read_usage(self.redis, namespace, stacks, start, end)
        return models.UsageReport.model_validate(
            {
                "from": start.isoformat(),
                "to": end.isoformat(),
                "items": [
                    {"day": row.day, "stack": row.stack, "model": row.model, **_shown(row.spent)}
                    for row in report.rows
                ],
                "totals": _shown(report.total),
            }
        )


def _shown(spent: Spent) -> dict[str, Any]:
    return {
        "costUSD": format_usd(spent.cost),
        "tokens": spent.tokens,
        "calls": spent.calls,
        "unpricedCalls": spent.unpriced,
    }
