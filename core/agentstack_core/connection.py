"""Connecting to Redis, standalone or cluster, the same way in every process.

``REDIS_URL`` names the server (``redis://host:port/0``, ``rediss://`` for TLS, a
password in the URL or in ``REDIS_PASSWORD``, an ACL user in the URL or in
``REDIS_USERNAME`` — a tick pod's, see ``agentstack_operator.tickcredentials``);
``AGENTSTACK_REDIS_CLUSTER=true`` makes it the seed node of a Redis Cluster. Clients
decode responses to ``str``: every value this project stores is text.

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
from redis.credentials import CredentialProvider

from agentstack_core.protocol import RedisClient
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


DEFAULT_MAX_CONNECTIONS = 256
POOL_TIMEOUT_SECONDS = 30.0


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
    pool = BlockingConnectionPool.from_url(
        target,
        decode_responses=True,
        health_check_interval=30,
        max_connections=max_connections,
        timeout=POOL_TIMEOUT_SECONDS,
        **login,
    )
    return Redis.from_pool(pool)  # the client owns its pool: aclose() closes both


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
