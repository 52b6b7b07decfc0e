"""Redis credentials for tick pods, scoped to one namespace, made and rotated here.

A tick Job runs in its stack's namespace, where the stack's authors (whoever may read
Secrets or exec into pods there) can reach whatever the pod holds. So a tick pod never
gets the platform's Redis password: it gets a Redis ACL user of its own namespace,
which may touch only that namespace's keys (every key of a stack starts with its tag,
``{namespace/name}``, see :func:`~agentstack_core.keys.namespace_pattern`) with the
commands a tick uses (:data:`TICK_COMMANDS`), and nothing shared — no tick lane, no
results stream, no other tenant's memory, inputs or approvals. Its tick writes its
outcome into its own stack's keys; the operator folds it from there when the Job ends
(:meth:`~agentstack_operator.folding.ResultFolder.job_completed`).

Data flow::

    a stack with executor: job is observed (every replica), or its namespace's turn
    comes round (the leader, every CREDENTIALS_REFRESH_SECONDS)
        ─► TickCredentials.ensure(namespace)
             Secret agentstack-tick-redis in the namespace (the source of truth):
               absent ─► create it (a new password; a lost race re-reads the winner's)
               older than the rotation period ─► a new password; the old one's hash
                 stays in an annotation, still accepted until the next rotation
             ACL SETUSER agentstack-tick-<namespace> reset on #<current> #<previous>
               ~{namespace/* -@all +<TICK_COMMANDS> (every node of a cluster)
        ─► done, or CredentialsUnavailableError saying what a person must grant
           (the stack is Ready=False, reason JobCredentialsUnavailable, and an Event)

The Secret is the truth so that replicas agree without talking: each sets the ACL user
from what the Secret says (a ``reset`` first, so the rules are exactly these), creation
races end in a 409, and a rotation is a replace with the Secret's resourceVersion. The
ACL user is set again on every refresh, so a Redis that restarted without it (ACL
users live in memory unless an ``aclfile`` is configured) has it back within a refresh.

A Job's pod reads the password once, at start (``secretKeyRef``), so the previous
password must outlive every Job started before a rotation: the rotation period must be
longer than the longest a tick Job may run (``tickTimeoutSeconds`` plus the Job grace).

The operator's own Redis user needs ``+acl|setuser`` (and ``+acl|deluser``). A
namespace's user outlives its last Job stack by :meth:`TickCredentials.retire_after`
— a Job started just before may still run — then the leader deletes it; the Secret
stays (the operator may not delete Secrets), opening nothing once its user is gone. A
leader that took over forgets the namespaces its predecessor was retiring: their users
stay, each opening only its own namespace's keys.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from redis.exceptions import NoPermissionError, ResponseError

from agentstack_core.keys import namespace_pattern
from agentstack_core.protocol import RedisClient
from agentstack_core.reasons import EventReason
from agentstack_core.spec import Executor
from agentstack_operator.jobs import PASSWORD_KEY, SECRET_NAME, USERNAME_KEY
from agentstack_operator.stackstate import Event, StackRecord

logger = logging.getLogger(__name__)

ROTATED_ANNOTATION = "agentstack.dev/rotated-at"
"""When the Secret's password was made (Unix seconds)."""
PREVIOUS_ANNOTATION = "agentstack.dev/previous-password-sha256"
"""The SHA-256 of the password it replaced (accepted until the next rotation)."""
MANAGED_BY = {"app.kubernetes.io/managed-by": "agentstack-operator"}
CREDENTIALS_REFRESH_SECONDS = 60.0
"""How often the leader sets every namespace's ACL user again (and rotates)."""
RETIRE_SECONDS = 3600.0
"""How long a namespace's user outlives its last Job stack when passwords are never
rotated (otherwise: the rotation period, which is already longer than any Job runs)."""

