"""Day two on the real node: the previous release upgraded to this one under load, then
rolled back.

The previous release is built from the commit ``hack/previous-release`` names (its own
Dockerfile, sources and chart), published to the cluster's registry beside the
checkout's, and installed from there, with a Redis of the platform's own outside the
cluster (``redis.url``: a chart change cannot touch it). Fifty stacks tick every 2 s;
inputs are sent through the API before, during and after each change; one stack's
builder waits with a tool call for approval across the upgrade, approved through the
new version's API. Then the documented upgrade: the checkout's CRDs applied first (this
version adds AgentBudget), ``helm upgrade`` to its chart (operator, runners and API
rolled; a namespace budget created then is kept by the new runners for the stacks
created before), and ``helm rollback`` to the previous one. Afterwards the invariant checker
(no tick or step twice, no input lost, status equal to Redis) is clean, every stack
ticked again after each change, the approved call ran once, and the figures (ticks
dropped by reason, time to tick again, the old runner's stop) are printed for
docs/reliability.md.
"""

from __future__ import annotations

import collections
import os
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kubernetes import client

from agentstack_core.keys import StackKeys, StackRef
from agentstack_devkit.helm import RELEASE, RELEASE_NAMESPACE, apply_chart_crds, as_sets
from agentstack_devkit.mcpserver import ToolServer
from agentstack_devkit.node import GATEWAY, NodeCluster
from agentstack_devkit.redisserver import RedisServer
from agentstack_devkit.release import DevRelease, previous_release_commit, publish_dev, source_at
from tests.e2e.stacks import Stacks
from tests.helpers import eventually
from tests.node.conftest import Release, wait_rolled_out
from tests.reliability import invariants

NAMESPACE = "team-upgrade"
LOAD = [
    f"load-{index:04d}" for index in range(int(os.environ.get("AGENTSTACK_UPGRADE_STACKS", "50")))
]
INTERVAL = int(os.environ.get("AGENTSTACK_UPGRADE_INTERVAL", "2"))
"""The load: 50 stacks every 2 s in the suite; bench/RESULTS.md's larger run sets both
(e.g. 1,000 stacks every 20 s: what one runner on this machine carries)."""
CAREFUL = "careful"
INPUTS_PER_ROUND = 10


@pytest.fixture(scope="module")
def installed(node_cluster: NodeCluster, dev_release: DevRelease) -> DevRelease:
    """The previous release, built from its commit and published next to the checkout's."""
    with source_at(previous_release_commit()) as tree:
        previous = publish_dev(node_cluster.registry.target, repo=tree)
    node_cluster.node.prune_images([*previous.images, *dev_release.images])
    assert previous.published.version != dev_release.published.version
    return previous


@pytest.fixture(scope="module")
def external_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Redis outside the cluster, on the node's address (as a platform runs its own):
    the upgrade changes the processes, never the data's home."""
    with RedisServer(data_dir=tmp_path_factory.mktemp("redis"), host=GATEWAY) as server:
        yield server.url


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToolServer]:
    """The MCP server on the node's address, where pods reach it."""
    with ToolServer(tmp_path_factory.mktemp("mcp"), host=GATEWAY) as server:
        yield server


class Inputs:
    """Inputs sent through the API's port-forward; what it acknowledged is counted."""

    def __init__(self, release: Release) -> None:
        self.release = release
        self.acknowledged: dict[str, list[int]] = collections.defaultdict(list)
        """Per stack, the numbers the API gave the inputs it accepted."""
        self.refused = 0

    def send_round(self, label: str) -> None:
        with httpx.Client(base_url=self.release.api_url, timeout=10) as http:
            for name in LOAD[:INPUTS_PER_ROUND]:
                path = f"/api/v1/namespaces/{NAMESPACE}/stacks/{name}/inputs"
                try:
                    sent = http.post(path, json={"agent": "planner", "content": label})
                except httpx.HTTPError:
                    self.refused += 1  # the API pod was rolling: nothing acknowledged
                    continue
                if sent.status_code == 202:
                    self.acknowledged[name].append(int(sent.json()["number"]))
                else:
                    self.refused += 1


def _helm_in_background(release: Release, *args: str) -> tuple[threading.Thread, list[str]]:
    """Run ``helm`` in a thread (the test sends inputs meanwhile); its errors in the list."""
    errors: list[str] = []

    def run() -> None:
        done = release.helm.run(*args, timeout=600)
        if done.returncode != 0:
            errors.append(done.stderr)

    thread = threading.Thread(target=run, name="helm", daemon=True)
    thread.start()
    return thread, errors


