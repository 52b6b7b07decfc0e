"""Triggers: what fires them, once per object and window, and who may watch what."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from agentstack_core.matching import Condition, label_selector
from agentstack_core.spec import EventMatch, ObjectMatch, Trigger
from agentstack_operator.triggering import TriggerHub, WatchKey, fired
from tests.helpers import eventually_async

from .operator_fakes import FakeKube, indexed

NOW = 1_800_000_000.0
CRASHING = (
    "object.status.containerStatuses.exists(c, has(c.state.waiting) && "
    "c.state.waiting.reason == 'CrashLoopBackOff')"
)
BACKOFF = Trigger(
    name="crash",
    service_account_name="watcher",
    event=EventMatch(reasons=("BackOff",), involved_kind="Pod"),
    window_seconds=300,
)


def event(reason: str = "BackOff", *, at: float = NOW - 5, kind: str = "Pod") -> dict[str, Any]:
    stamp = dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "kind": "Event",
        "metadata": {"name": "web-1.abc", "namespace": "team"},
        "involvedObject": {"kind": kind, "name": "web-1", "uid": "pod-uid"},
        "reason": reason,
        "type": "Warning",
        "message": "Back-off restarting failed container app",
        "count": 4,
        "lastTimestamp": stamp,
    }


def crashing_pod(**labels: str) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "team", "uid": "pod-uid", "labels": labels},
        "status": {"containerStatuses": [{"state": {"waiting": {"reason": "CrashLoopBackOff"}}}]},
    }


def test_an_event_fires_what_it_matches_with_a_summary() -> None:
    found = fired(BACKOFF, event(), Condition(""), NOW)
    assert found is not None
    content, delivery = found
    assert content == (
        "trigger crash: Warning Event BackOff on Pod web-1 (4 times): "
        "Back-off restarting failed container app"
    )
    assert delivery == f"trigger/crash/pod-uid/{int((NOW - 5) // 300)}"
    assert fired(BACKOFF, event("Pulled"), Condition(""), NOW) is None
    assert fired(BACKOFF, event(kind="Node"), Condition(""), NOW) is None


def test_an_event_keeps_its_delivery_id_whenever_it_is_seen_and_old_ones_are_not_news() -> None:
    """A re-list (the watch expired, a new leader) finds the same ids: sent once."""
    first = fired(BACKOFF, event(), Condition(""), NOW)
    again = fired(BACKOFF, event(), Condition(""), NOW + 60)
    assert first is not None
    assert again is not None
    assert first[1] == again[1]
    assert fired(BACKOFF, event(at=NOW - 301), Condition(""), NOW) is None


def test_an_object_fires_while_selected_and_its_condition_holds_once_per_window() -> None:
    trigger = Trigger(
        name="web",
        service_account_name="watcher",
        object=ObjectMatch(
            api_version="v1",
            kind="Pod",
            selector=label_selector({"matchLabels": {"app": "web"}}),
            condition=CRASHING,
        ),
        window_seconds=60,
    )
    condition = Condition(CRASHING)
    found = fired(trigger, crashing_pod(app="web"), condition, NOW)
    assert found is not None
    content, delivery = found
    assert content.splitlines()[0] == f"trigger web: Pod web-1 matches {CRASHING}"
    assert "CrashLoopBackOff" in content.splitlines()[1]
    assert delivery == f"trigger/web/pod-uid/{int(NOW // 60)}"
    later = fired(trigger, crashing_pod(app="web"), condition, NOW + 60)
    assert later is not None
    assert later[1] != delivery  # the next window sends again
    assert fired(trigger, crashing_pod(app="api"), condition, NOW) is None
    healthy = crashing_pod(app="web")
    healthy["status"]["containerStatuses"][0]["state"] = {"running": {}}
    assert fired(trigger, healthy, condition, NOW) is None


def _spec(**trigger: Any) -> dict[str, Any]:
    return {"triggers": [{"name": "t", "serviceAccountName": "watcher", **trigger}]}


POD_TRIGGER = _spec(object={"apiVersion": "v1", "kind": "Pod", "condition": CRASHING})
EVENT_TRIGGER = _spec(event={"reasons": ["BackOff"]})
USER = "system:serviceaccount:team:watcher"


@pytest.mark.asyncio
async def test_a_trigger_its_service_account_may_not_watch_holds_the_stack_until_it_may() -> None:
    kube = FakeKube()
    hub = TriggerHub(kube, redis=None)  # type: ignore[arg-type]  # nothing is sent here
    record = indexed("demo", **POD_TRIGGER)["team/demo"]
    events = await hub.check(record)
    assert [e.reason for e in events] == ["TriggerNotAllowed"]
    assert record.forbidden_triggers == [
        "trigger t: ServiceAccount 'watcher' may not list and watch pods in namespace team"
    ]
    hold = record.hold
    assert hold is not None
    assert hold.reason == "TriggerNotAllowed"
    assert not record.should_tick
    assert await hub.check(record) == []  # still refused: said once

    kube.granted.add(("team", USER, "pods"))
    hub._access.clear()  # the refusal's cache has run out
    assert [e.reason for e in await hub.check(record)] == ["TriggersAllowed"]
    assert record.should_tick


@pytest.mark.asyncio
async def test_what_no_trigger_may_watch_is_said_per_trigger() -> None:
    kube = FakeKube()
    kube.operator_denied.add("deployments")
    hub = TriggerHub(kube, redis=None)  # type: ignore[arg-type]
    kube.granted.update({("team", USER, "deployments"), ("team", USER, "nodes")})
    cases = {
        "apps/v1/Deployment": "the operator may not list and watch deployments",
        "v1/Node": "Node is not namespaced",
        "example.com/v1/Widget": "the API server serves no kind Widget in example.com/v1",
    }
    for kind, reason in cases.items():
        api_version, _, name = kind.rpartition("/")
        record = indexed("demo", **_spec(object={"apiVersion": api_version, "kind": name}))[
            "team/demo"
        ]
        await hub.check(record)
        [refusal] = record.forbidden_triggers
        assert reason in refusal


@pytest.mark.asyncio
async def test_stacks_share_one_watch_per_kind_and_reviews_are_cached() -> None:
    """A hundred stacks with the same two triggers: two watches, a few reviews."""
    kube = FakeKube()
    kube.granted.update({("team", USER, "pods"), ("team", USER, "events")})
    hub = TriggerHub(kube, redis=None)  # type: ignore[arg-type]
    both = {"triggers": POD_TRIGGER["triggers"] + [{**EVENT_TRIGGER["triggers"][0], "name": "e"}]}
    index = indexed(*(f"s{i}" for i in range(100)), **both)
    for record in index.values():
        assert await hub.check(record) == []
    assert set(hub._subscribed) == {
        WatchKey("", "v1", "pods", None),
        WatchKey("", "v1", "events", None),
    }
    assert all(len(subscribers) == 100 for subscribers in hub._subscribed.values())
    assert kube.reviews == 4  # (the account, the operator) x (pods, events)
    hub.unsubscribe("team/s0")
    assert all(len(subscribers) == 99 for subscribers in hub._subscribed.values())


@pytest.mark.asyncio
async def test_an_operator_of_a_namespace_list_watches_per_namespace() -> None:
    kube = FakeKube()
    kube.granted.add(("team", USER, "pods"))
    hub = TriggerHub(kube, redis=None, namespaces=["team"])  # type: ignore[arg-type]
    record = indexed("demo", **POD_TRIGGER)["team/demo"]
    await hub.check(record)
    [key] = hub._subscribed
    assert key.path == "api/v1/namespaces/team/pods"
    assert WatchKey("apps", "v1", "deployments", None).path == "apis/apps/v1/deployments"


@pytest.mark.asyncio
async def test_an_api_server_that_does_not_answer_holds_the_stack_until_the_next_check() -> None:
    kube = FakeKube()
    kube.granted.add(("team", USER, "pods"))
    hub = TriggerHub(kube, redis=None)  # type: ignore[arg-type]
    record = indexed("demo", **POD_TRIGGER)["team/demo"]

    async def down(*_args: object, **_kwargs: object) -> bool:
        raise ConnectionError("connection refused")

    kube.may_list_and_watch = down  # type: ignore[method-assign]
    assert [e.reason for e in await hub.check(record)] == ["TriggerNotAllowed"]
    assert record.forbidden_triggers == [
        "trigger t: its access could not be checked yet (connection refused)"
    ]
    del kube.may_list_and_watch  # the API server is back
    assert [e.reason for e in await hub.check(record)] == ["TriggersAllowed"]
    assert record.should_tick


@pytest.mark.asyncio
async def test_stacks_new_to_a_running_watch_share_one_list_of_their_namespace() -> None:
    """The running watch brings changes only: stacks that subscribe to it see what
    exists from a list of their namespace — one list for all that join together, and
    none at a recheck of a subscription they had."""
    kube = FakeKube()
    kube.granted.add(("team", USER, "pods"))
    hub = TriggerHub(kube, redis=None)  # type: ignore[arg-type]
    running = asyncio.get_running_loop().create_future()
    hub._watches[WatchKey("", "v1", "pods", None)] = running  # type: ignore[assignment]
    listed: list[str] = []
    original = kube.list_objects

    async def counting(path: str) -> dict[str, Any]:
        listed.append(path)
        return await original(path)

    kube.list_objects = counting  # type: ignore[method-assign]
    index = indexed(*(f"s{i}" for i in range(50)), **POD_TRIGGER)
    for record in index.values():
        await hub.check(record)

    async def replayed() -> bool | None:
        return True if listed and not hub._replays else None

    await eventually_async(replayed, "the namespace's list", timeout=10)
    for record in index.values():  # a recheck: nothing new to list
        await hub.check(record)
    assert hub._replays == {}
    assert listed == ["api/v1/namespaces/team/pods"]
    running.cancel()
