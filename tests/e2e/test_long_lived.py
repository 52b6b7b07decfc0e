"""Stacks that live for months, on the real control plane with operator and runner
processes: a finite goal completes and stays completed across an operator restart (a
new goal starts it again), and a team whose every action is refused says it is Stalled
until it makes progress again."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator

import pytest
import redis
from kubernetes import client

from agentstack_devkit.fakellm import FakeLLMServer, Reply
from agentstack_devkit.fleet import Fleet
from tests.e2e.stacks import Stacks
from tests.helpers import eventually

REFUSED = json.dumps(
    {
        "thought": "tell someone",
        "actions": [{"type": "send_message", "to": "ghost", "content": "?"}],
    }
)
PLANNED = json.dumps(
    {
        "thought": "plan",
        "actions": [{"type": "update_plan", "tasks": [{"id": "x1", "title": "new work"}]}],
    }
)


@pytest.fixture(scope="module")
def gateway() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture(scope="module")
def stacks(k8s_api: client.ApiClient, redis_reader: redis.Redis) -> Iterator[Stacks]:
    namespace = "long-lived"
    core = client.CoreV1Api(k8s_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    yield Stacks(k8s_api, namespace, redis_reader)
    core.delete_namespace(namespace)


@pytest.fixture(scope="module")
def allowed(gateway: FakeLLMServer) -> dict[str, str]:
    """The gateway is the platform's: its own key may go there (operator and runner)."""
    return {"AGENTSTACK_ALLOWED_BASE_URLS": f"{gateway.openai_base_url},{gateway.groq_base_url}"}


@pytest.fixture(scope="module")
def runner(fleet: Fleet, allowed: dict[str, str]) -> Fleet:
    fleet.runner(OPENAI_API_KEY="sk-long-lived", **allowed)
    return fleet


def test_a_finite_goal_completes_and_stays_completed_across_an_operator_restart(
    runner: Fleet, stacks: Stacks, allowed: dict[str, str]
) -> None:
    operator, _port = runner.operator(**allowed)
    finite = {"criterion": "every planned task is done"}
    stacks.create("finite", tickIntervalSeconds=1, completion=finite)
    stacks.create("witness", tickIntervalSeconds=1)
    completed = stacks.wait_condition("finite", "Completed", "True", "GoalMet", timeout=120)
    assert "confirmed by reviewer" in completed["message"]
    assert stacks.status("finite")["phase"] == "Completed"
    assert stacks.condition("finite", "Ticking")["reason"] == "Completed"
    stacks.wait_event("finite", "Completed")  # (declared and confirmed in one tick)
    ran = len(stacks.executed("finite"))

    operator.send_signal(signal.SIGKILL)
    operator.wait_exit()
    runner.operator("operator-2", **allowed)
    # The witness ticking on is the clock: while it runs five more ticks under the new
    # operator, the completed stack runs none, and its status still says Completed.
    witnessed = len(stacks.executed("witness"))
    eventually(
        lambda: True if len(stacks.executed("witness")) >= witnessed + 5 else None,
        "five more ticks of the witness",
        timeout=60,
    )
    assert len(stacks.executed("finite")) == ran
    assert stacks.condition("finite", "Completed")["status"] == "True"
    assert stacks.status("finite")["phase"] == "Completed"

    stacks.patch_spec("finite", goal="Plan the next offsite")  # a new goal starts it again
    stacks.wait_condition("finite", "Completed", "False", "NotMet", timeout=60)
    eventually(
        lambda: True if len(stacks.executed("finite")) > ran else None,
        "the stack to tick again",
        timeout=60,
    )


def test_a_team_whose_every_action_is_refused_is_stalled_until_it_progresses(
    runner: Fleet, stacks: Stacks, gateway: FakeLLMServer, allowed: dict[str, str]
) -> None:
    runner.operator("operator-3", **allowed)  # (a standby, if the first test's runs)
    gateway.add_rule(Reply(REFUSED), repeat_last=True)
    on_gateway = {
        "model": {"provider": "openai", "name": "gpt-4o-mini"},
        "providers": {"openai": {"baseURL": gateway.openai_base_url}},
    }
    stacks.create("refused", tickIntervalSeconds=1, stalledAfterIdleTicks=3, llm=on_gateway)
    stalled = stacks.wait_condition("refused", "Stalled", "True", "ActionsRefused", timeout=60)
    assert stalled["message"].startswith(
        f"{stalled['message'].split()[0]} ticks in a row changed nothing: every change"
    )
    stacks.wait_event("refused", "Stalled")
    history = stacks.history("refused")
    assert history[-1]["idle"] == "ActionsRefused"
    assert history[-1]["outcome"] == "Succeeded"  # refused actions are not a failure

    gateway.clear_rules()
    gateway.add_rule(Reply(PLANNED), repeat_last=True)
    stacks.wait_condition("refused", "Stalled", "False", "Progressing", timeout=60)
    stacks.wait_event("refused", "Progressing")
