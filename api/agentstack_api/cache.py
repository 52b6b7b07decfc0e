"""A watch-backed cache of AgentStacks: requests never wait on the API server.

A task per watched scope (a namespace, or the whole cluster) follows the stacks
(:func:`~agentstack_core.kube.following.follow`: a list, then a watch from its
resourceVersion, a new list when that version expires with 410 Gone), on the event
loop. Readers get the cached objects; the fleet's live stream gets a
:class:`StackChange` whenever a stack's summary (state, phase, readiness, ticks)
changes, numbered so a reconnecting client resumes with ``Last-Event-ID`` (numbers are
per API process: after a restart a client gets new changes only, and should re-list).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from agentstack_core.kube.client import KubeClient
from agentstack_core.kube.following import follow
from agentstack_core.kube.manifests import Listing, ObjectMeta
from agentstack_core.kube.stacks import StackManifest, stacks_path
from agentstack_core.reasons import ConditionType

logger = logging.getLogger(__name__)

CHANGE_HISTORY = 1000
"""Fleet changes kept for ``Last-Event-ID`` resumption."""


def summary(obj: dict[str, Any]) -> dict[str, Any]:
    """The fields of a stack that dashboards list (and that changes are reported on)."""
    stack = StackManifest.of(obj)
    status = stack.summary
    return {
        "namespace": stack.meta.namespace,
        "name": stack.meta.name,
        "executionState": stack.execution_state,
        "phase": status.phase,
        "ready": status.condition(ConditionType.READY) or "Unknown",
        "stalled": status.condition(ConditionType.STALLED) == "True",
        "ticks": status.ticks,
        "tokensUsed": status.tokens_used,
        "costUSD": status.cost_usd,
        "lastTickTime": status.last_tick_time,
        "lastTickResult": status.last_tick_result,
    }


class Subscription:
    """One client's queue of fleet changes; :meth:`close` it when the client leaves."""

    def __init__(self, listeners: set[asyncio.Queue[StackChange]]) -> None:
        self.queue: asyncio.Queue[StackChange] = asyncio.Queue(maxsize=10_000)
        self._listeners = listeners
        listeners.add(self.queue)

    async def next(self, wait_seconds: float) -> StackChange | None:
        """The next change, or ``None`` if none came within ``wait_seconds``."""
        try:
            return await asyncio.wait_for(self.queue.get(), wait_seconds)
        except TimeoutError:
            return None

    def close(self) -> None:
        self._listeners.discard(self.queue)


@dataclass(frozen=True)
class StackChange:
    seq: int
    kind: str
    """``upsert`` or ``delete``."""
    stack: dict[str, Any]


class StackCache:
    def __init__(self, kube: KubeClient, namespaces: list[str] | None = None) -> None:
        self.kube = kube
        self.namespaces = namespaces or []
        self.stacks: dict[tuple[str, str], dict[str, Any]] = {}
        self.ready = asyncio.Event()
        self.changes: collections.deque[StackChange] = collections.deque(maxlen=CHANGE_HISTORY)
        self._seq = 0
        self._listeners: set[asyncio.Queue[StackChange]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._pending_lists = 0

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Follow every scope, each in a task of the running loop."""
        scopes: list[str | None] = list(self.namespaces) or [None]
        self._pending_lists = len(scopes)
        loop = asyncio.get_running_loop()
        for scope in scopes:
            self._tasks.append(
                loop.create_task(self._follow(scope), name=f"stacks-{scope or 'all'}")
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    # -- reading -----------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.stacks.get((namespace, name))

    def items(self) -> list[dict[str, Any]]:
        return [self.stacks[key] for key in sorted(self.stacks)]

    def subscribe(self, after: int | None) -> Subscription:
        """Changes numbered above ``after`` (replayed while still kept), then new ones."""
        subscription = Subscription(self._listeners)
        # Change numbers are this process's own: an id above ours was given out by another
        # API process (a restart, a replica), so there is nothing here to replay after it.
        if after is not None and after <= self._seq:
            for change in list(self.changes):
                if change.seq > after:
                    subscription.queue.put_nowait(change)
        return subscription

    @property
    def seq(self) -> int:
        return self._seq

    # -- following the API server -----------------------------------------------------

    async def _follow(self, scope: str | None) -> None:
        listed = False
        async for change in follow(self.kube, stacks_path(scope)):
            if isinstance(change, Listing):
                self._replace(scope, [dict(item) for item in change.items])
                if not listed:
                    listed = True
                    self._pending_lists -= 1
                    if self._pending_lists <= 0:
                        self.ready.set()
            else:
                self._apply(change.type, dict(change.object))

    def _replace(self, scope: str | None, items: list[dict[str, Any]]) -> None:
        seen = set()
        for obj in items:
            seen.add(self._key(obj))
            self._apply("MODIFIED", obj)
        for key in [k for k in self.stacks if (scope is None or k[0] == scope) and k not in seen]:
            self._apply("DELETED", self.stacks[key])

    @staticmethod
    def _key(obj: dict[str, Any]) -> tuple[str, str]:
        meta = ObjectMeta.of(obj)
        return meta.namespace, meta.name

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        key = self._key(obj)
        previous = self.stacks.get(key)
        if kind == "DELETED":
            if self.stacks.pop(key, None) is not None:
                self._emit("delete", summary(obj))
            return
        self.stacks[key] = obj
        now = summary(obj)
        if previous is None or summary(previous) != now:
            self._emit("upsert", now)

    def _emit(self, kind: str, stack: dict[str, Any]) -> None:
        self._seq += 1
        change = StackChange(self._seq, kind, stack)
        self.changes.append(change)
        for queue in list(self._listeners):
            if queue.full():  # a client that stopped reading: drop it, it will reconnect
                self._listeners.discard(queue)
            else:
                queue.put_nowait(change)
