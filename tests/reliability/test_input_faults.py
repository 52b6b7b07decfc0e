"""Inputs under faults: sent while ticks run and while runners are SIGKILLed; fired by
triggers, webhooks and A2A messages while the leading operator is SIGKILLed.

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

import datetime as dt
import json
import signal
import time

import httpx
import redis
from a2a.utils.constants import PROTOCOL_VERSION_1_0, VERSION_HEADER
from kubernetes import client

from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.records import InputRecord
from agentstack_devkit.fakellm import Delay, FakeLLMServer, Reply
from agentstack_devkit.fleet import Fleet
from tests.e2e.stacks import Stacks
from tests.helpers import bind_service_account, eventually
from tests.reliability.support import QUIET, on_gateway, verify
from tests.signing import github_headers

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


ROUNDS = 6
HOOK_KEY = "a webhook key of the world-facing stacks"


def _leading(ports: dict[str, int]) -> str | None:
    """The operator whose metrics say it leads (``None`` while none does)."""
    for name, port in ports.items():
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except httpx.HTTPError:
            continue
        if "agentstack_operator_leader 1.0" in text:
            return name
    return None


def _backoff(core: client.CoreV1Api, namespace: str, pod: str) -> None:
    now = dt.datetime.now(dt.UTC)
    core.create_namespaced_event(
        namespace,
        client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{pod}."),
            involved_object=client.V1ObjectReference(
                kind="Pod", name=pod, namespace=namespace, uid=f"uid-{pod}"
            ),
            reason="BackOff",
            message=f"back-off restarting {pod}",
            type="Warning",
            last_timestamp=now,
        ),
    )


def test_trigger_webhook_and_a2a_inputs_are_each_sent_and_read_once_across_a_leader_kill(
    fleet: Fleet,
    gateway: FakeLLMServer,
    k8s_api: client.ApiClient,
    namespace: str,
    reader: redis.Redis,
) -> None:
    """Two stacks hear the same Events (a trigger), take signed deliveries (a webhook,
    each also replayed) and A2A messages (each sent twice, as a client retries) while
    the leading operator is SIGKILLed: the standby lists the Events afresh when it takes
    over. Every Event reaches each stack once, every delivery and message once, and
    each is read once by a recorded tick."""
    core = client.CoreV1Api(k8s_api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="watcher"))
    )
    bind_service_account(k8s_api, namespace, "watcher", "view", kind="ClusterRole")
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="hooks"), string_data={"ci": HOOK_KEY}),
    )
    stacks = Stacks(k8s_api, namespace, reader)
    names = ["world-a", "world-b"]
    for name in names:
        stacks.create(
            name,
            **on_gateway(
                gateway,
                tickIntervalSeconds=600,
                triggers=[
                    {
                        "name": "backoff",
                        "serviceAccountName": "watcher",
                        "event": {"reasons": ["BackOff"]},
                    }
                ],
                webhooks=[{"name": "ci", "secretRef": {"name": "hooks", "key": "ci"}}],
            ),
        )
    operators = {name: fleet.operator(name) for name in ("op-a", "op-b")}
    ports = {name: port for name, (_process, port) in operators.items()}
    fleet.runner("steady")
    _api, api_port = fleet.api()
    for name in names:
        keys = StackKeys(StackRef(namespace, name))
        eventually(lambda keys=keys: reader.exists(keys.spec) or None, f"{name} taken on")
        stacks.wait_condition(name, "Ready", "True")

    replays = 0
    with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10) as http:

        def deliver(name: str, delivery: str) -> int:
            body = json.dumps({"build": delivery}).encode()
            headers = github_headers(body, HOOK_KEY.encode(), delivery, event="build")
            path = f"/api/v1/namespaces/{namespace}/stacks/{name}/webhooks/ci"
            return http.post(path, content=body, headers=headers).status_code

        def message(name: str, message_id: str) -> str:
            call = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "SendMessage",
                "params": {
                    "message": {
                        "role": "ROLE_USER",
                        "messageId": message_id,
                        "parts": [{"text": f"message {message_id}"}],
                    },
                    "configuration": {"returnImmediately": True},
                },
            }
            path = f"/api/v1/namespaces/{namespace}/stacks/{name}/a2a"
            answer = http.post(path, json=call, headers={VERSION_HEADER: PROTOCOL_VERSION_1_0})
            assert answer.status_code == 200, answer.text
            return str(answer.json()["result"]["task"]["id"])

        for round_ in range(ROUNDS):
            _backoff(core, namespace, f"pod-{round_}")
            for name in names:
                assert deliver(name, f"d-{round_}") == 202
                task = message(name, f"m-{round_}")
                assert message(name, f"m-{round_}") == task  # a retry: the same task
                if round_:
                    assert deliver(name, f"d-{round_ - 1}") == 409  # replayed: refused
                    replays += 1
            if round_ == 2:  # the leader dies with Events still to send
                first = eventually(lambda: _leading(ports), "a leader")
                operators[first][0].send_signal(signal.SIGKILL)
                operators[first][0].wait_exit()
                del ports[first]
                eventually(lambda: _leading(ports), "the standby to lead", timeout=60)

        def all_read() -> bool | None:
            for name in names:
                items = http.get(
                    f"/api/v1/namespaces/{namespace}/stacks/{name}/inputs", params={"limit": 100}
                ).json()["items"]
                if len(items) < 3 * ROUNDS or any(i["state"] != "Read" for i in items):
                    return None
            return True

        eventually(all_read, "every input to be read", timeout=120)

    for name in names:
        logged = [
            InputRecord.from_fields(fields)
            for _id, fields in reader.xrange(StackKeys(StackRef(namespace, name)).inputs)
        ]
        heard = sorted(
            i.content.split(" on Pod ")[1].split(":")[0]
            for i in logged
            if i.sender == "trigger/backoff"
        )
        delivered = sorted(
            json.loads(i.content.split("\n", 1)[1])["build"] for i in logged if i.sender == "ci"
        )
        messages = sorted(
            i.content.removeprefix("message ")
            for i in logged
            if (i.delivery or "").startswith("a2a/")
        )
        assert heard == sorted(f"pod-{n}" for n in range(ROUNDS)), name
        assert messages == sorted(f"m-{n}" for n in range(ROUNDS)), name
        assert delivered == sorted(f"d-{n}" for n in range(ROUNDS)), name
    assert replays == len(names) * (ROUNDS - 1)
    report = verify(
        "trigger, webhook and A2A inputs, leader SIGKILL", fleet, k8s_api, reader, [namespace]
    )
    assert report.inputs == report.inputs_read == len(names) * 3 * ROUNDS
