"""The async Kubernetes client's wire behaviour where a real API server cannot be made
to misbehave on demand: a local HTTP server answers as one would (an ``ERROR`` line in
a watch, one object longer than a stream buffer, silence past the read timeout)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web

from agentstack_core.kube.client import KubeClient
from agentstack_core.kube.errors import GoneError, NotFoundError, UnreachableError
from agentstack_core.kube.manifests import WatchEvent
from agentstack_core.kube.settings import KubeSettings, Timeouts, TokenFile
from tests.localserver import Handler, serve


class Recorder:
    """The requests the server saw: method, path and Authorization header."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []


@pytest_asyncio.fixture
async def served(tmp_path: Path) -> AsyncIterator[Callable[[Handler], Awaitable[KubeClient]]]:
    runners: list[web.AppRunner] = []
    clients: list[KubeClient] = []
    token = tmp_path / "token"
    token.write_text("ours")

    async def start(handler: Handler) -> KubeClient:
        runner, url = await serve(handler)
        runners.append(runner)
        kube = KubeClient(
            KubeSettings(url, TokenFile(token, reread_seconds=0), timeouts=Timeouts(1.0, 0.3))
        )
        clients.append(kube)
        return kube

    yield start
    for kube in clients:
        await kube.close()
    for runner in runners:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_a_watch_error_line_is_raised_as_its_status(
    served: Callable[[Handler], Awaitable[KubeClient]],
) -> None:
    big = "x" * 300_000  # longer than the stream reader's line buffer

    async def watch(request: web.Request) -> web.StreamResponse:
        assert request.query["resourceVersion"] == "5"
        response = web.StreamResponse()
        await response.prepare(request)
        added = {"type": "ADDED", "object": {"metadata": {"resourceVersion": "6"}, "big": big}}
        expired = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}
        for line in (added, {"type": "BOOKMARK", "object": {}}, expired):
            await response.write(json.dumps(line).encode() + b"\n")
        return response

    kube = await served(watch)
    events: list[WatchEvent] = []

    async def read_all() -> None:
        async for event in kube.watch("apis/x/v1/things", "5"):
            events.append(event)

    with pytest.raises(GoneError):
        await read_all()
    assert [e.type for e in events] == ["ADDED", "BOOKMARK"]
    assert events[0].resource_version == "6"
    assert events[0].object["big"] == big


@pytest.mark.asyncio
async def test_a_server_that_stops_answering_fails_the_call(
    served: Callable[[Handler], Awaitable[KubeClient]],
) -> None:
    async def silent(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(1)
        return web.json_response({})

    kube = await served(silent)
    with pytest.raises(UnreachableError):
        await asyncio.wait_for(kube.get("api/v1/namespaces/a"), 3)


@pytest.mark.asyncio
async def test_a_refusal_and_a_refused_connection_are_typed(
    served: Callable[[Handler], Awaitable[KubeClient]],
) -> None:
    async def missing(request: web.Request) -> web.StreamResponse:
        status = {"kind": "Status", "reason": "NotFound", "message": 'secrets "k" not found'}
        return web.json_response(status, status=404)

    kube = await served(missing)
    with pytest.raises(NotFoundError) as found:
        await kube.get("api/v1/namespaces/a/secrets/k")
    assert found.value.message == 'secrets "k" not found'
    closed = KubeClient(KubeSettings("http://127.0.0.1:9", kube.settings.credentials))
    try:
        with pytest.raises(UnreachableError):
            await closed.get("api/v1/namespaces")
    finally:
        await closed.close()


@pytest.mark.asyncio
async def test_the_token_is_asked_for_on_each_call_and_a_callers_token_replaces_ours(
    served: Callable[[Handler], Awaitable[KubeClient]], tmp_path: Path
) -> None:
    recorder = Recorder()

    async def record(request: web.Request) -> web.StreamResponse:
        recorder.seen.append((request.method, request.path, request.headers.get("Authorization")))
        if request.method == "PATCH":
            assert request.content_type == "application/merge-patch+json"
            assert await request.json() == {"spec": {"x": 1}}
        return web.json_response({"kind": "Thing"})

    kube = await served(record)
    await kube.get("api/v1/a")
    (tmp_path / "token").write_text("rotated")
    await kube.merge_patch("/api/v1/b", {"spec": {"x": 1}})
    await kube.merge_patch("api/v1/c", {"spec": {"x": 1}}, token="theirs")
    assert recorder.seen == [
        ("GET", "/api/v1/a", "Bearer ours"),
        ("PATCH", "/api/v1/b", "Bearer rotated"),
        ("PATCH", "/api/v1/c", "Bearer theirs"),
    ]
