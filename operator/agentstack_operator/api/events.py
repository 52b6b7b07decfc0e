"""Live streams as Server-Sent Events text: a stack's trace or feed, and the fleet.

Each stream starts with ``retry: 2000`` (how long a browser waits before reconnecting),
then sends one ``id:``/``event:``/``data:`` block per entry, and a ``: keep-alive``
comment when nothing was sent for :data:`SSE_HEARTBEAT_SECONDS`, so proxies keep an
idle connection open. The ``id`` is what a client sends back as ``Last-Event-ID``:

- a stack's stream uses Redis stream ids, so a reconnecting client resumes exactly
  after the last entry it saw (entries kept in the capped stream are replayed);
- the fleet uses the cache's change numbers, which are per API process.

:class:`StreamViews` produces the text; it checks nothing itself: a stack's stream is
handed a stack :class:`~.access.StackAccess` resolved for the caller, and the fleet
stream filters changes through the caller's :class:`~.access.NamespaceGate`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from agentstack_core.protocol import RedisClient
from agentstack_operator.api.access import StackAccess
from agentstack_operator.api.auth import User
from agentstack_operator.api.views import StreamKind, stack_reader

SSE_BLOCK_MS = 5_000
"""How long one Redis read of a stack's stream waits for new entries."""
SSE_HEARTBEAT_SECONDS = 15.0
RETRY = "retry: 2000\n\n"
KEEP_ALIVE = ": keep-alive\n\n"

Disconnected = Callable[[], Awaitable[bool]]
"""Whether the client has gone (``Request.is_disconnected``): streams end then."""


def event(event_id: str | int, kind: str, data: str) -> str:
    """One Server-Sent Event; ``data`` is one line of JSON."""
    return f"id: {event_id}\nevent: {kind}\ndata: {data}\n\n"


class StreamViews:
    """The text of live streams, from Redis (a stack's entries) and the cache (the fleet)."""

    def __init__(
        self,
        redis: RedisClient,
        access: StackAccess,
        *,
        block_ms: int = SSE_BLOCK_MS,
        heartbeat_seconds: float = SSE_HEARTBEAT_SECONDS,
    ) -> None:
        self.redis = redis
        self.access = access
        self.block_ms = block_ms
        self.heartbeat_seconds = heartbeat_seconds

    async def tail(
        self,
        stack: dict[str, Any],
        kind: StreamKind[Any],
        start: str,
        disconnected: Disconnected,
    ) -> AsyncIterator[str]:
        """``kind`` entries newer than ``start`` (a stream id; ``$``: only new ones)."""
        reader = stack_reader(self.redis, stack)
        key = kind.key_of(reader.keys)
        last = start if start != "$" else await reader.last_id(key)
        yield RETRY
        beat = time.monotonic()
        while not await disconnected():
            entries = await reader.after(key, last, block_ms=self.block_ms)
            for entry_id, fields in entries:
                last = entry_id
                data = kind.render(entry_id, fields).model_dump_json(by_alias=True)
                yield event(entry_id, kind.event, data)
            if not entries and time.monotonic() - beat > self.heartbeat_seconds:
                beat = time.monotonic()
                yield KEEP_ALIVE

    async def fleet(
        self, caller: User, after: int | None, disconnected: Disconnected
    ) -> AsyncIterator[str]:
        """Changes of the stacks the caller may get, numbered above ``after``."""
        yield RETRY
        subscription = self.access.subscribe(after)
        gate = self.access.gate(caller)
        try:
            while not await disconnected():
                change = await subscription.next(self.heartbeat_seconds)
                if change is None:
                    yield KEEP_ALIVE
                    continue
                if await gate.allows(str(change.stack["namespace"])):
                    yield event(change.seq, change.kind, json.dumps(change.stack))
        finally:
            subscription.close()
