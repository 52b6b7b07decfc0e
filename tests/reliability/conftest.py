"""Fixtures of the fault suite: a Redis of its own (append-only, restartable), a fresh
fleet per case, the platform's fake LLM gateway, and a recorder of who led when.

Every case runs on the session's real control plane, with real ``agentstack``
processes started through the dev kit, and ends with the invariant checker
(:mod:`tests.reliability.invariants`). Redis is flushed before each case, so a case
sees only its own streams.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from kubernetes import client

from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.redis.tick import lease_prefix
from agentstack_devkit.controlplane import ControlPlane
from agentstack_devkit.fakellm import FakeLLMServer
from agentstack_devkit.fleet import Fleet
from agentstack_devkit.redisserver import RedisServer
from agentstack_operator.jobs import STACK_LABEL
from tests.helpers import eventually
from tests.jobpods import delete_pod, report_pod, run_pod, start_pod
from tests.reliability.support import fleet_on


@pytest.fixture(scope="module")
def fault_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """Redis with every write fsynced to its append-only file: what it acknowledged
    survives a SIGKILL, so a restart tests the fleet, not Redis."""
    with RedisServer(appendonly=True, data_dir=tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def reader(fault_redis: RedisServer) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(
        fault_redis.url, decode_responses=True, retry_on_error=[redis.ConnectionError]
    )
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def gateway() -> Iterator[FakeLLMServer]:
    """The platform's LLM gateway (allow-listed for the pool key), a little slow, so
    that a fault lands in the middle of a step."""
    with FakeLLMServer(latency=(0.05, 0.3)) as server:
        yield server


@pytest.fixture
def fleet(
    control_plane: ControlPlane,
    k8s_api: client.ApiClient,
    fault_redis: RedisServer,
    reader: redis.Redis,
    crd: str,
    gateway: FakeLLMServer,
    tmp_path: Path,
) -> Iterator[Fleet]:
    """A fresh fleet per case on a flushed Redis; its leader Lease in a namespace of its
    own. Processes are started by the case (several operators, runners, an API)."""
    reader.flushall()
    with fleet_on(
        control_plane, k8s_api, fault_redis.url, gateway=gateway, logs_dir=tmp_path / "logs"
    ) as fleet:
        yield fleet


@dataclass
class LeaderLog:
    """Who held the operator Lease when, as the API server said (polled)."""

    api: client.ApiClient
    namespace: str
    name: str = "agentstack-operator"
    changes: list[tuple[float, str | None]] = field(default_factory=list)
    """(wall time first seen, holder), in order."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="leader-log", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        coordination = client.CoordinationV1Api(self.api)
        while not self._stop.wait(0.1):
            try:
                lease = coordination.read_namespaced_lease(
                    self.name, self.namespace, _request_timeout=2
                )
                holder = lease.spec.holder_identity
            except Exception:  # noqa: S112 - the API server may be the fault injected
                continue
            if not self.changes or self.changes[-1][1] != holder:
                self.changes.append((time.time(), holder))

    def holder_at(self, moment: float) -> str | None:
        current = None
        for seen, holder in self.changes:
            if seen > moment:
                break
            current = holder
        return current


class JobPlayer:
    """Plays the node for tick Jobs (the session's control plane has none): each new
    Job's pod is played once (:func:`tests.jobpods.run_pod`: its command, as its
    namespace's Redis user, then its end reported as a kubelet would)."""

    def __init__(
        self,
        api: client.ApiClient,
        namespaces: list[str],
        fleet: Fleet,
        *,
        kill_mid_tick: int = 0,
        reader: redis.Redis | None = None,
    ) -> None:
        """``kill_mid_tick``: so many of the first pods are SIGKILLed once their runner
        holds the stack's lease for the tick (``reader`` watches it), and deleted."""
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.api = api
        self.namespaces = namespaces
        self.fleet = fleet
        self.seen: set[str] = set()
        self.ran = 0
        self.kills_left = kill_mid_tick
        self.killed: list[str] = []
        """Tick ids whose pod was killed while its runner held the tick."""
        self.reader = reader
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        thread = threading.Thread(target=self._watch, name="job-player", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(120)

    def _watch(self) -> None:
        while not self._stop.wait(0.3):
            for namespace in self.namespaces:
                try:
                    jobs = self.batch.list_namespaced_job(
                        namespace, label_selector="agentstack.dev/stack", _request_timeout=5
                    ).items
                except Exception:  # noqa: S112 - the API server may be the fault injected
                    continue
                for job in jobs:
                    name = f"{namespace}/{job.metadata.name}"
                    if name in self.seen:
                        continue
                    self.seen.add(name)
                    body = self.api.sanitize_for_serialization(job)
                    thread = threading.Thread(target=self._play, args=(body,), daemon=True)
                    thread.start()
                    self._threads.append(thread)

    def _play(self, job: dict[str, Any]) -> None:
        with self._lock:
            kill = self.kills_left > 0
            self.kills_left -= int(kill)
        if kill:
            self._kill_mid_tick(job)
        else:
            run_pod(self.api, job)
        with self._lock:
            self.ran += 1

    def _kill_mid_tick(self, job: dict[str, Any]) -> None:
        """Start the pod, SIGKILL it once its runner holds the tick, delete the pod."""
        assert self.reader is not None
        tick = job["metadata"]["annotations"]["agentstack.dev/tick-id"]
        stack = StackRef(job["metadata"]["namespace"], job["metadata"]["labels"][STACK_LABEL])
        lease = StackKeys(stack).lease
        process = start_pod(self.api, job)
        reader = self.reader

        def holding() -> bool | None:
            if process.poll() is not None:
                return True  # ended before it could be cut: played as it ended
            return True if str(reader.get(lease) or "").startswith(lease_prefix(tick)) else None

        eventually(holding, f"the runner of {tick} to hold the lease", timeout=60)
        if process.poll() is None:
            process.kill()
            process.wait()
            delete_pod(self.api, job)
            with self._lock:
                self.killed.append(tick)
        else:
            report_pod(self.api, job, process.returncode, started=time.time())