def _ticks(stacks: Stacks) -> dict[str, int]:
    """The load stacks' tick counts (the careful stack is hourly: it ticks when woken),
    read in one list call."""
    listed = stacks.custom.list_namespaced_custom_object(
        "agentstack.dev", "v1alpha1", NAMESPACE, "agentstacks"
    )["items"]
    ticks = {s["metadata"]["name"]: int((s.get("status") or {}).get("ticks") or 0) for s in listed}
    return {name: ticks[name] for name in LOAD}


def _seconds_to_tick_again(stacks: Stacks, since: float) -> list[float]:
    """Per load stack: seconds from ``since`` to the start of its first tick run after it."""
    waits = []
    for name in LOAD:
        starts = [
            float(entry["started_at"])
            for entry in stacks.executed(name)
            if float(entry.get("started_at") or 0) >= since
        ]
        assert starts, f"{name} did not tick after {since}"
        waits.append(min(starts) - since)
    return waits


def _dropped_by_reason(stacks: Stacks, start: float, end: float) -> dict[str, int]:
    """Ticks of the load stacks dropped between ``start`` and ``end`` (recorded then), by
    their recorded reason."""
    reasons: collections.Counter[str] = collections.Counter()
    for name in LOAD:
        for entry in stacks.history(name):
            recorded = float(entry.get("finished_at") or entry.get("started_at") or 0)
            if entry["outcome"] == "Dropped" and start <= recorded <= end:
                reasons[entry.get("reason", "?")] += 1
    return dict(reasons)


def _change(
    release: Release, stacks: Stacks, inputs: Inputs, label: str, *helm_args: str
) -> dict[str, Any]:
    """One change of version under load: helm in the background while inputs are sent;
    then every pod rolled and every stack ticking again. Returns its figures."""
    old_runners = release.ready_pods("runner") or []
    started = time.time()
    thread, errors = _helm_in_background(release, *helm_args)
    inputs.send_round(f"during the {label}")
    thread.join()
    assert not errors, errors
    finished = time.time()
    core = client.CoreV1Api(release.api)

    def stopping() -> dict[str, float] | None:
        """Per old runner pod seen stopping, seconds from its deletion (SIGTERM) until
        it is gone — its drain of in-flight ticks — once all are gone."""
        took = {}
        for pod in old_runners:
            try:
                deleted = core.read_namespaced_pod(pod, RELEASE_NAMESPACE).metadata
            except client.ApiException as error:
                if error.status != 404:
                    raise
                if pod in stopped_at:  # else it was gone before helm returned
                    took[pod] = time.time() - stopped_at[pod]
                continue
            if deleted.deletion_timestamp is not None:
                # The timestamp is the deadline: the deletion plus the grace period.
                grace = deleted.deletion_grace_period_seconds or 0
                stopped_at.setdefault(pod, deleted.deletion_timestamp.timestamp() - grace)
            return None
        return took

    stopped_at: dict[str, float] = {}
    stopped = eventually(stopping, "the old runner pods to stop", timeout=120)
    for component in ("operator", "runner", "api"):
        wait_rolled_out(release, component, timeout=240)
    release.reconnect()
    inputs.send_round(f"after the {label}")
    # Two more ticks from here: the second starts after the round, so it reads it (and
    # any stack still short of two ticks after the change reaches them too).
    for name, ticks in _ticks(stacks).items():
        stacks.wait_ticks(name, ticks + 2, timeout=300)
    waits = _seconds_to_tick_again(stacks, finished)
    return {
        "helm_seconds": round(finished - started, 1),
        "old_runner_stop_seconds": [round(t, 1) for t in stopped.values()],
        "tick_again_p50": round(statistics.median(waits), 1),
        "tick_again_max": round(max(waits), 1),
        "dropped": _dropped_by_reason(stacks, started, finished + 2 * INTERVAL),
    }


def _create_budget(release: Release) -> None:
    """An AgentBudget for the load's namespace, far above what the test spends."""
    client.CustomObjectsApi(release.api).create_namespaced_custom_object(
        "agentstack.dev",
        "v1alpha1",
        NAMESPACE,
        "agentbudgets",
        {
            "apiVersion": "agentstack.dev/v1alpha1",
            "kind": "AgentBudget",
            "metadata": {"name": "team"},
            "spec": {"maxTokens": 10**12, "window": {"calendar": "Day"}},
        },
    )


def _budget_calls(release: Release, at_least: int) -> dict[str, Any] | None:
    """The budget's status once the ledger counted ``at_least`` calls."""
    got = client.CustomObjectsApi(release.api).get_namespaced_custom_object(
        "agentstack.dev", "v1alpha1", NAMESPACE, "agentbudgets", "team"
    )
    status = dict(got.get("status") or {})
    return status if int(status.get("calls") or 0) >= at_least else None


