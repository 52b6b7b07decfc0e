"""Who may see which stack: the Authorizer's answers applied to the watch cache.

:class:`StackAccess` is the one place that joins the two: it authenticates a caller
(401), resolves a stack a caller asked for (403 before 404, so a refused caller learns
nothing about which stacks exist), lists the stacks a caller may get, names the stacks of
a namespace whose spending a caller may read, and hands out the fleet's changes. Routes
never read the cache or ask the Authorizer themselves.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from agentstack_api import models
from agentstack_api.auth import AuthError, Authorizer, User
from agentstack_api.cache import Subscription, summary
from agentstack_api.errors import ApiError
from agentstack_core.kube.stacks import StackManifest
from agentstack_core.resource import BUDGET_PLURAL


class StackSource(Protocol):
    """What access reads of :class:`~.cache.StackCache` (a test passes a dict-backed fake)."""

    @property
    def ready(self) -> asyncio.Event: ...

    def get(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def items(self) -> list[dict[str, Any]]:
        """Every cached stack, sorted by (namespace, name)."""
        ...

    def subscribe(self, after: int | None) -> Subscription: ...


class NamespaceGate:
    """One caller's ``may_get`` answers, asked once per namespace.

    Lives as long as one listing or one stream: a fleet stream keeps the answers it got
    for its whole life (the Authorizer's own cache expires; this one does not).
    """

    def __init__(self, auth: Authorizer, caller: User) -> None:
        self._auth = auth
        self._caller = caller
        self._answers: dict[str, bool] = {}

    async def allows(self, namespace: str) -> bool:
        if namespace not in self._answers:
            self._answers[namespace] = await self._auth.may_get(self._caller, namespace)
        return self._answers[namespace]


class StackAccess:
    """Stacks from the cache, as far as the Authorizer lets a caller see them."""

    def __init__(self, cache: StackSource, auth: Authorizer) -> None:
        self.cache = cache
        self.auth = auth

    @property
    def loaded(self) -> bool:
        """Whether the cache holds the cluster's stacks yet (the readiness probe)."""
        return self.cache.ready.is_set()

    async def authenticate(self, authorization: str | None) -> User:
        """The caller of an ``Authorization`` header (401 if missing or refused)."""
        try:
            return await self.auth.authenticate(authorization)
        except AuthError as exc:
            raise ApiError(401, "Unauthorized", str(exc)) from exc

    async def readable(self, caller: User, namespace: str, name: str) -> dict[str, Any]:
        """The stack ``namespace/name`` if the caller may get it: 403, else 404 if unknown."""
        if not await self.auth.may_get(caller, namespace):
            raise ApiError(
                403, "Forbidden", f"{caller.name} may not get agentstacks in {namespace}"
            )
        obj = self.cache.get(namespace, name)
        if obj is None:
            raise ApiError(404, "NotFound", f"no AgentStack {namespace}/{name}")
        return obj

    async def steerable(
        self, caller: User, namespace: str, name: str, *, verb: str, subresource: str
    ) -> dict[str, Any]:
        """The stack if the caller may ``verb`` its ``subresource`` (a steering action):
        403 before 404, as for reads."""
        if not await self.auth.may(caller, namespace, verb, subresource):
            raise ApiError(
                403,
                "Forbidden",
                f"{caller.name} may not {verb} agentstacks/{subresource} in {namespace}",
            )
        obj = self.cache.get(namespace, name)
        if obj is None:
            raise ApiError(404, "NotFound", f"no AgentStack {namespace}/{name}")
        return obj

    async def chargeable(self, caller: User, namespace: str) -> list[str]:
        """The names of ``namespace``'s stacks, if the caller may read what the namespace
        spent — ``get agentbudgets`` there, the right to read its budgets (403 else)."""
        if not await self.auth.may(caller, namespace, "get", resource=BUDGET_PLURAL):
            raise ApiError(
                403, "Forbidden", f"{caller.name} may not get agentbudgets in {namespace}"
            )
        return [
            manifest.meta.name
            for manifest in map(StackManifest.of, self.cache.items())
            if manifest.meta.namespace == namespace
        ]

    def gate(self, caller: User) -> NamespaceGate:
        return NamespaceGate(self.auth, caller)

    async def listing(
        self,
        caller: User,
        *,
        limit: int,
        namespace: str | None = None,
        state: str | None = None,
        cursor: str | None = None,
    ) -> models.StackList:
        """A page of the stacks the caller may get, by (namespace, name).

        ``cursor`` is the ``namespace/name`` of the last item of the previous page (the
        page's ``nextCursor``); namespaces the caller may not get are skipped silently.
        """
        after = tuple(cursor.split("/", 1)) if cursor is not None else None
        gate = self.gate(caller)
        items: list[models.StackSummary] = []
        next_cursor = None
        for obj in self.cache.items():
            manifest = StackManifest.of(obj)
            key = (manifest.meta.namespace, manifest.meta.name)
            if (after is not None and key <= after) or (namespace and key[0] != namespace):
                continue
            if state and manifest.execution_state != state:
                continue
            if not await gate.allows(key[0]):
                continue
            if len(items) == limit:
                next_cursor = f"{items[-1].namespace}/{items[-1].name}"
                break
            items.append(models.StackSummary(**summary(obj)))
        return models.StackList(items=items, nextCursor=next_cursor)

    def subscribe(self, after: int | None) -> Subscription:
        """The fleet's changes numbered above ``after``; filter them with :meth:`gate`."""
        return self.cache.subscribe(after)
