"""The ``agentstack.dev/cleanup`` finalizer, kept by the operator itself.

A stack's Redis keys and tick Jobs must go when the stack goes, so every stack carries
this finalizer: the API server keeps a deleted stack (with a ``deletionTimestamp``)
until the operator has cleaned up and removed it.

Why not Kopf's ``@kopf.on.delete``: a resource with any change or deletion handler goes
through Kopf's change detection on *every* watch event — deep copies and a diff-base of
the whole object, and its bookkeeping annotations written back — and most of a fleet's
watch events are the echoes of the operator's own status writes. With only event
handlers Kopf hands each event over as it comes; the finalizer needs no more than what
an event already shows (is it there, is the stack being deleted).

The rules, written once:

- a stack not being deleted and without the finalizer gets it (a JSON patch that only
  applies to the finalizer list it was computed from, so another controller's
  concurrent edit is never overwritten: on a conflict the stack is read again);
- a stack being deleted with the finalizer is cleaned up (at most one cleanup per stack
  uid at a time), retried with back-off while it fails (Redis down), and released —
  the finalizer removed — once it succeeded or after :data:`CLEANUP_TIMEOUT_SECONDS`,
  so a namespace deletion never hangs on an unreachable Redis (its keys then stay, and
  the failure is logged and reported by ``on_gave_up``).

Every replica keeps the finalizer, as every replica watches: the edits are idempotent
and their preconditions make concurrent ones harmless.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from agentstack_core.keys import StackRef
from agentstack_core.kube.errors import ConflictError, InvalidError
from agentstack_core.kube.manifests import Manifest, ObjectMeta

logger = logging.getLogger(__name__)

FINALIZER = "agentstack.dev/cleanup"
CLEANUP_TIMEOUT_SECONDS = 120.0
"""How long a failing cleanup is retried before the stack is released anyway."""
ATTEMPT_TIMEOUT_SECONDS = 10.0
"""One cleanup attempt's limit: a hung Redis fails the attempt, never stalls the retries."""
BACKOFF_MIN = 0.5
BACKOFF_MAX = 10.0
EDIT_ATTEMPTS = 5
"""Finalizer edits lost to concurrent writers before an edit is left to the next event."""

JsonPatch = list[dict[str, Any]]


class FinalizerKube(Protocol):
    async def read_stack(self, ref: StackRef) -> dict[str, Any] | None: ...

    async def patch_stack(self, ref: StackRef, patch: JsonPatch) -> bool: ...


def ref_of(body: Manifest) -> StackRef:
    meta = ObjectMeta.of(body)
    return StackRef(meta.namespace, meta.name)


