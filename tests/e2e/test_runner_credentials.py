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
    """The platform's LLM gateway: allow-listed for the pool's keys."""
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def stranger() -> Iterator[FakeLLMServer]:
    """A server a stack author points a stack at: on no allow-list."""
    with FakeLLMServer() as server:
        yield server


def test_a_stack_secret_beats_the_pool_key_and_never_falls_back(
    fleet: Fleet,
    fake_llm: FakeLLMServer,
    stranger: FakeLLMServer,
    k8s_api: client.ApiClient,
    namespace: str,
    redis_reader: redis.Redis,
) -> None:
    gateway = {"AGENTSTACK_ALLOWED_BASE_URLS": fake_llm.openai_base_url}
    fleet.operator(**gateway)
    fleet.runner(
        "pool-runner",
        AGENTSTACK_RUNNER_CREDENTIALS="kubernetes",
        AGENTSTACK_RUNNER_SECRET_CACHE_SECONDS="1",
        OPENAI_API_KEY="sk-pool-default",
        **gateway,
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
    elsewhere = {"openai": {"baseURL": stranger.openai_base_url}}
    stacks.create("elsewhere", llm={"model": model, "providers": elsewhere})
    stacks.wait_ticks("own-key", 1)
    stacks.wait_ticks("pool-key", 1)
    own = stacks.status("own-key")
    assert own["lastTickResult"] == "Succeeded", own.get("lastTickMessage")

    def used_by(stack: str) -> set[str | None]:
        tick_prefix = f"{namespace}/{stack}/"
        return {
            r.credential
            for r in fake_llm.requests
            if r.headers.get("x-agentstack-tick", "").startswith(tick_prefix)
        }

    assert used_by("own-key") == {credential_digest("Bearer sk-stack-own")}
    assert used_by("pool-key") == {credential_digest("Bearer sk-pool-default")}
    # A baseURL of the author's choosing gets no pool key: the stack is refused at once,
    # says why, and the stranger's server never hears from the fleet.
    ready = stacks.wait_condition("elsewhere", "Ready", "False")
    assert ready["reason"] == "EndpointNotAllowed"
    assert "secretRef" in ready["message"]
    stacks.wait_event("elsewhere", "EndpointNotAllowed")
    assert stacks.status("elsewhere").get("ticks", 0) == 0
    assert stranger.requests == []

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


def test_a_rotated_key_is_used_after_at_most_one_refused_call(
    fleet: Fleet,
    fake_llm: FakeLLMServer,
    k8s_api: client.ApiClient,
    namespace: str,
    redis_reader: redis.Redis,
) -> None:
    """A stack's Secret gets a new key and its provider stops taking the old one: the
    runner, whose Secret cache (here 10 minutes) still holds the old key, reads the
    Secret again at the first refusal, so exactly one call is refused."""
    # Processes of its own: an earlier test's runner, its gateway gone, has the
    # provider's circuit open (the breaker is per provider, not per endpoint).
    fleet.stop()
    gateway = {"AGENTSTACK_ALLOWED_BASE_URLS": fake_llm.openai_base_url}
    fleet.operator(**gateway)
    fleet.runner(
        "rotating-runner",
        AGENTSTACK_RUNNER_CREDENTIALS="kubernetes",
        AGENTSTACK_RUNNER_SECRET_CACHE_SECONDS="600",
        **gateway,
    )
    stacks = Stacks(k8s_api, namespace, redis_reader)

    def keys(value: str) -> client.V1Secret:
        return client.V1Secret(
            metadata=client.V1ObjectMeta(name="rotating-keys"), string_data={"key": value}
        )

    stacks.core.create_namespaced_secret(namespace, keys("sk-before"))
    stacks.create(
        "rotating",
        tickIntervalSeconds=2,
        llm={
            "model": {"provider": "openai", "name": "gpt-4o-mini"},
            "providers": {
                "openai": {
                    "baseURL": fake_llm.openai_base_url,
                    "secretRef": {"name": "rotating-keys", "key": "key"},
                }
            },
        },
    )
    before = credential_digest("Bearer sk-before")
    # The runner has read the old key (and caches it): a call with it was answered.
    eventually(
        lambda: (
            True
            if any(r.credential == before and r.status == 200 for r in fake_llm.requests)
            else None
        ),
        "a call with the old key",
    )
    ticks = int(stacks.status("rotating").get("ticks") or 0)

    stacks.core.replace_namespaced_secret("rotating-keys", namespace, keys("sk-after"))
    fake_llm.accept_keys("sk-after")
    since = len(fake_llm.requests)
    status = stacks.wait_ticks("rotating", ticks + 3)
    assert status["lastTickResult"] == "Succeeded", status.get("lastTickMessage")
    after = fake_llm.requests[since:]
    refused = [r for r in after if r.status == 401]
    assert len(refused) == 1, [(r.credential, r.status) for r in after]
    assert refused[0].credential == before
    answered = [r for r in after if r.status == 200]
    assert answered
    assert {r.credential for r in answered} == {credential_digest("Bearer sk-after")}
