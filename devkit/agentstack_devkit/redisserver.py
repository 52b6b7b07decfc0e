"""A real ``redis-server`` on a free loopback port, for tests and ``agentstack dev``.

Persistence is off by default (no RDB snapshots, no AOF): the dev environment's Redis
is scratch space. A test that needs durability across a restart asks for
``appendonly=True`` (every write fsynced to the append-only file before it is
acknowledged) and restarts the server on the same port (:meth:`RedisServer.restart`).
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


def redis_server_binary() -> str:
    """Path of ``redis-server``, or a clear error saying how the project installs it."""
    found = shutil.which("redis-server")
    if found is None:
        raise DevEnvError(
            "redis-server is not installed: run `make setup` (it installs Debian's "
            "redis-server package) or install it with your package manager"
        )
    return found


class RedisServer(Service):
    """One ``redis-server`` process; use as a context manager or start()/stop()."""

    def __init__(
        self, *, port: int | None = None, data_dir: Path | None = None, appendonly: bool = False
    ) -> None:
        self._requested_port = port
        self.appendonly = appendonly
        self.port = 0
        self._owns_data_dir = data_dir is None
        self.data_dir = (
            Path(tempfile.mkdtemp(prefix="agentstack-redis-")) if data_dir is None else data_dir
        )
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    @property
    def process(self) -> ManagedProcess:
        if self._process is None:
            raise DevEnvError("redis-server is not running")
        return self._process

    def _start(self) -> None:
        binary = redis_server_binary()
        self.port = pick_port(self._requested_port, purpose="redis-server")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        options = {
            "port": str(self.port),
            "bind": LOOPBACK,
            "dir": str(self.data_dir),
            "save": "",
            "appendonly": "yes" if self.appendonly else "no",
            "appendfsync": "always",
            "protected-mode": "no",
            "daemonize": "no",
        }
        self._process = ManagedProcess(
            "redis-server",
            [binary, *(part for name, value in options.items() for part in (f"--{name}", value))],
            log_path=self.data_dir / "redis-server.log",
        )
        self._process.start()
        self._process.wait_ready(self._ping, timeout=READY_TIMEOUT)

    def _ping(self) -> bool | None:
        client = redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=2)
        try:
            return True if client.ping() else None
        finally:
            client.close()

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

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