def adding(body: Manifest) -> JsonPatch | None:
    """The patch that adds the finalizer, or ``None`` if the stack needs none."""
    meta = ObjectMeta.of(body)
    current = meta.finalizers
    if meta.deletion_timestamp or (current is not None and FINALIZER in current):
        return None
    if current is None:
        # No list to test against: the object's version guards the new list instead.
        return [
            {"op": "test", "path": "/metadata/resourceVersion", "value": meta.resource_version},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ]
    return [
        {"op": "test", "path": "/metadata/finalizers", "value": list(current)},
        {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
    ]


def removing(body: Manifest) -> JsonPatch | None:
    """The patch that releases a deleted stack, or ``None`` if it is not being deleted
    or the finalizer is not there."""
    return releasing(body) if ObjectMeta.of(body).deletion_timestamp else None


def releasing(body: Manifest) -> JsonPatch | None:
    """The patch that takes the finalizer off a stack, deleted or not (``None`` if it is
    not there): what uninstalling does once no operator will put it back. Only this
    finalizer goes; other controllers' stay."""
    meta = ObjectMeta.of(body)
    current = meta.finalizers or ()
    if FINALIZER not in current:
        return None
    at = f"/metadata/finalizers/{current.index(FINALIZER)}"
    return [
        {"op": "test", "path": "/metadata/uid", "value": meta.uid},  # still that object
        {"op": "test", "path": at, "value": FINALIZER},
        {"op": "remove", "path": at},
    ]


def must_clean_up(body: Manifest) -> bool:
    meta = ObjectMeta.of(body)
    return bool(meta.deletion_timestamp) and FINALIZER in (meta.finalizers or ())


def backoff(attempt: int) -> float:
    """Seconds to wait after the ``attempt``-th failure (0-based): doubling, capped."""
    return float(min(BACKOFF_MAX, BACKOFF_MIN * 2**attempt))


class Finalizer:
    """Adds the finalizer to new stacks and runs the cleanup of deleted ones."""

    def __init__(
        self,
        kube: FinalizerKube,
        cleanup: Callable[[StackRef, str], Awaitable[None]],
        *,
        on_gave_up: Callable[[StackRef, str, str], Awaitable[None]] | None = None,
        timeout: float = CLEANUP_TIMEOUT_SECONDS,
        attempt_timeout: float = ATTEMPT_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.kube = kube
        self.cleanup = cleanup
        self.on_gave_up = on_gave_up
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self.clock = clock
        self.sleep = sleep
        self._cleanups: dict[str, asyncio.Task[None]] = {}
        """Stack uid → its running cleanup."""

    async def observe(self, body: dict[str, Any]) -> None:
        """Act on a watch event's manifest: add the finalizer, or start the cleanup."""
        if adding(body) is not None:
            try:
                await self._edit(body, adding)
            except Exception as exc:
                logger.warning("could not add the finalizer to %s: %s", ref_of(body), exc)
            return
        uid = ObjectMeta.of(body).uid
        if must_clean_up(body) and uid not in self._cleanups:
            task = asyncio.create_task(self._finalize(body, uid), name=f"cleanup {uid}")
            self._cleanups[uid] = task
            task.add_done_callback(lambda _: self._cleanups.pop(uid, None))

    @property
    def running(self) -> int:
        """Cleanups in progress."""
        return len(self._cleanups)

    async def wait(self) -> None:
        """Until the cleanups in progress (releases included) are over."""
        await asyncio.gather(*self._cleanups.values(), return_exceptions=True)

    async def close(self) -> None:
        """Stop the cleanups in progress (the next operator resumes them: the finalizer
        is still there, and the cleanup is idempotent)."""
        tasks = list(self._cleanups.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _edit(
        self, body: dict[str, Any], rule: Callable[[Manifest], JsonPatch | None]
    ) -> None:
        """Apply ``rule``'s patch; on a lost race, read the stack again and retry — as
        long as it is the same object (a stack deleted and created again under its name
        is another one, with a finalizer of its own)."""
        ref = ref_of(body)
        uid = ObjectMeta.of(body).uid
        current: dict[str, Any] | None = body
        for _ in range(EDIT_ATTEMPTS):
            if current is None or ObjectMeta.of(current).uid != uid:
                return
            patch = rule(current)
            if patch is None:
                return
            try:
                await self.kube.patch_stack(ref, patch)  # False: gone, nothing to do
                return
            except (InvalidError, ConflictError):
                pass  # 422: a "test" failed (the list or version moved); 409: a conflict
            current = await self.kube.read_stack(ref)
        logger.warning("finalizer of %s: still contended after %d attempts", ref, EDIT_ATTEMPTS)

    async def _finalize(self, body: dict[str, Any], uid: str) -> None:
        ref = ref_of(body)
        deadline = self.clock() + self.timeout
        attempt = 0
        while True:
            limit = max(0.0, min(self.attempt_timeout, deadline - self.clock()))
            try:
                await asyncio.wait_for(self.cleanup(ref, uid), limit)
                break
            except Exception as exc:
                if isinstance(exc, TimeoutError):
                    exc = TimeoutError(f"no answer within {limit:.0f}s")
                if self.clock() + backoff(attempt) > deadline:
                    logger.error(
                        "cleanup of %s failed for %.0fs, releasing it anyway: %s",
                        ref,
                        self.timeout,
                        exc,
                    )
                    if self.on_gave_up is not None:
                        await self.on_gave_up(ref, uid, str(exc))
                    break
                logger.warning("cleanup of %s failed (retrying): %s", ref, exc)
                await self.sleep(backoff(attempt))
                attempt += 1
        attempt = 0
        while True:  # the API server may be away too: the release waits for it
            try:
                await self._edit(body, removing)
                return
            except Exception as exc:
                logger.warning("could not remove the finalizer of %s: %s", ref, exc)
                await self.sleep(backoff(attempt))
                attempt += 1
