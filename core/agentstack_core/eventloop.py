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

from agentstack_core.environment import env_choice

T = TypeVar("T")
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "uvloop": uvloop.new_event_loop,
    "asyncio": asyncio.new_event_loop,
}
"""``AGENTSTACK_EVENT_LOOP`` values, the first the default."""


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """The configured loop's factory (``ValueError`` naming the variable if it is wrong;
    processes call this with their other settings, to fail before starting)."""
    return LOOPS[env_choice("AGENTSTACK_EVENT_LOOP", tuple(LOOPS))]


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the configured event loop."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
