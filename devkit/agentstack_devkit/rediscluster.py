"""A real three-node Redis Cluster on loopback ports, for tests.

Every key of one AgentStack carries the hash tag ``{namespace/name}``: all of a stack's
keys then hash to the same slot, so the same code runs unchanged on a single
``redis-server`` and on a Redis Cluster.
The catch is that a cluster only allows multi-key commands (MSET, XREADGROUP over
several streams, ...) and Lua scripts whose keys all live in one slot; anything else
fails with ``CROSSSLOT``. A single server never says so, hence this fixture: three real
masters, each owning a third of the 16384 slots, so that a key that forgets its tag is
caught by the tests instead of in production.

The cluster is assembled with plain ``CLUSTER ADDSLOTSRANGE`` / ``CLUSTER MEET``
commands rather than ``redis-cli --cluster create``: it needs nothing but the servers,
and the readiness wait below is the same either way. Every node runs through
:class:`ManagedProcess` (log file, process group, death with its parent), with
persistence off and a short node timeout.

Starting takes a little over two seconds, almost all of it Redis's own
``CLUSTER_WRITABLE_DELAY``: a freshly started master reports ``cluster_state:ok`` no
sooner than 2 s after boot, however fast the cluster is assembled. Tests therefore share
one session-scoped cluster.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
import redis.asyncio.cluster
import redis.cluster

from agentstack_devkit.processes import (
    LOOPBACK,
    DevEnvError,
    ManagedProcess,
    ProcessExitedError,
    Service,
    free_port,
    stop_all,
    wait_until,
)
from agentstack_devkit.redisserver import redis_server_binary

NODE_COUNT = 3
SLOT_COUNT = 16384
# The cluster bus of a node listens on its client port + 10000 (fixed by Redis).
BUS_PORT_OFFSET = 10000
NODE_TIMEOUT_MS = 2000
READY_TIMEOUT = 20.0
CLUSTER_OK_TIMEOUT = 30.0
_PORT_ATTEMPTS = 50


def _bind(port: int) -> socket.socket | None:
    """Bind ``port`` on loopback and return the socket, or ``None`` if it is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((LOOPBACK, port))
    except OSError:
        sock.close()
        return None
    return sock


def cluster_ports(count: int = NODE_COUNT) -> list[int]:
    """Pick ``count`` client ports whose cluster bus ports (port + 10000) are free too.

    Every chosen port and bus port stays bound until all are chosen, so the picks cannot
    collide with each other; like :func:`free_port`, they are only free for the instant
    of the check and a lost race shows up as a node that fails to start, with its log.
    """
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        for _ in range(_PORT_ATTEMPTS):
            if len(ports) == count:
                break
            port = free_port()
            bus_port = port + BUS_PORT_OFFSET
            if bus_port >= 65536:
                continue
            client_sock = _bind(port)
            if client_sock is None:
                continue
            bus_sock = _bind(bus_port)
            if bus_sock is None:
                client_sock.close()
                continue
            held += [client_sock, bus_sock]
            ports.append(port)
    finally:
        for sock in held:
            sock.close()
    if len(ports) < count:
        raise DevEnvError(
            f"could not find {count} free loopback ports with free cluster bus ports "
            f"(port + {BUS_PORT_OFFSET}) after {_PORT_ATTEMPTS} attempts"
        )
    return ports


