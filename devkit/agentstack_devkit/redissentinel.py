"""A real Sentinel-managed Redis on loopback: a primary, a replica and three Sentinels.

What a platform runs when one Redis must not be the night's single point of failure:
the Sentinels watch the primary, agree (a quorum of two) that it is down when it has
not answered for :data:`DOWN_AFTER_MS`, and promote the replica; clients that ask them
(``REDIS_SENTINELS``) find the new primary. The fault suite and the failover bench kill
the primary (:meth:`SentinelRedis.kill_primary`), wait for the promotion
(:meth:`SentinelRedis.wait_promoted`) and bring the dead server back as a replica of the
new primary (:meth:`SentinelRedis.rejoin`) — all three: :meth:`SentinelRedis.failover` —
so the next failover has a replica to promote.

Every part is Debian's ``redis-server`` / ``redis-sentinel`` through
:class:`~.processes.ManagedProcess` (log file, own process group, dies with its
parent), bound to 127.0.0.1, persistence off. A Sentinel rewrites its configuration
file as it learns the topology, so each gets a file of its own in the data directory.
Replication is asynchronous: :meth:`SentinelRedis.lagging` cuts the replica off so a
test can show what a failover loses, and what ``WAIT`` keeps.
"""

from __future__ import annotations

import contextlib
import functools
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
import redis.sentinel

from agentstack_devkit.processes import (
    LOOPBACK,
    DevEnvError,
    ManagedProcess,
    Service,
    free_port,
    stop_all,
    wait_until,
)
from agentstack_devkit.redisserver import RedisServer, redis_binary

MASTER_NAME = "mymaster"
SENTINELS = 3
QUORUM = 2
DOWN_AFTER_MS = 1000
"""How long the primary may not answer before a Sentinel thinks it down."""
FAILOVER_TIMEOUT_MS = 5000
READY_TIMEOUT = 30.0
PROMOTION_TIMEOUT = 60.0


