"""A noisy neighbour, end to end: the real API server, Redis, an operator and a runner
that cannot keep up (one tick at a time, each agent's call 30 ms on a fake gateway). A
noisy namespace asks for a hundred ticks a second, far more than the runner runs; a
quiet one asks for two. With fair share, the
quiet namespace's ticks go out on its turns, ahead of the noisy backlog, so its stacks
run (nearly) every slot while the noisy ones' ticks wait and expire in the operator.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
from kubernetes import client

from agentstack_devkit.fakellm import Delay, FakeLLMServer, Reply
from agentstack_devkit.fleet import Fleet
from tests.e2e.stacks import Stacks
from tests.helpers import eventually

NOISY, QUIET = 100, 2
WINDOW = 20.0
"""Seconds over which the shares are counted, once every stack has ticked."""
CALL_SECONDS = 0.03
"""How long each LLM call takes: a tick costs the runner at least one per agent."""
NOTHING = '{"thought": "nothing new", "actions": []}'


@pytest.fixture(scope="module")
def gateway() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        server.add_rule(Delay(CALL_SECONDS, Reply(NOTHING)), repeat_last=True)
        yield server


@pytest.fixture(scope="module")
def tenants(
    k8s_api: client.ApiClient, redis_reader: redis.Redis
) -> Iterator[tuple[Stacks, Stacks]]:
    core = client.CoreV1Api(k8s_api)
    for name in ("noisy", "quiet"):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield Stacks(k8s_api, "noisy", redis_reader), Stacks(k8s_api, "quiet", redis_reader)
    for name in ("noisy", "quiet"):
        core.delete_namespace(name)


def _ran_in(stacks: Stacks, name: str, start: float, end: float) -> int:
    return sum(1 for h in stacks.executed(name) if start <= float(h["started_at"]) < end)


def _skipped(port: int, reason: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    pattern = rf'^agentstack_scheduler_ticks_skipped_total\{{reason="{reason}"\}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.mark.timeout(300)
def test_a_quiet_namespace_ticks_on_time_beside_a_noisy_one_that_saturates_the_runners(
    fleet: Fleet, tenants: tuple[Stacks, Stacks], gateway: FakeLLMServer
) -> None:
    noisy, quiet = tenants
    allowed = {"AGENTSTACK_ALLOWED_BASE_URLS": gateway.openai_base_url}
    _operator, port = fleet.operator(**allowed)
    fleet.runner(AGENTSTACK_RUNNER_CONCURRENCY="1", OPENAI_API_KEY="sk-fair", **allowed)
    llm = {
        "model": {"provider": "openai", "name": "gpt-4o-mini"},
        "providers": {"openai": {"baseURL": gateway.openai_base_url}},
    }
    for number in range(NOISY):
        noisy.create(f"n{number:03d}", tickIntervalSeconds=1, llm=llm)
    names = [f"q{number}" for number in range(QUIET)]
    for name in names:
        quiet.create(name, tickIntervalSeconds=1, llm=llm)
    for name in names:
        quiet.wait_ticks(name, 2, timeout=120)
    # The runner is saturated: the noisy namespace's ticks expire waiting for room.
    eventually(
        lambda: True if _skipped(port, "RunnersBusy") > 0 else None,
        "noisy ticks expiring in the operator",
        timeout=60,
    )

    start = time.time()
    eventually(lambda: True if time.time() >= start + WINDOW else None, "the window", WINDOW + 5)
    end = start + WINDOW
    # Each quiet stack asked for WINDOW ticks and ran nearly all of them ...
    for name in names:
        ran = _ran_in(quiet, name, start, end)
        assert ran >= 0.8 * WINDOW - 1, f"{name} ran {ran} of {WINDOW:.0f} ticks"
    # ... while a noisy stack, asking for as many, ran a fraction: the runner had room
    # for far less than the noisy namespace asked (the share is what it had left).
    noisy_ran = sum(_ran_in(noisy, f"n{n:03d}", start, end) for n in range(NOISY))
    assert noisy_ran / NOISY < 0.5 * WINDOW, f"noisy stacks ran {noisy_ran} ticks in all"