def _slot_ranges(count: int) -> list[tuple[int, int]]:
    """Split the 16384 slots into ``count`` contiguous ranges, as redis-cli does."""
    bounds = [SLOT_COUNT * index // count for index in range(count + 1)]
    return [(bounds[index], bounds[index + 1] - 1) for index in range(count)]


class RedisClusterServers(Service):
    """Three ``redis-server`` masters forming one cluster; a context manager or start()/stop().

    ``url`` names the first node; cluster clients discover the others from it, but
    :meth:`client` and :meth:`async_client` pass all nodes as startup nodes anyway.
    ``ports`` are the client ports (each node's bus is on port + 10000), and
    ``startup_seconds`` is how long the last :meth:`start` took.
    """

    def __init__(self, *, data_dir: Path | None = None) -> None:
        self._owns_data_dir = data_dir is None
        self.data_dir = (
            Path(tempfile.mkdtemp(prefix="agentstack-redis-cluster-"))
            if data_dir is None
            else data_dir
        )
        self.ports: list[int] = []
        self._processes: list[ManagedProcess] = []
        self.startup_seconds = 0.0

    @property
    def url(self) -> str:
        if not self.ports:
            raise DevEnvError("the Redis cluster is not started")
        return f"redis://{LOOPBACK}:{self.ports[0]}"

    def _start(self) -> None:
        if self._processes:
            raise DevEnvError("the Redis cluster was already started")
        began = time.monotonic()
        binary = redis_server_binary()
        self.ports = cluster_ports(NODE_COUNT)
        for port in self.ports:
            process = self._node_process(binary, port)
            self._processes.append(process)
            process.start()
        for port, process in zip(self.ports, self._processes, strict=True):
            process.wait_ready(functools.partial(self._ping, port), timeout=READY_TIMEOUT)
        self._assemble()
        self._wait_cluster_ok()
        self.startup_seconds = time.monotonic() - began

    def _node_process(self, binary: str, port: int) -> ManagedProcess:
        node_dir = self.data_dir / f"node-{port}"
        node_dir.mkdir(parents=True, exist_ok=True)
        return ManagedProcess(
            f"redis-server (cluster node {port})",
            [
                binary,
                "--port",
                str(port),
                "--bind",
                LOOPBACK,
                "--dir",
                str(node_dir),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(node_dir / "nodes.conf"),
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                "--cluster-announce-ip",
                LOOPBACK,
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
                # Keep the original command line in /proc/<pid>/cmdline (Redis would
                # otherwise overwrite it with "redis-server 127.0.0.1:port [cluster]"),
                # so a node can be traced back to its data directory.
                "--set-proc-title",
                "no",
            ],
            log_path=node_dir / "redis-server.log",
        )

    @contextlib.contextmanager
    def _node(self, port: int) -> Iterator[redis.Redis]:
        client = redis.Redis(host=LOOPBACK, port=port, socket_timeout=2, decode_responses=True)
        try:
            yield client
        finally:
            client.close()

    def _ping(self, port: int) -> bool | None:
        with self._node(port) as client:
            return True if client.ping() else None

    def _check_alive(self) -> None:
        for process in self._processes:
            process.check_alive()

    def _assemble(self) -> None:
        """Give each node its slot range and a distinct epoch, then introduce them."""
        for epoch, (port, (first, last)) in enumerate(
            zip(self.ports, _slot_ranges(len(self.ports)), strict=True), start=1
        ):
            with self._node(port) as client:
                client.cluster("ADDSLOTSRANGE", first, last)
                # Distinct epochs up front spare the nodes the collision resolution
                # they would otherwise go through (redis-cli does the same).
                client.cluster("SET-CONFIG-EPOCH", epoch)
        # Every node meets every other one: waiting for gossip to spread the introductions
        # costs up to a couple of seconds more.
        for port in self.ports:
            with self._node(port) as client:
                for other in self.ports:
                    if other != port:
                        client.cluster("MEET", LOOPBACK, other)

    def _cluster_info(self, port: int) -> dict[str, str]:
        with self._node(port) as client:
            info = client.cluster("INFO")  # redis-py parses the reply into a dict
        return {str(key): str(value) for key, value in dict(info).items()}

    def _node_ok(self, port: int) -> bool:
        info = self._cluster_info(port)
        return (
            info.get("cluster_state") == "ok"
            and info.get("cluster_slots_assigned") == str(SLOT_COUNT)
            and info.get("cluster_slots_ok") == str(SLOT_COUNT)
            and info.get("cluster_known_nodes") == str(len(self.ports))
            and info.get("cluster_size") == str(len(self.ports))
        )

    def _wait_cluster_ok(self) -> None:
        def all_ok() -> bool | None:
            return True if all(self._node_ok(port) for port in self.ports) else None

        try:
            wait_until(
                all_ok,
                timeout=CLUSTER_OK_TIMEOUT,
                what="the Redis cluster to report cluster_state:ok with all slots assigned",
                alive=self._check_alive,
            )
        except ProcessExitedError:
            raise  # already quotes the dead node's log
        except DevEnvError as exc:
            raise DevEnvError(f"{exc}\n{self._diagnostics()}") from exc

    def _diagnostics(self) -> str:
        parts = []
        for port, process in zip(self.ports, self._processes, strict=True):
            try:
                info = self._cluster_info(port)
                state = ", ".join(
                    f"{key}={info.get(key)}"
                    for key in ("cluster_state", "cluster_slots_assigned", "cluster_known_nodes")
                )
                with self._node(port) as client:
                    known = dict(client.cluster("NODES"))
                lines = [f"{address} {details}" for address, details in known.items()]
                nodes = "\n".join([state, *lines])
            except redis.RedisError as exc:
                nodes = f"(CLUSTER INFO/NODES failed: {exc!r})"
            parts.append(
                f"--- node {port}: CLUSTER INFO, CLUSTER NODES\n{nodes}\n"
                f"--- last lines of {process.log_path}:\n{process.log_tail()}"
            )
        return "\n".join(parts)

    def startup_nodes(self) -> list[redis.cluster.ClusterNode]:
        # redis-py's synchronous ClusterNode has no annotations (the asyncio one has).
        return [
            redis.cluster.ClusterNode(LOOPBACK, port)  # type: ignore[no-untyped-call]
            for port in self.ports
        ]

    def client(self, **kwargs: Any) -> redis.cluster.RedisCluster:
        """A synchronous cluster client; ``kwargs`` go to ``RedisCluster``."""
        if not self.ports:
            raise DevEnvError("the Redis cluster is not started")
        return redis.cluster.RedisCluster(startup_nodes=self.startup_nodes(), **kwargs)

    def async_client(self, **kwargs: Any) -> redis.asyncio.cluster.RedisCluster:
        """An asyncio cluster client; ``kwargs`` go to ``redis.asyncio.cluster.RedisCluster``."""
        if not self.ports:
            raise DevEnvError("the Redis cluster is not started")
        nodes = [redis.asyncio.cluster.ClusterNode(LOOPBACK, port) for port in self.ports]
        return redis.asyncio.cluster.RedisCluster(startup_nodes=nodes, **kwargs)

    def stop(self) -> None:
        """Stop every node (all of them, even if one fails to stop), then drop the data."""
        processes, self._processes = self._processes, []
        try:
            stop_all(processes, "every Redis cluster node")
        finally:
            if self._owns_data_dir:
                shutil.rmtree(self.data_dir, ignore_errors=True)
