"""The chart as a user meets it: ``helm install`` on a real node, pods that really run.

The tests run in order on one release (module fixture): install from the cluster's OCI
registry → every pod Ready, its image pulled from there by digest →
the example stack ticks in the runner pod → the PodDisruptionBudgets grant one
eviction and refuse the next → ``kubectl patch`` pause/resume → a crash-looping pod
wakes a stack through its trigger → an ``executor: job``
stack's Jobs complete and fold into status, logged in to Redis as a user confined to
their namespace, through a rotation of its password → the leader operator's pod and the runner
pod deleted while it holds a tick: the invariant checker finds no tick lost or run
twice → the node's kubelet and containerd killed with the pods' processes (a tick Job's
too) and started again → a runner pod cut off from Redis for 30 s by a rule in its
network namespace: the other runner takes its tick over, its late writes are refused
(both checked by the invariant checker) → ``helm upgrade`` rolls the pods and adds the
runners' autoscaler → ``helm uninstall``, with stacks still in two namespaces, releases
them through its pre-delete hook (their namespaces then delete) and leaves no orphan.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agentstack_core.keys import FleetKeys, StackKeys, StackRef
from agentstack_core.records import InputRecord
from agentstack_devkit.fakellm import FakeLLMServer
from agentstack_devkit.helm import (
    API_SERVICE,
    RELEASE,
    RELEASE_NAMESPACE,
    install_dev_release,
    redis_password,
)
from agentstack_devkit.node import GATEWAY
from agentstack_devkit.release import DevRelease
from agentstack_operator.finalizing import FINALIZER
from agentstack_operator.jobs import SECRET_NAME, STACK_LABEL
from agentstack_operator.tickcredentials import ROTATED_ANNOTATION
from tests.e2e.stacks import Stacks
from tests.helpers import bind_service_account, eventually, gone
from tests.node.conftest import Release, wait_rolled_out
from tests.reliability import invariants

NAMESPACE = "team-node"
EXAMPLE = "release-notes"
EXAMPLE_FILE = Path(__file__).resolve().parents[2] / "examples" / "01-scripted-team.yaml"
COMPONENTS = ("operator", "runner", "api", "redis")


@pytest.fixture(scope="module")
def stacks(release: Release) -> Iterator[Stacks]:
    core = client.CoreV1Api(release.api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    reader = release.reader()
    try:
        yield Stacks(release.api, NAMESPACE, reader)
    finally:
        reader.close()


def _kubectl(release: Release, *args: str) -> str:
    done = release.cluster.plane.kubectl(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _runner_pods(stacks: Stacks, name: str, pods: list[str]) -> set[str]:
    """The pods (of ``pods``) whose runners executed the stack's ticks; a runner's id is
    its host name — the pod's name — with a per-process suffix. Fails on a tick run by
    a runner outside ``pods``."""
    found = set()
    for entry in stacks.executed(name):
        runner = entry.get("runner", "")
        owners = [pod for pod in pods if runner.startswith(f"{pod}-")]
        assert owners, f"tick {entry['tick_id']} ran on {runner!r}, not in a pod of {pods}"
        found.update(owners)
    return found


def test_install_runs_every_pod_and_the_example_ticks_in_the_runner_pod(
    release: Release, stacks: Stacks, dev_release: DevRelease
) -> None:
    pods = {component: wait_rolled_out(release, component) for component in COMPONENTS}
    for component, names in pods.items():
        assert len(names) == 1, f"{component}: {names}"
    # Every process runs the image the published chart pins, pulled by the node's
    # containerd from the registry (the digest it reports is the one pushed).
    published = dev_release.published
    for pod in (*release.pods("operator"), *release.pods("runner"), *release.pods("api")):
        (status,) = pod.status.container_statuses
        assert pod.spec.containers[0].image == published.image
        assert status.image_id.endswith(published.image_digest), status.image_id
    pulled = release.cluster.node.ctr("images", "ls", "-q").split()
    assert published.image in pulled
    assert not [ref for ref in pulled if ref.startswith("localhost/")]  # nothing imported
    node = client.CoreV1Api(release.api).read_node(release.cluster.node.name)
    assert {c.type: c.status for c in node.status.conditions}["Ready"] == "True"

    _kubectl(release, "apply", "-n", NAMESPACE, "-f", str(EXAMPLE_FILE))
    stacks.wait_ticks(EXAMPLE, 2, timeout=120)
    # The ticks were run by the runner pod, not elsewhere.
    assert _runner_pods(stacks, EXAMPLE, pods["runner"]) == set(pods["runner"])

    # The read API serves them, through the API pod and the port-forward.
    url = f"{release.api_url}/api/v1/namespaces/{NAMESPACE}/stacks/{EXAMPLE}/ticks"
    with urllib.request.urlopen(url, timeout=10) as got:
        assert json.loads(got.read())["items"]

    # The runner and API pods reached Redis as their own users (README "Redis rights"),
    # which the in-chart Redis made from its arguments.
    with release.reader() as admin:
        users = {entry["user"] for entry in admin.client_list()}
        assert {"agentstack-runner", "agentstack-api"} <= users, users
        refused = release.login("agentstack-api", redis_password(release.cluster.plane, "api"))
        with refused, pytest.raises(redis.exceptions.NoPermissionError):
            refused.xadd(FleetKeys.results, {"stack": "forged"})


def _exactly(count: int, names: list[str] | None) -> list[str] | None:
    return names if names is not None and len(names) == count else None


def _evict(release: Release, pod: str) -> int:
    """Ask the Eviction API (what a node drain uses) to evict ``pod``; the HTTP status."""
    try:
        client.CoreV1Api(release.api).create_namespaced_pod_eviction(
            pod,
            RELEASE_NAMESPACE,
            client.V1Eviction(metadata=client.V1ObjectMeta(name=pod, namespace=RELEASE_NAMESPACE)),
        )
    except ApiException as exc:
        return int(exc.status)
    return 201


def test_pod_disruption_budgets_let_a_drain_take_one_pod_at_a_time(release: Release) -> None:
    policy = client.PolicyV1Api(release.api)

    def budget(component: str) -> tuple[int, int]:
        status = policy.read_namespaced_pod_disruption_budget(
            f"{RELEASE}-{component}", RELEASE_NAMESPACE
        ).status
        return int(status.current_healthy or 0), int(status.disruptions_allowed or 0)

    for component in ("operator", "runner", "api"):
        eventually(
            lambda component=component: True if budget(component) == (1, 1) else None,
            f"the {component} budget to count its one healthy pod",
            timeout=60,
        )
    # Two runners, as a drain of a real cluster would meet them: the first eviction is
    # granted, the second refused until the first pod's replacement is Ready.
    _kubectl(
        release, "scale", "deployment", f"{RELEASE}-runner", "-n", RELEASE_NAMESPACE, "--replicas=2"
    )
    try:
        first, second = eventually(
            lambda: _exactly(2, release.ready_pods("runner")), "two Ready runner pods", timeout=180
        )
        eventually(lambda: True if budget("runner") == (2, 1) else None, "the budget at 2/1")
        assert _evict(release, first) == 201
        assert _evict(release, second) == 429
    finally:
        _kubectl(
            release,
            "scale",
            "deployment",
            f"{RELEASE}-runner",
            "-n",
            RELEASE_NAMESPACE,
            "--replicas=1",
        )
    wait_rolled_out(release, "runner")


def test_kubectl_patch_pauses_and_resumes(release: Release, stacks: Stacks) -> None:
    paused = json.dumps({"spec": {"executionState": "Paused"}})
    _kubectl(release, "patch", "ags", EXAMPLE, "-n", NAMESPACE, "--type", "merge", "-p", paused)
    eventually(
        lambda: True if stacks.status(EXAMPLE).get("phase") == "Paused" else None,
        "the stack's status to say Paused",
        timeout=60,
    )
    # A tick dispatched just before the pause may still finish; then nothing more.
    before = eventually(_settled(stacks), "the last dispatched tick to be recorded", timeout=60)
    interval = float(stacks.get(EXAMPLE)["spec"]["tickIntervalSeconds"])
    watch_until = time.monotonic() + 3 * interval
    while time.monotonic() < watch_until:
        assert len(stacks.dispatched(EXAMPLE)) == before, "a paused stack was dispatched"
        time.sleep(0.5)

    running = json.dumps({"spec": {"executionState": "Running"}})
    _kubectl(release, "patch", "ags", EXAMPLE, "-n", NAMESPACE, "--type", "merge", "-p", running)
    ticks = int(stacks.status(EXAMPLE)["ticks"])
    stacks.wait_ticks(EXAMPLE, ticks + 1, timeout=60)


CRASHING = (
    "object.status.containerStatuses.exists(c, has(c.state.waiting) && "
    "c.state.waiting.reason == 'CrashLoopBackOff')"
)


def test_a_crash_looping_pod_wakes_a_stack_through_its_trigger(
    release: Release, stacks: Stacks, dev_release: DevRelease
) -> None:
    """With the chart's default values: the kubelet's own status of a container that
    keeps failing, watched with the trigger's ServiceAccount's rights (``view``)."""
    core = client.CoreV1Api(release.api)
    core.create_namespaced_service_account(
        NAMESPACE, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="watcher"))
    )
    bind_service_account(release.api, NAMESPACE, "watcher", "view", kind="ClusterRole")
    stacks.create(
        "oncall",
        tickIntervalSeconds=3600,
        triggers=[
            {
                "name": "crashloop",
                "serviceAccountName": "watcher",
                "object": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "selector": {"matchLabels": {"app": "crashy"}},
                    "condition": CRASHING,
                },
            }
        ],
    )
    stacks.wait_ticks("oncall", 1, timeout=120)
    core.create_namespaced_pod(
        NAMESPACE,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name="crashy", labels={"app": "crashy"}),
            spec=client.V1PodSpec(
                containers=[
                    client.V1Container(
                        name="app",
                        image=dev_release.published.image,
                        command=["python", "-c", "raise SystemExit(3)"],
                    )
                ]
            ),
        ),
    )
    try:
        inputs = StackKeys(StackRef(NAMESPACE, "oncall")).inputs
        [(_id, fields)] = eventually(
            lambda: stacks.redis.xrange(inputs) or None, "the trigger's input", timeout=120
        )
        sent = InputRecord.from_fields(fields)
        assert sent.sender == "trigger/crashloop"
        assert sent.content.startswith(f"trigger crashloop: Pod crashy matches {CRASHING}")
        assert '"reason":"CrashLoopBackOff"' in sent.content
        stacks.wait_ticks("oncall", 2, timeout=60)  # it ticks once an hour: the input woke it
    finally:
        core.delete_namespaced_pod("crashy", NAMESPACE, grace_period_seconds=0)
        stacks.patch_spec("oncall", executionState="Stopped")


def _settled(stacks: Stacks) -> Callable[[], int | None]:
    """A check that returns the dispatched count once every dispatched tick is in the
    history (run or dropped)."""

    def check() -> int | None:
        dispatched = {entry["tick_id"] for entry in stacks.dispatched(EXAMPLE)}
        recorded = {entry["tick_id"] for entry in stacks.history(EXAMPLE)}
        return len(dispatched) if dispatched <= recorded else None

    return check


def _jobs(release: Release, stack: str) -> list[Any]:
    listed = client.BatchV1Api(release.api).list_namespaced_job(NAMESPACE)
    return [
        job
        for job in listed.items
        if any(ref.name == stack for ref in job.metadata.owner_references or [])
    ]


def _tick_login(release: Release) -> dict[str, str]:
    """The Redis user and password the operator keeps for the namespace's tick pods."""
    secret = client.CoreV1Api(release.api).read_namespaced_secret(SECRET_NAME, NAMESPACE)
    return {key: base64.b64decode(value).decode() for key, value in secret.data.items()}


