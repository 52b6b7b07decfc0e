"""Connecting to Redis — standalone, behind Sentinel, or a cluster — the same way in every
process.

``REDIS_URL`` names the server (``redis://host:port/0``, ``rediss://`` for TLS, a
password in the URL or in ``REDIS_PASSWORD``, an ACL user in the URL or in
``REDIS_USERNAME`` — a tick pod's, see ``agentstack_operator.tickcredentials``);
``AGENTSTACK_REDIS_CLUSTER=true`` makes it the seed node of a Redis Cluster. Clients
decode responses to ``str``: every value this project stores is text.

``REDIS_SENTINELS`` (``host:port,…``) puts Redis Sentinel in charge of which server is
the primary: the client asks the Sentinels for the primary of ``REDIS_SENTINEL_MASTER``
whenever it opens a connection, and a connection that finds the old primary gone or
demoted (``READONLY``) is dropped and opened again to the new one (redis-py's
``redis.asyncio.sentinel``). ``REDIS_URL`` then gives the scheme, database and
credentials only. ``REDIS_WAIT_REPLICAS`` makes the commits that matter wait for that
many replicas (:mod:`agentstack_core.redis.durability`).

``REDIS_PASSWORD_FILE`` names a file holding the password instead (a mounted Secret):
it is read again for every new connection, so a password rotated in the Secret is used
by the next connection the process opens, without a restart (:class:`FileCredentials`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.credentials import CredentialProvider

from agentstack_core.protocol import RedisClient
from agentstack_core.redis.durability import Durability, require
from agentstack_core.settings import CommonSettings


class FileCredentials(CredentialProvider):
    """A Redis user whose password lives in a file, read at each new connection.

    The kubelet rewrites a mounted Secret's files when the Secret changes (within its
    sync period, about a minute), so a password rotated there reaches every connection
    opened afterwards; connections already open stay logged in (Redis keeps a client's
    login when its user's passwords change). Rotating without a refused connection thus
    means adding the new password to the user, updating the Secret, waiting for the
    kubelet, then removing the old password (README "Redis rights")."""

    def __init__(self, path: Path, username: str | None = None) -> None:
        self.path = path
        self.username = username

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        password = self.path.read_text().strip()
        return (self.username, password) if self.username else (password,)

    async def get_credentials_async(self) -> tuple[str] | tuple[str, str]:
        return self.get_credentials()


class FirstCommandAloneCluster(RedisCluster):
    """redis-py's cluster client whose first command runs alone.

    redis-py 8.1's cluster client, first used by several tasks at once, can hand one of
    them a connection its topology refresh is disconnecting (``'NoneType' object has no
    attribute 'writelines'``; about one fresh client in fifty with 64 commands at once,
    measured here). Once a first command has completed the topology is settled, so the
    first command takes a lock the others wait on, and everything after runs freely.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._first_done = False
        self._first = asyncio.Lock()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if not self._first_done:
            async with self._first:
                if not self._first_done:
                    result = await super().execute_command(*args, **kwargs)
                    self._first_done = True
                    return result
        return await super().execute_command(*args, **kwargs)


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """redis-py's pool of connections to the primary Sentinel names, blocking like the
    standalone one: a command waits for a free connection rather than fail."""


class SentinelPrimary(Redis):
    """A client of the primary Sentinel names, which closes its connections to the
    Sentinels with its own (redis-py leaves those to the caller)."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            pool: Any = self.connection_pool
            await pool.sentinel_manager.aclose()


DEFAULT_MAX_CONNECTIONS = 256
POOL_TIMEOUT_SECONDS = 30.0
SENTINEL_TIMEOUT_SECONDS = 2.0
"""How long a question to one Sentinel may take before the next one is asked."""


def connect(
    url: str | None = None,
    *,
    cluster: bool | None = None,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> RedisClient:
    """A client for ``url`` (default ``$REDIS_URL``); cluster mode from the environment.

    The pool holds up to ``max_connections`` connections (per node on a cluster) and
    makes a command wait for a free one rather than fail: redis-py's default of 100
    with "Too many connections" errors would lose ticks of a runner with more ticks
    in flight than that (each blocks a connection while it waits on Redis). redis-py's
    cluster client has no blocking pool: there the size is all that protects it.
    """
    settings = CommonSettings.from_env()
    target = url or settings.redis_url
    if not target:
        raise ValueError("no Redis URL: set REDIS_URL (e.g. redis://127.0.0.1:6379/0)")
    if cluster is None:
        cluster = settings.redis_cluster
    target, login = _login(target, settings)
    if cluster:
        return FirstCommandAloneCluster.from_url(
            target, decode_responses=True, max_connections=max_connections, **login
        )
    durability = Durability(settings.redis_wait_replicas, settings.redis_wait_timeout_seconds)
    if settings.redis_sentinels:
        return require(_sentinel_primary(target, login, settings, max_connections), durability)
    pool = BlockingConnectionPool.from_url(
        target,
        decode_responses=True,
        health_check_interval=30,
        max_connections=max_connections,
        timeout=POOL_TIMEOUT_SECONDS,
        **login,
    )
    # The client owns its pool: aclose() closes both.
    return require(Redis.from_pool(pool), durability)


def _sentinel_primary(
    url: str, login: dict[str, object], settings: CommonSettings, max_connections: int
) -> Redis:
    """A client of the primary the Sentinels name: the URL's database, TLS and options,
    the login as for a server of the URL; the Sentinels asked with their own password."""
    options: dict[str, Any] = dict(parse_url(url))
    options.pop("host", None)
    options.pop("port", None)
    if options.pop("connection_class", None) is SSLConnection:
        options["ssl"] = True
    options.update((name, value) for name, value in login.items() if value is not None)
    sentinels = Sentinel(  # type: ignore[no-untyped-call]
        settings.sentinel_addresses,
        sentinel_kwargs={
            "password": settings.redis_sentinel_password.get_secret_value() or None,
            "socket_timeout": SENTINEL_TIMEOUT_SECONDS,
            "socket_connect_timeout": SENTINEL_TIMEOUT_SECONDS,
        },
    )
    primary: Redis = sentinels.master_for(
        settings.redis_sentinel_master,
        redis_class=SentinelPrimary,
        connection_pool_class=BlockingSentinelPool,
        decode_responses=True,
        health_check_interval=30,
        max_connections=max_connections,
        timeout=POOL_TIMEOUT_SECONDS,
        **options,
    )
    return primary


def _login(url: str, settings: CommonSettings) -> tuple[str, dict[str, object]]:
    """The URL to connect to and the login to add: a password in the URL wins (it is
    used as it is); else the user the URL or ``REDIS_USERNAME`` names, with the password
    of ``REDIS_PASSWORD_FILE`` (read at each connection; the user then leaves the URL,
    redis-py takes one or the other) or else ``REDIS_PASSWORD``."""
    named = urlsplit(url)
    if named.password is not None:
        return url, {}
    username = settings.redis_username or None
    password_file = settings.redis_password_file or None
    if password_file is None:  # a user in the URL wins over REDIS_USERNAME
        password = settings.redis_password.get_secret_value() or None
        return url, {"username": username, "password": password}
    if named.username:
        username = unquote(named.username)
        url = urlunsplit(named._replace(netloc=named.netloc.rpartition("@")[2]))
    return url, {"credential_provider": FileCredentials(Path(password_file), username)}
