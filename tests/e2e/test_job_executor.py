"""`executor: job`: one well-formed Job per tick, folded into status like a pool tick.

There is no kubelet, so the test plays it (:mod:`tests.jobpods`): the Job's own command
with the Job's own environment (its ``secretKeyRef``s — the Redis user the operator
made in the namespace among them — resolved), then the pod's end reported as a kubelet
would, and the real Job controller completes or fails the Job. A Job that cannot
finish is failed at its ``activeDeadlineSeconds``.
"""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest
import redis
from kubernetes import client

from agentstack_devkit.fleet import Fleet
from agentstack_operator.tickcredentials import acl_user
from tests.e2e.stacks import Stacks
from tests.helpers import eventually, gone
from tests.jobpods import run_pod

IMAGE = "registry.example/agentstack-operator:test"
RUNNER_ACCOUNT = "agentstack-runner"


@pytest.fixture(scope="module")
def job_fleet(fleet: Fleet) -> tuple[Fleet, int]:
    _operator, port = fleet.operator(
        AGENTSTACK_RUNNER_IMAGE=IMAGE,
        AGENTSTACK_JOB_GRACE_SECONDS="1",
        AGENTSTACK_JOB_TTL_SECONDS="600",
        AGENTSTACK_RUNNER_SERVICE_ACCOUNT=RUNNER_ACCOUNT,
    )
    return fleet, port


@pytest.fixture
def stacks(
    job_fleet: tuple[Fleet, int],
    k8s_api: client.ApiClient,
    namespace: str,
    redis_reader: redis.Redis,
) -> Stacks:
    # The ServiceAccount the operator names in its Jobs (without it no pod is created).
    client.CoreV1Api(k8s_api).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=RUNNER_ACCOUNT))
    )
    return Stacks(k8s_api, namespace, redis_reader)


def _jobs(stacks: Stacks, k8s_api: client.ApiClient, name: str) -> list[dict[str, Any]]:
    listed = client.BatchV1Api(k8s_api).list_namespaced_job(
        stacks.namespace, label_selector=f"agentstack.dev/stack={name}"
    )
    return [k8s_api.sanitize_for_serialization(job) for job in listed.items]


def test_job_per_tick_is_well_formed_and_its_result_is_folded(
    stacks: Stacks, k8s_api: client.ApiClient, job_fleet: tuple[Fleet, int]
) -> None:
    stacks.core.create_namespaced_secret(
        stacks.namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="llm-keys"),
            string_data={"GROQ_API_KEY": "gsk-job-test"},
        ),
    )
    created = stacks.create(
        "jobbed",
        executor="job",
        tickIntervalSeconds=5,
        tickTimeoutSeconds=60,
        llm={
            "model": {"provider": "scripted"},
            "providers": {"groq": {"secretRef": {"name": "llm-keys", "key": "GROQ_API_KEY"}}},
        },
    )
    (job,) = eventually(lambda: _jobs(stacks, k8s_api, "jobbed") or None, "the tick's Job")
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "AgentStack",
        "jobbed",
        created["metadata"]["uid"],
    )
    assert owner["controller"] is True
    spec = job["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 61
    assert spec["ttlSecondsAfterFinished"] == 600
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == RUNNER_ACCOUNT
    container = pod["containers"][0]
    assert container["image"] == IMAGE
    tick_id = job["metadata"]["annotations"]["agentstack.dev/tick-id"]
    assert container["command"][container["command"].index("--tick-id") + 1] == tick_id
    assert container["command"][container["command"].index("--stack") + 1] == (
        f"{stacks.namespace}/jobbed"
    )
    key_from = next(e for e in container["env"] if e["name"] == "GROQ_API_KEY")
    assert key_from["valueFrom"]["secretKeyRef"] == {"name": "llm-keys", "key": "GROQ_API_KEY"}
    assert "gsk-job-test" not in str(job)  # the key itself never enters the Job

    # While the Job has not reported, the next due tick creates no second Job.
    _fleet, port = job_fleet
    eventually(
        lambda: True if 'reason="JobStillRunning"} ' in _metrics(port) else None,
        "the scheduler to skip a tick while the Job runs",
        timeout=30,
    )
    assert len(_jobs(stacks, k8s_api, "jobbed")) == 1

    code, log = run_pod(k8s_api, job)
    assert code == 0, log
    status = stacks.wait_ticks("jobbed", 1)
    assert status["lastTickId"] == tick_id
    assert status["lastTickResult"] == "Succeeded"
    # The next Job follows once the first one has reported.
    eventually(
        lambda: True if len(_jobs(stacks, k8s_api, "jobbed")) == 2 else None,
        "the next tick's Job",
        timeout=30,
    )

    stacks.delete("jobbed")
    eventually(lambda: gone(lambda: stacks.get("jobbed")), "the stack to be deleted")
    eventually(
        lambda: True if not _jobs(stacks, k8s_api, "jobbed") else None,
        "its Jobs to be deleted with it",
    )


def test_a_job_that_fails_is_folded_as_a_failed_tick(
    stacks: Stacks, k8s_api: client.ApiClient
) -> None:
    stacks.create("stuck", executor="job", tickIntervalSeconds=30, tickTimeoutSeconds=1)

    # No kubelet runs the pod: the Job controller fails it at its 2 s deadline.
    def folded() -> dict[str, Any] | None:
        status = stacks.status("stuck")
        return status if status.get("lastTickReason") == "JobFailed" else None

    status = eventually(folded, "the failed Job to be folded into status")
    assert status["lastTickResult"] == "Failed"
    assert "DeadlineExceeded" in status["lastTickMessage"]
    assert status["consecutiveFailures"] == 1
    recorded = stacks.history("stuck")
    assert [(h["outcome"], h["reason"]) for h in recorded] == [("Failed", "JobFailed")]


def test_a_failed_job_says_why_in_history_and_status(
    stacks: Stacks, k8s_api: client.ApiClient, redis_reader: redis.Redis
) -> None:
    """Redis lost the namespace's ACL user (a restart without an aclfile, before the
    operator's next refresh): the tick pod cannot log in, and the stack says so."""
    stacks.create("locked", executor="job", tickIntervalSeconds=3600, tickTimeoutSeconds=60)
    (job,) = eventually(lambda: _jobs(stacks, k8s_api, "locked") or None, "the tick's Job")
    redis_reader.execute_command("ACL", "DELUSER", acl_user(stacks.namespace))

    code, _log = run_pod(k8s_api, job)
    assert code != 0

    def folded() -> dict[str, Any] | None:
        status = stacks.status("locked")
        return status if status.get("lastTickReason") == "JobFailed" else None

    status = eventually(folded, "the failed Job to be folded into status")
    message = status["lastTickMessage"]
    assert "Error (exit code 1)" in message, message
    assert "invalid username-password pair" in message, message
    (recorded,) = stacks.history("locked")
    assert recorded["message"] == message
    assert stacks.dispatched("locked") == []  # nothing of a Job tick went through the lanes


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())
