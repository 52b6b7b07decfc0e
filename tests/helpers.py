"""Small helpers shared by tests: waiting on conditions, never on the clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from kubernetes.client.exceptions import ApiException

from agentstack_operator.devenv.processes import wait_until

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
