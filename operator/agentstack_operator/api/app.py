"""The read API: stacks from the watch cache, everything else from Redis, live over SSE.

Routes (all ``GET``, versioned under ``/api/v1``)::

    /stacks                                   list (namespace, state filters; cursor paging)
    /stacks/stream                            SSE: fleet-wide stack changes
    /namespaces/{ns}/stacks/{name}            one stack: spec summary and status
    /namespaces/{ns}/stacks/{name}/agents     its agents (models, memory and inbox sizes)
    …/ticks  …/traces  …/feed  …/messages     stream pages, newest first, by stream id
    …/memory  …/artifacts                     shared plan, agents' memory, artifacts
    …/traces/stream  …/feed/stream            SSE with Last-Event-ID resumption

Errors share one body, ``{"error": {"status", "code", "message"}}``; bad parameters are
400s, unknown stacks 404s, missing or rejected credentials 401, RBAC refusals 403. No
response carries a Secret or an API key: the spec summary says whether a provider uses
a Secret, never which value it holds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from agentstack_core.keys import StackRef
from agentstack_core.protocol import RedisClient
from agentstack_core.records import FeedRecord, MessageRecord, TickRecord, TraceRecord
from agentstack_core.spec import (
    DEFAULT_TEAM,
    DEFAULTS,
    SpecError,
    StackSpec,
    execution_state_of,
    parse_spec,
)
from agentstack_core.store import StackReader
from agentstack_operator.api import models
from agentstack_operator.api.auth import AuthError, Authorizer, User
from agentstack_operator.api.cache import StackCache, summary

logger = logging.getLogger(__name__)

SSE_BLOCK_MS = 5_000
SSE_HEARTBEAT_SECONDS = 15.0
MAX_REQUEST_BYTES = 64 * 1024
MAX_PAGE = 500
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"

REQUEST_DURATION = Histogram(
    "agentstack_api_request_duration_seconds",
    "Time to the first byte of read-API responses, by method, route and status class.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _error(status: int, code: str, message: str) -> JSONResponse:
    body = models.ErrorResponse(error=models.ErrorBody(status=status, code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status)


_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": models.ErrorResponse, "description": text}
    for code, text in (
        (400, "Invalid parameters"),
        (401, "Missing or rejected credentials"),
        (403, "RBAC does not allow get on this stack"),
        (404, "No such stack"),
    )
}

Namespace = Annotated[str, Path(pattern=NAME_PATTERN, max_length=253)]
Name = Annotated[str, Path(pattern=NAME_PATTERN, max_length=253)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"Page size (max {MAX_PAGE}).")]
STREAM_ID_PATTERN = r"^\d{1,20}-\d{1,20}$"
Cursor = Annotated[
    str | None,
    Query(
        description="Stream id: return entries older than this one.",
        pattern=STREAM_ID_PATTERN,
        max_length=41,
    ),
]


async def current_user(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> User:
    """The caller, authenticated by the app's :class:`Authorizer` (401 if refused)."""
    auth: Authorizer = request.app.state.auth
    try:
        return await auth.authenticate(authorization)
    except AuthError as exc:
        raise ApiError(401, "Unauthorized", str(exc)) from exc


Caller = Annotated[User, Depends(current_user)]


def _int(value: str | None, default: int = 0) -> int:
    try:
        return int(float(value)) if value not in (None, "") else default
    except ValueError:
        return default


