"""The API assembled: stacks from the watch cache, everything else from Redis.

:func:`create_app` builds the services over the cache, Redis, the live streams' hub
(:mod:`.tailing`) and the Authorizer, puts them on ``app.state`` (where :mod:`.params`
hands them to routes), installs the error handlers of :mod:`.errors` and includes the
routers of :mod:`.routes`:

- :mod:`.routes.stacks` — ``/api/v1/stacks`` and one stack's agents, pages, state and
  archive search;
- :mod:`.routes.streams` — Server-Sent Events of a stack's trace and feed, and the fleet;
- :mod:`.routes.steering` — inputs sent to a stack (``POST``, checked by RBAC) and their
  log; pause, resume and stop, patched with the caller's own token;
- :mod:`.routes.webhooks` — signed deliveries from callers without a Kubernetes
  identity, sent as inputs (no bearer token: the signature is the credential);
- :mod:`.routes.a2a` — each stack as an A2A agent: its card, and its JSON-RPC
  endpoint whose messages are inputs (checked by RBAC as inputs are);
- :mod:`.routes.usage` — a namespace's chargeback: what its stacks spent by day, stack
  and model (checked by RBAC as a read of its budgets);
- :mod:`.routes.live` — ``/``, the live page;
- :mod:`.routes.probes` — ``/healthz``, ``/readyz``, ``/metrics``.

The middleware here applies to every route: requests with a body over
:data:`MAX_REQUEST_BYTES` (a webhook's: :data:`~.webhooks.MAX_DELIVERY_BYTES`) are
refused (413) unread, and each response's time to first
byte is observed in ``agentstack_api_request_duration_seconds`` by method, route
template and status class. No response carries a Secret or an API key: the spec
summary says whether a provider uses a Secret, never which value it holds.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from prometheus_client import Histogram

from agentstack_api.a2aserver import StackAgents
from agentstack_api.access import StackAccess, StackSource
from agentstack_api.approvals import Approvals
from agentstack_api.auth import Authorizer
from agentstack_api.chargeback import Chargeback
from agentstack_api.errors import (
    ERROR_RESPONSES,
    install_error_handlers,
    request_too_large,
)
from agentstack_api.executionstate import StackCreator, StateWriter
from agentstack_api.forks import Forks
from agentstack_api.inputs import Inputs
from agentstack_api.rollbacks import Rollbacks
from agentstack_api.routes import (
    a2a,
    checkpoints,
    live,
    probes,
    stacks,
    steering,
    streams,
    usage,
    webhooks,
)
from agentstack_api.sse import StreamViews
from agentstack_api.tailing import StreamHub
from agentstack_api.views import StackViews
from agentstack_api.webhooks import MAX_DELIVERY_BYTES, SecretSource, Webhooks
from agentstack_core.protocol import RedisClient

MAX_REQUEST_BYTES = 1024 * 1024
"""The largest body the API reads. Every valid body fits with room to spare, even JSON
that escapes each character at its worst (12 bytes, a surrogate pair as ``\\uXXXX``
twice): an input's 8,192 characters, a fork's eight 8,500-character overrides — and so
does a body just past a field's limit, which is then a 400 that says which, not a 413."""
WEBHOOK_PATH = "/webhooks/"
"""Webhook deliveries may be larger (each webhook's ``maxBodyBytes``, at most
:data:`~.webhooks.MAX_DELIVERY_BYTES`): their route enforces its own limit."""

REQUEST_DURATION = Histogram(
    "agentstack_api_request_duration_seconds",
    "Time to the first byte of API responses, by method, route and status class.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


def _int(value: str | None, default: int = 0) -> int:
    try:
        return int(float(value)) if value not in (None, "") else default
    except ValueError:
        return default


async def observe(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Refuse large bodies; time every response by its route template (low cardinality)."""
    started = time.perf_counter()
    declared = request.headers.get("content-length")
    limit = MAX_DELIVERY_BYTES if WEBHOOK_PATH in request.url.path else MAX_REQUEST_BYTES
    if declared and _int(declared) > limit:
        response: Response = request_too_large(limit)
    else:
        response = await call_next(request)
    route = request.scope.get("route")
    template = getattr(route, "path", "unmatched")
    REQUEST_DURATION.labels(request.method, template, f"{response.status_code // 100}xx").observe(
        time.perf_counter() - started
    )
    return response


def create_app(
    *,
    cache: StackSource,
    redis: RedisClient,
    hub: StreamHub,
    auth: Authorizer,
    state_writer: StateWriter,
    secrets: SecretSource | None,
    creator: StackCreator | None = None,
    cors_origins: list[str] | None = None,
    public_url: str = "",
) -> FastAPI:
    """The app: pages from ``redis`` (the requests' pool), live streams from ``hub``;
    webhooks when ``secrets`` can read their keys (``None``: no webhook route); forks
    when ``creator`` can create stacks (``None``: a 503); A2A
    cards name their endpoint under ``public_url`` (empty: as each request came in)."""
    app = FastAPI(
        title="agentstack read API",  # the published schema's title: kept as it was
        version="v1",
        description="Stacks, agents, ticks, traces, messages, memory and artifacts of "
        "AgentStacks, a search of what each archived, with live Server-Sent Events; and "
        "inputs sent to a stack's agents, authorised by RBAC.",
        responses=ERROR_RESPONSES,
    )
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
        )
    app.middleware("http")(observe)
    install_error_handlers(app)

    access = StackAccess(cache, auth)
    app.state.access = access
    app.state.views = StackViews(redis)
    app.state.streams = StreamViews(hub, access)
    app.state.inputs = Inputs(redis, cache)
    if secrets is not None:
        app.state.webhooks = Webhooks(cache, secrets, app.state.inputs)
    app.state.a2a = StackAgents(app.state.inputs, redis, hub, public_url=public_url)
    app.state.approvals = Approvals(redis)
    app.state.chargeback = Chargeback(redis)
    app.state.state_writer = state_writer
    app.state.rollbacks = Rollbacks(redis, state_writer)
    app.state.forks = Forks(redis, state_writer, creator)

    routers = (
        probes.router,
        live.router,
        stacks.router,
        streams.router,
        steering.router,
        checkpoints.router,
        usage.router,
        a2a.router,
        *((webhooks.router,) if secrets is not None else ()),
    )
    for router in routers:
        app.include_router(router)
    app.state.routes = [route for router in routers for route in router.routes]
    return app
