"""The assembled read API: probes, the live page, the error body, metrics and OpenAPI.

``create_app`` is built as the server builds it, over a fake cache, a fake Authorizer
and a Redis client of no server (nothing here reads Redis: a route that did would
answer 500); the probes and the error handlers are also tried on apps of their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from fastapi import APIRouter, FastAPI

from agentstack_api.access import StackAccess
from agentstack_api.app import MAX_REQUEST_BYTES, create_app
from agentstack_api.routes import live, probes
from agentstack_core.redis.errors import NotDurableError
from tests.unit import test_api_fakes as fakes

STACK = "/api/v1/namespaces/{namespace}/stacks/{name}"


def _app(cache: fakes.FakeCache | None = None) -> FastAPI:
    cache = cache if cache is not None else fakes.FakeCache([fakes.stack("team", "alpha")])
    redis = fakes.unreachable_redis()
    return create_app(
        cache=cache,
        redis=redis,
        hub=fakes.hub(redis),
        auth=fakes.FakeAuthorizer({"team"}),
        state_writer=fakes.FakeStateWriter(),
        secrets=fakes.FakeSecrets(),
    )


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with fakes.client(_app()) as http:
        yield http


@pytest.mark.asyncio
async def test_readyz_is_503_until_the_cache_has_loaded() -> None:
    cache = fakes.FakeCache(ready=False)
    access = StackAccess(cache, fakes.FakeAuthorizer())
    async with fakes.client(fakes.app_with(probes.router, access=access)) as http:
        loading = await http.get("/readyz")
        assert "still loading" in fakes.error_of(loading, 503, "NotReady")
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        cache.ready.set()
        ready = await http.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ok"})


@pytest.mark.asyncio
async def test_the_live_page_is_served_alone() -> None:
    async with fakes.client(fakes.app_with(live.router, access=None)) as http:
        page = await http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'id="fleet"' in page.text
    assert 'id="trace"' in page.text


@pytest.mark.asyncio
async def test_the_live_pages_script_is_served_and_nothing_else_of_the_package() -> None:
    async with fakes.client(fakes.app_with(live.router, access=None)) as http:
        page = await http.get("/")
        script = await http.get("/static/app.js")
        source_map = await http.get("/static/app.js.map")
        others = [
            await http.get(f"/static/{name}")
            for name in ("index.html", "..%2F__init__.py", "%2E%2E%2Froutes%2Flive.py", "x.js")
        ]
    assert 'src="static/app.js"' in page.text
    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert script.headers["cache-control"] == "no-cache"
    assert source_map.headers["content-type"] == "application/json"
    assert "../../../web/src/main.ts" in source_map.json()["sources"]
    for other in others:
        fakes.error_of(other, 404, "NotFound")


@pytest.mark.asyncio
async def test_routing_failures_share_the_error_body(http: httpx.AsyncClient) -> None:
    fakes.error_of(await http.get("/api/v1/no-such-route"), 404, "NotFound")
    not_allowed = await http.post("/api/v1/stacks")
    fakes.error_of(not_allowed, 405, "MethodNotAllowed")
    assert not_allowed.headers["allow"] == "GET"
    # A path two routes serve names both methods (Starlette alone names the first).
    inputs = await http.delete(f"{STACK.format(namespace='team', name='demo')}/inputs")
    fakes.error_of(inputs, 405, "MethodNotAllowed")
    assert inputs.headers["allow"] == "GET, POST"
    too_large = await http.post("/api/v1/stacks", content=b"x" * (MAX_REQUEST_BYTES + 1))
    assert "1024 KiB" in fakes.error_of(too_large, 413, "RequestTooLarge")


@pytest.mark.asyncio
async def test_an_unexpected_failure_is_a_500_that_tells_nothing() -> None:
    router = APIRouter()

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("redis password is hunter2")

    async with fakes.client(fakes.app_with(router, access=None)) as http:
        failed = await http.get("/boom")
    message = fakes.error_of(failed, 500, "InternalError")
    assert "hunter2" not in failed.text
    assert "see the API's log" in message


@pytest.mark.asyncio
async def test_a_write_the_replicas_did_not_confirm_is_a_503_to_look_at_again() -> None:
    router = APIRouter()

    @router.post("/decide")
    async def decide() -> None:
        raise NotDurableError("decide_approval: 0 of 1 replica(s) confirmed it within 0.5s")

    async with fakes.client(fakes.app_with(router, access=None)) as http:
        answered = await http.post("/decide")
    message = fakes.error_of(answered, 503, "NotConfirmed")
    assert "look at the stack before sending it again" in message
    assert answered.headers["retry-after"] == "1"


@pytest.mark.asyncio
async def test_requests_are_timed_by_route_template(http: httpx.AsyncClient) -> None:
    await http.get("/api/v1/namespaces/team/stacks/alpha")
    await http.get("/api/v1/namespaces/team/stacks/nope")
    await http.get("/nowhere/at/all")
    metrics = (await http.get("/metrics")).text
    series = "agentstack_api_request_duration_seconds_count"
    for labels in (
        f'method="GET",route="{STACK}",status="2xx"',
        f'method="GET",route="{STACK}",status="4xx"',
        'method="GET",route="unmatched",status="4xx"',
    ):
        assert f"{series}{{{labels}}}" in metrics
    assert "/api/v1/namespaces/team/stacks/alpha" not in metrics  # no raw paths as labels


def test_the_openapi_schema_documents_every_read_and_no_probe() -> None:
    schema = _app().openapi()
    operations = {(method, path) for path, item in schema["paths"].items() for method in item}
    steering = {
        ("post", f"{STACK}/inputs"),
        ("post", f"{STACK}/state"),
        ("post", f"{STACK}/approvals/{{approval}}"),
        ("post", f"{STACK}/webhooks/{{webhook}}"),
        ("post", f"{STACK}/a2a"),
        ("post", f"{STACK}/rollback"),
        ("post", f"{STACK}/fork"),
    }
    sent = schema["paths"][f"{STACK}/inputs"]["post"]["responses"]
    assert {"202", "400", "401", "403", "404", "409", "413", "429"} <= set(sent)
    delivered = schema["paths"][f"{STACK}/webhooks/{{webhook}}"]["post"]["responses"]
    assert {"202", "401", "409", "413", "429", "503"} <= set(delivered)
    called = schema["paths"][f"{STACK}/a2a"]["post"]["responses"]
    assert {"200", "400", "401", "403", "404"} <= set(called)
    rolled = schema["paths"][f"{STACK}/rollback"]["post"]["responses"]
    assert {"200", "400", "401", "403", "404", "409", "503"} <= set(rolled)
    forked = schema["paths"][f"{STACK}/fork"]["post"]["responses"]
    assert {"201", "400", "401", "403", "404", "409", "422", "503"} <= set(forked)
    operations -= steering
    reads = ("", "/agents", "/approvals", "/artifacts", "/checkpoints", "/feed", "/inputs")
    reads += ("/memory",)
    reads += ("/messages", "/search", "/ticks")
    reads += ("/traces", "/a2a/.well-known/agent-card.json")
    streams = ("/feed/stream", "/traces/stream")
    stack_paths = {f"{STACK}{suffix}" for suffix in reads + streams}
    fleet_paths = {"/api/v1/stacks", "/api/v1/stacks/stream"}
    namespace_paths = {"/api/v1/namespaces/{namespace}/usage"}
    assert operations == {("get", path) for path in stack_paths | fleet_paths | namespace_paths}
    charged = schema["paths"]["/api/v1/namespaces/{namespace}/usage"]["get"]
    assert {"200", "400", "401", "403"} <= set(charged["responses"])
    assert {p["name"] for p in charged["parameters"] if p["in"] != "header"} == {
        "namespace",
        "from",
        "to",
    }
    for path in stack_paths:
        documented = set(schema["paths"][path]["get"]["responses"])
        assert {"200", "400", "401", "403", "404"} <= documented, path
    ticks = schema["paths"][f"{STACK}/ticks"]["get"]
    assert ticks["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TickPage"
    }
