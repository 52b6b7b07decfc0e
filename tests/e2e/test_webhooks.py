"""Signed webhooks end to end: the API (authentication on, its key read from a real
Secret), the operator, a runner, Redis and the control plane.

Deliveries are signed here the way GitHub and Standard Webhooks senders sign them; what
a delivery wrote (or did not) is read back from Redis, where the API put it.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from kubernetes import client

from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.records import InputRecord
from agentstack_devkit.fleet import Fleet
from tests.e2e.stacks import Stacks
from tests.helpers import eventually
from tests.signing import github_headers, standard_headers

GITHUB_KEY = "3f1c9a6b0e5d47c2b8a1f0e9d6c5b4a3"
CI_KEY = b"a thirty-two byte key for the ci"
HOUR = 3600


@pytest.fixture(scope="module")
def hooked(
    steering: tuple[str, Stacks], k8s_api: client.ApiClient
) -> Iterator[tuple[httpx.Client, Stacks]]:
    """The API, and a namespace whose Secret ``hooks`` holds both webhooks' keys."""
    url, stacks = steering
    client.CoreV1Api(k8s_api).create_namespaced_secret(
        stacks.namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="hooks"),
            string_data={
                "github": GITHUB_KEY,
                "ci": "whsec_" + base64.b64encode(CI_KEY).decode(),
            },
        ),
    )
    with httpx.Client(base_url=url, timeout=10) as http:
        eventually(
            lambda: True if http.get("/readyz").status_code == 200 else None,
            "the API's cache to load",
        )
        yield http, stacks


def _github(body: bytes, delivery: str, key: str = GITHUB_KEY) -> dict[str, str]:
    return {**github_headers(body, key.encode(), delivery), "Content-Type": "application/json"}


def _standard(body: bytes, delivery: str, stamp: int) -> dict[str, str]:
    return standard_headers(body, CI_KEY, delivery, stamp)


def _written(stacks: Stacks, name: str) -> tuple[int, int]:
    """(inputs logged, deliveries remembered) of the stack, from Redis."""
    keys = StackKeys(StackRef(stacks.namespace, name))
    return stacks.redis.xlen(keys.inputs), stacks.redis.zcard(keys.deliveries)


def test_signed_deliveries_become_inputs_and_bad_ones_write_nothing(
    hooked: tuple[httpx.Client, Stacks], fleet: Fleet
) -> None:
    http, stacks = hooked
    stacks.create(
        "triage",
        tickIntervalSeconds=HOUR,
        webhooks=[
            {"name": "github", "secretRef": {"name": "hooks", "key": "github"}, "agent": "planner"},
            {
                "name": "ci",
                "format": "StandardWebhooks",
                "secretRef": {"name": "hooks", "key": "ci"},
                "agent": "builder",
                "maxBodyBytes": 2048,
            },
        ],
    )
    stacks.wait_ticks("triage", 1)
    path = f"/api/v1/namespaces/{stacks.namespace}/stacks/triage/webhooks"
    body = json.dumps(
        {
            "action": "opened",
            "pull_request": {"title": "Fix the rollback", "url": "https://api.github.com/p/7"},
        }
    ).encode()
    delivery = str(uuid.uuid4())

    # A good GitHub delivery: an input to the planner, from "github", that wakes the stack.
    sent = http.post(f"{path}/github", content=body, headers=_github(body, delivery))
    assert sent.status_code == 202, sent.text
    accepted = sent.json()
    assert (accepted["number"], accepted["agent"], accepted["sender"]) == (1, "planner", "github")
    assert accepted["wakes"] is True
    assert _written(stacks, "triage") == (1, 1)
    keys = StackKeys(StackRef(stacks.namespace, "triage"))
    [(_id, fields)] = stacks.redis.xrange(keys.inputs)
    logged = InputRecord.from_fields(fields)
    assert logged.sender == "github"
    head, text = logged.content.split("\n", 1)
    assert head == f"webhook github, event pull_request, delivery {delivery}:"
    assert json.loads(text) == {"action": "opened", "pull_request": {"title": "Fix the rollback"}}
    eventually(  # the stack ticks once an hour: a second tick is the one the delivery brought
        lambda: True if len(stacks.executed("triage")) >= 2 else None, "the woken tick"
    )

    # Each bad delivery is refused and writes nothing.
    refusals = [
        ("github", body, _github(body, str(uuid.uuid4()), key="not the key"), 401),
        ("github", body + b" ", _github(body, str(uuid.uuid4())), 401),  # body changed
        ("github", body, _github(body, delivery), 409),  # replayed
        ("nobody", body, _github(body, str(uuid.uuid4())), 401),  # no such webhook
        ("ci", body, _standard(body, "msg_old", int(time.time()) - 600), 401),  # stale
        ("ci", b"x" * 4096, _standard(b"x" * 4096, "msg_big", int(time.time())), 413),
    ]
    for hook, content, headers, status in refusals:
        answer = http.post(f"{path}/{hook}", content=content, headers=headers)
        assert answer.status_code == status, (hook, status, answer.text)
        assert _written(stacks, "triage") == (1, 1), (hook, status)
    unknown_stack = http.post(
        f"/api/v1/namespaces/{stacks.namespace}/stacks/nosuch/webhooks/github",
        content=body,
        headers=_github(body, str(uuid.uuid4())),
    )
    assert unknown_stack.status_code == 401
    assert (
        unknown_stack.json()
        == http.post(
            f"{path}/nobody", content=body, headers=_github(body, str(uuid.uuid4()))
        ).json()
    )  # the same answer: nobody learns which stacks exist

    # A good Standard Webhooks delivery goes to the builder.
    ci = http.post(
        f"{path}/ci",
        content=b"build 7 is green",
        headers=_standard(b"build 7 is green", "msg_1", int(time.time())),
    )
    assert ci.status_code == 202, ci.text
    assert (ci.json()["number"], ci.json()["agent"], ci.json()["sender"]) == (2, "builder", "ci")
    assert _written(stacks, "triage") == (2, 2)
    inbox = stacks.redis.xrange(keys.inbox("builder"))
    assert any(m["content"].endswith("delivery msg_1:\nbuild 7 is green") for _i, m in inbox)

    # The keys are in no log of the fleet.
    for log in fleet.logs_dir.glob("*.log"):
        text = log.read_text(errors="replace")
        assert GITHUB_KEY not in text, log
        assert base64.b64encode(CI_KEY).decode() not in text, log


def test_a_webhook_whose_secret_is_missing_is_unavailable_not_unauthorized(
    hooked: tuple[httpx.Client, Stacks],
) -> None:
    http, stacks = hooked
    stacks.create(
        "keyless",
        tickIntervalSeconds=HOUR,
        webhooks=[{"name": "github", "secretRef": {"name": "absent", "key": "github"}}],
    )
    stacks.wait_ticks("keyless", 1)
    body = b"{}"
    answer = http.post(
        f"/api/v1/namespaces/{stacks.namespace}/stacks/keyless/webhooks/github",
        content=body,
        headers=_github(body, str(uuid.uuid4())),
    )
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "WebhookKeyUnavailable"
    assert _written(stacks, "keyless") == (0, 0)
