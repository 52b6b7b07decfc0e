"""Small helpers shared by tests: waiting on conditions, never on the clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from kubernetes.client.exceptions import ApiException

from agentstack_devkit.processes import wait_until

T = TypeVar("T")


def eventually(check: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    """Poll ``check`` until it returns a value other than ``None``; fail after ``timeout``."""
    return wait_until(check, timeout=timeout, what=what, interval=0.1)


def gone(read: Callable[[], object]) -> bool | None:
    """``True`` once ``read`` raises 404, ``None`` while the object still exists."""
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return None


async def eventually_async(
    check: Callable[[], Awaitable[T | None]], what: str, timeout: float = 60.0
) -> T:
    """Async twin of :func:`eventually` for checks that must await (async Redis)."""
    deadline = time.monotonic() + timeout
    interval = 0.05
    while True:
        result = await check()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(interval)
