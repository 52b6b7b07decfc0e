"""Namespaces sharing the runners, end to end: the real API server, Redis, an operator,
runner processes, and a fake gateway whose every call takes 30 ms.

- A noisy neighbour: one runner slot, far from keeping up. A noisy namespace asks for a
  hundred ticks a second, a quiet one for two. With fair share, the quiet namespace's
  ticks go out on its turns, ahead of the noisy backlog, so its stacks run (nearly)
  every slot while the noisy ones' ticks wait and expire in the operator.
- A quota of concurrent ticks: a runner with room for eight, a namespace whose
  AgentBudget lets one tick run at a time — the runners' own records show no two of its
  ticks overlapping.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class Setting:
    """The module's parts: the API server, Redis, its operator and the gateway's LLM."""

    fleet: Fleet
    k8s_api: client.ApiClient
    redis_reader: redis.Redis
    operator_port: int
    allowed: dict[str, str]
    llm: dict[str, Any]

    @contextlib.contextmanager
    def tenants(self, runner_slots: int, *namespaces: str) -> Iterator[list[Stacks]]:
        """A runner with ``runner_slots`` slots, and namespaces of the test's own:
        stopped, and deleted with their stacks, at its end."""
        process, _port = self.fleet.runner(
            f"runner-{runner_slots}",
            AGENTSTACK_RUNNER_CONCURRENCY=str(runner_slots),
            OPENAI_API_KEY="sk-fair",
            **self.allowed,
        )
        core = client.CoreV1Api(self.k8s_api)
        for name in namespaces:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        try:
            yield [Stacks(self.k8s_api, name, self.redis_reader) for name in namespaces]
        finally:
            process.stop()
            for name in namespaces:
                client.CustomObjectsApi(self.k8s_api).delete_collection_namespaced_custom_object(
                    "agentstack.dev", "v1alpha1", name, "agentstacks"
                )
                core.delete_namespace(name)


@pytest.fixture(scope="module")
def setting(
    fleet: Fleet,
    k8s_api: client.ApiClient,
    redis_reader: redis.Redis,
    gateway: FakeLLMServer,
) -> Setting:
    """The module's operator (each test starts the runner it needs, and stops it)."""
    allowed = {"AGENTSTACK_ALLOWED_BASE_URLS": gateway.openai_base_url}
    _process, port = fleet.operator(**allowed)
    llm = {
        "model": {"provider": "openai", "name": "gpt-4o-mini"},
        "providers": {"openai": {"baseURL": gateway.openai_base_url}},
    }
    return Setting(fleet, k8s_api, redis_reader, port, allowed, llm)


def _ran_in(stacks: Stacks, name: str, start: float, end: float) -> int:
    return sum(1 for h in stacks.executed(name) if start <= float(h["started_at"]) < end)


def _skipped(port: int, reason: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    pattern = rf'^agentstack_scheduler_ticks_skipped_total\{{reason="{reason}"\}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.mark.timeout(300)
def test_a_quiet_namespace_ticks_on_time_beside_a_noisy_one_that_saturates_the_runners(
    setting: Setting,
) -> None:
    llm = setting.llm
    with setting.tenants(1, "noisy", "quiet") as (noisy, quiet):
        for number in range(NOISY):
            noisy.create(f"n{number:03d}", tickIntervalSeconds=1, llm=llm)
        names = [f"q{number}" for number in range(QUIET)]
        for name in names:
            quiet.create(name, tickIntervalSeconds=1, llm=llm)
        for name in names:
            quiet.wait_ticks(name, 2, timeout=120)
        # The runner is saturated: the noisy namespace's ticks expire waiting for room.
        eventually(
            lambda: True if _skipped(setting.operator_port, "RunnersBusy") > 0 else None,
            "noisy ticks expiring in the operator",
            timeout=60,
        )

        start = time.time()
        eventually(
            lambda: True if time.time() >= start + WINDOW else None, "the window", WINDOW + 5
        )
        end = start + WINDOW
        # Each quiet stack asked for WINDOW ticks and ran nearly all of them ...
        for name in names:
            ran = _ran_in(quiet, name, start, end)
            assert ran >= 0.8 * WINDOW - 1, f"{name} ran {ran} of {WINDOW:.0f} ticks"
        # ... while a noisy stack, asking for as many, ran a fraction: the runner had
        # room for far less than the noisy namespace asked (the share it had left).
        noisy_ran = sum(_ran_in(noisy, f"n{n:03d}", start, end) for n in range(NOISY))
        assert noisy_ran / NOISY < 0.5 * WINDOW, f"noisy stacks ran {noisy_ran} ticks in all"


CAPPED = 3
"""Stacks of the namespace whose budget lets one tick run at a time."""


@pytest.mark.timeout(300)
def test_a_namespace_never_runs_more_ticks_at_once_than_its_quota(setting: Setting) -> None:
    with setting.tenants(8, "capped") as (capped,):
        client.CustomObjectsApi(setting.k8s_api).create_namespaced_custom_object(
            "agentstack.dev",
            "v1alpha1",
            "capped",
            "agentbudgets",
            {
                "apiVersion": "agentstack.dev/v1alpha1",
                "kind": "AgentBudget",
                "metadata": {"name": "one-at-a-time"},
                "spec": {"quota": {"maxConcurrentTicks": 1}},
            },
        )
        names = [f"c{number}" for number in range(CAPPED)]
        for name in names:
            capped.create(name, tickIntervalSeconds=1, llm=setting.llm)
        for name in names:
            capped.wait_ticks(name, 5, timeout=120)
        # The runner had room for all three at once; the quota let one run at a time:
        # no two of the namespace's ticks overlapped, as the runners recorded them.
        spans = sorted(
            (float(h["started_at"]), float(h["finished_at"]))
            for name in names
            for h in capped.executed(name)
        )
        assert len(spans) >= CAPPED * 5
        overlaps, latest_end = [], 0.0
        for started, finished in spans:
            if started < latest_end:
                overlaps.append((started, latest_end))
            latest_end = max(latest_end, finished)
        assert overlaps == [], overlaps