def test_job_executor_stack_runs_its_ticks_as_jobs_that_complete(
    release: Release, stacks: Stacks
) -> None:
    """With the chart's dev values and nothing else: the operator gives the namespace's
    tick pods a Redis user of their own, which reaches nothing outside the namespace;
    the Jobs complete and are folded; a rotated password keeps them ticking."""
    stacks.create(
        "jobbed",
        executor="job",
        tickIntervalSeconds=5,
        tickTimeoutSeconds=60,
        llm={"model": {"provider": "scripted"}},
    )
    status = stacks.wait_ticks("jobbed", 2, timeout=180)
    assert status["lastTickResult"] == "Succeeded"
    completed = [job for job in _jobs(release, "jobbed") if job.status.succeeded == 1]
    assert completed, "no tick Job completed"
    job = completed[0]
    pod = job.spec.template.spec
    assert pod.automount_service_account_token is False
    env = {e.name: e for e in pod.containers[0].env}
    for name in ("REDIS_USERNAME", "REDIS_PASSWORD"):
        assert env[name].value_from.secret_key_ref.name == SECRET_NAME
    assert "@" not in env["REDIS_URL"].value  # no credential in the Job's spec
    # Every executed tick ran in a Job of its own (finished Jobs stay for
    # ttlSecondsAfterFinished, 300 s: none has expired yet).
    job_ticks = {j.metadata.annotations["agentstack.dev/tick-id"] for j in _jobs(release, "jobbed")}
    executed = {entry["tick_id"] for entry in stacks.executed("jobbed")}
    assert executed
    assert executed <= job_ticks

    # What a tenant who reads the namespace's Secrets holds: its own keys, nothing else.
    login = _tick_login(release)
    other = StackRef("team-other", "beta")
    with release.reader() as admin:
        admin.hset(StackKeys(other).approvals, "a1", '{"state": "Pending"}')
        tenant = release.login(login["REDIS_USERNAME"], login["REDIS_PASSWORD"])
        with tenant:
            assert tenant.get(StackKeys(StackRef(NAMESPACE, "jobbed")).plan)
            for attempt in (
                lambda: tenant.hgetall(StackKeys(other).approvals),
                lambda: tenant.hset(StackKeys(other).approvals, "a1", '{"state": "Approved"}'),
                lambda: tenant.xadd(FleetKeys.results, {"stack": str(other)}),
                lambda: tenant.keys("*"),
            ):
                with pytest.raises(redis.exceptions.NoPermissionError):
                    attempt()
        assert admin.hget(StackKeys(other).approvals, "a1") == '{"state": "Pending"}'
        admin.delete(StackKeys(other).approvals)

    # A rotation (made due by hand): the Secret gets a new password, Jobs go on.
    client.CoreV1Api(release.api).patch_namespaced_secret(
        SECRET_NAME, NAMESPACE, {"metadata": {"annotations": {ROTATED_ANNOTATION: "0"}}}
    )
    eventually(
        lambda: True if _tick_login(release)["REDIS_PASSWORD"] != login["REDIS_PASSWORD"] else None,
        "the operator's next refresh to rotate the password",
        timeout=150,
    )
    ticks = int(stacks.status("jobbed")["ticks"])
    status = stacks.wait_ticks("jobbed", ticks + 2, timeout=180)
    assert status["lastTickResult"] == "Succeeded"
    stacks.patch_spec("jobbed", executionState="Paused")


