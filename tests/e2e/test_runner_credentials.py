"""Pool runners use each stack's own Secret, and the pool's key only for stacks without one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from kubernetes import client

from agentstack_devkit.fakellm import FakeLLMServer, credential_digest
from agentstack_devkit.fleet import Fleet
from tests.e2e.stacks import Stacks
from tests.helpers import eventually


@pytest.fixture
def fake_llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


def test_a_stack_secret_beats_the_pool_key_and_never_falls_back(
    fleet: Fleet,
    fake_llm: FakeLLMServer,
    k8s_api: client.ApiClient,
    namespace: str,
    redis_reader: redis.Redis,
) -> None:
    fleet.operator()
    fleet.runner(
        "pool-runner",
        AGENTSTACK_RUNNER_CREDENTIALS="kubernetes",
        AGENTSTACK_RUNNER_SECRET_CACHE_SECONDS="1",
        OPENAI_API_KEY="sk-pool-default",
    )
    stacks = Stacks(k8s_api, namespace, redis_reader)
    stacks.core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="team-keys"),
            string_data={"OPENAI_API_KEY": "sk-stack-own"},
        ),
    )
    openai = {"baseURL": fake_llm.openai_base_url}
    model = {"provider": "openai", "name": "gpt-4o-mini"}
    stacks.create(
        "own-key",
        llm={
            "model": model,
            "providers": {
                "openai": {**openai, "secretRef": {"name": "team-keys", "key": "OPENAI_API_KEY"}}
            },
        },
    )
    stacks.create("pool-key", llm={"model": model, "providers": {"openai": openai}})
    stacks.wait_ticks("own-key", 1)
    stacks.wait_ticks("pool-key", 1)
    assert stacks.status("own-key")["lastTickResult"] == "Succeeded"

    def used_by(stack: str) -> set[str | None]:
        tick_prefix = f"{namespace}/{stack}/"
        return {
            r.credential
            for r in fake_llm.requests
            if r.headers.get("x-agentstack-tick", "").startswith(tick_prefix)
        }

    assert used_by("own-key") == {credential_digest("Bearer sk-stack-own")}
    assert used_by("pool-key") == {credential_digest("Bearer sk-pool-default")}

    # The Secret loses its key: that stack's calls fail rather than use the pool's key.
    stacks.core.replace_namespaced_secret(
        "team-keys",
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="team-keys"), string_data={"x": "y"}),
    )
    eventually(
        lambda: True if stacks.status("own-key").get("lastTickResult") == "Failed" else None,
        "the stack to fail once its key is gone (after the runner's 1 s Secret cache)",
        timeout=30,
    )
    assert credential_digest("Bearer sk-pool-default") not in used_by("own-key")
