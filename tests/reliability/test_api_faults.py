"""The read API killed while live clients are connected: they reconnect to a new API
process with ``Last-Event-ID`` and miss nothing, see nothing twice."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import httpx
import redis
from kubernetes import client

from agentstack_core.keys import StackKeys, StackRef
from agentstack_devkit.fleet import Fleet
from agentstack_devkit.processes import LOOPBACK
from tests.e2e.stacks import Stacks
from tests.reliability.support import verify


def _events(response: httpx.Response) -> Iterator[str]:
    """The ids of the Server-Sent Events of a trace stream, as they arrive."""
    event_id = ""
    for line in response.iter_lines():
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("event: trace"):
            yield event_id


def _read(port: int, path: str, count: int, last_id: str | None) -> list[str]:
    headers = {"Last-Event-ID": last_id} if last_id else {}
    received: list[str] = []
    with (
        httpx.Client(base_url=f"http://{LOOPBACK}:{port}", timeout=60) as http,
        http.stream("GET", path, headers=headers) as response,
    ):
        assert response.status_code == 200
        for event_id in _events(response):
            received.append(event_id)
            if len(received) == count:
                break
    return received


def test_sse_clients_resume_on_a_new_api_process_without_gap_or_duplicate(
    fleet: Fleet,
    k8s_api: client.ApiClient,
    namespace: str,
    reader: redis.Redis,
) -> None:
    stacks = Stacks(k8s_api, namespace, reader)
    stacks.create("watched", tickIntervalSeconds=1)
    fleet.operator()
    fleet.runner()
    first_api, port = fleet.api("api-a")
    path = f"/api/v1/namespaces/{namespace}/stacks/watched/traces/stream"
    clients = 3
    before = [_read(port, path, 8, "0-0") for _ in range(clients)]
    first_api.send_signal(signal.SIGKILL)  # no goodbye to anyone
    first_api.wait_exit()
    _second, port = fleet.api("api-b")
    after = [_read(port, path, 12, seen[-1]) for seen in before]

    stream = [
        entry_id for entry_id, _ in reader.xrange(StackKeys(StackRef(namespace, "watched")).trace)
    ]  # type: ignore[union-attr]
    for seen, resumed in zip(before, after, strict=True):
        received = seen + resumed
        assert len(set(received)) == len(received)  # nothing twice
        start = stream.index(received[0])
        assert received == stream[start : start + len(received)]  # nothing missed, in order

    verify(f"API SIGKILL with {clients} SSE clients", fleet, k8s_api, reader, [namespace])
