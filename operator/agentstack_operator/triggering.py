"""Kubernetes triggers: inputs sent to stacks when something happens in their namespace.

Data flow::

    new generation (observe) ─► TriggerHub.check(record): per trigger, discovery (the
        │ kind's resource), then may its ServiceAccount — and the operator — list and
        │ watch it in the namespace? (SubjectAccessReviews, cached a minute)
        │ no: record.forbidden_triggers (Ready=False, TriggerNotAllowed), rechecked
        │ yes: the stack subscribes to the kind
        ▼
    leader: one watch per kind (per namespace when the operator watches a list of
        │ them), started when the first stack subscribes, stopped after the last
        │ list, then watch from its resourceVersion (again after it expires)
        ▼
    each object ─► the subscribed stacks of its namespace ─► match (pure functions)
        ─► put_input(sender trigger/<name>, delivery trigger/<name>/<object>/<window>)

A stack author never gains the operator's rights: a trigger watches only what the
ServiceAccount it names may list and watch in the stack's own namespace, and Secrets
are never watched (the CRD refuses them; :data:`~agentstack_core.spec.FORBIDDEN_TRIGGER_KINDS`).

Once per object and window: the delivery id names the trigger, the object (an Event's
involved object) and the window, and the input script refuses an id it has seen. A
window is the Event's own time for Events (so a re-list after the watch expired, or a
new leader's first list, finds the same ids), and the current time for object states
(an object that keeps matching sends again in the next window). The watches run on
the leader only; a new leader lists every watched kind afresh, so what happened while
no one led is found unless it ended before the list (an object no longer matching,
an Event older than its trigger's window).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agentstack_core.keys import StackRef
from agentstack_core.kube.errors import GoneError, KubeError
from agentstack_core.matching import Condition
from agentstack_core.protocol import RedisClient
from agentstack_core.reasons import EventReason
from agentstack_core.redis.errors import StackGoneError
from agentstack_core.redis.inputs import (
    DuplicateDeliveryError,
    InputRateError,
    StackStoppedError,
    cut_to_bytes,
    put_input,
)
from agentstack_core.spec import EventMatch, Trigger
from agentstack_operator import metrics
from agentstack_operator.stackstate import Event, StackRecord

logger = logging.getLogger(__name__)

ACCESS_CACHE_SECONDS = 60.0
"""How long an access review that allowed is used (a revoked right is honoured within
this, at the next recheck of every stack)."""
RECHECK_SECONDS = 10.0
"""How often stacks whose triggers were not allowed are checked again, and how long a
refusal is used (a right granted is honoured within twice this)."""
WATCH_RETRY_MAX = 30.0
REPLAY_GATHER_SECONDS = 0.5
"""How long a namespace's list waits for more stacks subscribing to join it."""
MESSAGE_CHARS = 500
"""An Event's message is cut to this many characters in an input."""


class TriggerApi(Protocol):
    """What the triggers need of the API server (:class:`~.kube.Kube`)."""

    async def api_resource(self, api_version: str, kind: str) -> tuple[str, bool] | None: ...

    async def may_list_and_watch(
        self, namespace: str, group: str, resource: str, *, user: str | None
    ) -> bool: ...

    async def list_objects(self, path: str) -> dict[str, Any]: ...

    def watch_objects(self, path: str, resource_version: str) -> AsyncIterator[dict[str, Any]]: ...


@dataclass(frozen=True)
class WatchKey:
    """One watch: a kind's collection, in every namespace (``namespace`` None) or one."""

    group: str
    version: str
    resource: str
    namespace: str | None

    @property
    def path(self) -> str:
        root = "api/v1" if not self.group else f"apis/{self.group}/{self.version}"
        scope = f"/namespaces/{self.namespace}" if self.namespace else ""
        return f"{root}{scope}/{self.resource}"


# -- what an object or Event means for a trigger (pure) ---------------------------------


def event_matches(match: EventMatch, event: Mapping[str, Any]) -> bool:
    involved = event.get("involvedObject") or {}
    return (
        (not match.reasons or event.get("reason") in match.reasons)
        and (match.involved_kind is None or involved.get("kind") == match.involved_kind)
        and (match.type is None or event.get("type") == match.type)
    )


def event_time(event: Mapping[str, Any]) -> float | None:
    """When the Event last happened (``lastTimestamp``, ``series``, ``eventTime``, or its
    creation), as epoch seconds."""
    series = event.get("series") or {}
    meta = event.get("metadata") or {}
    for stamp in (
        event.get("lastTimestamp"),
        series.get("lastObservedTime"),
        event.get("eventTime"),
        meta.get("creationTimestamp"),
    ):
        if stamp:
            with contextlib.suppress(ValueError):
                return dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    return None