def _leader(release: Release) -> str:
    lease = client.CoordinationV1Api(release.api).read_namespaced_lease(RELEASE, RELEASE_NAMESPACE)
    return str(lease.spec.holder_identity)


GATEWAY_KEY = "sk-node-gateway-key"
STEADY = [f"steady-{index}" for index in range(3)]
"""The LLM stacks the mid-tick test starts; the node's faults after it keep them ticking."""


@pytest.fixture(scope="module")
def slow_gateway(release: Release) -> Iterator[FakeLLMServer]:
    """The fake OpenAI-compatible server on the node's address (pods reach it there),
    answering in 0.5 to 1.5 s so that ticks last long enough to be cut."""
    with FakeLLMServer(latency=(0.5, 1.5), seed=9, host=GATEWAY) as server:
        yield server


def test_deleting_the_leader_and_a_runner_pod_mid_tick_loses_and_repeats_no_tick(
    release: Release, stacks: Stacks, slow_gateway: FakeLLMServer
) -> None:
    core = client.CoreV1Api(release.api)
    core.create_namespaced_secret(
        NAMESPACE,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="gateway-key"),
            string_data={"OPENAI_API_KEY": GATEWAY_KEY},
        ),
    )
    names = STEADY
    for name in names:
        stacks.create(
            name,
            tickIntervalSeconds=2,
            llm={
                "model": {"provider": "openai", "name": "gpt-4o-mini"},
                "providers": {
                    "openai": {
                        "baseURL": slow_gateway.openai_base_url,
                        "secretRef": {"name": "gateway-key", "key": "OPENAI_API_KEY"},
                    }
                },
            },
        )
    for name in names:
        stacks.wait_ticks(name, 1, timeout=120)

    leader = eventually(lambda: _leader(release) or None, "a leader", timeout=60)
    (runner,) = release.ready_pods("runner") or []

    def in_flight() -> list[str] | None:
        """Stacks whose tick the runner pod holds right now: their lease token in Redis
        (``tick|runner id|nonce``) names a runner of that pod."""
        held = [
            name
            for name in names
            if f"|{runner}-"
            in str(stacks.redis.get(StackKeys(StackRef(NAMESPACE, name)).lease) or "")
        ]
        return held or None

    eventually(in_flight, "a tick in the runner pod's hands", timeout=60)
    core.delete_namespaced_pod(runner, RELEASE_NAMESPACE)
    core.delete_namespaced_pod(leader, RELEASE_NAMESPACE)
    eventually(
        lambda: gone(lambda: core.read_namespaced_pod(leader, RELEASE_NAMESPACE)),
        "the old operator pod to go",
        timeout=120,
    )
    new_runner = eventually(
        lambda: [n for n in release.ready_pods("runner") or [] if n != runner] or None,
        "a new runner pod",
        timeout=180,
    )
    wait_rolled_out(release, "operator")
    progress = {name: int(stacks.status(name)["ticks"]) for name in names}
    for name in names:
        stacks.wait_ticks(name, progress[name] + 2, timeout=120)
    ran_on = set().union(*(_runner_pods(stacks, name, [runner, *new_runner]) for name in names))
    assert set(new_runner) <= ran_on

    invariants.quiesce(release.api, stacks.redis, [NAMESPACE])
    report = invariants.check(release.api, stacks.redis, [NAMESPACE], secrets=[GATEWAY_KEY])
    assert not report.problems, "\n".join(report.problems)
    print(f"node: leader and runner pods deleted mid-tick: {report.summary()}")


