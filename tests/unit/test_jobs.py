"""The tick Job a stack with ``executor: job`` gets: what it carries, and what it must not."""

from __future__ import annotations

import json
from typing import Any

from pydantic import SecretStr

from agentstack_core.keys import StackRef
from agentstack_core.kube.jobs import Pod
from agentstack_core.protocol import TickRequest
from agentstack_core.spec import parse_spec
from agentstack_operator.config import OperatorConfig, without_credentials
from agentstack_operator.jobs import FAILURE_MESSAGE_CHARS, SECRET_NAME, build_job, pod_failure

REDIS_URL = "redis://:s3cret-password@redis.platform.svc:6379/0"
SPEC = parse_spec(
    {
        "goal": "g",
        "executor": "job",
        "llm": {
            "model": {"provider": "openai"},
            "providers": {"openai": {"secretRef": {"name": "team-keys", "key": "openai"}}},
        },
    }
)
REQUEST = TickRequest(
    stack=StackRef("team", "demo"),
    generation=2,
    tick_id="team/demo/1000",
    slot=1000,
    deadline=1_700_000_000.0,
    uid="uid-1",
)


def _container(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container


def _env(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in _container(job)["env"]}


def test_redis_credentials_are_the_namespace_users_never_the_platforms() -> None:
    config = OperatorConfig(job_redis_url=without_credentials(REDIS_URL))
    job = build_job(REQUEST, uid="uid-1", spec=SPEC, config=config)
    env = _env(job)
    assert env["REDIS_URL"]["value"] == "redis://redis.platform.svc:6379/0"
    for name in ("REDIS_USERNAME", "REDIS_PASSWORD"):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": SECRET_NAME, "key": name}
    assert "s3cret-password" not in json.dumps(job)


def test_tick_pods_find_the_primary_through_the_same_sentinels() -> None:
    config = OperatorConfig(
        redis_sentinels=["sentinel-0.redis:26379", "sentinel-1.redis:26379"],
        redis_sentinel_master="agents",
        redis_sentinel_password=SecretStr("sentinel-s3cret"),
        redis_wait_replicas=1,
    )
    job = build_job(REQUEST, uid="uid-1", spec=SPEC, config=config)
    env = {name: item.get("value") for name, item in _env(job).items()}
    assert env["REDIS_SENTINELS"] == "sentinel-0.redis:26379,sentinel-1.redis:26379"
    assert env["REDIS_SENTINEL_MASTER"] == "agents"
    assert (env["REDIS_WAIT_REPLICAS"], env["REDIS_WAIT_TIMEOUT_SECONDS"]) == ("1", "0.5")
    assert "sentinel-s3cret" not in json.dumps(job)
    plain = _env(build_job(REQUEST, uid="uid-1", spec=SPEC, config=OperatorConfig()))
    assert not {"REDIS_SENTINELS", "REDIS_WAIT_REPLICAS"} & set(plain)


def test_a_url_loses_its_credentials_before_it_reaches_a_job() -> None:
    assert without_credentials("redis://user:pw@r:6379/0") == "redis://r:6379/0"
    assert without_credentials("rediss://:pw@r.example:6380") == "rediss://r.example:6380"
    assert without_credentials("redis://r:6379/0") == "redis://r:6379/0"


def test_the_runner_says_why_it_failed_in_the_termination_message() -> None:
    job = build_job(REQUEST, uid="uid-1", spec=SPEC, config=OperatorConfig())
    assert _container(job)["terminationMessagePolicy"] == "FallbackToLogsOnError"


def _pod(created: str, **status: Any) -> Pod:
    return Pod.of(
        {
            "metadata": {"creationTimestamp": created},
            "status": {"containerStatuses": [{"name": "runner", **status}]},
        }
    )


def test_a_failed_pod_is_explained_by_its_newest_container_state() -> None:
    log = "starting tick\nredis.exceptions.AuthenticationError: invalid username-password pair\n"
    ended = {"terminated": {"reason": "Error", "exitCode": 1, "message": log}}
    assert pod_failure([_pod("2026-01-01T00:00:00Z", state=ended)]) == (
        "Error (exit code 1): redis.exceptions.AuthenticationError: invalid username-password pair"
    )
    oom = {"terminated": {"reason": "OOMKilled", "exitCode": 137}}
    assert pod_failure([_pod("a", state={"running": {}}, lastState=oom)]) == (
        "OOMKilled (exit code 137)"
    )
    pulling = {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling "x:1"'}}
    creating = {"waiting": {"reason": "ContainerCreating"}}
    assert pod_failure([_pod("a", state=pulling)]) == 'ImagePullBackOff: Back-off pulling "x:1"'
    assert pod_failure([_pod("a", state=creating)]) == ""
    assert pod_failure([]) == ""
    long = {"terminated": {"reason": "Error", "exitCode": 1, "message": "x" * 5000}}
    assert len(pod_failure([_pod("a", state=long)])) <= FAILURE_MESSAGE_CHARS + 40


def test_the_pod_holds_only_the_stacks_own_keys_and_no_api_token() -> None:
    job = build_job(REQUEST, uid="uid-1", spec=SPEC, config=OperatorConfig())
    env = _env(job)
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "team-keys",
        "key": "openai",
    }
    assert "GROQ_API_KEY" not in env
    assert env["AGENTSTACK_RUNNER_CREDENTIALS"]["value"] == "job"
    assert job["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    command = _container(job)["command"]
    assert command[command.index("--uid") + 1] == "uid-1"


def test_pull_secrets_and_resources_are_the_platforms_choice() -> None:
    resources = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    config = OperatorConfig(job_image_pull_secrets=["regcred"], job_resources=resources)
    job = build_job(REQUEST, uid="uid-1", spec=SPEC, config=config)
    assert job["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert _container(job)["resources"] == resources