def subject_of(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    """(uid, kind, name) of what fired a trigger: an Event's involved object, else the
    object itself."""
    if obj.get("kind") == "Event" or "involvedObject" in obj:
        involved = obj.get("involvedObject") or {}
        key = str(involved.get("uid") or f"{involved.get('kind')}/{involved.get('name')}")
        return key, str(involved.get("kind") or ""), str(involved.get("name") or "")
    meta = obj.get("metadata") or {}
    return (
        str(meta.get("uid") or meta.get("name")),
        str(obj.get("kind") or ""),
        str(meta.get("name")),
    )


def delivery_of(trigger: Trigger, subject: str, moment: float) -> str:
    """The id that makes the input once per subject and window."""
    return f"trigger/{trigger.name}/{subject}/{int(moment // trigger.window_seconds)}"


def event_input(trigger: Trigger, event: Mapping[str, Any]) -> str:
    """What the agent reads of an Event: the object it is about, its type, reason,
    message and count."""
    _, kind, name = subject_of(event)
    message = str(event.get("message") or "").strip()
    if len(message) > MESSAGE_CHARS:
        message = message[: MESSAGE_CHARS - 1] + "…"
    count = event.get("count") or (event.get("series") or {}).get("count")
    seen = f" ({count} times)" if count and int(count) > 1 else ""
    return (
        f"trigger {trigger.name}: {event.get('type') or 'Normal'} Event {event.get('reason')} "
        f"on {kind} {name}{seen}: {message}"
    )


def object_input(trigger: Trigger, obj: Mapping[str, Any], condition: Condition) -> str:
    """What the agent reads of an object: its kind and name, and what the condition
    read of it."""
    _, kind, name = subject_of(obj)
    head = f"trigger {trigger.name}: {kind} {name}"
    if not condition.source.strip():
        return head + " changed"
    lines = [f"{head} matches {condition.source}"]
    lines += [f"  {path}: {value}" for path, value in condition.shown(obj).items()]
    return "\n".join(lines)


def fired(
    trigger: Trigger, obj: Mapping[str, Any], condition: Condition, now: float
) -> tuple[str, str] | None:
    """(content, delivery id) if ``obj`` fires ``trigger``, else ``None``."""
    subject = subject_of(obj)[0]
    if trigger.event is not None:
        at = event_time(obj)
        if not event_matches(trigger.event, obj) or at is None:
            return None
        if now - at > trigger.window_seconds:  # long over: found by a list, not news
            return None
        return event_input(trigger, obj), delivery_of(trigger, subject, at)
    assert trigger.object is not None
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if not trigger.object.selector.selects(labels) or not condition.holds(obj):
        return None
    return object_input(trigger, obj, condition), delivery_of(trigger, subject, now)


# -- the hub: access, subscriptions, watches ---------------------------------------------


@dataclass
class _Subscription:
    record: StackRecord
    triggers: tuple[tuple[Trigger, Condition], ...]


class TriggerHub:
    """Every stack's triggers: who may watch what, and one watch per kind."""

    def __init__(
        self,
        api: TriggerApi,
        redis: RedisClient,
        *,
        namespaces: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api = api
        self.redis = redis
        self.scoped = bool(namespaces)
        """The operator watches a list of namespaces: one watch per kind in each (its
        rights may be Roles there), not one across the cluster."""
        self.clock = clock
        self._resources: dict[tuple[str, str], tuple[str, bool] | None] = {}
        self._access: dict[tuple[str, str | None, str, str], tuple[bool, float]] = {}
        self._subscribed: dict[WatchKey, dict[str, _Subscription]] = defaultdict(dict)
        self._watches: dict[WatchKey, asyncio.Task[None]] = {}
        self._conditions: dict[str, Condition] = {}
        self._replays: dict[tuple[WatchKey, str], set[str]] = {}
        """Stacks waiting for a list of their namespace, by watch and namespace."""

    # -- access (every replica) ---------------------------------------------------------

    async def check(self, record: StackRecord) -> list[Event]:
        """Decide which of the stack's triggers may watch what they name, subscribe the
        stack if all may, and return the Events a change calls for. Never raises: an
        API server that does not answer holds the stack like a refusal, and the next
        check (:data:`RECHECK_SECONDS`) asks again — the rest of the stack's
        reconciliation must not wait on it."""
        before = list(record.forbidden_triggers)
        had = {
            key: tuple(trigger for trigger, _ in subscribers[record.key].triggers)
            for key, subscribers in self._subscribed.items()
            if record.key in subscribers
        }
        triggers = record.spec.triggers if record.spec is not None else ()
        forbidden: list[str] = []
        allowed: dict[WatchKey, list[tuple[Trigger, Condition]]] = defaultdict(list)
        for trigger in triggers:
            try:
                key, refusal = await self._watch_key(record.ref, trigger)
            except Exception as exc:  # the API server did not answer: asked again soon
                key, refusal = None, f"its access could not be checked yet ({exc})"
            if key is None:
                forbidden.append(f"trigger {trigger.name}: {refusal}")
            else:
                allowed[key].append((trigger, self._condition(trigger)))
        record.forbidden_triggers = forbidden
        self.unsubscribe(record.key)  # after the reviews: no change is missed meanwhile
        if not forbidden:
            for key, pairs in allowed.items():
                self._subscribed[key][record.key] = _Subscription(record, tuple(pairs))
                if had.get(key) != tuple(trigger for trigger, _ in pairs):  # new to it
                    self._replay_for(key, record.key)
        if forbidden and forbidden != before:
            return [Event(EventReason.TRIGGER_NOT_ALLOWED, "; ".join(forbidden), warning=True)]
        if before and not forbidden:
            return [Event(EventReason.TRIGGERS_ALLOWED, "every trigger may watch what it names")]
        return []

    def unsubscribe(self, key: str) -> None:
        """The stack's triggers watch nothing any more (a new spec, or it is gone)."""
        for subscribers in self._subscribed.values():
            subscribers.pop(key, None)

    def _condition(self, trigger: Trigger) -> Condition:
        source = trigger.object.condition if trigger.object is not None else ""
        found = self._conditions.get(source)
        if found is None:
            found = self._conditions[source] = Condition(source)
        return found

    async def _watch_key(self, ref: StackRef, trigger: Trigger) -> tuple[WatchKey | None, str]:
        """The watch ``trigger`` needs, or ``None`` and why it may not have it."""
        group, version, kind = trigger.watched
        api_version = f"{group}/{version}" if group else version
        if (api_version, kind) not in self._resources:
            self._resources[api_version, kind] = await self.api.api_resource(api_version, kind)
        found = self._resources[api_version, kind]
        if found is None:
            self._resources.pop((api_version, kind))  # perhaps a CRD not installed yet
            return None, f"the API server serves no kind {kind} in {api_version}"
        resource, namespaced = found
        if not namespaced:
            return None, f"{kind} is not namespaced: triggers watch their stack's namespace"
        account = f"system:serviceaccount:{ref.namespace}:{trigger.service_account_name}"
        if not await self._may(ref.namespace, account, group, resource):
            return None, (
                f"ServiceAccount {trigger.service_account_name!r} may not list and watch "
                f"{resource} in namespace {ref.namespace}"
            )
        if not await self._may(ref.namespace, None, group, resource):
            return None, (
                f"the operator may not list and watch {resource} (grant it with the "
                "chart's operator.triggers.resources)"
            )
        return WatchKey(group, version, resource, ref.namespace if self.scoped else None), ""

    async def _may(self, namespace: str, user: str | None, group: str, resource: str) -> bool:
        key = (namespace, user, group, resource)
        now = time.monotonic()
        cached = self._access.get(key)
        if cached is not None:
            allowed, at = cached
            if now - at < (ACCESS_CACHE_SECONDS if allowed else RECHECK_SECONDS):
                return allowed
        allowed = await self.api.may_list_and_watch(namespace, group, resource, user=user)
        self._access[key] = (allowed, now)
        return allowed

    # -- watches (the leader) -----------------------------------------------------------

    async def step(self) -> None:
        """Start the watches subscribed stacks need, stop those no stack needs."""
        wanted = {key for key, subscribers in self._subscribed.items() if subscribers}
        for key in wanted - self._watches.keys():
            self._watches[key] = asyncio.create_task(self._watch(key), name=f"trigger {key.path}")
        for key in self._watches.keys() - wanted:
            self._watches.pop(key).cancel()
        for key in [k for k, subscribers in self._subscribed.items() if not subscribers]:
            del self._subscribed[key]
        metrics.TRIGGER_WATCHES.set(len(self._watches))
        await asyncio.sleep(1.0)

    def stop(self) -> None:
        """Leadership lost: every watch ends (the next leader lists afresh)."""
        for task in self._watches.values():
            task.cancel()
        self._watches.clear()
        metrics.TRIGGER_WATCHES.set(0)

    async def _watch(self, key: WatchKey) -> None:
        """List, then watch from the list's version, for as long as the key is wanted;
        an error is logged and the list starts again after a back-off."""
        backoff = 1.0
        while True:
            try:
                listed = await self.api.list_objects(key.path)
                await self._seen_listed(key, listed)
                version = str((listed.get("metadata") or {}).get("resourceVersion") or "")
                while True:
                    async for change in self.api.watch_objects(key.path, version):
                        obj = change.get("object") or {}
                        version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                        if change.get("type") in ("ADDED", "MODIFIED"):
                            await self._seen(key, obj)
                    backoff = 1.0
            except asyncio.CancelledError:
                raise
            except GoneError:
                pass  # the version expired: list again, at once
            except KubeError as exc:
                logger.warning("trigger watch of %s failed: %s", key.path, exc.reason)
                await asyncio.sleep(backoff)
                backoff = min(WATCH_RETRY_MAX, backoff * 2)
            except Exception:
                logger.exception("trigger watch of %s failed", key.path)
                await asyncio.sleep(backoff)
                backoff = min(WATCH_RETRY_MAX, backoff * 2)

    def _replay_for(self, key: WatchKey, stack: str) -> None:
        """A stack subscribed to a watch already running: its triggers see what exists
        now, from a list of its namespace (the running watch only brings changes).

        Stacks of one namespace that subscribe together share one list: a thousand new
        stacks are one list, not a thousand (which starved the API server, and with it
        the leader's Lease, in the input bench)."""
        if key not in self._watches:
            return
        where = (key, StackRef.parse(stack).namespace)
        waiting = self._replays.get(where)
        if waiting is not None:
            waiting.add(stack)
            return
        self._replays[where] = {stack}
        asyncio.get_running_loop().create_task(self._replay(*where))

    async def _replay(self, key: WatchKey, namespace: str) -> None:
        """One list of ``namespace`` for the stacks waiting on it (those that join
        while it is listed wait for the next)."""
        await asyncio.sleep(REPLAY_GATHER_SECONDS)
        stacks = self._replays.pop((key, namespace), set())
        path = WatchKey(key.group, key.version, key.resource, namespace).path
        try:
            listed = await self.api.list_objects(path)
        except Exception as exc:
            logger.warning("trigger list of %s failed: %s", path, exc)
            return
        await self._seen_listed(key, listed, only=stacks)

    async def _seen_listed(
        self, key: WatchKey, listed: dict[str, Any], *, only: set[str] | None = None
    ) -> None:
        """Every object of a list (whose items carry no ``kind``: the list's names it)."""
        kind = str(listed.get("kind", "List")).removesuffix("List")
        for item in listed.get("items") or []:
            item.setdefault("kind", kind)
            await self._seen(key, item, only=only)

    async def _seen(
        self, key: WatchKey, obj: dict[str, Any], *, only: set[str] | None = None
    ) -> None:
        """An object of a watched kind: send what it fires to the stacks of its namespace."""
        namespace = (obj.get("metadata") or {}).get("namespace")
        now = self.clock()
        for stack, subscription in list(self._subscribed.get(key, {}).items()):
            record = subscription.record
            if record.ref.namespace != namespace or (only is not None and stack not in only):
                continue
            for trigger, condition in subscription.triggers:
                found = fired(trigger, obj, condition, now)
                if found is not None:
                    await self._send(record, trigger, *found)

    async def _send(
        self, record: StackRecord, trigger: Trigger, content: str, delivery: str
    ) -> None:
        spec = record.spec
        if spec is None:
            return
        try:
            await put_input(
                self.redis,
                record.ref,
                spec,
                uid=record.uid,
                agent=trigger.agent,
                sender=f"trigger/{trigger.name}",
                content=cut_to_bytes(content, spec.inputs.max_bytes),
                delivery=delivery,
            )
        except DuplicateDeliveryError:
            outcome = "Duplicate"
        except InputRateError:
            outcome = "RateLimited"
        except (StackGoneError, StackStoppedError):
            outcome = "Refused"
        except Exception as exc:  # Redis down: sent when the object changes or is listed again
            logger.warning("trigger %s of %s: input not sent: %s", trigger.name, record.ref, exc)
            outcome = "Failed"
        else:
            outcome = "Sent"
        metrics.TRIGGER_INPUTS.labels(outcome).inc()