def _running_job_pod(release: Release, stack: str) -> list[str] | None:
    """Names of the stack's tick pods that are running now (``None`` while none is)."""
    listed = client.CoreV1Api(release.api).list_namespaced_pod(NAMESPACE)
    running = [
        pod.metadata.name
        for pod in listed.items
        if (pod.metadata.labels or {}).get(STACK_LABEL) == stack and pod.status.phase == "Running"
    ]
    return running or None


def test_a_node_crash_kills_every_pod_and_tick_and_the_node_recovers(
    release: Release, stacks: Stacks, slow_gateway: FakeLLMServer
) -> None:
    """The kubelet and containerd SIGKILLed, and with them every pod's processes but
    Redis's (which a real cluster keeps elsewhere or on a volume), while LLM ticks run in
    the runner pod and a tick Job's pod runs; both started again: every pod comes back,
    every stack ticks again, nothing ran twice or was lost."""
    node = release.cluster.node
    (runner,) = release.ready_pods("runner") or []
    for name in [*STEADY, "jobbed"]:  # the checker paused them
        stacks.patch_spec(name, executionState="Running")
    eventually(lambda: _running_job_pod(release, "jobbed"), "a tick Job's pod running", timeout=120)
    eventually(
        lambda: (
            [n for n in STEADY if f"|{runner}-" in str(stacks.redis.get(_lease(n)) or "")] or None
        ),
        "a tick in the runner pod's hands",
        timeout=60,
    )
    core = client.CoreV1Api(release.api)
    crashing = [
        pod
        for pod in [
            *core.list_namespaced_pod(RELEASE_NAMESPACE).items,
            *core.list_namespaced_pod(NAMESPACE).items,
        ]
        if pod.status.phase == "Running"
        and pod.metadata.labels.get("app.kubernetes.io/component") != "redis"
    ]
    assert {p.metadata.labels.get(STACK_LABEL) for p in crashing} >= {"jobbed"}
    node.crash([pod.metadata.uid for pod in crashing])
    assert not any(node.pod_processes(pod.metadata.uid) for pod in crashing)
    node.recover()
    # The same pods, their containers started again by the kubelet (not new pods): until
    # the kubelet reports so, the API server still shows the statuses from before.
    processes = ("operator", "runner", "api")

    def restarted() -> bool | None:
        pods = [pod for component in processes for pod in release.pods(component)]
        again = all(
            pod.status.container_statuses[0].restart_count >= 1
            and pod.status.container_statuses[0].ready
            for pod in pods
        )
        return True if again and len(pods) == len(processes) else None

    eventually(restarted, "the kubelet to restart every process's container", timeout=240)
    for component in COMPONENTS:
        wait_rolled_out(release, component, timeout=240)
    assert release.ready_pods("runner") == [runner]
    # The port-forwards died with the pods they pointed at; the test's reader needs its own.
    release.reconnect()
    progress = {name: int(stacks.status(name)["ticks"]) for name in [*STEADY, "jobbed"]}
    for name, ticks in progress.items():
        stacks.wait_ticks(name, ticks + 2, timeout=240)
    stacks.patch_spec("jobbed", executionState="Paused")

    invariants.quiesce(release.api, stacks.redis, [NAMESPACE])
    report = invariants.check(release.api, stacks.redis, [NAMESPACE], secrets=[GATEWAY_KEY])
    assert not report.problems, "\n".join(report.problems)
    print(f"node: crash and recovery of the kubelet and containerd: {report.summary()}")


