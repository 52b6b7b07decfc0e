"""A real ``redis-server`` on a free loopback port, for tests and ``agentstack dev``.

Persistence is off by default (no RDB snapshots, no AOF): the dev environment's Redis
is scratch space. A test that needs durability across a restart asks for
``appendonly=True`` (every write fsynced to the append-only file before it is
acknowledged) and restarts the server on the same port (:meth:`RedisServer.restart`).

A server can start as a replica of another (``replica_of``, a loopback port) and ask a
password (``password``, which a replica also gives its primary): the parts of a
Sentinel-managed setup (:mod:`.redissentinel`).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import redis

from agentstack_devkit.processes import (
    LOOPBACK,
    DevEnvError,
    ManagedProcess,
    Service,
    pick_port,
)

READY_TIMEOUT = 20.0


def redis_binary(name: str = "redis-server") -> str:
    """Path of ``name`` (``redis-server``, ``redis-sentinel``: each Debian's package of
    that name), or a clear error saying how the project installs it."""
    found = shutil.which(name)
    if found is None:
        raise DevEnvError(
            f"{name} is not installed: run `make setup` (it installs Debian's {name} "
            "package) or install it with your package manager"
        )
    return found


def redis_server_binary() -> str:
    """Path of ``redis-server`` (:func:`redis_binary`)."""
    return redis_binary("redis-server")


class RedisServer(Service):
    """One ``redis-server`` process; use as a context manager or start()/stop()."""

    def __init__(
        self,
        *,
        port: int | None = None,
        data_dir: Path | None = None,
        appendonly: bool = False,
        replica_of: int | None = None,
        password: str | None = None,
        host: str = LOOPBACK,
    ) -> None:
        """``host``: the address to listen on — loopback, or the dev node's bridge
        address (a Redis outside the cluster that pods reach)."""
        self.host = host
        self._requested_port = port
        self.appendonly = appendonly
        self.replica_of = replica_of
        """The loopback port of the primary it replicates when it (re)starts."""
        self.password = password
        self.port = 0
        self._owns_data_dir = data_dir is None
        self.data_dir = (
            Path(tempfile.mkdtemp(prefix="agentstack-redis-")) if data_dir is None else data_dir
        )
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def process(self) -> ManagedProcess:
        if self._process is None:
            raise DevEnvError("redis-server is not running")
        return self._process

    def _start(self) -> None:
        binary = redis_server_binary()
        self.port = pick_port(self._requested_port, purpose="redis-server", host=self.host)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        options = {
            "port": str(self.port),
            "bind": self.host,
            "dir": str(self.data_dir),
            "save": "",
            "appendonly": "yes" if self.appendonly else "no",
            "appendfsync": "always",
            "protected-mode": "no",
            "daemonize": "no",
            # A replica that (re)joins is sent the data at once, not after the default
            # 5 s wait for others to join too.
            "repl-diskless-sync-delay": "0",
        }
        if self.replica_of is not None:
            options["replicaof"] = f"{LOOPBACK} {self.replica_of}"
        if self.password is not None:
            options["requirepass"] = options["masterauth"] = self.password
        self._process = ManagedProcess(
            "redis-server",
            [binary, *(part for name, value in options.items() for part in _option(name, value))],
            log_path=self.data_dir / "redis-server.log",
        )
        self._process.start()
        self._process.wait_ready(self._ping, timeout=READY_TIMEOUT)

    def client(self) -> redis.Redis:
        """A synchronous client of this very server (whatever its role)."""
        return redis.Redis(
            host=self.host,
            port=self.port,
            password=self.password,
            socket_timeout=2,
            decode_responses=True,
        )

    def _ping(self) -> bool | None:
        client = self.client()
        try:
            return True if client.ping() else None
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL the server (a crash); :meth:`start` brings it back on the same port."""
        self._down(kill=True)

    def restart(self, *, kill: bool = True) -> None:
        """Stop the server (SIGKILL by default: a crash) and start it again on the same
        port with the same data directory; what survives is what was persisted."""
        self._down(kill=kill)
        self._start()

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """Redis down (SIGKILL) while inside: connections are refused; on the way out it
        comes back on the same port with what it had persisted."""
        self._down(kill=True)
        try:
            yield
        finally:
            self._start()

    def _down(self, *, kill: bool) -> None:
        if self._process is not None:
            if kill:
                self._process.send_signal(signal.SIGKILL)
                self._process.wait_exit()
            self._process.stop()
            self._process = None
        self._requested_port = self.port

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.is_running()

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def _option(name: str, value: str) -> list[str]:
    """A configuration directive as command-line arguments (``replicaof`` takes two)."""
    return [f"--{name}", *value.split(" ")] if name == "replicaof" else [f"--{name}", value]
