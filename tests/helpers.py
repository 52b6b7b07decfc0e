"""Small helpers shared by tests: waiting on conditions, never on the clock; keeping
fakes honest to the classes they stand in for."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agentstack_core.approvals import Approval, ApprovalState
from agentstack_core.kube.client import KubeClient
from agentstack_core.kube.settings import from_configuration
from agentstack_devkit.controlplane import bind_service_account as bind_service_account
from agentstack_devkit.processes import wait_until
from agentstack_operator.kube import Kube

T = TypeVar("T")


def eventually(check: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    """Poll ``check`` until it returns a value other than ``None``; fail after ``timeout``."""
    return wait_until(check, timeout=timeout, what=what, interval=0.1)


def operator_kube(api: client.ApiClient) -> Kube:
    """The operator's :class:`Kube` over async clients of ``api``'s configuration
    (its own and its Leases', as the operator process builds them)."""
    settings = from_configuration(api.configuration)
    return Kube(KubeClient(settings), leases=KubeClient(settings))


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


async def until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Return once ``condition()`` holds (it is checked between turns of the event loop,
    so the tasks it watches move on); fail after ``timeout`` seconds."""

    async def check() -> bool | None:
        return True if condition() else None

    await eventually_async(check, what, timeout)


class Clock:
    """A clock that moves only when told to (``clock.now += seconds``): handed to code
    that takes its clock as a callable, so that time is the test's to decide."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def public_methods(cls: type) -> list[str]:
    """The names of the public methods ``cls`` has (its own and inherited; no properties)."""
    return sorted(
        name for name, _ in inspect.getmembers(cls, inspect.isfunction) if not name.startswith("_")
    )


def assert_same_signature(
    fake: Callable[..., Any], real: Callable[..., Any], *, annotations: bool = True
) -> None:
    """``fake`` is called exactly as ``real`` is: the same parameters (names, kinds,
    defaults and, with ``annotations``, their types as evaluated) and the same return
    type, and it is a coroutine function exactly when ``real`` is.

    A fake compared so cannot drift from what it stands in for: a parameter renamed,
    added or given another default in the real class breaks the comparison, not a
    test that passes against an API nobody calls any more. A Protocol may annotate a
    parameter more narrowly than the class that satisfies it (``annotations=False``).
    """
    assert inspect.iscoroutinefunction(fake) == inspect.iscoroutinefunction(real), (fake, real)
    fake_signature, real_signature = (
        inspect.signature(function, eval_str=True) for function in (fake, real)
    )
    if not annotations:
        fake_signature, real_signature = _untyped(fake_signature), _untyped(real_signature)
    assert fake_signature == real_signature, (fake, fake_signature, real_signature)


def _untyped(signature: inspect.Signature) -> inspect.Signature:
    parameters = [p.replace(annotation=p.empty) for p in signature.parameters.values()]
    return signature.replace(parameters=parameters, return_annotation=signature.empty)


def waiting_approval(
    approval_id: str, *, state: ApprovalState = ApprovalState.PENDING, arguments: str = "{}"
) -> Approval:
    """A builder's ``kb/lookup`` call waiting (or, by ``state``, past waiting) for a
    person's decision for the next hour: a record to plant in a stack's approvals."""
    now = time.time()
    return Approval(
        id=approval_id,
        agent="builder",
        tool="kb/lookup",
        arguments=arguments,
        tick_id="t",
        requested_at=now,
        expires_at=now + 3600,
        state=state,
    )