def _lease(name: str) -> str:
    return StackKeys(StackRef(NAMESPACE, name)).lease


PARTITION_SECONDS = 30.0


def test_a_runner_cut_off_from_redis_has_its_tick_taken_over_and_its_late_writes_refused(
    release: Release, stacks: Stacks, slow_gateway: FakeLLMServer
) -> None:
    """Two runner pods with short leases (10 s; claimed after 15 s idle). The one holding
    a tick loses Redis for 30 s (a rule in its network namespace); the other takes the
    stack's lease once it expires, and claims the tick; the first one's writes fail while
    it is cut off and are refused by the lease's fencing once the network is back (it logs
    that it let the tick go), and no step ran twice."""
    values = {
        **release.values,
        "runner.replicas": "2",
        "runner.leaseTTLSeconds": "10",
        "runner.visibilityTimeoutSeconds": "15",
        "runner.claimIntervalSeconds": "2",
    }
    # --force-conflicts: the replicas field is kubectl's since the eviction test scaled
    # the runners (server-side apply refuses to change it otherwise, as it would a user's).
    take_over = ("--force-conflicts",)
    install_dev_release(release.helm, release.chart, values, verb="upgrade", options=take_over)
    for name in STEADY:  # the checker paused them
        stacks.patch_spec(name, executionState="Running")
    runners = eventually(
        lambda: _exactly(2, release.ready_pods("runner")), "two runner pods", timeout=240
    )
    release.reconnect()

    def held() -> tuple[str, str, str] | None:
        """(stack, runner pod, tick id) of a tick a runner pod holds now."""
        for name in STEADY:
            token = str(stacks.redis.get(_lease(name)) or "")
            for pod in runners:
                if f"|{pod}-" in token:
                    return name, pod, token.split("|", 1)[0]
        return None

    stack, cut, tick = eventually(held, "a tick held by a runner pod", timeout=120)
    (other,) = [pod for pod in runners if pod != cut]
    uid = client.CoreV1Api(release.api).read_namespaced_pod(cut, RELEASE_NAMESPACE).metadata.uid
    with release.cluster.node.cut_off(uid, 6379):
        # The other runner takes the stack over (its lease) while the first one is cut
        # off; the tick it held is then claimed, and run or dropped with a reason.
        eventually(
            lambda: True if f"|{other}-" in str(stacks.redis.get(_lease(stack)) or "") else None,
            f"{other} to take over {stack}'s tick",
            timeout=PARTITION_SECONDS,
        )
        deadline = time.monotonic() + PARTITION_SECONDS
        eventually(lambda: True if time.monotonic() >= deadline else None, "the cut", timeout=60)

    def gave_up() -> str | None:
        """The cut-off runner's line saying it let the tick go: its lease found lost
        (a fenced write refused) or its writes failed while cut off — never made."""
        for line in _kubectl(release, "logs", "-n", RELEASE_NAMESPACE, cut).splitlines():
            about = tick in line or f"{NAMESPACE}/{stack}" in line
            if about and ("lost the lease" in line or "handing it back" in line):
                return line
        return None

    let_go = eventually(gave_up, "the cut-off runner to let the tick go", timeout=120)
    # The tick is recorded once: run by the runner that took it over, or dropped with a
    # reason (a tick claimed after its deadline is dropped, not run late).
    (entry,) = eventually(
        lambda: [e for e in stacks.history(stack) if e["tick_id"] == tick] or None,
        "the taken-over tick in the history",
        timeout=120,
    )
    if entry["outcome"] != "Dropped":
        assert entry["runner"].startswith(f"{other}-"), entry
    progress = {name: int(stacks.status(name)["ticks"]) for name in STEADY}
    for name, ticks in progress.items():
        stacks.wait_ticks(name, ticks + 2, timeout=120)

    invariants.quiesce(release.api, stacks.redis, [NAMESPACE])
    report = invariants.check(release.api, stacks.redis, [NAMESPACE], secrets=[GATEWAY_KEY])
    assert not report.problems, "\n".join(report.problems)
    print(
        f"node: a runner cut off from Redis for {PARTITION_SECONDS:.0f} s: {report.summary()}; "
        f"the tick: {entry['outcome']} {entry.get('reason', '')}; it logged: {let_go}"
    )
    install_dev_release(
        release.helm, release.chart, release.values, verb="upgrade", options=take_over
    )
    eventually(lambda: _exactly(1, release.ready_pods("runner")), "one runner pod", timeout=240)


