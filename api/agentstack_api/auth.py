"""Who may read what: Kubernetes TokenReview and SubjectAccessReview, cached briefly.

With authentication on, a request must carry ``Authorization: Bearer <token>``; the
token is checked with a TokenReview, and every stack the caller reads is checked with a
SubjectAccessReview for ``get agentstacks.agentstack.dev`` in the stack's namespace —
so a user sees exactly the stacks RBAC lets them ``get``. A steering action is checked
the same way for its own verb (``create agentstacks/inputs`` to send an input), so
RBAC, not the API, decides who may steer. A namespace's chargeback is checked as
``get agentbudgets.agentstack.dev`` there: who may read the namespace's budgets may
read what it spent. Both answers are cached for
``ttl`` seconds (tokens by digest, never in clear), so a dashboard's polling does not
turn into API-server load. With authentication off (local development) everyone may
read everything.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from agentstack_core.kube.client import KubeClient
from agentstack_core.kube.reviews import (
    SUBJECT_ACCESS_REVIEWS,
    TOKEN_REVIEWS,
    ResourceAttributes,
    ReviewedUser,
    allowed,
    subject_access_review,
    token_review,
)
from agentstack_core.resource import GROUP, PLURAL


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""


ANONYMOUS = User("anonymous")
_REJECTED = User("")
"""Cached answer for a token the cluster did not accept."""


class AuthError(Exception):
    """401: no credentials, or credentials the cluster does not accept."""


class Authorizer(Protocol):
    forwards_token: bool
    """Whether changes are made with the caller's own token (authentication on), so the
    API server applies RBAC to, and audits, the caller."""

    async def authenticate(self, authorization: str | None) -> User: ...

    async def may_get(self, user: User, namespace: str) -> bool: ...

    async def may(
        self,
        user: User,
        namespace: str,
        verb: str,
        subresource: str = "",
        *,
        resource: str = PLURAL,
    ) -> bool:
        """Whether RBAC lets ``user`` do ``verb`` on ``resource[/subresource]`` (of the
        ``agentstack.dev`` group; ``agentstacks`` unless said)."""
        ...


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer …`` header (``None`` for any other)."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class OpenAccess:
    """Authentication off: for local development only."""

    forwards_token = False

    async def authenticate(self, authorization: str | None) -> User:
        return ANONYMOUS

    async def may_get(self, user: User, namespace: str) -> bool:
        return True

    async def may(
        self,
        user: User,
        namespace: str,
        verb: str,
        subresource: str = "",
        *,
        resource: str = PLURAL,
    ) -> bool:
        return True


K = TypeVar("K")
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """Values kept for ``ttl`` seconds, at most ``limit`` of them (expired ones go first,
    then all: a flood of distinct keys cannot grow it)."""

    def __init__(self, ttl: float, limit: int = 10_000) -> None:
        self.ttl = ttl
        self.limit = limit
        self._items: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        found = self._items.get(key)
        if found is None or found[0] < time.monotonic():
            return None
        return found[1]

    def put(self, key: K, value: V) -> None:
        if len(self._items) >= self.limit:
            now = time.monotonic()
            self._items = {k: v for k, v in self._items.items() if v[0] >= now}
            if len(self._items) >= self.limit:
                self._items.clear()
        self._items[key] = (time.monotonic() + self.ttl, value)


class KubernetesAccess:
    """TokenReview for identity, SubjectAccessReview for ``get agentstacks``."""

    forwards_token = True

    def __init__(self, kube: KubeClient, *, ttl: float = 30.0) -> None:
        self.kube = kube
        self._users: TTLCache[str, User] = TTLCache(ttl)
        self._decisions: TTLCache[tuple[str, tuple[str, ...], str, str, str], bool] = TTLCache(ttl)

    async def authenticate(self, authorization: str | None) -> User:
        token = bearer_token(authorization)
        if token is None:
            raise AuthError("a bearer token is required")
        digest = hashlib.sha256(token.encode()).hexdigest()
        user = self._users.get(digest)
        if user is None:
            user = await self._review_token(token) or _REJECTED
            self._users.put(digest, user)
        if user is _REJECTED:
            raise AuthError("the token was not accepted")
        return user

    async def _review_token(self, token: str) -> User | None:
        found = ReviewedUser.of(await self.kube.create(TOKEN_REVIEWS, token_review(token)))
        if found is None:
            return None
        return User(name=found.username, groups=found.groups, uid=found.uid)

    async def may_get(self, user: User, namespace: str) -> bool:
        return await self.may(user, namespace, "get")

    async def may(
        self,
        user: User,
        namespace: str,
        verb: str,
        subresource: str = "",
        *,
        resource: str = PLURAL,
    ) -> bool:
        key = (user.name, user.groups, namespace, verb, f"{resource}/{subresource}")
        cached = self._decisions.get(key)
        if cached is None:
            attributes = ResourceAttributes(verb, GROUP, resource, namespace, subresource)
            review = subject_access_review(attributes, user.name, user.groups, user.uid)
            cached = allowed(await self.kube.create(SUBJECT_ACCESS_REVIEWS, review))
            self._decisions.put(key, cached)
        return cached