TICK_COMMANDS = (
    # Connecting: AUTH/HELLO as the user, health checks. (redis-py's CLIENT SETINFO may
    # be refused: it ignores that, and Redis 7.0 knows no such command to allow.)
    "auth",
    "hello",
    "ping",
    "select",
    # A cluster client's start: the slot map and the command table.
    "cluster|slots",
    "command",
    "asking",
    # The tick's scripts (EVALSHA, and EVAL after a NOSCRIPT) and what they call: Redis
    # checks every command a script runs against the user's rules too.
    "evalsha",
    "eval",
    "del",
    "exists",
    "get",
    "set",
    "hdel",
    "hexists",
    "hget",
    "hgetall",
    "hincrby",
    "hmget",
    "hset",
    "hvals",
    "pexpire",
    "sadd",
    "srem",
    "smembers",
    "xadd",
    "xlen",
    "xrange",
    "xrevrange",
    "xtrim",
    "zadd",
    "zcard",
    "zlexcount",
    "zrange",
    "zrem",
    "zremrangebyrank",
    "zremrangebyscore",
    "zrevrangebylex",
    "zscore",
)
"""What a tick pod may run: its connection's handshake, the tick's Lua scripts and the
reads and writes of its stack. No key-less command that reaches across namespaces
(``KEYS``, ``SCAN``, ``FLUSHALL``, ``INFO``, ``CLIENT LIST``, ``MONITOR``…)."""


def acl_user(namespace: str) -> str:
    """The Redis ACL user of ``namespace``'s tick pods."""
    return f"agentstack-tick-{namespace}"


def password_hash(password: str) -> str:
    """The SHA-256 hex digest Redis keeps of a password (``#<hash>`` sets one)."""
    return hashlib.sha256(password.encode()).hexdigest()


def acl_rules(namespace: str, hashes: Sequence[str]) -> list[str]:
    """The whole of the namespace's ACL user, from nothing (``reset``): on, with these
    password hashes, the namespace's keys, no channel, :data:`TICK_COMMANDS`."""
    return [
        "reset",
        "on",
        *(f"#{digest}" for digest in dict.fromkeys(hashes)),
        f"~{namespace_pattern(namespace)}",
        "resetchannels",
        "-@all",
        *(f"+{command}" for command in TICK_COMMANDS),
    ]


@dataclass(frozen=True)
class Credential:
    """What the namespace's Secret holds: the current password, the previous one's
    hash, when the current one was made, and the Secret's version (for a replace)."""

    username: str
    password: str
    previous_hash: str
    rotated_at: float
    resource_version: str

    @property
    def hashes(self) -> list[str]:
        return [password_hash(self.password), *([self.previous_hash] if self.previous_hash else [])]

    @classmethod
    def from_secret(cls, secret: dict[str, Any]) -> Credential | None:
        """The credential in a Secret as the operator wrote it; ``None`` if it holds
        none (someone emptied or replaced it: it is made again)."""
        meta = secret.get("metadata") or {}
        data = secret.get("data") or {}
        annotations = meta.get("annotations") or {}
        try:
            username = base64.b64decode(data[USERNAME_KEY]).decode()
            password = base64.b64decode(data[PASSWORD_KEY]).decode()
            rotated_at = float(annotations.get(ROTATED_ANNOTATION, "0"))
        except (KeyError, ValueError):
            return None
        if not username or not password:
            return None
        return cls(
            username=username,
            password=password,
            previous_hash=str(annotations.get(PREVIOUS_ANNOTATION, "")),
            rotated_at=rotated_at,
            resource_version=str(meta.get("resourceVersion", "")),
        )


def secret_body(namespace: str, credential: Credential) -> dict[str, Any]:
    """The Secret that holds ``credential`` (with its resourceVersion, for a replace)."""
    metadata: dict[str, Any] = {
        "name": SECRET_NAME,
        "namespace": namespace,
        "labels": dict(MANAGED_BY),
        "annotations": {ROTATED_ANNOTATION: repr(credential.rotated_at)},  # exact
    }
    if credential.previous_hash:
        metadata["annotations"][PREVIOUS_ANNOTATION] = credential.previous_hash
    if credential.resource_version:
        metadata["resourceVersion"] = credential.resource_version
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata,
        "data": {
            USERNAME_KEY: _base64(credential.username),
            PASSWORD_KEY: _base64(credential.password),
        },
    }


def _base64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def due_for_rotation(credential: Credential, now: float, every: float) -> bool:
    """Whether the credential is older than the rotation period (0: never rotated)."""
    return every > 0 and now - credential.rotated_at >= every