def test_helm_upgrade_with_changed_values_rolls_the_pods(release: Release, stacks: Stacks) -> None:
    before = set(release.ready_pods("runner") or [])
    values = {**release.values, "runner.concurrency": "8", "runner.autoscaling.enabled": "true"}
    install_dev_release(release.helm, release.chart, values, verb="upgrade")
    release.values = values
    after = wait_rolled_out(release, "runner")
    assert before.isdisjoint(after)
    (pod,) = release.pods("runner")
    env = {e.name: e.value for e in pod.spec.containers[0].env}
    assert env["AGENTSTACK_RUNNER_CONCURRENCY"] == "8"
    # The runners' autoscaler was installed with the upgrade and owns their count.
    hpa = client.AutoscalingV2Api(release.api).read_namespaced_horizontal_pod_autoscaler(
        f"{RELEASE}-runner", RELEASE_NAMESPACE
    )
    assert hpa.spec.scale_target_ref.name == f"{RELEASE}-runner"
    stacks.patch_spec("steady-0", executionState="Running")
    ticks = int(stacks.status("steady-0")["ticks"])
    stacks.wait_ticks("steady-0", ticks + 2, timeout=120)


def test_helm_uninstall_leaves_no_orphan(release: Release, stacks: Stacks) -> None:
    listed = stacks.custom.list_namespaced_custom_object(
        "agentstack.dev", "v1alpha1", NAMESPACE, "agentstacks"
    )
    refs = [StackRef(NAMESPACE, item["metadata"]["name"]) for item in listed["items"]]
    for ref in refs:
        stacks.delete(ref.name)
    for ref in refs:
        eventually(lambda ref=ref: gone(lambda: stacks.get(ref.name)), f"{ref} deleted")
    reader = release.reader()
    try:
        for ref in refs:
            left = list(reader.scan_iter(match=f"{StackKeys(ref).prefix}*"))
            assert not left, f"Redis keys of the deleted {ref}: {left}"
    finally:
        reader.close()

    # Stacks still there at uninstall, in two namespaces: the pre-delete hook stops the
    # operator and releases them (uninstall.stacks: release), so their namespaces can go.
    core = client.CoreV1Api(release.api)
    kept = [f"{NAMESPACE}-kept-{n}" for n in range(2)]
    for namespace in kept:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        team = Stacks(release.api, namespace, stacks.redis)
        team.create("left", tickIntervalSeconds=5)
        eventually(
            lambda team=team: (
                True
                if FINALIZER in (team.get("left")["metadata"].get("finalizers") or [])
                else None
            ),
            f"the operator's finalizer on {namespace}/left",
        )

    uninstalled = release.helm.uninstall(RELEASE, RELEASE_NAMESPACE)
    assert uninstalled.returncode == 0, uninstalled.stderr
    for namespace in kept:
        left = Stacks(release.api, namespace, stacks.redis).get("left")
        assert FINALIZER not in (left["metadata"].get("finalizers") or [])
        core.delete_namespace(namespace)
    for namespace in kept:
        eventually(
            lambda namespace=namespace: gone(lambda: core.read_namespace(namespace)),
            f"namespace {namespace} deleted, not stuck in Terminating",
            timeout=120,
        )
    # The hook's own objects went with its success.
    assert not client.BatchV1Api(release.api).list_namespaced_job(RELEASE_NAMESPACE).items
    assert not core.list_namespaced_service_account(
        RELEASE_NAMESPACE, label_selector="app.kubernetes.io/component=uninstall"
    ).items
    eventually(
        lambda: True if not core.list_namespaced_pod(RELEASE_NAMESPACE).items else None,
        "every pod of the release to go",
        timeout=120,
    )
    assert not client.BatchV1Api(release.api).list_namespaced_job(NAMESPACE).items
    rbac = client.RbacAuthorizationV1Api(release.api)
    selector = f"app.kubernetes.io/instance={RELEASE}"
    assert not rbac.list_cluster_role(label_selector=selector).items
    assert not rbac.list_cluster_role_binding(label_selector=selector).items
    assert not rbac.list_namespaced_role(RELEASE_NAMESPACE).items
    leases = client.CoordinationV1Api(release.api).list_namespaced_lease(RELEASE_NAMESPACE)
    assert not leases.items, [lease.metadata.name for lease in leases.items]
    assert not core.list_namespaced_secret(RELEASE_NAMESPACE).items
    with pytest.raises(ApiException):
        core.read_namespaced_service(API_SERVICE, RELEASE_NAMESPACE)
