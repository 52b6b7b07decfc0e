"""``GET /api/v1/namespaces/{ns}/usage``: the usage router alone, the real services over
a fake watch cache and Authorizer, and Redis (standalone and a cluster) holding buckets
written by the real commit script."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from agentstack_api.auth import User
from agentstack_api.chargeback import Chargeback
from agentstack_api.routes import usage
from agentstack_core.keys import StackRef
from agentstack_core.protocol import RedisClient
from tests.integration.support import commit_bill
from tests.unit import test_api_fakes as fakes

pytestmark = pytest.mark.asyncio
TOKEN = {"Authorization": "Bearer alice-token"}
PATH = "/api/v1/namespaces/team/usage"
MARCH_1 = datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp()
MARCH_2 = datetime(2026, 3, 2, 23, 59, tzinfo=UTC).timestamp()


def usage_app(redis: RedisClient, auth: fakes.FakeAuthorizer) -> FastAPI:
    """The usage router over the real services; ``team`` has stacks alpha and beta."""
    cache = fakes.FakeCache(
        [fakes.stack("team", "alpha"), fakes.stack("team", "beta"), fakes.stack("other", "x")]
    )
    access, _, _ = fakes.services(cache, auth, redis)
    app = fakes.app_with(usage.router, access=access)
    app.state.chargeback = Chargeback(redis)
    return app


@pytest_asyncio.fixture
async def http(aredis: RedisClient) -> AsyncIterator[httpx.AsyncClient]:
    """Alice may get agentstacks in ``team``, and its agentbudgets."""
    auth = fakes.FakeAuthorizer({"team"}, tokens={"alice-token": User("alice")})
    auth.steering.add(("team", "get agentbudgets"))
    alpha, beta = StackRef("team", "alpha"), StackRef("team", "beta")
    await commit_bill(aredis, alpha, MARCH_1, model="openai:gpt-4o-mini", cost=1_500_000)
    await commit_bill(aredis, alpha, MARCH_1 + 60, model="openai:gpt-4o-mini", cost=500_000)
    await commit_bill(aredis, alpha, MARCH_2, model="groq:llama-3.3-70b-versatile", cost=2_000)
    await commit_bill(aredis, beta, MARCH_2, model="openai:house", cost=0, unpriced=2)
    await commit_bill(aredis, StackRef("other", "x"), MARCH_2, model="openai:gpt-4o", cost=9)
    async with fakes.client(usage_app(aredis, auth)) as http:
        yield http


def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


async def test_rows_by_day_stack_and_model_with_totals(http: httpx.AsyncClient) -> None:
    body = _ok(
        await http.get(PATH, params={"from": "2026-03-01", "to": "2026-03-02"}, headers=TOKEN)
    )

    assert (body["from"], body["to"]) == ("2026-03-01", "2026-03-02")
    assert body["items"] == [
        {
            "day": "2026-03-01",
            "stack": "alpha",
            "model": "openai:gpt-4o-mini",
            "costUSD": "0.002000",
            "tokens": 2000,
            "calls": 4,
            "unpricedCalls": 0,
        },
        {
            "day": "2026-03-02",
            "stack": "alpha",
            "model": "groq:llama-3.3-70b-versatile",
            "costUSD": "0.000002",
            "tokens": 1000,
            "calls": 2,
            "unpricedCalls": 0,
        },
        {
            "day": "2026-03-02",
            "stack": "beta",
            "model": "openai:house",
            "costUSD": "0.000000",
            "tokens": 1000,
            "calls": 2,
            "unpricedCalls": 2,
        },
    ]
    assert body["totals"] == {
        "costUSD": "0.002002",
        "tokens": 4000,
        "calls": 8,
        "unpricedCalls": 2,
    }
    one_day = _ok(
        await http.get(PATH, params={"from": "2026-03-02", "to": "2026-03-02"}, headers=TOKEN)
    )
    assert [(i["stack"], i["day"]) for i in one_day["items"]] == [
        ("alpha", "2026-03-02"),
        ("beta", "2026-03-02"),
    ]


async def test_the_default_is_the_last_30_days(
    aredis: RedisClient, http: httpx.AsyncClient
) -> None:
    now = time.time()
    await commit_bill(aredis, StackRef("team", "beta"), now, model="openai:gpt-4o-mini", cost=42)

    body = _ok(await http.get(PATH, headers=TOKEN))

    first, last = (datetime.fromisoformat(body[end]).date() for end in ("from", "to"))
    assert (last - first).days == 29
    assert [(i["stack"], i["costUSD"]) for i in body["items"]] == [("beta", "0.000000")]
    assert body["totals"]["calls"] == 2


@pytest.mark.parametrize(
    ("params", "said"),
    [
        ({"from": "2026-02-30"}, "query.from"),
        ({"to": "yesterday"}, "query.to"),
        ({"from": "2026-3-1", "to": "2026-03-02"}, "query.from"),
        ({"from": "2026-03-01T10:00"}, "query.from"),
    ],
)
async def test_a_malformed_date_is_a_400_that_says_which(
    http: httpx.AsyncClient, params: dict[str, str], said: str
) -> None:
    message = fakes.error_of(
        await http.get(PATH, params=params, headers=TOKEN), 400, "InvalidParameter"
    )
    assert said in message


async def test_366_days_both_included_is_the_longest_range(http: httpx.AsyncClient) -> None:
    body = _ok(
        await http.get(PATH, params={"from": "2025-03-02", "to": "2026-03-02"}, headers=TOKEN)
    )
    assert body["totals"]["calls"] == 8


async def test_a_longer_range_keeps_its_last_366_days_and_says_so(
    http: httpx.AsyncClient,
) -> None:
    body = _ok(
        await http.get(PATH, params={"from": "2020-01-01", "to": "2026-03-02"}, headers=TOKEN)
    )
    assert (body["from"], body["to"]) == ("2025-03-02", "2026-03-02")
    assert body["totals"]["calls"] == 8


async def test_a_range_that_ends_before_it_starts_reads_nothing(http: httpx.AsyncClient) -> None:
    body = _ok(
        await http.get(PATH, params={"from": "2026-03-02", "to": "2026-03-01"}, headers=TOKEN)
    )
    assert (body["items"], body["totals"]["calls"]) == ([], 0)


async def test_reading_spending_takes_the_right_to_get_the_namespaces_budgets(
    aredis: RedisClient,
) -> None:
    auth = fakes.FakeAuthorizer({"team"}, tokens={"alice-token": User("alice")})
    async with fakes.client(usage_app(aredis, auth)) as http:
        fakes.error_of(await http.get(PATH), 401, "Unauthorized")
        message = fakes.error_of(await http.get(PATH, headers=TOKEN), 403, "Forbidden")
        assert message == "alice may not get agentbudgets in team"
        assert ("alice", "team:get agentbudgets") in auth.reviews
        auth.steering.add(("team", "get agentbudgets"))
        assert _ok(await http.get(PATH, headers=TOKEN))["items"] == []
