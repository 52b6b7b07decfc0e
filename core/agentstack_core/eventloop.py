"""The event loop every agentstack process runs on.

uvloop (libuv under asyncio's API) unless ``AGENTSTACK_EVENT_LOOP=asyncio`` asks for
the standard library's. The operator's fixed cost is mostly the loop's own work —
waking up for timers, socket reads and writes to Redis and the API server — and the
runner's is the same plus Redis replies; uvloop does that work in C. The switch exists
as a way out should a problem ever be traced to uvloop, and as the baseline its
benchmark compares against (``bench/RESULTS.md``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import uvloop

from agentstack_core.settings import CommonSettings

T = TypeVar("T")
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "uvloop": uvloop.new_event_loop,
    "asyncio": asyncio.new_event_loop,
}
"""``AGENTSTACK_EVENT_LOOP`` values, the first the default."""


def run(main: Coroutine[Any, Any, T], loop: str | None = None) -> T:
    """``asyncio.run(main)`` on the ``loop`` a process's settings name (default: the
    environment's ``AGENTSTACK_EVENT_LOOP``)."""
    name = loop or CommonSettings.from_env().event_loop
    with asyncio.Runner(loop_factory=LOOPS[name]) as runner:
        return runner.run(main)
