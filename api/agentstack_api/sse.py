"""Live streams as Server-Sent Events text: a stack's trace or feed, and the fleet.

Each stream starts with ``retry: 2000`` (how long a browser waits before reconnecting),
then sends one ``id:``/``event:``/``data:`` block per entry, and a ``: keep-alive``
comment when nothing was sent for :data:`SSE_HEARTBEAT_SECONDS`, so proxies keep an
idle connection open. The ``id`` is what a client sends back as ``Last-Event-ID``:

- a stack's stream uses Redis stream ids, so a reconnecting client resumes exactly
  after the last entry it saw (entries kept in the capped stream are replayed);
- the fleet uses the cache's change numbers, which are per API process.

A stack's entries come from the :class:`~.tailing.StreamHub`, which shares one blocking
Redis read among every client of a group of streams (and catches each client up first);
a client too slow for its queue is dropped there, and its stream ends here (it resumes
with ``Last-Event-ID``). ``agentstack_api_sse_subscribers`` counts the streams open.

:class:`StreamViews` produces the text; it checks nothing itself: a stack's stream is
handed a stack :class:`~.access.StackAccess` resolved for the caller, and the fleet
stream filters changes through the caller's :class:`~.access.NamespaceGate`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from prometheus_client import Gauge

from agentstack_api.access import StackAccess
from agentstack_api.auth import User
from agentstack_api.tailing import DroppedError, StreamHub
from agentstack_api.views import StreamKind, stack_ref
from agentstack_core.keys import StackKeys

SSE_HEARTBEAT_SECONDS = 15.0
RETRY = "retry: 2000\n\n"
KEEP_ALIVE = ": keep-alive\n\n"

Disconnected = Callable[[], Awaitable[bool]]
"""Whether the client has gone (``Request.is_disconnected``): streams end then."""

SUBSCRIBERS = Gauge(
    "agentstack_api_sse_subscribers",
    "Live streams (Server-Sent Events) open: stacks' traces and feeds, and the fleet.",
)


def event(event_id: str | int, kind: str, data: str) -> str:
    """One Server-Sent Event; ``data`` is one line of JSON."""
    return f"id: {event_id}\nevent: {kind}\ndata: {data}\n\n"


class StreamViews:
    """The text of live streams, from the hub (a stack's entries) and the cache (the fleet)."""

    def __init__(
        self,
        hub: StreamHub,
        access: StackAccess,
        *,
        heartbeat_seconds: float = SSE_HEARTBEAT_SECONDS,
    ) -> None:
        self.hub = hub
        self.access = access
        self.heartbeat_seconds = heartbeat_seconds

    async def tail(
        self,
        stack: dict[str, Any],
        kind: StreamKind[Any],
        start: str,
        disconnected: Disconnected,
    ) -> AsyncIterator[str]:
        """``kind`` entries newer than ``start`` (a stream id; ``$``: only new ones)."""
        key = kind.key_of(StackKeys(stack_ref(stack)))
        tail = await self.hub.follow(key, start)
        with SUBSCRIBERS.track_inprogress(), contextlib.closing(tail):
            yield RETRY
            while not await disconnected():
                try:
                    entries = await tail.next(self.heartbeat_seconds)
                except DroppedError:
                    return  # too slow: the client reconnects with Last-Event-ID
                for entry_id, fields in entries:
                    data = kind.render(entry_id, fields).model_dump_json(by_alias=True)
                    yield event(entry_id, kind.event, data)
                if not entries:
                    yield KEEP_ALIVE

    async def fleet(
        self, caller: User, after: int | None, disconnected: Disconnected
    ) -> AsyncIterator[str]:
        """Changes of the stacks the caller may get, numbered above ``after``."""
        yield RETRY
        subscription = self.access.subscribe(after)
        gate = self.access.gate(caller)
        try:
            with SUBSCRIBERS.track_inprogress():
                while not await disconnected():
                    change = await subscription.next(self.heartbeat_seconds)
                    if change is None:
                        yield KEEP_ALIVE
                        continue
                    if await gate.allows(str(change.stack["namespace"])):
                        yield event(change.seq, change.kind, json.dumps(change.stack))
        finally:
            subscription.close()
