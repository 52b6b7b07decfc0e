"""A namespace's chargeback: ``GET /api/v1/namespaces/{namespace}/usage?from=&to=``.

What the namespace's stacks spent by UTC day, stack and model, with totals: for the
person who pays, so it asks the right to read the namespace's budgets
(``get agentbudgets``), not its stacks. Dates are ``YYYY-MM-DD``, both included; the
last 30 days by default, at most the last 366 of a longer range.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BeforeValidator

from agentstack_api import models
from agentstack_api.params import Access, Caller, ChargebackService, Namespace

router = APIRouter()


def _calendar_day(value: object) -> object:
    """Only ``YYYY-MM-DD`` is a day: pydantic would also read ``0`` as 1970-01-01."""
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("not a date (YYYY-MM-DD)")
    return value


Day = Annotated[date, BeforeValidator(_calendar_day)]
From = Annotated[Day | None, Query(alias="from", description="The first UTC day, YYYY-MM-DD.")]
To = Annotated[Day | None, Query(description="The last UTC day, YYYY-MM-DD (included).")]


@router.get(
    "/api/v1/namespaces/{namespace}/usage",
    response_model=models.UsageReport,
    response_model_by_alias=True,
    summary="A namespace's LLM usage by day, stack and model",
    description="Cost, tokens and calls of the namespace's stacks, from the buckets each "
    "agent step's commit adds to (the same commit as its trace entry). Requires `get` on "
    "`agentbudgets.agentstack.dev` in the namespace. Defaults to the last 30 days; a range "
    "over 366 days keeps its last 366 (`from` in the answer says where it starts), `from` "
    "after `to` reads nothing, a malformed date is a 400.",
)
async def usage(
    namespace: Namespace,
    caller: Caller,
    access: Access,
    chargeback: ChargebackService,
    from_: From = None,
    to: To = None,
) -> models.UsageReport:
    days = chargeback.days(from_, to)
    stacks = await access.chargeable(caller, namespace)
    return await chargeback.report(namespace, stacks, days)
