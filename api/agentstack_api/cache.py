"""A watch-backed cache of AgentStacks: requests never wait on the API server.

A background thread lists the stacks, then watches from the list's resourceVersion
(re-listing when the watch expires with 410 Gone), and hands every change to the event
loop. Readers get the cached objects; the fleet's live stream gets a
:class:`StackChange` whenever a stack's summary (state, phase, readiness, ticks)
changes, numbered so a reconnecting client resumes with ``Last-Event-ID`` (numbers are
per API process: after a restart a client gets new changes only, and should re-list).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from agentstack_core.reasons import ConditionType
from agentstack_core.resource import GROUP, PLURAL, VERSION
from agentstack_core.spec import DEFAULTS

logger = logging.getLogger(__name__)

WATCH_TIMEOUT_SECONDS = 240
CHANGE_HISTORY = 1000
"""Fleet changes kept for ``Last-Event-ID`` resumption."""


def _cost(status: dict[str, Any]) -> float | None:
    """The stack's dollars as status says them; ``None`` while unknown (a call of an
    unpriced model) or not written yet."""
    if status.get("unpricedCalls"):
        return None
    try:
        return float(status["costUSD"])
    except (KeyError, TypeError, ValueError):
        return None


def summary(obj: dict[str, Any]) -> dict[str, Any]:
    """The fields of a stack that dashboards list (and that changes are reported on)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    return {
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "executionState": spec.get("executionState", DEFAULTS.execution_state.value),
        "phase": status.get("phase"),
        "ready": conditions.get(ConditionType.READY, "Unknown"),
        "stalled": conditions.get(ConditionType.STALLED) == "True",
        "ticks": int(status.get("ticks") or 0),
        "tokensUsed": int(status.get("tokensUsed") or 0),
        "costUSD": _cost(status),
        "lastTickTime": status.get("lastTickTime"),
        "lastTickResult": status.get("lastTickResult"),
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
    def __init__(self, api: client.ApiClient, namespaces: list[str] | None = None) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.api = api
        self.namespaces = namespaces or []
        self.stacks: dict[tuple[str, str], dict[str, Any]] = {}
        self.ready = asyncio.Event()
        self.changes: collections.deque[StackChange] = collections.deque(maxlen=CHANGE_HISTORY)
        self._seq = 0
        self._listeners: set[asyncio.Queue[StackChange]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        scopes: list[str | None] = list(self.namespaces) or [None]
        self._pending_lists = len(scopes)
        for scope in scopes:
            thread = threading.Thread(
                target=self._run, args=(scope,), name=f"watch-{scope or 'all'}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()

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

    # -- the watch thread --------------------------------------------------------------

    def _list(self, scope: str | None) -> dict[str, Any]:
        listed: Any
        if scope is None:
            listed = self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        else:
            listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, scope, PLURAL)
        return dict(listed)

    def _run(self, scope: str | None) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                listed = self._list(scope)
                self._submit(self._replace, scope, listed.get("items") or [])
                version = listed["metadata"]["resourceVersion"]
                backoff = 0.5
                while not self._stop.is_set():
                    version = self._watch(scope, version)
            except ApiException as exc:
                if exc.status != 410:
                    logger.warning("stack watch failed (%s); retrying", exc.reason)
                    time.sleep(backoff)
                    backoff = min(10.0, backoff * 2)
            except Exception:
                logger.exception("stack watch failed; retrying")
                time.sleep(backoff)
                backoff = min(10.0, backoff * 2)

    def _watch(self, scope: str | None, version: str) -> str:
        watcher = watch.Watch()  # type: ignore[no-untyped-call]
        if scope is None:
            method: Any = self.custom.list_cluster_custom_object
            args: tuple[Any, ...] = (GROUP, VERSION, PLURAL)
        else:
            method = self.custom.list_namespaced_custom_object
            args = (GROUP, VERSION, scope, PLURAL)
        for event in watcher.stream(  # type: ignore[no-untyped-call]
            method,
            *args,
            resource_version=version,
            timeout_seconds=WATCH_TIMEOUT_SECONDS,
            allow_watch_bookmarks=True,
        ):
            obj = event["object"]
            version = obj["metadata"]["resourceVersion"]
            if event["type"] == "BOOKMARK":
                continue
            if event["type"] == "ERROR":
                raise ApiException(status=obj.get("code", 500), reason=obj.get("message"))
            self._submit(self._apply, event["type"], obj)
            if self._stop.is_set():
                break
        return version

    def _submit(self, function: Any, *args: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(function, *args)

    # -- applied on the event loop ----------------------------------------------------

    def _replace(self, scope: str | None, items: list[dict[str, Any]]) -> None:
        seen = set()
        for obj in items:
            seen.add(self._key(obj))
            self._apply("MODIFIED", obj)
        for key in [k for k in self.stacks if (scope is None or k[0] == scope) and k not in seen]:
            self._apply("DELETED", self.stacks[key])
        self._pending_lists -= 1
        if self._pending_lists <= 0:
            self.ready.set()

    @staticmethod
    def _key(obj: dict[str, Any]) -> tuple[str, str]:
        meta = obj["metadata"]
        return str(meta["namespace"]), str(meta["name"])

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
