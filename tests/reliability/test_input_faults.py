"""Inputs under faults: sent while ticks run and while runners are SIGKILLed.

The stacks tick every ten minutes on their own, so what reads an input is the tick it
brought (or the one after a busy tick). Half of the inputs are sent while a tick of
their stack holds its lease (a "starter" input brings that tick first). Each tick's
builder step is slow, so inputs for the planner — the first to act — keep arriving
after the planner has read its inbox: the running tick cannot read them, and the next
tick must. Afterwards, from Redis: every accepted input is in its inbox once and was
read, after it was sent, by a recorded tick; no two ticks of a stack ran at once; and
the usual invariants.
"""

from __future__ import annotations

import signal
import time

import httpx
import redis
from kubernetes import client

from agentstack_core.keys import StackKeys, StackRef
from agentstack_devkit.fakellm import Delay, FakeLLMServer, Reply
from agentstack_devkit.fleet import Fleet
from tests.e2e.stacks import Stacks
from tests.helpers import eventually
from tests.reliability.support import QUIET, on_gateway, verify

STACKS = 3
INPUTS_PER_STACK = 8


def test_inputs_sent_during_ticks_and_runner_kills_are_each_read_once(
    fleet: Fleet,
    gateway: FakeLLMServer,
    k8s_api: client.ApiClient,
    namespace: str,
    reader: redis.Redis,
) -> None:
    gateway.add_rule(
        Delay(1.0, Reply(QUIET)), headers={"X-Agentstack-Agent": "builder"}, repeat_last=True
    )
    stacks = Stacks(k8s_api, namespace, reader)
    names = [f"inbox-{n}" for n in range(STACKS)]
    for name in names:
        stacks.create(name, **on_gateway(gateway, tickIntervalSeconds=600))
    fleet.operator()
    victim = fleet.runner("runner-0")[0]
    fleet.runner("steady")
    _api, port = fleet.api()

    accepted: dict[str, list[int]] = {name: [] for name in names}
    during_ticks = 0
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

        def send(name: str, content: str) -> None:
            path = f"/api/v1/namespaces/{namespace}/stacks/{name}/inputs"
            sent = http.post(path, json={"agent": "planner", "content": content})
            assert sent.status_code == 202, sent.text
            accepted[name].append(sent.json()["number"])

        def published(name: str) -> bool | None:
            # 409 until the operator has taken the stack on (its spec is in Redis). Not the
            # start tick: with a 10-minute interval it may be dropped (its period ends).
            return True if reader.exists(StackKeys(StackRef(namespace, name)).spec) else None

        for name in names:
            eventually(lambda name=name: published(name), f"{name} to be taken on")
        for round_ in range(INPUTS_PER_STACK):
            for name in names:
                keys = StackKeys(StackRef(namespace, name))
                if round_ % 2:  # half of them while a tick of the stack holds its lease:
                    send(name, f"starter {round_} for {name}")  # one that brings a tick
                    eventually(
                        lambda keys=keys: True if reader.get(keys.lease) else None,
                        f"a tick of {name} to run",
                        timeout=30,
                    )
                    during_ticks += 1
                send(name, f"round {round_} for {name}")
            if round_ in (2, 5):  # a runner dies with ticks (and inputs) in flight
                victim.send_signal(signal.SIGKILL)
                victim.wait_exit()
                victim = fleet.runner(f"runner-{round_}")[0]

        def all_read() -> bool | None:
            for name in names:
                items = http.get(
                    f"/api/v1/namespaces/{namespace}/stacks/{name}/inputs", params={"limit": 100}
                ).json()["items"]
                if sorted(i["number"] for i in items if i["state"] == "Read") != accepted[name]:
                    return None
            return True

        started = time.monotonic()
        eventually(all_read, "every input to be read", timeout=120)
        waited = time.monotonic() - started
        print(f"all inputs read {waited:.1f}s after the last was sent")

    assert during_ticks == STACKS * INPUTS_PER_STACK // 2
    report = verify("inputs during ticks, runner SIGKILL x2", fleet, k8s_api, reader, [namespace])
    sent = sum(len(numbers) for numbers in accepted.values())
    assert sent == STACKS * INPUTS_PER_STACK * 3 // 2  # with the starters
    assert report.inputs == report.inputs_read == sent