class SentinelRedis(Service):
    """Two ``redis-server`` and three ``redis-sentinel``; a context manager or start()/stop().

    ``password``: the servers' (``requirepass``, and ``masterauth`` so a replica can sync);
    ``sentinel_password``: the Sentinels' own (clients' ``REDIS_SENTINEL_PASSWORD``).
    """

    def __init__(
        self,
        *,
        data_dir: Path | None = None,
        password: str | None = None,
        sentinel_password: str | None = None,
    ) -> None:
        self._owns_data_dir = data_dir is None
        self.data_dir = (
            Path(tempfile.mkdtemp(prefix="agentstack-sentinel-")) if data_dir is None else data_dir
        )
        self.password = password
        self.sentinel_password = sentinel_password
        self.servers: list[RedisServer] = []
        self.sentinel_ports: list[int] = []
        self._sentinels: list[ManagedProcess] = []

    # -- what clients need ------------------------------------------------------------

    @property
    def sentinels(self) -> str:
        """``REDIS_SENTINELS``: ``127.0.0.1:port,…``."""
        return ",".join(f"{LOOPBACK}:{port}" for port in self.sentinel_ports)

    def env(self) -> dict[str, str]:
        """The variables a process needs to reach the primary through the Sentinels."""
        env = {
            "REDIS_URL": f"redis://{MASTER_NAME}/0",
            "REDIS_SENTINELS": self.sentinels,
            "REDIS_SENTINEL_MASTER": MASTER_NAME,
        }
        if self.password is not None:
            env["REDIS_PASSWORD"] = self.password
        if self.sentinel_password is not None:
            env["REDIS_SENTINEL_PASSWORD"] = self.sentinel_password
        return env

    def client(self, **kwargs: object) -> redis.Redis:
        """A synchronous client of whichever server is the primary (it follows failovers:
        redis-py's ``redis.sentinel``); decodes responses to ``str``."""
        sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            [(LOOPBACK, port) for port in self.sentinel_ports],
            sentinel_kwargs={"password": self.sentinel_password, "socket_timeout": 2},
            socket_timeout=5,
        )
        primary: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            MASTER_NAME, password=self.password, decode_responses=True, **kwargs
        )
        return primary

    # -- start and stop ---------------------------------------------------------------

    def _start(self) -> None:
        redis_binary("redis-sentinel")
        primary = RedisServer(data_dir=self.data_dir / "server-0", password=self.password)
        self.servers.append(primary)
        primary.start()
        replica = RedisServer(
            data_dir=self.data_dir / "server-1", replica_of=primary.port, password=self.password
        )
        self.servers.append(replica)
        replica.start()
        self._wait_in_sync(replica)
        for index in range(SENTINELS):
            port = free_port()
            process = self._sentinel_process(index, port, primary.port)
            self.sentinel_ports.append(port)
            self._sentinels.append(process)
            process.start()
        for port, process in zip(self.sentinel_ports, self._sentinels, strict=True):
            process.wait_ready(
                functools.partial(self._sentinel_knows_all, port), timeout=READY_TIMEOUT
            )

    def _sentinel_process(self, index: int, port: int, primary: int) -> ManagedProcess:
        work = self.data_dir / f"sentinel-{index}"
        work.mkdir(parents=True, exist_ok=True)
        lines = [
            f"port {port}",
            f"bind {LOOPBACK}",
            "protected-mode no",
            "daemonize no",
            f"dir {work}",
            f"sentinel monitor {MASTER_NAME} {LOOPBACK} {primary} {QUORUM}",
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {MASTER_NAME} 1",
        ]
        if self.password is not None:
            lines.append(f"sentinel auth-pass {MASTER_NAME} {self.password}")
        if self.sentinel_password is not None:
            lines.append(f"requirepass {self.sentinel_password}")
        config = work / "sentinel.conf"
        config.write_text("\n".join(lines) + "\n")
        return ManagedProcess(
            f"redis-sentinel {port}",
            [redis_binary("redis-sentinel"), str(config)],
            log_path=work / "sentinel.log",
        )

    def _sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(
            host=LOOPBACK,
            port=port,
            password=self.sentinel_password,
            socket_timeout=2,
            decode_responses=True,
        )

    def _sentinel_knows_all(self, port: int) -> bool | None:
        """The Sentinel sees the primary, its replica and the other Sentinels."""
        with contextlib.closing(self._sentinel(port)) as sentinel:
            state: Any = sentinel.sentinel_master(MASTER_NAME)
        known = int(state["num-slaves"]) == 1 and int(state["num-other-sentinels"]) == SENTINELS - 1
        return True if known else None

    def _wait_in_sync(self, replica: RedisServer) -> None:
        def synced() -> bool | None:
            with contextlib.closing(replica.client()) as client:
                info = client.info("replication")
            return True if info.get("master_link_status") == "up" else None

        replica.process.wait_ready(synced, timeout=READY_TIMEOUT, what="in sync with its primary")

    def stop(self) -> None:
        """Stop every Sentinel and server (all of them, even if one fails), then the data."""
        processes, self._sentinels = self._sentinels, []
        servers, self.servers = self.servers, []
        try:
            stop_all([*processes, *servers], "every part of the Sentinel setup")
        finally:
            if self._owns_data_dir:
                shutil.rmtree(self.data_dir, ignore_errors=True)

    # -- the topology, and faults -----------------------------------------------------

    def primary_port(self) -> int:
        """The port of the primary, as the first Sentinel that answers names it."""
        for port in self.sentinel_ports:
            try:
                return self._named_primary(port)
            except (redis.RedisError, TypeError):
                continue
        raise DevEnvError("no Sentinel answers which server is the primary")

    def _named_primary(self, port: int) -> int:
        """The port of the primary as the Sentinel on ``port`` names it."""
        with contextlib.closing(self._sentinel(port)) as sentinel:
            address: Any = sentinel.sentinel_get_master_addr_by_name(MASTER_NAME)
        return int(address[1])

    def server(self, port: int) -> RedisServer:
        return next(server for server in self.servers if server.port == port)

    @property
    def primary(self) -> RedisServer:
        return self.server(self.primary_port())

    @property
    def replica(self) -> RedisServer:
        primary = self.primary_port()
        return next(server for server in self.servers if server.port != primary)

    def kill_primary(self) -> RedisServer:
        """SIGKILL the primary (a crashed machine); returns it, down."""
        primary = self.primary
        primary.kill()
        return primary

    def wait_promoted(self, old: int, timeout: float = PROMOTION_TIMEOUT) -> int:
        """Wait until every Sentinel names a primary other than port ``old`` and that
        server says it is one; returns its port."""

        def promoted() -> int | None:
            named = {self._named_primary(port) for port in self.sentinel_ports}
            if len(named) != 1 or old in named:
                return None
            (primary,) = named
            with contextlib.closing(self.server(primary).client()) as client:
                role = client.info("replication").get("role")
            return primary if role == "master" else None

        return wait_until(promoted, timeout=timeout, what="a Sentinel failover", interval=0.02)

    def rejoin(self, server: RedisServer) -> None:
        """Start a killed server again as a replica of the current primary (what the
        Sentinels would make of it anyway), and wait until it is in sync."""
        server.replica_of = self.primary_port()
        server.start()
        self._wait_in_sync(server)

    @contextlib.contextmanager
    def lagging(self) -> Iterator[RedisServer]:
        """The replica cut off while inside: stopped (SIGSTOP) and its replication link
        closed by the primary, so the primary acknowledges writes the replica does not
        have — and, stopped, cannot fetch — as a slow or partitioned replica would. (A
        stop alone is not enough: what the primary sent waits in the stopped replica's
        socket buffer.) It resumes (SIGCONT) on the way out and, if the primary still
        lives, is waited for until it has caught up. Yields the replica."""
        replica, primary = self.replica, self.primary
        replica.process.send_signal(signal.SIGSTOP)
        try:
            with contextlib.closing(primary.client()) as client:
                client.client_kill_filter(_type="replica")
            yield replica
        finally:
            replica.process.send_signal(signal.SIGCONT)
        if primary.running:
            self._wait_caught_up(primary)

    def _wait_caught_up(self, primary: RedisServer) -> None:
        """Until a replica acknowledged everything ``primary`` had written so far."""
        with contextlib.closing(primary.client()) as client:
            target = int(client.info("replication")["master_repl_offset"])

            def caught_up() -> bool | None:
                info: dict[str, Any] = client.info("replication")
                replicas = [v for k, v in info.items() if re.fullmatch(r"slave\d+", k)]
                done = any(r["state"] == "online" and int(r["offset"]) >= target for r in replicas)
                return True if done else None

            primary.process.wait_ready(caught_up, timeout=READY_TIMEOUT, what="caught up on")

    def failover(self) -> float:
        """Kill the primary, wait for the promotion, bring the old one back as a
        replica; returns how long the promotion took (from the kill)."""
        killed = self.kill_primary()
        began = time.monotonic()
        self.wait_promoted(killed.port)
        took = time.monotonic() - began
        self.rejoin(killed)
        return took