class SecretStore(Protocol):
    """The Secrets the operator keeps (:class:`~agentstack_operator.kube.Kube`)."""

    async def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Secret as a manifest; ``None`` if absent. Raises
        :class:`~agentstack_operator.kube.Forbidden` when the operator may not."""
        ...

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> bool:
        """``False`` if it exists already."""
        ...

    async def replace_secret(self, namespace: str, body: dict[str, Any]) -> bool:
        """``False`` if its resourceVersion is not the current one any more."""
        ...


class CredentialsUnavailableError(Exception):
    """What a person must grant before the namespace's tick pods can have credentials."""


class TickCredentials:
    """Makes, rotates and installs the tick pods' credentials, one namespace at a time."""

    def __init__(
        self,
        secrets_store: SecretStore,
        redis: RedisClient,
        *,
        cluster: bool,
        rotate_every: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = secrets_store
        self.redis: Any = redis  # see RedisClient: redis-py's annotations don't fit
        self.cluster = cluster
        self.rotate_every = rotate_every
        self.clock = clock
        self.ready: dict[str, float] = {}
        """Namespace → when its credentials were last installed (a stack observed in a
        namespace already served costs nothing)."""
        self.retiring: dict[str, float] = {}
        """Namespace without Job stacks any more → since when (its user is deleted after
        :attr:`retire_after`)."""

    @property
    def retire_after(self) -> float:
        """Seconds a namespace's user outlives its last Job stack: the rotation period
        (longer than any tick Job may run, see the module's docstring), else
        :data:`RETIRE_SECONDS`."""
        return self.rotate_every if self.rotate_every > 0 else RETIRE_SECONDS

    async def ensure(self, namespace: str, *, refresh: bool = False) -> None:
        """Make sure ``namespace``'s tick pods have working credentials: the Secret
        exists (rotated if due) and the ACL user accepts it. Raises
        :class:`CredentialsUnavailableError` with what is missing; Redis or API server
        outages raise as they are (the caller tries again)."""
        if not refresh and namespace in self.ready:
            return
        credential = await self._current(namespace)
        if due_for_rotation(credential, self.clock(), self.rotate_every):
            credential = await self._rotate(namespace, credential)
        await self._install(namespace, credential.hashes)
        self.ready[namespace] = self.clock()

    async def refresh(self, namespaces: set[str]) -> None:
        """Install every namespace's credentials again (a Redis that lost its ACL users
        gets them back) and rotate those due; the users of namespaces without Job
        stacks any more are deleted once :attr:`retire_after` has passed. A namespace
        that fails is logged and tried next time."""
        now = self.clock()
        for namespace in set(self.ready) - namespaces:
            del self.ready[namespace]
            self.retiring.setdefault(namespace, now)
        for namespace, since in sorted(self.retiring.items()):
            if namespace in namespaces:
                del self.retiring[namespace]
            elif now - since >= self.retire_after:
                try:
                    await self._acl("DELUSER", acl_user(namespace))
                    del self.retiring[namespace]
                    logger.info("deleted the tick pods' Redis user of %s", namespace)
                except Exception as exc:  # tried again next time
                    logger.warning("tick credentials of %s: %s", namespace, exc)
        for namespace in sorted(namespaces):
            try:
                await self.ensure(namespace, refresh=True)
            except Exception as exc:  # one namespace must not stop the rest
                self.ready.pop(namespace, None)
                logger.warning("tick credentials of %s: %s", namespace, exc)

    async def _current(self, namespace: str) -> Credential:
        """The Secret's credential, made (and its ACL user set) if there is none."""
        secret = await self._read(namespace)
        credential = Credential.from_secret(secret) if secret is not None else None
        if credential is not None:
            return credential
        # A Secret of that name without a credential (emptied by hand) is made whole.
        version = str(((secret or {}).get("metadata") or {}).get("resourceVersion", ""))
        fresh = self._new(namespace, previous_hash="", version=version)
        await self._install(namespace, fresh.hashes)  # before anyone can read it
        write = self.store.create_secret if secret is None else self.store.replace_secret
        if await self._write(write, namespace, fresh):
            return fresh
        # Another replica got there first: its credential is the one.
        raced = await self._read(namespace)
        found = Credential.from_secret(raced) if raced is not None else None
        if found is None:
            raise CredentialsUnavailableError(
                f"the Secret {SECRET_NAME!r} in {namespace} changed while it was written"
            )
        return found

    async def _rotate(self, namespace: str, old: Credential) -> Credential:
        fresh = self._new(
            namespace, previous_hash=password_hash(old.password), version=old.resource_version
        )
        await self._install(namespace, [*fresh.hashes, *old.hashes])
        if await self._write(self.store.replace_secret, namespace, fresh):
            logger.info("rotated the tick pods' Redis credentials of %s", namespace)
            return fresh
        raced = await self._read(namespace)
        return (Credential.from_secret(raced) if raced is not None else None) or old

    def _new(self, namespace: str, *, previous_hash: str, version: str) -> Credential:
        return Credential(
            username=acl_user(namespace),
            password=secrets.token_urlsafe(32),
            previous_hash=previous_hash,
            rotated_at=self.clock(),
            resource_version=version,
        )

    async def _read(self, namespace: str) -> dict[str, Any] | None:
        try:
            return await self.store.read_secret(namespace, SECRET_NAME)
        except PermissionError as exc:
            raise CredentialsUnavailableError(
                f"the operator may not read the Secret {SECRET_NAME!r} in {namespace} "
                "(RBAC: get secrets)"
            ) from exc

    async def _write(self, write: Any, namespace: str, credential: Credential) -> bool:
        try:
            return bool(await write(namespace, secret_body(namespace, credential)))
        except PermissionError as exc:
            raise CredentialsUnavailableError(
                f"the operator may not write the Secret {SECRET_NAME!r} in {namespace} "
                "(RBAC: create and update secrets)"
            ) from exc

    async def _install(self, namespace: str, hashes: Sequence[str]) -> None:
        """``ACL SETUSER`` with exactly these rules, on every node of a cluster."""
        try:
            await self._acl("SETUSER", acl_user(namespace), *acl_rules(namespace, hashes))
        except NoPermissionError as exc:
            raise CredentialsUnavailableError(
                "the operator's Redis user may not manage ACL users (grant it +acl|setuser)"
            ) from exc
        except ResponseError as exc:
            if str(exc).lower().startswith("unknown command"):  # no ACL command at all
                raise CredentialsUnavailableError(
                    "Redis has no ACL users (Redis 6 or newer is needed for executor: job)"
                ) from exc
            raise

    async def _acl(self, *arguments: str) -> None:
        """An ``ACL`` command on every node of a cluster (ACL users are per node: every
        primary and replica), or on the one server."""
        if self.cluster:
            await self.redis.execute_command("ACL", *arguments, target_nodes=self.redis.get_nodes())
        else:
            await self.redis.execute_command("ACL", *arguments)


class Ensures(Protocol):
    """What a stack's check needs: its namespace's credentials made and installed."""

    async def ensure(self, namespace: str, *, refresh: bool = False) -> None: ...


async def check_tick_credentials(credentials: Ensures, record: StackRecord) -> list[Event]:
    """Update ``record.credentials_problem`` for a stack whose ticks run as Jobs;
    returns the Events the change calls for. Outages (Redis, the API server) leave the
    record as it was: they say nothing about what a person must grant."""
    before = record.credentials_problem
    if record.spec is None or record.spec.executor is not Executor.JOB:
        record.credentials_problem = ""
    else:
        try:
            await credentials.ensure(record.ref.namespace)
            record.credentials_problem = ""
        except CredentialsUnavailableError as exc:
            record.credentials_problem = str(exc)
        except Exception as exc:  # an outage: checked again with the next round
            logger.warning("tick credentials of %s: %s", record.ref.namespace, exc)
            return []
    problem = record.credentials_problem
    if problem and problem != before:
        return [Event(EventReason.JOB_CREDENTIALS_UNAVAILABLE, problem, warning=True)]
    if before and not problem:
        return [
            Event(EventReason.JOB_CREDENTIALS_READY, "the tick pods' Redis credentials are ready")
        ]
    return []
