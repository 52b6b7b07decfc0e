"""The CRDs (AgentStack, AgentBudget) as the API server enforces them: examples pass,
nonsense is refused."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentstack_devkit.controlplane import ControlPlane
from tests.conftest import CRD_FILE

REPO = CRD_FILE.parents[1]

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
CRD_FILES = sorted((REPO / "crds").glob("*.yaml"))
VALID: dict[str, Any] = {
    "apiVersion": "agentstack.dev/v1alpha1",
    "kind": "AgentStack",
    "metadata": {"name": "probe"},
    "spec": {"goal": "Say hello", "tickIntervalSeconds": 5},
}


def _apply(
    control_plane: ControlPlane, namespace: str, manifest: dict[str, Any], tmp: Path
) -> subprocess.CompletedProcess[str]:
    path = tmp / "manifest.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return control_plane.kubectl("apply", "-n", namespace, "-f", str(path))


def _with(change: dict[str, Any]) -> dict[str, Any]:
    manifest = copy.deepcopy(VALID)
    manifest["spec"].update(change)
    return manifest


@pytest.mark.parametrize("crd_file", CRD_FILES, ids=[path.name for path in CRD_FILES])
def test_every_schema_property_has_a_description(crd_file: Path) -> None:
    schema = yaml.safe_load(crd_file.read_text())["spec"]["versions"][0]["schema"]
    missing: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        for name, child in (node.get("properties") or {}).items():
            here = f"{path}.{name}"
            if name != "metadata" and not child.get("description"):
                missing.append(here)
            walk(child, here)
        if "items" in node:
            walk(node["items"], f"{path}[]")

    walk(schema["openAPIV3Schema"], "")
    assert missing == []


@pytest.mark.parametrize("example", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_examples_apply_as_they_are(
    control_plane: ControlPlane, crd: str, namespace: str, example: Path
) -> None:
    result = control_plane.kubectl("apply", "-n", namespace, "-f", str(example))
    assert result.returncode == 0, result.stderr
    ours = [
        doc
        for doc in yaml.safe_load_all(example.read_text())
        if doc and doc["apiVersion"].startswith("agentstack.dev/")
    ]
    assert ours
    for doc in ours:
        assert f"{doc['kind'].lower()}.agentstack.dev/{doc['metadata']['name']}" in result.stdout


def test_defaults_are_filled_in_by_the_api_server(
    control_plane: ControlPlane, crd: str, namespace: str, tmp_path: Path
) -> None:
    assert _apply(control_plane, namespace, VALID, tmp_path).returncode == 0
    got = control_plane.kubectl("get", "ags", "probe", "-n", namespace, "-o", "yaml")
    spec = yaml.safe_load(got.stdout)["spec"]
    assert spec["executionState"] == "Running"
    assert spec["executor"] == "pool"
    assert spec["priority"] == "Normal"
    assert spec["missedTickPolicy"] == "Skip"
    assert spec["tickTimeoutSeconds"] == 120


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"executionState": "Sleeping"}, 'Unsupported value: "Sleeping"'),
        ({"tickIntervalSeconds": 0.5}, "should be greater than or equal to 1"),
        ({"tickIntervalSeconds": 100000}, "should be less than or equal to 86400"),
        ({"goal": None}, "spec.goal: Required value"),
        ({"goal": "   "}, "goal must not be blank"),
        (
            {"idleBackoff": {"maxIntervalSeconds": 2}},
            "idleBackoff.maxIntervalSeconds must be at least tickIntervalSeconds",
        ),
        ({"executor": "job", "tickIntervalSeconds": 2}, "needs tickIntervalSeconds of at least 5"),
        (
            {"agents": [{"name": "poet", "role": "poet"}]},
            "needs a systemPrompt",
        ),
        (
            {"agents": [{"name": "planner"}, {"name": "planner"}]},
            "Duplicate value",
        ),
        ({"agents": [{"name": "Not_A_Label"}]}, "spec.agents[0].name"),
        (
            {"llm": {"providers": {"groq": {"apiKey": "gsk-inline"}}}},
            'unknown field "spec.llm.providers.groq.apiKey"',
        ),
        ({"llm": {"model": {"provider": "anthropic"}}}, 'Unsupported value: "anthropic"'),
        (
            {"memory": {"embeddings": {"provider": "scripted", "model": "m"}}},
            'spec.memory.embeddings.provider: Unsupported value: "scripted"',
        ),
        ({"memory": {"embeddings": {"provider": "openai"}}}, "spec.memory.embeddings.model"),
        (
            {"evals": [{"name": "both", "artifacts": "*.md", "toolSuccess": True}]},
            "an eval scores artifacts (artifacts and at least one check) or",
        ),
        ({"evals": [{"name": "no-check", "artifacts": "*.md"}]}, "an eval scores artifacts"),
        ({"evals": [{"name": "Bad_Name", "toolSuccess": True}]}, "spec.evals[0].name"),
    ],
    ids=[
        "bad-enum",
        "interval-too-small",
        "interval-too-large",
        "missing-goal",
        "blank-goal",
        "cel-idle-backoff",
        "cel-job-interval",
        "cel-custom-role",
        "duplicate-agents",
        "agent-name",
        "inline-key",
        "unknown-provider",
        "embeddings-offline",
        "embeddings-model",
        "eval-both",
        "eval-no-check",
        "eval-name",
    ],
)
def test_invalid_manifests_are_rejected_with_the_schema_message(
    control_plane: ControlPlane,
    crd: str,
    namespace: str,
    tmp_path: Path,
    change: dict[str, Any],
    message: str,
) -> None:
    manifest = _with(change)
    manifest["spec"] = {k: v for k, v in manifest["spec"].items() if v is not None}
    result = _apply(control_plane, namespace, manifest, tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "probe" not in control_plane.kubectl("get", "ags", "-n", namespace).stdout


def test_printer_columns_and_explain_teach_the_api(
    control_plane: ControlPlane, crd: str, namespace: str, tmp_path: Path
) -> None:
    assert _apply(control_plane, namespace, VALID, tmp_path).returncode == 0
    narrow = control_plane.kubectl("get", "ags", "-n", namespace).stdout.splitlines()[0]
    assert narrow.split() == ["NAME", "STATE", "READY", "TICKS", "LAST", "TICK", "AGE", "SCHEDULE"]
    wide = control_plane.kubectl("get", "agentstacks", "-n", namespace, "-o", "wide").stdout
    for column in ("PHASE", "INTERVAL", "EXECUTOR", "RESULT", "FAILURES", "TOKENS", "NEXT TICK"):
        assert column in wide.splitlines()[0]
    explained = control_plane.kubectl("explain", "ags.spec.executionState")
    assert explained.returncode == 0, explained.stderr
    assert "resumes without replaying missed ticks" in " ".join(explained.stdout.split())


BUDGET: dict[str, Any] = {
    "apiVersion": "agentstack.dev/v1alpha1",
    "kind": "AgentBudget",
    "metadata": {"name": "probe"},
    "spec": {"maxCostUSD": 5},
}


def test_a_budget_gets_its_defaults_from_the_api_server(
    control_plane: ControlPlane, crd: str, namespace: str, tmp_path: Path
) -> None:
    manifest = copy.deepcopy(BUDGET)
    manifest["spec"].update({"window": {"calendar": "Day"}, "thresholds": {"warnPercent": 50}})
    assert _apply(control_plane, namespace, manifest, tmp_path).returncode == 0
    got = control_plane.kubectl("get", "agb", "probe", "-n", namespace, "-o", "yaml")
    spec = yaml.safe_load(got.stdout)["spec"]
    assert spec["window"] == {"calendar": "Day", "timeZone": "UTC"}
    assert spec["thresholds"] == {"warnPercent": 50, "throttlePercent": 90, "throttleFactor": 2}


def test_a_weight_alone_is_a_budget(
    control_plane: ControlPlane, crd: str, namespace: str, tmp_path: Path
) -> None:
    manifest = copy.deepcopy(BUDGET)
    manifest["spec"] = {"fairShare": {"weight": 3}}
    result = _apply(control_plane, namespace, manifest, tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"window": {"calendar": "Day"}}, "set maxCostUSD, maxTokens, quota or fairShare"),
        ({"fairShare": {"weight": 0}}, "should be greater than or equal to 1"),
        ({"fairShare": {"weight": 1001}}, "should be less than or equal to 1000"),
        ({"fairShare": {}}, "weight: Required value"),
        ({"quota": {"maxTicksPerSecond": 0}}, "should be greater than 0"),
        ({"maxCostUSD": -1}, "should be greater than or equal to 0"),
        ({"maxTokens": 5, "window": {"calendar": "Year"}}, "Unsupported value"),
        ({"maxTokens": 5, "window": {"calendar": "Day", "seconds": 60}}, "not both"),
        ({"maxTokens": 5, "window": {"seconds": 5}}, "greater than or equal to 30"),
        (
            {"maxTokens": 5, "thresholds": {"warnPercent": 95, "throttlePercent": 90}},
            "warnPercent must not be above throttlePercent",
        ),
        ({"maxTokens": 5, "thresholds": {"throttleFactor": 0.5}}, "greater than or equal to 1"),
    ],
)
def test_a_budget_the_operator_could_not_keep_is_refused_at_admission(
    control_plane: ControlPlane,
    crd: str,
    namespace: str,
    tmp_path: Path,
    spec: dict[str, Any],
    message: str,
) -> None:
    manifest = copy.deepcopy(BUDGET)
    manifest["spec"] = spec
    result = _apply(control_plane, namespace, manifest, tmp_path)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