def _pending(http: httpx.Client) -> str | None:
    path = f"/api/v1/namespaces/{NAMESPACE}/stacks/{CAREFUL}/approvals"
    items = http.get(path).json().get("items") or []
    return next((a["id"] for a in items if a["state"] == "Pending"), None)


def test_upgrade_and_rollback_under_load_lose_and_repeat_nothing(
    release: Release, dev_release: DevRelease, installed: DevRelease, tools: ToolServer
) -> None:
    core = client.CoreV1Api(release.api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    reader = release.reader()
    stacks = Stacks(release.api, NAMESPACE, reader)
    for name in LOAD:
        stacks.create(name, tickIntervalSeconds=INTERVAL)
    servers = [
        {
            "name": "kb",
            "url": tools.url,
            "allowedTools": ["slow"],
            "requireApproval": True,
            "timeoutSeconds": 60,
        }
    ]
    stacks.create(CAREFUL, tickIntervalSeconds=3600, tools={"servers": servers})
    for name in LOAD:
        stacks.wait_ticks(name, 1, timeout=240)
    inputs = Inputs(release)
    inputs.send_round("before the upgrade")
    with httpx.Client(base_url=release.api_url, timeout=10) as http:
        asked = eventually(lambda: _pending(http), "the builder's call to wait", timeout=120)

    # The documented path: the new chart's CRDs first (this version adds AgentBudget),
    # applied while the previous operator runs.
    apply_chart_crds(release.helm, release.cluster.plane, dev_release.published.source())
    upgrade = _change(
        release,
        stacks,
        inputs,
        "upgrade",
        "upgrade",
        RELEASE,
        *dev_release.published.source().args(),
        "--namespace",
        RELEASE_NAMESPACE,
        "--wait",
        "--timeout",
        "5m",
        *as_sets(release.values),
    )
    # The CRD the upgrade added works for stacks created before it: a namespace budget
    # (tokens only: the fake model has no price) is kept by the new runners.
    _create_budget(release)
    kept = eventually(
        lambda: _budget_calls(release, at_least=10), "the new runners to keep the budget", 120
    )
    assert kept["level"] == "Ok", kept
    # The call asked of the previous version is approved through the new one, and made.
    with httpx.Client(base_url=release.api_url, timeout=10) as http:
        path = f"/api/v1/namespaces/{NAMESPACE}/stacks/{CAREFUL}/approvals"
        decided = http.post(f"{path}/{asked}", json={"decision": "Approved"})
        assert decided.status_code == 200, decided.text
        tools.wait_calls("slow", 1, timeout=120)
    rollback = _change(
        release,
        stacks,
        inputs,
        "rollback",
        "rollback",
        RELEASE,
        "1",
        "--namespace",
        RELEASE_NAMESPACE,
        "--wait",
        "--timeout",
        "5m",
    )
    images = {pod.spec.containers[0].image for pod in release.pods("runner")}
    assert images == {installed.published.image}

    invariants.quiesce(release.api, reader, [NAMESPACE])
    report = invariants.check(release.api, reader, [NAMESPACE])
    assert not report.problems, "\n".join(report.problems)
    # Every acknowledged input is there and was read (none lost across the changes).
    with httpx.Client(base_url=release.api_url, timeout=10) as http:
        for name, numbers in inputs.acknowledged.items():
            path = f"/api/v1/namespaces/{NAMESPACE}/stacks/{name}/inputs"
            listed = {i["number"]: i["state"] for i in http.get(path).json()["items"]}
            keys = StackKeys(StackRef(NAMESPACE, name))
            assert {n: listed.get(n) for n in numbers} == dict.fromkeys(numbers, "Read"), (
                name,
                numbers,
                listed,
                reader.xrange(keys.inputs),
                reader.hgetall(keys.input_counters),
                reader.info("server")["uptime_in_seconds"],
            )
    # The approved call was made once, and its approval decided once.
    approvals = httpx.get(
        f"{release.api_url}/api/v1/namespaces/{NAMESPACE}/stacks/{CAREFUL}/approvals",
        timeout=10,
    ).json()["items"]
    made = [a for a in approvals if a["id"] == asked]
    assert [a["state"] for a in made] == ["Executed"], made
    # No call without an approval claimed for it (each claimed once: the state machine).
    assert len(tools.calls("slow")) == len(
        [a for a in approvals if a["state"] in ("Executed", "Interrupted")]
    )
    reader.close()
    print(
        f"node: upgrade {installed.published.version} -> {dev_release.published.version} "
        f"and rollback under load: {report.summary()}; inputs acknowledged "
        f"{sum(map(len, inputs.acknowledged.values()))}, refused while the API rolled "
        f"{inputs.refused}; upgrade {upgrade}; rollback {rollback}"
    )
