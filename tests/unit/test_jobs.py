"""The tick Job a stack with ``executor: job`` gets: what it carries, and what it must not."""

from __future__ import annotations

import json
from typing import Any

from agentstack_core.keys import StackRef
from agentstack_core.protocol import TickRequest
from agentstack_core.spec import parse_spec
from agentstack_operator.config import OperatorConfig
from agentstack_operator.jobs import build_job

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


def test_redis_credentials_come_from_the_namespace_secret_never_the_spec() -> None:
    config = OperatorConfig(job_redis_url=REDIS_URL, job_redis_secret="agentstack-redis")
    job = build_job(REQUEST, uid="uid-1", spec=SPEC, config=config)
    env = _env(job)
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "agentstack-redis",
        "key": "REDIS_URL",
        "optional": False,
    }
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert "s3cret-password" not in json.dumps(job)
    assert "redis.platform.svc" not in json.dumps(job)


def test_without_a_redis_secret_the_url_is_passed_as_is_for_development() -> None:
    job = build_job(REQUEST, uid="uid-1", spec=SPEC, config=OperatorConfig(job_redis_url="r://x"))
    assert _env(job)["REDIS_URL"] == {"name": "REDIS_URL", "value": "r://x"}


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
