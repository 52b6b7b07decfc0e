"""Live reads as Server-Sent Events; a client resumes with ``Last-Event-ID``.

Routes (``GET``, ``text/event-stream``)::

    /api/v1/namespaces/{namespace}/stacks/{name}/traces/stream   event: trace
    /api/v1/namespaces/{namespace}/stacks/{name}/feed/stream     event: feed
    /api/v1/stacks/stream                                        event: upsert | delete

A stack's stream is authorized once, when it opens (403, 404); the fleet stream shows
changes of the namespaces the caller may get. :class:`~..sse.StreamViews` writes the
events; these routes wrap them in a response that proxies do not buffer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from agentstack_api.params import (
    STACK_PATH,
    Access,
    Caller,
    LastChange,
    LastStreamId,
    Name,
    Namespace,
    Streams,
)
from agentstack_api.views import FEED, TRACES, StreamKind
from agentstack_core.redis.reader import clamp_stream_id

router = APIRouter()


def sse(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _stack_stream(kind: StreamKind[Any]) -> Any:
    """The route streaming ``kind``'s new entries (one for traces, one for the feed)."""

    async def endpoint(
        request: Request,
        namespace: Namespace,
        name: Name,
        caller: Caller,
        access: Access,
        streams: Streams,
        last_event_id: LastStreamId = None,
    ) -> StreamingResponse:
        stack = await access.readable(caller, namespace, name)
        start = clamp_stream_id(last_event_id) if last_event_id else "$"
        return sse(streams.tail(stack, kind, start, request.is_disconnected))

    return endpoint


for _suffix, _kind, _summary in (
    ("traces", TRACES, "Live trace entries (Server-Sent Events, event: trace)"),
    ("feed", FEED, "Live feed updates (Server-Sent Events, event: feed)"),
):
    router.get(
        f"{STACK_PATH}/{_suffix}/stream", response_class=StreamingResponse, summary=_summary
    )(_stack_stream(_kind))


@router.get(
    "/api/v1/stacks/stream",
    response_class=StreamingResponse,
    summary="Fleet-wide stack changes (Server-Sent Events, event: upsert | delete)",
)
async def fleet_stream(
    request: Request, caller: Caller, streams: Streams, last_event_id: LastChange = None
) -> StreamingResponse:
    after = int(last_event_id) if last_event_id is not None else None
    return sse(streams.fleet(caller, after, request.is_disconnected))
