"""Read API: how fast a runner's write reaches an SSE client, and requests per second.

Run from the repository root: ``.venv/bin/python -m bench.api_latency [--quick]``.

It starts a real control plane, ``redis-server`` and one ``agentstack api`` process
(authentication off), creates stacks, then measures:

- **SSE latency**: a writer appends trace entries to a stack's trace stream exactly as a
  runner's step commit does (``XADD``), stamped with the writer's clock; a client
  connected to ``…/traces/stream`` records when each event arrives. The baseline, in the
  same run and process, is a plain Redis client blocked in ``XREAD`` on the same stream —
  the floor any push over Redis can reach; the ratio is the cost of the API's hop.
- **Throughput** of the list and detail endpoints with concurrent keep-alive clients,
  against ``/healthz`` (no work at all) as the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis
from kubernetes import client, config

from agentstack_core.keys import StackKeys, StackRef
from agentstack_devkit.controlplane import ControlPlane
from agentstack_devkit.fleet import Fleet
from agentstack_devkit.processes import wait_until
from agentstack_devkit.redisserver import RedisServer
from agentstack_devkit.toolchain import controlplane_binaries, find_repo_root

NAMESPACE = "bench"


@dataclass
class Sizes:
    stacks: int
    events: int
    rate: float
    seconds: float
    clients: int


FULL = Sizes(stacks=200, events=1000, rate=50.0, seconds=10.0, clients=16)
QUICK = Sizes(stacks=20, events=100, rate=50.0, seconds=3.0, clients=8)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@contextlib.contextmanager
def environment(work: Path) -> Iterator[tuple[ControlPlane, RedisServer, str]]:
    with ControlPlane(controlplane_binaries()) as plane, RedisServer() as server:
        crd = find_repo_root() / "crds" / "agentstack.dev_agentstacks.yaml"
        plane.apply_crd(crd, "agentstacks.agentstack.dev")
        fleet = Fleet(kubeconfig=plane.kubeconfig_path, redis_url=server.url, logs_dir=work)
        try:
            _api, port = fleet.api()
            yield plane, server, f"http://127.0.0.1:{port}"
        finally:
            fleet.stop()


def create_stacks(plane: ControlPlane, count: int) -> None:
    api = config.new_client_from_config(config_file=str(plane.kubeconfig_path))
    with api:
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE))
        )
        custom = client.CustomObjectsApi(api)
        for n in range(count):
            custom.create_namespaced_custom_object(
                "agentstack.dev",
                "v1alpha1",
                NAMESPACE,
                "agentstacks",
                {
                    "apiVersion": "agentstack.dev/v1alpha1",
                    "kind": "AgentStack",
                    "metadata": {"name": f"s{n:04d}"},
                    "spec": {"goal": f"goal {n}", "executionState": "Paused"},
                },
            )


def sse_latencies(url: str, server: RedisServer, sizes: Sizes) -> tuple[list[float], list[float]]:
    """(SSE client latencies, plain XREAD latencies) in seconds, same writes."""
    key = StackKeys(StackRef(NAMESPACE, "s0000")).trace
    sse_arrivals: dict[str, float] = {}
    xread_arrivals: dict[str, float] = {}
    stop = threading.Event()
    connected = threading.Event()

    def sse_client() -> None:
        path = f"/api/v1/namespaces/{NAMESPACE}/stacks/s0000/traces/stream"
        timeout = httpx.Timeout(10.0, read=None)  # an event stream is quiet between events
        with httpx.Client(base_url=url, timeout=timeout) as http, http.stream("GET", path) as resp:
            connected.set()
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    sse_arrivals[json.loads(line[6:])["tickId"]] = time.perf_counter()
                if stop.is_set():
                    return

    def xread_client() -> None:
        reader = redis.Redis.from_url(server.url, decode_responses=True)
        last = "$"
        while not stop.is_set():
            for _stream, entries in reader.xread({key: last}, block=200) or []:
                for entry_id, fields in entries:
                    xread_arrivals[fields["tick_id"]] = time.perf_counter()
                    last = entry_id
        reader.close()

    threads = [threading.Thread(target=f, daemon=True) for f in (sse_client, xread_client)]
    for thread in threads:
        thread.start()
    wait_until(lambda: True if connected.is_set() else None, timeout=30, what="SSE connect")
    writer = redis.Redis.from_url(server.url, decode_responses=True)
    sent: dict[str, float] = {}
    started = time.perf_counter()
    for n in range(sizes.events):
        due = started + n / sizes.rate
        while (now := time.perf_counter()) < due:
            time.sleep(min(0.002, due - now))
        tick = f"bench/s0000/{n}"
        sent[tick] = time.perf_counter()
        writer.xadd(
            key,
            {"tick_id": tick, "agent": "builder", "outcome": "Succeeded"},
            maxlen=5000,
            approximate=True,
        )
    wait_until(
        lambda: (
            True
            if len(sse_arrivals) >= sizes.events and len(xread_arrivals) >= sizes.events
            else None
        ),
        timeout=60,
        what="every event at both clients",
    )
    stop.set()
    writer.xadd(key, {"tick_id": "stop", "agent": "x", "outcome": "x"})  # wake the readers
    writer.close()
    return (
        [sse_arrivals[t] - sent[t] for t in sent],
        [xread_arrivals[t] - sent[t] for t in sent],
    )


async def throughput(url: str, path: str, sizes: Sizes) -> tuple[float, float]:
    """(requests per second, p99 latency in seconds) with concurrent keep-alive clients."""
    latencies: list[float] = []
    deadline = time.perf_counter() + sizes.seconds
    limits = httpx.Limits(max_connections=sizes.clients, max_keepalive_connections=sizes.clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:
        await http.get(path)  # warm the connection and any lazy state

        async def worker() -> None:
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                response = await http.get(path)
                latencies.append(time.perf_counter() - began)
                if response.status_code != 200:
                    raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(sizes.clients)))
        elapsed = time.perf_counter() - began
    return len(latencies) / elapsed, percentile(latencies, 99)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    sizes = QUICK if parser.parse_args().quick else FULL
    work = Path(tempfile.mkdtemp(prefix="agentstack-bench-api-"))
    with environment(work) as (plane, server, url):
        create_stacks(plane, sizes.stacks)
        wait_until(
            lambda: (
                True
                if len(httpx.get(f"{url}/api/v1/stacks?limit=500").json()["items"]) >= sizes.stacks
                else None
            ),
            timeout=60,
            what="the API's cache to hold every stack",
        )
        sse, plain = sse_latencies(url, server, sizes)
        print(f"\n### SSE delivery latency ({sizes.events} events at {sizes.rate:g}/s)\n")
        print("| client | p50 ms | p90 ms | p99 ms | max ms | ratio p99 to baseline |")
        print("|---|---|---|---|---|---|")
        base_p99 = percentile(plain, 99)
        for name, values in (("Redis XREAD (baseline)", plain), ("API SSE", sse)):
            p99 = percentile(values, 99)
            print(
                f"| {name} | {statistics.median(values) * 1000:.2f} | "
                f"{percentile(values, 90) * 1000:.2f} | {p99 * 1000:.2f} | "
                f"{max(values) * 1000:.2f} | {p99 / base_p99:.1f}x |"
            )
        detail = f"/api/v1/namespaces/{NAMESPACE}/stacks/s0001"
        routes = (
            ("/healthz (baseline)", "/healthz"),
            (f"list, {sizes.stacks} stacks, limit 100", "/api/v1/stacks?limit=100"),
            ("detail", detail),
        )
        print(
            f"\n### Throughput ({sizes.clients} concurrent keep-alive clients, one API process)\n"
        )
        print("| endpoint | requests/s | p99 ms | ratio to baseline |")
        print("|---|---|---|---|")
        baseline = 0.0
        for label, path in routes:
            rate, p99 = asyncio.run(throughput(url, path, sizes))
            baseline = baseline or rate
            print(f"| {label} | {rate:.0f} | {p99 * 1000:.1f} | {rate / baseline:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
