"""A stack that lives through the whole end-to-end session: 500+ ticks at one a second.

Five hundred ticks take more than eight minutes; run alone, that would be eight
minutes of the suite doing nothing else. So the marathon starts with the first
end-to-end test, ticks on beside all the others, and is checked by the last one
(``tests/e2e/test_marathon.py``, which the suite's collection moves to the end of the
end-to-end tests), which stops it so that the reliability tests have the machine.

It runs on parts of its own — a control plane, a ``redis-server``, an operator, a
runner and an API — because the other tests' fleets watch every namespace and share
the session's Redis: on shared parts, their operators would tick the marathon and its
runner would take their ticks.

At its start it is sent a fact as an input; then 1,300 more inputs push that fact out
of every capped stream (the inputs log and the planner's inbox keep 1,000), so that at
the end only the archive and its index can still find it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import httpx
import redis
from kubernetes import client, config

from agentstack_core.keys import StackKeys, StackRef
from agentstack_devkit.controlplane import ControlPlane
from agentstack_devkit.fleet import Fleet
from agentstack_devkit.redisserver import RedisServer
from agentstack_devkit.toolchain import controlplane_binaries
from tests.e2e.stacks import Stacks

NAMESPACE = "marathon"
STACK = "marathon"
FACT = "The venue in Lisbon holds 42 people and must be booked by Friday"
FLOOD = 1300
"""Inputs sent after the fact: more than the inputs log and an inbox keep."""
MAX_TICKS = 1500
"""Where the marathon stops, however long the session runs (it needs 520, and 200 after
the flood). The archive keeps :data:`~agentstack_core.retention.ARCHIVE_MAXLEN` items
(10,000); past them it trims the oldest that consolidation covered — the fact among
them, by design — so the check must come before that. Measured on this machine
(2026-12-07): every input wakes the stack, so the flood's two minutes brought ~935 ticks
and 6,167 archive items, then ~4.25 items a tick: 1,500 ticks stay below 10,000. (A cap
of 900 was spent before the flood ended, leaving no tick after it; with no cap, a
session long enough trimmed the fact, and search found nothing.)"""
PER_MINUTE = 600
"""The stack's input rate (the CRD's most), so the flood takes a little over two minutes."""


class Marathon:
    """The marathon stack, its fleet, and the inputs it is sent."""

    def __init__(self, crd_file: Path, logs: Path) -> None:
        self._crd_file = crd_file
        self._logs = logs
        self._parts = contextlib.ExitStack()
        self.control_plane = ControlPlane(controlplane_binaries())
        self.redis_server = RedisServer()
        self.keys = StackKeys(StackRef(NAMESPACE, STACK))
        self.sent = 0
        self.flooded_at: float | None = None
        """When the last input of the flood was accepted."""
        self._stop = threading.Event()
        self._flood = threading.Thread(target=self._send_flood, name="marathon-flood", daemon=True)
        self.url = ""
        self._stacks: Stacks | None = None

    @property
    def stacks(self) -> Stacks:
        """The marathon's stacks, on its own control plane and Redis (once started)."""
        assert self._stacks is not None, "the marathon has not started"
        return self._stacks

    @property
    def path(self) -> str:
        return f"{self.url}/api/v1/namespaces/{NAMESPACE}/stacks/{STACK}"

    def start(self) -> None:
        parts = self._parts
        plane = parts.enter_context(self.control_plane)
        plane.apply_crd(self._crd_file, "agentstacks.agentstack.dev")
        server = parts.enter_context(self.redis_server)
        api = config.new_client_from_config(config_file=str(plane.kubeconfig_path))
        parts.callback(api.close)
        reader = redis.Redis.from_url(server.url, decode_responses=True)
        parts.callback(reader.close)
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE))
        )
        fleet = Fleet(
            kubeconfig=plane.kubeconfig_path,
            redis_url=server.url,
            logs_dir=self._logs,
            extra_env={"AGENTSTACK_STATUS_MIN_INTERVAL": "0.5"},
        )
        parts.callback(fleet.stop)
        fleet.operator()
        fleet.runner()
        _process, port = fleet.api()
        self.url = f"http://127.0.0.1:{port}"
        self._stacks = Stacks(api, NAMESPACE, reader)
        self._stacks.create(
            STACK,
            tickIntervalSeconds=1,
            inputs={"maxPerMinute": PER_MINUTE},
            budget={"maxTicks": MAX_TICKS},
        )
        self._stacks.wait_ticks(STACK, 1, timeout=60)
        self._send(FACT)
        self._flood.start()

    def _send(self, content: str) -> None:
        response = httpx.post(
            f"{self.path}/inputs", json={"agent": "planner", "content": content}, timeout=10
        )
        response.raise_for_status()
        self.sent += 1

    def _send_flood(self) -> None:
        """The flood, paced to the stack's rate (a refused input waits and is sent again)."""
        number = 0
        while number < FLOOD and not self._stop.is_set():
            try:
                self._send(f"Routine update {number}: nothing new")
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code != 429:
                    raise
                self._stop.wait(float(exc.response.headers.get("Retry-After", "1")))
                continue
            number += 1
            self._stop.wait(60 / PER_MINUTE)
        if number == FLOOD:
            self.flooded_at = time.time()

    def flooded(self) -> bool:
        return self.flooded_at is not None

    def stop(self) -> None:
        """Stop the flood, the fleet, the Redis and the control plane (idempotent)."""
        self._stop.set()
        if self._flood.is_alive():
            self._flood.join(timeout=30)
        self._parts.close()
