"""Label selectors and CEL conditions of triggers, on objects as the API server serves them."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentstack_core.matching import SHOWN_VALUE_CHARS, Condition, ConditionError, label_selector

CRASHING = (
    "object.status.containerStatuses.exists(c, has(c.state.waiting) && "
    "c.state.waiting.reason == 'CrashLoopBackOff')"
)


def pod(reason: str | None = None, **labels: str) -> dict[str, Any]:
    state = {"waiting": {"reason": reason}} if reason else {"running": {}}
    return {
        "kind": "Pod",
        "metadata": {"name": "web-1", "labels": labels},
        "status": {"phase": "Running", "containerStatuses": [{"name": "app", "state": state}]},
    }


def test_a_condition_holds_only_where_it_is_true() -> None:
    condition = Condition(CRASHING)
    assert condition.holds(pod("CrashLoopBackOff"))
    assert not condition.holds(pod("ContainerCreating"))
    assert not condition.holds(pod())


def test_a_condition_that_cannot_be_evaluated_on_an_object_is_false() -> None:
    condition = Condition("object.status.readyReplicas < object.spec.replicas")
    assert condition.holds({"spec": {"replicas": 3}, "status": {"readyReplicas": 1}})
    assert not condition.holds({"spec": {"replicas": 3}, "status": {}})  # absent field
    assert not Condition("object.spec.replicas").holds({"spec": {"replicas": 3}})  # not a bool
    assert not Condition("object.spec.replicas + 'x' == 1").holds({"spec": {"replicas": 3}})


def test_the_empty_condition_always_holds_and_a_bad_one_is_refused() -> None:
    assert Condition("").holds({})
    with pytest.raises(ConditionError, match="Syntax error"):
        Condition("object.status.")


def test_what_a_condition_read_is_shown_cut() -> None:
    condition = Condition(CRASHING + " && object.metadata.labels.app == 'web'")
    shown = condition.shown(pod("CrashLoopBackOff", app="web"))
    assert list(shown) == ["status.containerStatuses", "metadata.labels.app"]
    assert '"CrashLoopBackOff"' in shown["status.containerStatuses"]
    assert shown["metadata.labels.app"] == '"web"'
    big = {"status": {"containerStatuses": [{"name": "x" * 1000}]}}
    assert len(condition.shown(big)["status.containerStatuses"]) == SHOWN_VALUE_CHARS


def test_a_selector_as_a_deployment_writes_it() -> None:
    selector = label_selector(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "NotIn", "values": ["b"]},
                {"key": "team", "operator": "Exists"},
            ],
        }
    )
    base = {"app": "web", "tier": "front", "team": "a"}
    assert selector.selects(base)
    assert selector.selects({**base, "zone": "a"})
    assert not selector.selects({**base, "zone": "b"})
    assert not selector.selects({**base, "canary": "1"})
    assert not selector.selects({**base, "tier": "back"})
    assert not selector.selects({"app": "web", "tier": "front"})  # no team
    assert not selector.selects({**base, "app": "api"})


@given(st.dictionaries(st.sampled_from("abcd"), st.sampled_from("xyz"), max_size=4))
def test_the_empty_selector_selects_everything(labels: dict[str, str]) -> None:
    assert label_selector(None).selects(labels)
    assert label_selector({}).selects(labels)
