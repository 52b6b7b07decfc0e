"""A fork's manifest: the source's spec shadowed, overrides applied, its origin noted."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentstack_core.forking import (
    FORKED_FROM,
    MIRROR_OF,
    ForkError,
    fork_manifest,
    forked_from,
    parse_override,
)

SOURCE: dict[str, Any] = {
    "apiVersion": "agentstack.dev/v1alpha1",
    "kind": "AgentStack",
    "metadata": {"name": "writer", "namespace": "team-a", "uid": "u1", "resourceVersion": "7"},
    "spec": {
        "goal": "Write release notes",
        "agents": [{"name": "planner", "role": "planner"}, {"name": "builder", "role": "builder"}],
        "tools": {
            "servers": [
                {
                    "name": "kb",
                    "url": "http://kb",
                    "allowedTools": ["*"],
                    "requireApprovalFor": ["x"],
                },
                {"name": "gh", "url": "http://gh", "allowedTools": ["read"]},
            ]
        },
        "webhooks": [{"name": "github", "secretRef": {"name": "hooks", "key": "github"}}],
        "triggers": [{"name": "crash", "event": {"reasons": ["BackOff"]}}],
        "executionState": "Running",
    },
    "status": {"ticks": 40},
}


def test_a_fork_is_shadowed_and_says_where_it_came_from() -> None:
    made = fork_manifest(SOURCE, namespace="team-b", name="writer-try", tick="team-a/writer/40")
    assert made["metadata"] == {
        "name": "writer-try",
        "namespace": "team-b",
        "annotations": {FORKED_FROM: "team-a/writer@team-a/writer/40"},
    }
    spec = made["spec"]
    assert "webhooks" not in spec
    assert "triggers" not in spec
    servers = spec["tools"]["servers"]
    assert [server["requireApproval"] for server in servers] == [True, True]
    assert all("requireApprovalFor" not in server for server in servers)
    assert spec["executionState"] == "Paused"
    assert "status" not in made
    assert SOURCE["spec"]["tools"]["servers"][0].get("requireApproval") is None  # untouched
    assert forked_from(made["metadata"]["annotations"]) == ("team-a/writer", "team-a/writer/40")


def test_a_mirror_names_its_source() -> None:
    made = fork_manifest(SOURCE, namespace="team-a", name="m", tick="t", mirror=True)
    assert made["metadata"]["annotations"][MIRROR_OF] == "team-a/writer"


def test_overrides_set_any_field_json_or_text() -> None:
    made = fork_manifest(
        SOURCE,
        namespace="team-a",
        name="f",
        tick="t",
        overrides=[
            "spec.agents[1].systemPrompt=Be terse. Really=terse.",
            'spec.llm.model={"provider": "groq", "name": "llama-3.3-70b-versatile"}',
            "spec.tickIntervalSeconds=30",
            "spec.budget.maxTokens=5000",
        ],
    )
    spec = made["spec"]
    assert spec["agents"][1]["systemPrompt"] == "Be terse. Really=terse."
    assert spec["llm"]["model"] == {"provider": "groq", "name": "llama-3.3-70b-versatile"}
    assert spec["tickIntervalSeconds"] == 30
    assert spec["budget"] == {"maxTokens": 5000}


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("goal=x", "starts with spec."),
        ("spec.goal", "PATH=VALUE"),
        ("spec.agents[9].name=x", "no item 9"),
        ("spec.goal.deeper=x", "not below an object"),
        ("spec.a-b=x", "not a field name"),
        ("metadata.name=x", "starts with spec."),
    ],
)
def test_bad_overrides_say_why(override: str, says: str) -> None:
    with pytest.raises(ForkError, match=says):
        fork_manifest(SOURCE, namespace="n", name="f", tick="t", overrides=[override])


@given(st.text(max_size=50), st.sampled_from(["goal", "agents[0].systemPrompt", "x.y"]))
def test_any_text_value_lands_as_given_or_as_its_json(value: str, path: str) -> None:
    steps, parsed = parse_override(f"spec.{path}={value}")
    assert steps[0] in ("goal", "agents", "x")
    try:
        assert parsed == json.loads(value)
    except ValueError:
        assert parsed == value


def test_annotations_that_are_not_a_fork() -> None:
    assert forked_from(None) is None
    assert forked_from({FORKED_FROM: "no-tick"}) is None
    assert forked_from({"other": "x"}) is None