def _float(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def tick_entry(entry_id: str, fields: dict[str, str]) -> models.TickEntry:
    r = TickRecord.from_fields(fields)
    return models.TickEntry(
        id=entry_id,
        tickId=r.tick_id,
        outcome=r.outcome,
        reason=r.reason,
        message=r.message,
        startedAt=r.started_at,
        finishedAt=r.finished_at,
        durationMs=r.duration_ms,
        tokens=r.tokens,
        steps=r.steps,
        progressed=r.progressed,
        runner=r.runner,
    )


def trace_entry(entry_id: str, fields: dict[str, str]) -> models.TraceEntry:
    r = TraceRecord.from_fields(fields)
    return models.TraceEntry(
        id=entry_id,
        tickId=r.tick_id,
        agent=r.agent,
        role=r.role,
        outcome=r.outcome,
        reason=r.reason,
        model=r.model,
        fallback=r.fallback,
        attempts=[
            models.Attempt(model=a.model, outcome=a.outcome, seconds=a.seconds) for a in r.attempts
        ],
        prompt=r.prompt,
        promptTokens=r.prompt_tokens,
        completionTokens=r.completion_tokens,
        latencyMs=r.latency_ms,
        thought=r.thought,
        actions=list(r.actions),
        refused=list(r.refused),
        error=r.error,
        at=r.at,
    )


def feed_entry(entry_id: str, fields: dict[str, str]) -> models.FeedEntry:
    r = FeedRecord.from_fields(fields)
    return models.FeedEntry(
        id=entry_id, agent=r.agent, content=r.content, tickId=r.tick_id, at=r.at
    )


def message_entry(entry_id: str, fields: dict[str, str], agent: str) -> models.Message:
    r = MessageRecord.from_fields(fields)
    return models.Message.model_validate(
        {
            "id": entry_id,
            "from": r.sender,
            "to": agent,
            "content": r.content,
            "tickId": r.tick_id,
            "at": r.at,
        }
    )


def spec_summary(spec: dict[str, Any]) -> models.SpecSummary:
    """What a dashboard shows of a spec: parsed with the shared model (its defaults),
    or — for a spec that does not parse — what the manifest says, defaults filled in."""
    try:
        parsed: StackSpec | None = parse_spec(spec)
    except SpecError:
        parsed = None
    budget = spec.get("budget") or {}
    if parsed is None:
        d = DEFAULTS
        return models.SpecSummary(
            goal=str(spec.get("goal", "")),
            executionState=execution_state_of(spec).value,
            tickIntervalSeconds=_float(spec.get("tickIntervalSeconds")) or d.tick_interval_seconds,
            tickTimeoutSeconds=_float(spec.get("tickTimeoutSeconds")) or d.tick_timeout_seconds,
            priority=str(spec.get("priority", d.priority.value)),
            executor=str(spec.get("executor", d.executor.value)),
            missedTickPolicy=str(spec.get("missedTickPolicy", d.missed_tick_policy.value)),
            budget={k: int(v) for k, v in budget.items() if isinstance(v, int)},
            agents=[],
            providers=[],
        )
    return models.SpecSummary(
        goal=parsed.goal,
        executionState=parsed.execution_state.value,
        tickIntervalSeconds=parsed.tick_interval_seconds,
        tickTimeoutSeconds=parsed.tick_timeout_seconds,
        priority=parsed.priority.value,
        executor=parsed.executor.value,
        missedTickPolicy=parsed.missed_tick_policy.value,
        budget={k: int(v) for k, v in budget.items() if isinstance(v, int)},
        agents=[
            models.AgentSpecSummary(
                name=a.name,
                role=a.role,
                models=[str(m) for m in a.models],
                customPrompt=a.system_prompt is not None,
            )
            for a in parsed.agents
        ],
        providers=[
            models.ProviderSummary(
                name=name, usesSecret=config.secret_ref is not None, baseURL=config.base_url
            )
            for name, config in sorted(parsed.providers.items())
        ],
    )


def _agent_names(obj: dict[str, Any]) -> list[str]:
    declared = (obj.get("spec") or {}).get("agents") or []
    names = [str(a.get("name")) for a in declared if isinstance(a, dict) and a.get("name")]
    return names or list(DEFAULT_TEAM)


def create_app(
    *,
    cache: StackCache,
    redis: RedisClient,
    auth: Authorizer,
    cors_origins: list[str] | None = None,
) -> FastAPI:
    app = FastAPI(
        title="agentstack read API",
        version="v1",
        description="Stacks, agents, ticks, traces, messages, memory and artifacts of "
        "AgentStacks, with live Server-Sent Events. Read-only.",
        responses=_ERROR_RESPONSES,
    )
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors_origins,
            allow_methods=["GET"],
            allow_headers=["Authorization", "Last-Event-ID"],
        )

    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        declared = request.headers.get("content-length")
        if declared and _int(declared) > MAX_REQUEST_BYTES:
            response: Response = _error(413, "RequestTooLarge", "requests carry no body here")
        else:
            response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        REQUEST_DURATION.labels(
            request.method, template, f"{response.status_code // 100}xx"
        ).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        return _error(400, "InvalidParameter", problems or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "NotFound", 405: "MethodNotAllowed"}
        response = _error(exc.status_code, codes.get(exc.status_code, "HTTPError"), str(exc.detail))
        response.headers.update(exc.headers or {})  # e.g. Allow on a 405
        return response

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error")
        return _error(500, "InternalError", "unexpected error; see the API's log")

    app.state.auth = auth

    async def readable(namespace: str, name: str, caller: User) -> dict[str, Any]:
        if not await auth.may_get(caller, namespace):
            raise ApiError(
                403, "Forbidden", f"{caller.name} may not get agentstacks in {namespace}"
            )
        obj = cache.get(namespace, name)
        if obj is None:
            raise ApiError(404, "NotFound", f"no AgentStack {namespace}/{name}")
        return obj

    def reader(namespace: str, name: str) -> StackReader:
        return StackReader(redis, StackRef(namespace, name))

    # -- health, metrics, page ---------------------------------------------------------

    @app.get("/healthz", response_model=models.Health, include_in_schema=False)
    async def healthz() -> models.Health:
        return models.Health(status="ok")

    @app.get("/readyz", response_model=models.Health, include_in_schema=False)
    async def readyz() -> Response:
        if not cache.ready.is_set():
            return _error(503, "NotReady", "the stack cache is still loading")
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        html = resources.files("agentstack_operator.api").joinpath("static/index.html")
        return HTMLResponse(html.read_text(encoding="utf-8"))

    # -- stacks --------------------------------------------------------------------------

    @app.get("/api/v1/stacks", response_model=models.StackList)
    async def list_stacks(
        caller: Caller,
        limit: Limit = 100,
        namespace: Annotated[str | None, Query(pattern=NAME_PATTERN, max_length=253)] = None,
        state: Annotated[str | None, Query(pattern="^(Running|Paused|Stopped)$")] = None,
        cursor: Annotated[
            str | None,
            Query(
                description="namespace/name of the last item seen",
                pattern=NAME_PATTERN.rstrip("$") + "/" + NAME_PATTERN.lstrip("^"),
                max_length=507,
            ),
        ] = None,
    ) -> models.StackList:
        after = tuple(cursor.split("/", 1)) if cursor is not None else None
        items: list[models.StackSummary] = []
        allowed: dict[str, bool] = {}
        next_cursor = None
        for obj in cache.items():
            meta = obj["metadata"]
            key = (meta["namespace"], meta["name"])
            if (after is not None and key <= after) or (namespace and key[0] != namespace):
                continue
            if state and (obj.get("spec") or {}).get("executionState", "Running") != state:
                continue
            if key[0] not in allowed:
                allowed[key[0]] = await auth.may_get(caller, key[0])
            if not allowed[key[0]]:
                continue
            if len(items) == limit:
                next_cursor = f"{items[-1].namespace}/{items[-1].name}"
                break
            items.append(models.StackSummary(**summary(obj)))
        return models.StackList(items=items, nextCursor=next_cursor)

    @app.get("/api/v1/namespaces/{namespace}/stacks/{name}", response_model=models.StackDetail)
    async def get_stack(namespace: Namespace, name: Name, caller: Caller) -> models.StackDetail:
        obj = await readable(namespace, name, caller)
        return models.StackDetail(
            **summary(obj),
            uid=str(obj["metadata"].get("uid", "")),
            generation=int(obj["metadata"].get("generation") or 0),
            spec=spec_summary(obj.get("spec") or {}),
            status=dict(obj.get("status") or {}),
        )

    @app.get("/api/v1/namespaces/{namespace}/stacks/{name}/agents", response_model=models.AgentList)
    async def agents(namespace: Namespace, name: Name, caller: Caller) -> models.AgentList:
        obj = await readable(namespace, name, caller)
        spec = spec_summary(obj.get("spec") or {})
        names = [agent.name for agent in spec.agents] or _agent_names(obj)
        stack = reader(namespace, name)
        memories = await stack.memories(names)
        inboxes = await stack.inbox_sizes(names)
        by_name = {agent.name: agent for agent in spec.agents}
        return models.AgentList(
            items=[
                models.AgentInfo(
                    **(
                        by_name[n].model_dump()
                        if n in by_name
                        else {"name": n, "role": n, "models": [], "customPrompt": False}
                    ),
                    memoryKeys=len(memories[n]),
                    inboxMessages=inboxes[n],
                )
                for n in names
            ]
        )

    def stream_page(
        key_of: Callable[[StackReader], str],
        render: Callable[[str, dict[str, str]], Any],
        page_model: type[Any],
    ) -> Any:
        """An endpoint serving one of a stack's streams a page at a time, newest first."""

        async def endpoint(
            namespace: Namespace,
            name: Name,
            caller: Caller,
            limit: Limit = 50,
            cursor: Cursor = None,
        ) -> Any:
            await readable(namespace, name, caller)
            stack = reader(namespace, name)
            page = await stack.page(key_of(stack), cursor=cursor, limit=limit)
            return page_model(
                items=[render(i, f) for i, f in page.entries], nextCursor=page.next_cursor
            )

        return endpoint

    stack_path = "/api/v1/namespaces/{namespace}/stacks/{name}"
    for suffix, key_of, render, page_model, summary_text in (
        ("ticks", lambda s: s.keys.history, tick_entry, models.TickPage, "Tick history"),
        ("traces", lambda s: s.keys.trace, trace_entry, models.TracePage, "Agent step traces"),
        ("feed", lambda s: s.keys.feed, feed_entry, models.FeedPage, "Progress updates"),
    ):
        app.get(f"{stack_path}/{suffix}", response_model=page_model, summary=summary_text)(
            stream_page(key_of, render, page_model)
        )

    @app.get(
        "/api/v1/namespaces/{namespace}/stacks/{name}/messages",
        response_model=models.MessagePage,
        response_model_by_alias=True,
    )
    async def messages(
        namespace: Namespace,
        name: Name,
        caller: Caller,
        agent: Annotated[
            str, Query(pattern=NAME_PATTERN, max_length=63, description="Inbox owner")
        ],
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> models.MessagePage:
        obj = await readable(namespace, name, caller)
        if agent not in _agent_names(obj):
            raise ApiError(404, "NotFound", f"no agent {agent!r} in {namespace}/{name}")
        stack = reader(namespace, name)
        page = await stack.page(stack.keys.inbox(agent), cursor=cursor, limit=limit)
        return models.MessagePage(
            items=[message_entry(i, f, agent) for i, f in page.entries],
            nextCursor=page.next_cursor,
        )

    @app.get("/api/v1/namespaces/{namespace}/stacks/{name}/memory", response_model=models.Memory)
    async def memory(namespace: Namespace, name: Name, caller: Caller) -> models.Memory:
        obj = await readable(namespace, name, caller)
        stack = reader(namespace, name)
        return models.Memory(
            plan=await stack.plan(),
            agents=await stack.memories(_agent_names(obj)),
            usage=await stack.usage(),
        )

    @app.get(
        "/api/v1/namespaces/{namespace}/stacks/{name}/artifacts",
        response_model=models.ArtifactList,
    )
    async def artifacts(namespace: Namespace, name: Name, caller: Caller) -> models.ArtifactList:
        await readable(namespace, name, caller)
        records = await reader(namespace, name).artifacts()
        return models.ArtifactList(
            items=[
                models.Artifact(
                    name=artifact,
                    status=str(r.get("status", "")),
                    version=int(r.get("version") or 0),
                    author=str(r.get("author", "")),
                    reviewer=r.get("reviewer"),
                    taskId=r.get("task_id"),
                    feedback=str(r.get("feedback", "")),
                    tickId=str(r.get("tick_id", "")),
                    updatedAt=_float(r.get("updated_at")),
                    content=str(r.get("content", "")),
                )
                for artifact, r in sorted(records.items())
            ]
        )

    # -- live ------------------------------------------------------------------------------

    def sse(events: AsyncIterator[str]) -> StreamingResponse:
        return StreamingResponse(
            events,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def stream_of(
        request: Request,
        key: str,
        stack: StackReader,
        kind: str,
        start: str,
        render: Callable[[str, dict[str, str]], Any],
    ) -> AsyncIterator[str]:
        last = start if start != "$" else await stack.last_id(key)
        yield "retry: 2000\n\n"
        beat = time.monotonic()
        while not await request.is_disconnected():
            entries = await stack.after(key, last, block_ms=SSE_BLOCK_MS)
            for entry_id, fields in entries:
                last = entry_id
                data = render(entry_id, fields).model_dump_json(by_alias=True)
                yield f"id: {entry_id}\nevent: {kind}\ndata: {data}\n\n"
            if not entries and time.monotonic() - beat > SSE_HEARTBEAT_SECONDS:
                beat = time.monotonic()
                yield ": keep-alive\n\n"

    def stack_stream(kind: str, key_of: Callable[[StackReader], str], render: Any) -> Any:
        async def endpoint(
            request: Request,
            namespace: Namespace,
            name: Name,
            caller: Caller,
            last_event_id: Annotated[
                str | None, Header(alias="Last-Event-ID", pattern=STREAM_ID_PATTERN, max_length=41)
            ] = None,
        ) -> StreamingResponse:
            await readable(namespace, name, caller)
            stack = reader(namespace, name)
            return sse(stream_of(request, key_of(stack), stack, kind, last_event_id or "$", render))

        return endpoint

    app.get(
        "/api/v1/namespaces/{namespace}/stacks/{name}/traces/stream",
        response_class=StreamingResponse,
        summary="Live trace entries (Server-Sent Events, event: trace)",
    )(stack_stream("trace", lambda s: s.keys.trace, trace_entry))
    app.get(
        "/api/v1/namespaces/{namespace}/stacks/{name}/feed/stream",
        response_class=StreamingResponse,
        summary="Live feed updates (Server-Sent Events, event: feed)",
    )(stack_stream("feed", lambda s: s.keys.feed, feed_entry))

    @app.get(
        "/api/v1/stacks/stream",
        response_class=StreamingResponse,
        summary="Fleet-wide stack changes (Server-Sent Events, event: upsert | delete)",
    )
    async def fleet_stream(
        request: Request,
        caller: Caller,
        last_event_id: Annotated[
            str | None, Header(alias="Last-Event-ID", pattern=r"^\d{1,18}$")
        ] = None,
    ) -> StreamingResponse:
        after = int(last_event_id) if last_event_id is not None else None

        async def events() -> AsyncIterator[str]:
            yield "retry: 2000\n\n"
            subscription = cache.subscribe(after)
            allowed: dict[str, bool] = {}
            try:
                while not await request.is_disconnected():
                    change = await subscription.next(SSE_HEARTBEAT_SECONDS)
                    if change is None:
                        yield ": keep-alive\n\n"
                        continue
                    namespace = str(change.stack["namespace"])
                    if namespace not in allowed:
                        allowed[namespace] = await auth.may_get(caller, namespace)
                    if allowed[namespace]:
                        data = json.dumps(change.stack)
                        yield f"id: {change.seq}\nevent: {change.kind}\ndata: {data}\n\n"
            finally:
                subscription.close()

        return sse(events())

    return app
