"""The Helm chart ``charts/agentstack-operator``, with the pinned helm and the real cluster.

Every test drives the built helm binary (``helm_binary()``) with its own cache, config
and data directories. Rendering is checked by the API server itself (server-side dry
run with strict field validation; the ServiceMonitors and PrometheusRule against
stand-ins for prometheus-operator's CRDs), alerts and dashboards by promtool,
installing by reading back what the release created, and RBAC by SubjectAccessReviews —
and, in one test, by running the real operator, runner and API processes with the
chart's environment and its ServiceAccounts' own tokens. There is no kubelet: the
Deployments' pods stay Pending, so nothing waits for them to run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import re
import secrets
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from agentstack_core import protocol
from agentstack_core.approvals import Approval, ApprovalState
from agentstack_core.keys import FleetKeys, StackKeys, StackRef
from agentstack_core.kube.jobs import Job
from agentstack_core.spec import Priority
from agentstack_devkit.controlplane import ControlPlane, build_kubeconfig
from agentstack_devkit.dashboards.promql import panels, substitute
from agentstack_devkit.fakellm import FakeLLMServer, credential_digest
from agentstack_devkit.fleet import Fleet
from agentstack_devkit.helm import ChartSource, Helm, apply_chart_crds
from agentstack_devkit.redisserver import RedisServer
from tests.e2e.stacks import Stacks
from tests.helpers import bind_service_account, eventually, gone, operator_kube, waiting_approval

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "agentstack-operator"
CRD_FILE = REPO / "crds" / "agentstack.dev_agentstacks.yaml"
METRICS_DOC = REPO / "docs" / "metrics.md"
PROMTOOL = "/usr/bin/promtool"

STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)
SELECTOR_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance")
DASHBOARD_UIDS = {"agentstack-fleet", "agentstack-namespace", "agentstack-stack"}
POOL_KEY = "sk-pool-default"  # the runners' own key (llm.existingSecret) in chart_fleet


# -- helm ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    # No node: the chart's hook Jobs would never run (uninstall skips them).
    return Helm(tmp_path_factory.mktemp("helm"), control_plane.kubeconfig_path, pods_run=False)


CLUSTER_SCOPED = {
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
}
"""The kinds the chart renders without a namespace."""


def _sets(values: dict[str, str]) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def _kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def _by_name(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in _kind(objects, kind)}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env") or []}


def _plain_env(container: dict[str, Any]) -> dict[str, str]:
    """Literal values only (the API server omits an empty ``value``)."""
    return {
        item["name"]: item.get("value", "")
        for item in container.get("env") or []
        if "valueFrom" not in item
    }


# -- metrics of docs/metrics.md and PromQL ---------------------------------------------------


def _documented_metrics() -> dict[str, str]:
    """Metric name → type, from the table of docs/metrics.md."""
    rows = re.findall(r"^\| `(agentstack_\w+)` \| (\w+) \|", METRICS_DOC.read_text(), re.M)
    assert rows, "no metrics table in docs/metrics.md"
    return dict(rows)


def _series_names(documented: dict[str, str]) -> set[str]:
    """The series names the documented metrics expose (histograms as _bucket/_sum/_count)."""
    names = set()
    for name, kind in documented.items():
        if kind == "histogram":
            names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(name)
    return names


_PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "bool", "offset"}
_PROMQL_WORDS |= {"group_left", "group_right", "inf", "nan"}


def _metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, labels and keywords removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^{}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\[\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][\w:]*", text):
        word = match.group(0)
        after = text[match.end() :].lstrip()
        if word.lower() in _PROMQL_WORDS or after.startswith("("):
            continue  # a keyword or a function call
        if re.fullmatch(r"\d+[smhdwy]", word) or word.startswith("$"):
            continue
        names.add(word)
    return names


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd
    )


# -- Kubernetes access checks -------------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    verb: str
    resource: str
    namespace: str = ""
    group: str = ""
    subresource: str = ""
    name: str = ""

    def __str__(self) -> str:
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        where = f" in {self.namespace}" if self.namespace else " cluster-wide"
        named = f" {self.name!r}" if self.name else ""
        return f"{self.verb} {resource}.{self.group or 'core'}{named}{where}"


def _allowed(api: client.ApiClient, user: str, groups: list[str], access: Access) -> bool:
    review = client.AuthorizationV1Api(api).create_subject_access_review(
        client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=user,
                groups=groups,
                resource_attributes=client.V1ResourceAttributes(
                    verb=access.verb,
                    group=access.group,
                    resource=access.resource,
                    subresource=access.subresource or None,
                    namespace=access.namespace or None,
                    name=access.name or None,
                ),
            )
        )
    )
    return bool(review.status.allowed)


def _account(namespace: str, name: str) -> tuple[str, list[str]]:
    user = f"system:serviceaccount:{namespace}:{name}"
    return user, [
        "system:serviceaccounts",
        f"system:serviceaccounts:{namespace}",
        "system:authenticated",
    ]


def _check_access(
    api: client.ApiClient,
    subject: tuple[str, list[str]],
    allowed: list[Access],
    denied: list[Access],
) -> None:
    """``allowed`` are granted (waiting for RBAC's caches to see new bindings), ``denied`` not."""
    user, groups = subject
    for access in allowed:
        eventually(
            lambda access=access: True if _allowed(api, user, groups, access) else None,
            f"{user} to be allowed to {access}",
            timeout=30,
        )
    refused = [str(access) for access in denied if _allowed(api, user, groups, access)]
    assert not refused, f"{user} may do more than it needs: {refused}"


def _can_i(
    control_plane: ControlPlane, user: str, verb: str, resource: str, namespace: str = ""
) -> bool:
    """``kubectl auth can-i --as=<user>`` (``-n namespace``, else all namespaces)."""
    where = ["-n", namespace] if namespace else ["--all-namespaces"]
    answer = control_plane.kubectl("auth", "can-i", f"--as={user}", verb, resource, *where)
    word = answer.stdout.strip().split(" ", 1)[0]
    assert word in {"yes", "no"}, answer.stdout + answer.stderr
    return word == "yes"


def _secret_access(
    control_plane: ControlPlane, user: str, allowed: list[str], denied: list[str]
) -> None:
    """``user`` may ``get secrets`` in the ``allowed`` namespaces (waiting for RBAC's caches),
    in no ``denied`` one, and never list, watch or change a Secret anywhere."""
    for where in allowed:
        eventually(
            lambda where=where: (
                True if _can_i(control_plane, user, "get", "secrets", where) else None
            ),
            f"{user} to be allowed to get secrets in {where}",
            timeout=30,
        )
    # `get` in all namespaces is what an empty watchNamespaces grants: not checked there.
    checks = [
        (verb, where)
        for where in [*allowed, *denied, ""]
        for verb in ("get", "list", "watch", "create", "update", "patch", "delete")
        if verb != "get" or where in denied
    ]
    refused = [
        f"{verb} secrets in {where or 'all namespaces'}"
        for verb, where in checks
        if _can_i(control_plane, user, verb, "secrets", where)
    ]
    assert not refused, f"{user} may do more than it needs: {refused}"


def _token(api: client.ApiClient, namespace: str, account: str) -> str:
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    created = client.CoreV1Api(api).create_namespaced_service_account_token(
        account, namespace, request
    )
    return str(created.status.token)


def _create_namespace(api: client.ApiClient, prefix: str) -> str:
    name = f"{prefix}-{secrets.token_hex(4)}"
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
    )
    return name


def _delete_namespace(api: client.ApiClient, name: str) -> None:
    try:
        client.CoreV1Api(api).delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


# == the chart's files ===========================================================================


def test_the_chart_crds_are_the_repository_crds(helm: Helm, tmp_path: Path) -> None:
    """One source of truth: relative symlinks, which helm follows when rendering and
    packaging — one per file of ``crds/`` (AgentStack, AgentBudget)."""
    files = sorted((REPO / "crds").glob("*.yaml"))
    assert [f.name for f in files] == [
        "agentstack.dev_agentbudgets.yaml",
        "agentstack.dev_agentstacks.yaml",
    ]
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == [f.name for f in files]
    for crd_file in files:
        link = CHART / "crds" / crd_file.name
        assert link.is_symlink()
        assert os.readlink(link) == f"../../../crds/{crd_file.name}"
        assert link.resolve() == crd_file.resolve()

    rendered = helm.template("--include-crds")
    crds = _kind(rendered, "CustomResourceDefinition")
    assert sorted(crds, key=lambda c: c["metadata"]["name"]) == [
        yaml.safe_load(f.read_text()) for f in files
    ]

    packaged = helm.run("package", str(CHART), "--destination", str(tmp_path))
    assert packaged.returncode == 0, packaged.stderr
    with tarfile.open(tmp_path / "agentstack-operator-0.1.0.tgz") as archive:
        for crd_file in files:
            member = archive.getmember(f"agentstack-operator/crds/{crd_file.name}")
            assert member.isfile()  # the link's content, not a link
            extracted = archive.extractfile(member)
            assert extracted is not None
            assert extracted.read() == crd_file.read_bytes()


def _printer_columns(control_plane: ControlPlane) -> list[str]:
    shown = control_plane.kubectl(
        "get",
        "crd",
        "agentstacks.agentstack.dev",
        "-o",
        "jsonpath={.spec.versions[0].additionalPrinterColumns[*].name}",
    )
    assert shown.returncode == 0, shown.stderr
    return shown.stdout.split()


def test_crd_upgrade_path_is_the_documented_one(
    helm: Helm, control_plane: ControlPlane, crd: str, namespace: str, tmp_path: Path
) -> None:
    """``helm upgrade`` leaves a changed CRD alone; the chart README's command (``helm
    show crds … | kubectl apply --server-side --force-conflicts``) applies it; ``helm
    uninstall`` keeps it (deleting it would delete every stack)."""
    newer = tmp_path / "agentstack-operator"
    shutil.copytree(CHART, newer, symlinks=False)
    crd_file = newer / "crds" / "agentstack.dev_agentstacks.yaml"
    changed = yaml.safe_load(crd_file.read_text())
    changed["spec"]["versions"][0]["additionalPrinterColumns"].append(
        {"name": "Upgraded", "type": "string", "jsonPath": ".spec.goal"}
    )
    crd_file.write_text(yaml.safe_dump(changed, sort_keys=False))
    before = _printer_columns(control_plane)
    assert "Upgraded" not in before

    release = f"crd-{secrets.token_hex(3)}"
    helm.install(release, namespace)
    try:
        upgraded = helm.run("upgrade", release, str(newer), "--namespace", namespace)
        assert upgraded.returncode == 0, upgraded.stderr
        assert _printer_columns(control_plane) == before  # helm upgrade skipped crds/

        apply_chart_crds(helm, control_plane, ChartSource(str(newer)))
        assert _printer_columns(control_plane) == [*before, "Upgraded"]

        uninstalled = helm.uninstall(release, namespace)
        assert uninstalled.returncode == 0, uninstalled.stderr
        assert _printer_columns(control_plane) == [*before, "Upgraded"]  # still there
    finally:
        helm.uninstall(release, namespace)
        restored = control_plane.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE)
        )
        assert restored.returncode == 0, restored.stderr
    assert _printer_columns(control_plane) == before


def test_the_api_server_refuses_a_stack_faster_than_its_namespace_quota(
    helm: Helm, k8s_api: client.ApiClient, crd: str, namespace: str
) -> None:
    """The chart's ValidatingAdmissionPolicy reads the namespace's AgentBudget as its
    parameter: a stack that alone asks for more ticks per second is refused by the API
    server; one within the quota, and any stack of a namespace without a budget, pass."""
    custom = client.CustomObjectsApi(k8s_api)
    release = f"vap-{secrets.token_hex(3)}"
    tenant = _create_namespace(k8s_api, "quota")
    free = _create_namespace(k8s_api, "free")

    def stack(where: str, name: str, interval: float) -> None:
        custom.create_namespaced_custom_object(
            "agentstack.dev",
            "v1alpha1",
            where,
            "agentstacks",
            {
                "apiVersion": "agentstack.dev/v1alpha1",
                "kind": "AgentStack",
                "metadata": {"name": name},
                "spec": {"goal": "g", "tickIntervalSeconds": interval},
            },
        )

    def refused(name: str) -> str | None:
        try:
            stack(tenant, name, 1)
        except ApiException as exc:
            return str(exc.body) if exc.status == 403 else None
        custom.delete_namespaced_custom_object(
            "agentstack.dev", "v1alpha1", tenant, "agentstacks", name
        )
        return None  # the policy is not in force yet: try again

    helm.install(release, namespace)
    try:
        custom.create_namespaced_custom_object(
            "agentstack.dev",
            "v1alpha1",
            tenant,
            "agentbudgets",
            {
                "apiVersion": "agentstack.dev/v1alpha1",
                "kind": "AgentBudget",
                "metadata": {"name": "rate"},
                "spec": {"quota": {"maxTicksPerSecond": 0.5}},
            },
        )
        body = eventually(lambda: refused("too-fast"), "the policy to refuse a fast stack")
        assert "AgentBudget rate allows the namespace 0.5 ticks per second" in body, body
        assert "a stack ticking every 1 s asks for more on its own" in body, body
        stack(tenant, "within", 2)
        stack(free, "anything", 1)
    finally:
        helm.uninstall(release, namespace)
        _delete_namespace(k8s_api, tenant)
        _delete_namespace(k8s_api, free)


def test_values_are_documented_key_by_key_and_closed_by_the_schema() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = [
        f"{number}: {line.strip()}"
        for number, line in enumerate(lines, start=1)
        if re.match(r"^\s*[A-Za-z_][\w-]*:", line) and not lines[number - 2].strip().startswith("#")
    ]
    assert not undocumented, f"values.yaml keys without a comment above them: {undocumented}"

    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    open_objects = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if "properties" in node and node.get("additionalProperties") is not False:
                open_objects.append(path)
            for key, value in node.items():
                walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}/{index}")

    walk(schema, "#")
    assert not open_objects, f"objects of the schema that accept unknown keys: {open_objects}"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) == set(schema["properties"]) == set(schema["required"])


def test_helm_lint_strict_passes(helm: Helm) -> None:
    for extra in (
        [],
        _sets(
            {
                "metrics.serviceMonitor.enabled": "true",
                "metrics.prometheusRule.enabled": "true",
                "llm.existingSecret": "llm-keys",
                "redis.existingSecret": "redis",
                "runner.secretCacheSeconds": "5",
                "watchNamespaces[0]": "team-a",
                "api.auth": "none",
            }
        ),
        _sets({"runner.credentials": "env", "llm.existingSecret": "llm-keys"}),
    ):
        linted = helm.run("lint", "--strict", str(CHART), *extra)
        assert linted.returncode == 0, linted.stdout + linted.stderr
        assert "1 chart(s) linted, 0 chart(s) failed" in linted.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "runner.replicas=-1"], "at '/runner/replicas': minimum: got -1, want 0"),
        (["--set", "bogus=1"], "additional properties 'bogus' not allowed"),
        (["--set", "operator.replica=3"], "additional properties 'replica' not allowed"),
        (["--set", "api.auth=maybe"], "at '/api/auth': value must be one of 'kubernetes', 'none'"),
        (["--set", "operator.metricsPort=70000"], "at '/operator/metricsPort': maximum"),
        (["--set", "redis.url=http://redis:6379"], "at '/redis/url'"),
        (["--set", "redis.cluster=maybe"], "at '/redis/cluster'"),
        (["--set", "watchNamespaces[0]=Team_A"], "at '/watchNamespaces/0'"),
        (["--set", "metrics.prometheusRule.failedTickRatio=2"], "failedTickRatio': maximum"),
        (["--set", "image.pullPolicy=Sometimes"], "at '/image/pullPolicy'"),
        (["--set", "llm.allowedBaseURLs[0]=ftp://x"], "at '/llm/allowedBaseURLs/0'"),
        # Removed: it handed the platform's Redis password to every tenant.
        (
            ["--set", "operator.jobExecutor.redisSecretName=tick-redis"],
            "additional properties 'redisSecretName' not allowed",
        ),
        (
            ["--set", "operator.jobExecutor.credentialRotationSeconds=-1"],
            "credentialRotationSeconds': minimum",
        ),
        (
            ["--set", "runner.credentials=files"],
            "at '/runner/credentials': value must be one of 'kubernetes', 'env'",
        ),
        (["--set", "runner.secretCacheSeconds=-1"], "at '/runner/secretCacheSeconds': minimum"),
        (["--set", "runner.stackSecrets[0]=groq"], "additional properties 'stackSecrets'"),
        (["--set", "redis.url="], "redis.url or redis.existingSecret is required"),
        (["--set", "redis.sentinel.hosts[0]=sentinel"], "at '/redis/sentinel/hosts/0'"),
        (["--set", "redis.waitReplicas=-1"], "at '/redis/waitReplicas': minimum"),
        (["--set", "redis.waitTimeoutSeconds=0"], "at '/redis/waitTimeoutSeconds'"),
        (
            ["--set", "redis.cluster=true", "--set", "redis.sentinel.hosts[0]=sentinel:26379"],
            "redis.sentinel.hosts cannot be combined with redis.cluster",
        ),
        (
            ["--set", "redis.cluster=true", "--set", "redis.waitReplicas=1"],
            "redis.waitReplicas cannot be combined with redis.cluster",
        ),
        (
            [
                "--set",
                "runner.autoscaling.enabled=true",
                "--set",
                "runner.autoscaling.keda.enabled=true",
            ],
            "both scale the runners: choose one",
        ),
        (
            ["--set", "runner.autoscaling.keda.enabled=true"],
            "runner.autoscaling.keda.redisAddress (host:port) is required",
        ),
        (["--set", "runner.autoscaling.keda.redisAddress=redis"], "redisAddress"),
        (
            ["--set", "runner.terminationGracePeriodSeconds=35"],
            "runner.terminationGracePeriodSeconds (35) must exceed "
            "runner.drainTimeoutSeconds + 10 (40)",
        ),
    ],
)
def test_invalid_values_are_rejected(helm: Helm, args: list[str], message: str) -> None:
    rendered = helm.run("template", "ags", str(CHART), *args)
    assert rendered.returncode != 0, rendered.stdout[:500]
    assert message in rendered.stderr, rendered.stderr


def test_the_processes_can_reach_a_sentinel_managed_redis(helm: Helm) -> None:
    """redis.sentinel and redis.waitReplicas reach every process's environment; the
    Sentinels' password only as a Secret reference."""
    objects = helm.template(
        *_sets(
            {
                "redis.url": "redis://mymaster/0",
                "redis.existingPasswordSecret": "redis",
                "redis.sentinel.hosts[0]": "redis-node-0.redis-headless:26379",
                "redis.sentinel.hosts[1]": "redis-node-1.redis-headless:26379",
                "redis.sentinel.masterName": "agents",
                "redis.sentinel.existingPasswordSecret": "redis-sentinel",
                "redis.waitReplicas": "1",
                "redis.waitTimeoutSeconds": "0.25",
            }
        )
    )
    for name, deployment in _by_name(objects, "Deployment").items():
        env = _env(_container(deployment))
        assert env["REDIS_SENTINELS"]["value"] == (
            "redis-node-0.redis-headless:26379,redis-node-1.redis-headless:26379"
        ), name
        assert env["REDIS_SENTINEL_MASTER"]["value"] == "agents"
        assert env["REDIS_SENTINEL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "redis-sentinel",
            "key": "sentinel-password",
        }
        assert (
            env["REDIS_WAIT_REPLICAS"]["value"],
            env["REDIS_WAIT_TIMEOUT_SECONDS"]["value"],
        ) == (
            "1",
            "0.25",
        )


def test_a_new_chart_version_leaves_the_in_chart_redis_pod_as_it_was(helm: Helm) -> None:
    """Its pod template carries no version label: an upgrade or a rollback of the chart
    does not restart it (without persistence, a restart empties it)."""

    def redis_pod(version: str) -> dict[str, Any]:
        objects = helm.template(
            "--set", "redis.standalone.enabled=true", "--set", f"image.tag={version}"
        )
        (statefulset,) = _kind(objects, "StatefulSet")
        template: dict[str, Any] = statefulset["spec"]["template"]
        return template

    assert redis_pod("1.0.0") == redis_pod("2.0.0")
    assert "app.kubernetes.io/version" not in redis_pod("1.0.0")["metadata"]["labels"]


# == rendering, checked by the API server =========================================================


def _check_standard_labels(objects: list[dict[str, Any]], release: str) -> None:
    for obj in objects:
        labels = obj["metadata"].get("labels") or {}
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        missing = [label for label in STANDARD_LABELS if label not in labels]
        assert not missing, f"{where} lacks {missing}"
        assert labels["app.kubernetes.io/instance"] == release, where
        assert labels["app.kubernetes.io/managed-by"] == "Helm", where
        assert labels["helm.sh/chart"] == "agentstack-operator-0.1.0", where
        assert labels["app.kubernetes.io/version"] == "0.1.0", where


def _check_selectors(objects: list[dict[str, Any]]) -> None:
    """Selectors use the stable labels only, and each selects one workload's pods."""
    workloads = _kind(objects, "Deployment") + _kind(objects, "StatefulSet")
    for workload in workloads:
        selector = workload["spec"]["selector"]["matchLabels"]
        assert set(selector) == {*SELECTOR_LABELS, "app.kubernetes.io/component"}
        pod_labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
    selectors = [
        (f"Service/{s['metadata']['name']}", s["spec"]["selector"])
        for s in _kind(objects, "Service")
    ] + [
        (f"{o['kind']}/{o['metadata']['name']}", o["spec"][key]["matchLabels"])
        for kind, key in (("PodDisruptionBudget", "selector"), ("NetworkPolicy", "podSelector"))
        for o in _kind(objects, kind)
    ]
    for where, selector in selectors:
        assert "app.kubernetes.io/version" not in selector
        assert "helm.sh/chart" not in selector
        matched = [
            w
            for w in workloads
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matched) == 1, where


def _dry_run(control_plane: ControlPlane, objects: list[dict[str, Any]], path: Path) -> None:
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    applied = control_plane.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", str(path)
    )
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.count("(server dry run)") == len(objects), applied.stdout


def test_rendered_objects_are_labelled_and_accepted_by_the_api_server(
    helm: Helm, control_plane: ControlPlane, crd: str, namespace: str, tmp_path: Path
) -> None:
    variants = {
        "defaults": {},
        "everything": {
            "redis.existingSecret": "redis",
            "redis.existingPasswordSecret": "redis",
            "redis.cluster": "true",
            "llm.existingSecret": "llm-keys",
            "runner.secretCacheSeconds": "5",
            "watchNamespaces[0]": namespace,
            "api.corsOrigins[0]": "https://dash.example",
            "operator.jobExecutor.redisURL": "redis://redis.agentstack.svc:6379/0",
            "operator.jobExecutor.serviceAccountName": "tick-runner",
            "operator.nodeSelector.kubernetes\\.io/os": "linux",
            "runner.podAnnotations.team": "agents",
            "commonLabels.team": "agents",
            "image.digest": "sha256:" + "ab" * 32,
            "imagePullSecrets[0].name": "regcred",
            "llm.allowedBaseURLs[0]": "https://llm-gateway.example/v1",
            "llm.allowedBaseURLs[1]": "https://other.example",
            "operator.jobExecutor.credentialRotationSeconds": "3600",
            "operator.jobExecutor.resources.limits.memory": "1Gi",
            "rbac.userRoles.namePrefix": f"dry-{namespace}",
        },
        "no-api-no-auth": {"api.enabled": "false", "dashboards.enabled": "false"},
        "env-credentials": {"runner.credentials": "env", "llm.existingSecret": "llm-keys"},
        "in-chart-redis-and-policies": {
            "redis.standalone.enabled": "true",
            "redis.standalone.persistence.enabled": "true",
            "networkPolicy.enabled": "true",
            "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team": "monitoring",
            "runner.podDisruptionBudget.maxUnavailable": "50%",
            "api.podDisruptionBudget.enabled": "false",
        },
    }
    for variant, values in variants.items():
        objects = helm.template("--namespace", namespace, *_sets(values), release=f"r-{variant}")
        kinds = {obj["kind"] for obj in objects}
        assert {"Deployment", "Service", "ServiceAccount", "ClusterRole", "Role"} <= kinds
        assert "CustomResourceDefinition" not in kinds  # crds/ is not templated
        _check_standard_labels(objects, f"r-{variant}")
        _check_selectors(objects)
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                assert obj["metadata"]["namespace"] == namespace, obj["metadata"]["name"]
        _dry_run(control_plane, objects, tmp_path / f"{variant}.yaml")

    standalone = helm.template(
        "--namespace", namespace, *_sets(variants["in-chart-redis-and-policies"])
    )
    redis_name = "ags-agentstack-operator-redis"
    assert set(_by_name(standalone, "StatefulSet")) == {redis_name}
    assert set(_by_name(standalone, "Secret")) == {redis_name}
    budgets = _by_name(standalone, "PodDisruptionBudget")
    assert set(budgets) == {"ags-agentstack-operator-operator", "ags-agentstack-operator-runner"}
    assert budgets["ags-agentstack-operator-runner"]["spec"]["maxUnavailable"] == "50%"
    policies = _by_name(standalone, "NetworkPolicy")
    assert len(policies) == 4
    assert policies["ags-agentstack-operator-runner"]["spec"]["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}
    ]
    # The operator connects as the in-chart Redis's default user, the runners and the API
    # as users of their own, which the Redis makes from its arguments.
    own_users = {"operator": None, "runner": "agentstack-runner", "api": "agentstack-api"}
    for component, user in own_users.items():
        env = _env(
            _container(_by_name(standalone, "Deployment")[f"ags-agentstack-operator-{component}"])
        )
        assert env["REDIS_URL"]["value"] == f"redis://{redis_name}.{namespace}.svc:6379/0"
        assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": redis_name,
            "key": f"{component}-password" if user else "redis-password",
        }
        assert env.get("REDIS_USERNAME", {}).get("value") == user
        assert env["REDIS_PASSWORD_FILE"]["value"] == "/var/run/secrets/agentstack/redis/password"
    redis_secret = _by_name(standalone, "Secret")[redis_name]
    assert set(redis_secret["data"]) == {"redis-password", "runner-password", "api-password"}
    assert len(set(redis_secret["data"].values())) == 3
    made = _container(_by_name(standalone, "StatefulSet")[redis_name])["args"]
    assert made.count("--user") == 2
    assert ">$(RUNNER_PASSWORD)" in made
    assert ">$(API_PASSWORD)" in made

    everything = helm.template("--namespace", namespace, *_sets(variants["everything"]))
    deployments = _by_name(everything, "Deployment")
    operator = _env(_container(deployments["ags-agentstack-operator-operator"]))
    assert operator["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "redis",
        "key": "redis-url",
    }
    assert operator["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "redis"
    assert operator["AGENTSTACK_REDIS_CLUSTER"]["value"] == "true"
    assert operator["AGENTSTACK_WATCH_NAMESPACES"]["value"] == namespace
    assert operator["AGENTSTACK_JOB_REDIS_URL"]["value"] == "redis://redis.agentstack.svc:6379/0"
    assert operator["AGENTSTACK_RUNNER_SERVICE_ACCOUNT"]["value"] == "tick-runner"
    image = "agentstack-operator@sha256:" + "ab" * 32
    assert operator["AGENTSTACK_RUNNER_IMAGE"]["value"] == image
    allowed = "https://llm-gateway.example/v1,https://other.example"
    assert operator["AGENTSTACK_ALLOWED_BASE_URLS"]["value"] == allowed
    assert "AGENTSTACK_JOB_REDIS_SECRET" not in operator
    assert operator["AGENTSTACK_JOB_CREDENTIAL_ROTATION_SECONDS"]["value"] == "3600"
    # The tick pods' pull secrets default to the names of the chart's own.
    assert operator["AGENTSTACK_JOB_IMAGE_PULL_SECRETS"]["value"] == "regcred"
    assert json.loads(operator["AGENTSTACK_JOB_RESOURCES"]["value"]) == {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"memory": "1Gi"},
    }
    runner_deployment = deployments["ags-agentstack-operator-runner"]
    runner = _container(runner_deployment)
    runner_env = _env(runner)
    for key in ("GROQ_API_KEY", "OPENAI_API_KEY"):
        assert runner_env[key]["valueFrom"]["secretKeyRef"] == {
            "name": "llm-keys",
            "key": key,
            "optional": True,
        }
    # Pool runners read each stack's own Secret through the API: no Secret is mounted.
    assert runner_env["AGENTSTACK_RUNNER_CREDENTIALS"]["value"] == "kubernetes"
    assert runner_env["AGENTSTACK_RUNNER_SECRET_CACHE_SECONDS"]["value"] == "5"
    assert "AGENTSTACK_SECRETS_DIR" not in runner_env
    runner_pod = runner_deployment["spec"]["template"]["spec"]
    assert runner_pod["automountServiceAccountToken"] is True
    # No stack's Secret: only its Redis password (redis.existingPasswordSecret), as a file.
    assert [m["name"] for m in runner["volumeMounts"]] == ["tmp", "redis-password"]
    volumes = {v["name"]: v for v in runner_pod["volumes"]}
    assert set(volumes) == {"tmp", "redis-password"}
    assert volumes["redis-password"]["secret"] == {
        "secretName": "redis",
        "items": [{"key": "redis-password", "path": "password"}],
    }
    assert runner["image"] == image
    api = _env(_container(deployments["ags-agentstack-operator-api"]))
    assert api["AGENTSTACK_API_CORS_ORIGINS"]["value"] == "https://dash.example"
    assert runner_env["AGENTSTACK_ALLOWED_BASE_URLS"]["value"] == allowed
    own_pull_secrets = helm.template(
        *_sets(
            {
                "imagePullSecrets[0].name": "regcred",
                "operator.jobExecutor.imagePullSecrets[0]": "ticks",
            }
        )
    )
    own_operator = _env(
        _container(_by_name(own_pull_secrets, "Deployment")["ags-agentstack-operator-operator"])
    )
    assert own_operator["AGENTSTACK_JOB_IMAGE_PULL_SECRETS"]["value"] == "ticks"
    # watchNamespaces: namespaced permissions through RoleBindings there, not cluster-wide.
    bindings = _kind(everything, "ClusterRoleBinding")
    assert {b["metadata"]["name"] for b in bindings} == {
        "ags-agentstack-operator-operator-cluster",
        "ags-agentstack-operator-api-auth",
    }
    role_bindings = {
        (b["metadata"]["namespace"], b["metadata"]["name"])
        for b in _kind(everything, "RoleBinding")
    }
    assert role_bindings == {
        (namespace, "ags-agentstack-operator-operator"),
        (namespace, "ags-agentstack-operator-api"),
        (namespace, "ags-agentstack-operator-runner"),
        (namespace, "ags-agentstack-operator-api-webhooks"),
        (namespace, "ags-agentstack-operator-operator-leader-election"),
        # The pre-delete hook's (uninstall.stacks): the stacks where they are watched,
        # and stopping the operator in the release namespace.
        (namespace, "ags-agentstack-operator-uninstall"),
        (namespace, "ags-agentstack-operator-uninstall-stop"),
    }
    # The API may get Secrets by name too (a webhook's key), only with api.webhooks.
    webhooks_role = _by_name(everything, "ClusterRole")["ags-agentstack-operator-api-webhooks"]
    assert webhooks_role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
    ]
    no_webhooks = helm.template("--namespace", namespace, *_sets({"api.webhooks": "false"}))
    assert "ags-agentstack-operator-api-webhooks" not in _by_name(no_webhooks, "ClusterRole")
    assert (
        _env(_container(_by_name(no_webhooks, "Deployment")["ags-agentstack-operator-api"]))[
            "AGENTSTACK_API_WEBHOOKS"
        ]["value"]
        == "false"
    )
    # The runners may get Secrets by name (a stack's secretRef), never list or watch them.
    runner_role = _by_name(everything, "ClusterRole")["ags-agentstack-operator-runner"]
    assert runner_role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    runner_binding = _by_name(everything, "RoleBinding")["ags-agentstack-operator-runner"]
    assert runner_binding["roleRef"]["name"] == "ags-agentstack-operator-runner"
    assert runner_binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "ags-agentstack-operator-runner", "namespace": namespace}
    ]
    defaults = helm.template("--namespace", namespace)
    assert "ags-agentstack-operator-runner" in _by_name(defaults, "ClusterRoleBinding")
    assert not _by_name(defaults, "RoleBinding").keys() - {
        "ags-agentstack-operator-operator-leader-election",
        "ags-agentstack-operator-uninstall-stop",  # the hook's, in the release namespace
    }

    # credentials=env: the runners use only their own keys; no Secret access, no token.
    env_only = helm.template("--namespace", namespace, *_sets(variants["env-credentials"]))
    assert not [
        o
        for o in env_only
        if o["kind"] in {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
        and o["metadata"]["name"] == "ags-agentstack-operator-runner"
    ]
    env_runner = _by_name(env_only, "Deployment")["ags-agentstack-operator-runner"]
    assert _env(_container(env_runner))["AGENTSTACK_RUNNER_CREDENTIALS"]["value"] == "env"
    assert env_runner["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    env_account = _by_name(env_only, "ServiceAccount")["ags-agentstack-operator-runner"]
    assert env_account["automountServiceAccountToken"] is False

    without_api = helm.template(*_sets(variants["no-api-no-auth"]))
    assert not [o for o in without_api if o["metadata"]["name"].endswith("-api")]
    assert not _kind(without_api, "ConfigMap")


def test_long_release_names_stay_within_63_characters(helm: Helm) -> None:
    release = "a-very-long-release-name-that-goes-on-and-on-and-on-x"  # 53, helm's maximum
    objects = helm.template(release=release)
    for obj in objects:
        name = obj["metadata"]["name"]
        assert len(name) <= 63, name
        assert not name.endswith("-"), name
        for value in obj["metadata"]["labels"].values():
            assert len(value) <= 63, (name, value)
    overridden = helm.template("--set", "fullnameOverride=agentstack")
    names = {o["metadata"]["name"] for o in _kind(overridden, "Deployment")}
    assert names == {"agentstack-operator", "agentstack-runner", "agentstack-api"}


# == Prometheus and Grafana =======================================================================


def _rendered_rules(helm: Helm, namespace: str = "monitoring") -> dict[str, Any]:
    objects = helm.template(
        "--namespace", namespace, "--set", "metrics.prometheusRule.enabled=true"
    )
    (rule,) = _kind(objects, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    return dict(rule["spec"])


def test_prometheus_rules_pass_promtool_and_use_documented_metrics(
    helm: Helm, tmp_path: Path
) -> None:
    spec = _rendered_rules(helm)
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    checked = _promtool("check", "rules", str(rules_file), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 9 rules found" in checked.stdout, checked.stdout

    allowed = _series_names(_documented_metrics()) | {"up"}
    rules = [rule for group in spec["groups"] for rule in group["rules"]]
    for rule in rules:
        used = _metric_names(rule["expr"])
        assert used, rule["alert"]
        assert used <= allowed, (rule["alert"], used - allowed)
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
    alerts = {rule["alert"] for rule in rules}
    assert {
        "AgentStackNoLeader",
        "AgentStackDispatchLagHigh",
        "AgentStackTickQueueGrowing",
        "AgentStackTicksFailing",
        "AgentStackNoRunners",
    } <= alerts

    # Default off; additionalLabels land on the object.
    assert not _kind(helm.template(), "PrometheusRule")
    labelled = helm.template(
        *_sets(
            {
                "metrics.prometheusRule.enabled": "true",
                "metrics.prometheusRule.additionalLabels.release": "kube-prometheus",
            }
        )
    )
    assert _kind(labelled, "PrometheusRule")[0]["metadata"]["labels"]["release"] == (
        "kube-prometheus"
    )


def test_alerts_fire_on_the_situations_they_describe(helm: Helm, tmp_path: Path) -> None:
    """promtool's rule unit tests: the expressions mean what the alerts' names say."""
    spec = _rendered_rules(helm, namespace="fleet")
    for group in spec["groups"]:  # annotations are checked by `promtool check rules` above
        for rule in group["rules"]:
            rule.pop("annotations")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    operator = 'job="ags-agentstack-operator-operator", namespace="fleet"'
    runner = 'job="ags-agentstack-operator-runner", namespace="fleet"'
    unit = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {  # two replicas up, neither leads; runners fail 60 % of their ticks
                "interval": "1m",
                "input_series": [
                    {"series": f'up{{{operator}, instance="a"}}', "values": "1x40"},
                    {"series": f'up{{{operator}, instance="b"}}', "values": "1x40"},
                    {
                        "series": f'agentstack_operator_leader{{{operator}, instance="a"}}',
                        "values": "0x40",
                    },
                    {
                        "series": f'agentstack_operator_leader{{{operator}, instance="b"}}',
                        "values": "0x40",
                    },
                    {"series": f'up{{{runner}, instance="r"}}', "values": "1x40"},
                    {
                        "series": f'agentstack_runner_ticks_total{{{runner}, instance="r", '
                        'outcome="Failed", reason="StepFailed"}',
                        "values": "0+6x40",
                    },
                    {
                        "series": f'agentstack_runner_ticks_total{{{runner}, instance="r", '
                        'outcome="Succeeded", reason="Completed"}',
                        "values": "0+4x40",
                    },
                    {
                        "series": f'agentstack_tick_queue_depth{{{operator}, instance="a"}}',
                        "values": "2000+100x40",
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "10m",
                        "alertname": "AgentStackNoLeader",
                        "exp_alerts": [{"exp_labels": {"severity": "critical"}}],
                    },
                    {"eval_time": "10m", "alertname": "AgentStackOperatorDown", "exp_alerts": []},
                    {"eval_time": "10m", "alertname": "AgentStackNoRunners", "exp_alerts": []},
                    {"eval_time": "10m", "alertname": "AgentStackTicksFailing", "exp_alerts": []},
                    {
                        "eval_time": "30m",
                        "alertname": "AgentStackTicksFailing",
                        "exp_alerts": [{"exp_labels": {"severity": "warning"}}],
                    },
                    {
                        "eval_time": "35m",
                        "alertname": "AgentStackTickQueueGrowing",
                        "exp_alerts": [{"exp_labels": {"severity": "warning"}}],
                    },
                ],
            },
            {  # nothing scraped at all: both "down" alerts, nothing else
                "interval": "1m",
                "input_series": [
                    {"series": 'up{job="elsewhere", namespace="fleet"}', "values": "1x20"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "10m",
                        "alertname": "AgentStackOperatorDown",
                        "exp_alerts": [{"exp_labels": {"severity": "critical"}}],
                    },
                    {
                        "eval_time": "10m",
                        "alertname": "AgentStackNoRunners",
                        "exp_alerts": [{"exp_labels": {"severity": "critical"}}],
                    },
                    {"eval_time": "10m", "alertname": "AgentStackNoLeader", "exp_alerts": []},
                ],
            },
        ],
    }
    (tmp_path / "unit.yaml").write_text(yaml.safe_dump(unit, sort_keys=False))
    tested = _promtool("test", "rules", "unit.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_service_monitors_select_the_metrics_services(helm: Helm) -> None:
    assert not _kind(helm.template(), "ServiceMonitor")
    objects = helm.template(
        *_sets(
            {
                "metrics.serviceMonitor.enabled": "true",
                "metrics.serviceMonitor.interval": "15s",
                "metrics.serviceMonitor.additionalLabels.release": "kube-prometheus",
            }
        )
    )
    monitors = _kind(objects, "ServiceMonitor")
    services = _by_name(objects, "Service")
    assert {m["metadata"]["name"] for m in monitors} == set(services)
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
        service = services[monitor["metadata"]["name"]]  # the job label the rules select
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert selector.items() <= service["metadata"]["labels"].items()
        ports = {port["name"] for port in service["spec"]["ports"]}
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] in ports
        assert endpoint["path"] == "/metrics"
        assert endpoint["interval"] == "15s"
        # The operator and the runners export series with a `namespace` label of their
        # own (per stack, per budget, chargeback); the API none.
        own = not monitor["metadata"]["name"].endswith("-api")
        assert endpoint.get("honorLabels", False) is own
    ports = {name: s["spec"]["ports"][0]["port"] for name, s in services.items()}
    assert ports == {
        "ags-agentstack-operator-operator": 9101,
        "ags-agentstack-operator-runner": 9102,
        "ags-agentstack-operator-api": 8080,
    }


_DURATION = (
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}


def _monitoring_crd(plural: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A stand-in for a prometheus-operator CRD: the upstream field names, types and
    patterns of the fields the chart uses (no others, so strict validation catches typos)."""
    return _stand_in_crd("monitoring.coreos.com", "v1", plural, kind, spec)


def _stand_in_crd(
    group: str, version: str, plural: str, kind: str, spec: dict[str, Any]
) -> dict[str, Any]:
    """A stand-in for a CRD of another project (the control plane has none of theirs)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "required": ["spec"],
                            "properties": {"spec": {"type": "object", **spec}},
                        }
                    },
                }
            ],
        },
    }


MONITORING_CRDS = [
    _monitoring_crd(
        "servicemonitors",
        "ServiceMonitor",
        {
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "properties": {
                        "matchLabels": _STRING_MAP,
                        "matchExpressions": {"type": "array", "items": {"type": "object"}},
                    },
                },
                "namespaceSelector": {
                    "type": "object",
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "jobLabel": {"type": "string"},
                "endpoints": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "scheme": {"type": "string", "enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": _DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": _DURATION},
                            "honorLabels": {"type": "boolean"},
                        },
                    },
                },
            },
        },
    ),
    _monitoring_crd(
        "prometheusrules",
        "PrometheusRule",
        {
            "properties": {
                "groups": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": {"type": "string", "pattern": _DURATION},
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "properties": {
                                        "alert": {"type": "string"},
                                        "record": {"type": "string"},
                                        "expr": {"x-kubernetes-int-or-string": True},
                                        "for": {"type": "string", "pattern": _DURATION},
                                        "keep_firing_for": {"type": "string"},
                                        "labels": _STRING_MAP,
                                        "annotations": _STRING_MAP,
                                    },
                                },
                            },
                        },
                    },
                }
            }
        },
    ),
]


def _establish(
    control_plane: ControlPlane, k8s_api: client.ApiClient, crd: dict[str, Any], plural: str
) -> None:
    client.ApiextensionsV1Api(k8s_api).create_custom_resource_definition(crd)
    eventually(  # established, and discovery of the new kind reaches kubectl's cache
        lambda: True if control_plane.kubectl("get", plural, "-A").returncode == 0 else None,
        f"the stand-in CRD {crd['metadata']['name']} to be served",
    )


def test_monitoring_objects_are_accepted_by_the_api_server(
    helm: Helm,
    control_plane: ControlPlane,
    k8s_api: client.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    """The ServiceMonitors and the PrometheusRule, server-side dry run with strict field
    validation, against stand-ins for prometheus-operator's CRDs (the control plane has
    none); the CRDs are removed again."""
    try:
        for crd, plural in zip(
            MONITORING_CRDS, ("servicemonitors", "prometheusrules"), strict=True
        ):
            _establish(control_plane, k8s_api, crd, plural)
        objects = helm.template(
            "--namespace",
            namespace,
            *_sets(
                {
                    "metrics.serviceMonitor.enabled": "true",
                    "metrics.serviceMonitor.scrapeTimeout": "10s",
                    "metrics.prometheusRule.enabled": "true",
                }
            ),
        )
        monitoring = [o for o in objects if o["apiVersion"] == "monitoring.coreos.com/v1"]
        assert len(monitoring) == 4
        _check_standard_labels(monitoring, "ags")
        _dry_run(control_plane, monitoring, tmp_path / "monitoring.yaml")
    finally:
        for crd in MONITORING_CRDS:
            with contextlib.suppress(ApiException):  # one that was never created
                client.ApiextensionsV1Api(k8s_api).delete_custom_resource_definition(
                    crd["metadata"]["name"]
                )


KEDA_SCALED_OBJECT_CRD = _stand_in_crd(
    "keda.sh",
    "v1alpha1",
    "scaledobjects",
    "ScaledObject",
    {
        "required": ["scaleTargetRef", "triggers"],
        "properties": {
            "scaleTargetRef": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}},
            },
            "minReplicaCount": {"type": "integer"},
            "maxReplicaCount": {"type": "integer"},
            "cooldownPeriod": {"type": "integer"},
            "triggers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["type", "metadata"],
                    "properties": {"type": {"type": "string"}, "metadata": _STRING_MAP},
                },
            },
        },
    },
)


def test_runner_autoscaling_renders_and_is_accepted_by_the_api_server(
    helm: Helm,
    control_plane: ControlPlane,
    k8s_api: client.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    runner_name = "ags-agentstack-operator-runner"
    hpa_objects = helm.template(
        "--namespace",
        namespace,
        *_sets({"runner.autoscaling.enabled": "true", "runner.autoscaling.maxReplicas": "6"}),
    )
    (hpa,) = _kind(hpa_objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": runner_name,
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 6)
    # The autoscaler owns the count: an upgrade must not reset it.
    assert "replicas" not in _by_name(hpa_objects, "Deployment")[runner_name]["spec"]
    _check_standard_labels([hpa], "ags")
    _dry_run(control_plane, [hpa], tmp_path / "hpa.yaml")

    try:
        _establish(control_plane, k8s_api, KEDA_SCALED_OBJECT_CRD, "scaledobjects")
        keda_objects = helm.template(
            "--namespace",
            namespace,
            *_sets({"runner.autoscaling.keda.enabled": "true", "redis.standalone.enabled": "true"}),
        )
        (scaled,) = _kind(keda_objects, "ScaledObject")
        assert scaled["spec"]["scaleTargetRef"] == {"name": runner_name}
        triggers = scaled["spec"]["triggers"]
        # The product's own stream and group names (one home: agentstack_core).
        assert [t["metadata"]["stream"] for t in triggers] == [
            FleetKeys.lane(priority.value) for priority in Priority
        ]
        for trigger in triggers:
            assert trigger["type"] == "redis-streams"
            metadata = trigger["metadata"]
            assert metadata["consumerGroup"] == protocol.RUNNERS_GROUP
            assert metadata["address"] == f"ags-agentstack-operator-redis.{namespace}.svc:6379"
            assert metadata["passwordFromEnv"] == "REDIS_PASSWORD"
        runner = _container(_by_name(keda_objects, "Deployment")[runner_name])
        assert "REDIS_PASSWORD" in _env(runner)  # what passwordFromEnv reads
        _check_standard_labels([scaled], "ags")
        _dry_run(control_plane, [scaled], tmp_path / "keda.yaml")
    finally:
        with contextlib.suppress(ApiException):
            client.ApiextensionsV1Api(k8s_api).delete_custom_resource_definition(
                KEDA_SCALED_OBJECT_CRD["metadata"]["name"]
            )


def test_dashboards_are_configmaps_with_fixed_uids_and_documented_metrics(
    helm: Helm, tmp_path: Path
) -> None:
    """The generated dashboards (agentstack_devkit.dashboards) ship as they are; that each
    query returns data from real processes is proven in test_prometheus."""
    configmaps = _kind(helm.template(), "ConfigMap")
    assert len(configmaps) == len(DASHBOARD_UIDS)
    allowed = _series_names(_documented_metrics())
    uids = set()
    recording_rules = []
    for configmap in configmaps:
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((key, text),) = configmap["data"].items()
        assert key.endswith(".json")
        dashboard = json.loads(text)
        source = json.loads((CHART / "dashboards" / key.removeprefix("agentstack-")).read_text())
        assert dashboard == source  # .Files.Get: byte for byte, no template processing
        uids.add(dashboard["uid"])
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        assert "namespace" in variables
        shown = list(panels(dashboard))
        assert shown
        for panel in shown:
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                expr = target["expr"]
                used = _metric_names(expr)
                assert used, (panel["title"], expr)
                assert used <= allowed, (panel["title"], used - allowed)
                assert all(name.startswith("agentstack_") for name in used)
                values = {"__rate_interval": "5m", "__range": "5m"}
                values |= {name: ".*" for name in variables}
                recording_rules.append(
                    {
                        "record": f"dashboard:panel_{len(recording_rules)}",
                        "expr": substitute(expr, values),
                    }
                )
    assert uids == DASHBOARD_UIDS
    titles = {json.loads(next(iter(c["data"].values())))["title"] for c in configmaps}
    assert titles == {"agentstack fleet", "agentstack namespace", "agentstack stack"}
    # Every panel's query parses: promtool checks them as recording rules.
    rules_file = tmp_path / "panels.yaml"
    rules_file.write_text(
        yaml.safe_dump({"groups": [{"name": "panels", "rules": recording_rules}]})
    )
    checked = _promtool("check", "rules", str(rules_file), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(recording_rules)} rules found" in checked.stdout, checked.stdout

    relabelled = helm.template(
        *_sets({"dashboards.label": "grafana/dashboard", "dashboards.labelValue": "agentstack"})
    )
    for configmap in _kind(relabelled, "ConfigMap"):
        assert configmap["metadata"]["labels"]["grafana/dashboard"] == "agentstack"
        assert "grafana_dashboard" not in configmap["metadata"]["labels"]
    assert not _kind(helm.template("--set", "dashboards.enabled=false"), "ConfigMap")


# == installing into the real cluster ============================================================


def _operator_needs(namespace: str, elsewhere: str, lease: str) -> list[Access]:
    """Every call the operator (and its embedded Kopf) makes, in ``namespace``'s terms."""
    stacks = {"group": "agentstack.dev", "resource": "agentstacks"}
    return [
        *(Access(verb, namespace="", **stacks) for verb in ("list", "watch")),
        *(Access(verb, namespace=elsewhere, **stacks) for verb in ("get", "patch")),
        Access("patch", namespace=elsewhere, subresource="status", **stacks),
        Access("create", "events", namespace=elsewhere),
        Access("get", "secrets", namespace=elsewhere, name="groq-keys"),
        # The tick pods' Redis credentials (tickcredentials), and why a tick Job failed.
        Access("create", "secrets", namespace=elsewhere),
        Access("update", "secrets", namespace=elsewhere, name="agentstack-tick-redis"),
        Access("list", "pods", namespace=elsewhere),
        *(
            Access(verb, "jobs", namespace=elsewhere, group="batch")
            for verb in ("create", "deletecollection")
        ),
        *(Access(verb, "jobs", group="batch") for verb in ("list", "watch")),
        *(
            Access(verb, "customresourcedefinitions", group="apiextensions.k8s.io")
            for verb in ("get", "list", "watch")
        ),
        Access("create", "leases", namespace=namespace, group="coordination.k8s.io"),
        *(
            Access(verb, "leases", namespace=namespace, group="coordination.k8s.io", name=lease)
            for verb in ("get", "update")
        ),
    ]


def _operator_must_not(namespace: str, elsewhere: str, lease: str) -> list[Access]:
    stacks = {"group": "agentstack.dev", "resource": "agentstacks", "namespace": elsewhere}
    return [
        # Kopf and the operator only ever PATCH stacks and status, and only POST Events.
        Access("update", **stacks),
        *(Access(verb, subresource="status", **stacks) for verb in ("get", "update")),
        Access("patch", "events", namespace=elsewhere),
        *(Access(verb, "jobs", namespace=elsewhere, group="batch") for verb in ("get", "delete")),
        # Serving every namespace, Kopf never reads namespaces.
        *(Access(verb, "namespaces") for verb in ("list", "watch")),
        *(
            Access(verb, "secrets", namespace=elsewhere)
            for verb in ("list", "watch", "update", "patch", "delete")
        ),
        Access("update", "secrets", namespace=elsewhere, name="groq-keys"),
        Access("delete", "secrets", namespace=elsewhere, name="agentstack-tick-redis"),
        Access("list", "secrets"),  # Secrets are read by name, never listed
        Access("watch", "secrets"),
        Access("create", "agentstacks", namespace=elsewhere, group="agentstack.dev"),
        Access("delete", "agentstacks", namespace=elsewhere, group="agentstack.dev"),
        Access("create", "pods", namespace=elsewhere),
        Access("create", "deployments", namespace=namespace, group="apps"),
        Access("update", "jobs", namespace=elsewhere, group="batch"),
        Access("delete", "namespaces"),
        Access("update", "customresourcedefinitions", group="apiextensions.k8s.io"),
        Access("update", "leases", namespace=namespace, group="coordination.k8s.io", name="other"),
        Access("delete", "leases", namespace=namespace, group="coordination.k8s.io", name=lease),
        Access("create", "leases", namespace=elsewhere, group="coordination.k8s.io"),
        Access("get", "leases", namespace=elsewhere, group="coordination.k8s.io", name=lease),
        Access("create", "clusterrolebindings", group="rbac.authorization.k8s.io"),
    ]


def test_install_creates_the_release_with_least_privilege_and_uninstall_removes_it(
    helm: Helm,
    control_plane: ControlPlane,
    k8s_api: client.ApiClient,
    crd: str,
    namespace: str,
) -> None:
    core = client.CoreV1Api(k8s_api)
    apps = client.AppsV1Api(k8s_api)
    rbac = client.RbacAuthorizationV1Api(k8s_api)
    # The pods must pass the `restricted` Pod Security Standard.
    core.patch_namespace(
        namespace,
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
    )
    release = f"ags-{secrets.token_hex(3)}"
    full = f"{release}-agentstack-operator"
    elsewhere = _create_namespace(k8s_api, "stacks")
    try:
        printed = helm.install(release, namespace)
        assert "STATUS: deployed" in printed
        notes = printed.split("NOTES:", 1)[1]  # how to apply an example and pause it
        assert "kind: AgentStack" in notes
        assert (
            "kubectl patch ags release-notes --type merge "
            """-p '{"spec":{"executionState":"Paused"}}'"""
        ) in notes

        # -- what exists ---------------------------------------------------------------------
        deployments = {d.metadata.name: d for d in apps.list_namespaced_deployment(namespace).items}
        assert {name: d.spec.replicas for name, d in deployments.items()} == {
            f"{full}-operator": 2,
            f"{full}-runner": 2,
            f"{full}-api": 1,
        }
        serialized = {
            name: k8s_api.sanitize_for_serialization(d) for name, d in deployments.items()
        }
        commands = {name: _container(d)["command"] for name, d in serialized.items()}
        assert commands == {
            f"{full}-operator": ["agentstack", "operator"],
            f"{full}-runner": ["agentstack", "runner"],
            f"{full}-api": ["agentstack", "api"],
        }
        operator = _container(serialized[f"{full}-operator"])
        env = _env(operator)
        assert env["AGENTSTACK_OPERATOR_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == (
            "metadata.namespace"
        )
        assert env["AGENTSTACK_OPERATOR_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == (
            "metadata.name"
        )
        expected = {
            "REDIS_URL": "redis://redis:6379/0",
            "AGENTSTACK_REDIS_CLUSTER": "false",
            "AGENTSTACK_WATCH_NAMESPACES": "",
            "AGENTSTACK_LEASE_SECONDS": "15",
            "AGENTSTACK_STATUS_MIN_INTERVAL": "10",
            "AGENTSTACK_STATUS_WRITES_PER_SECOND": "20",
            "AGENTSTACK_DISPATCH_BATCH": "500",
            "AGENTSTACK_METRICS_PORT": "9101",
            "AGENTSTACK_RUNNER_IMAGE": "agentstack-operator:0.1.0",
            "AGENTSTACK_JOB_TTL_SECONDS": "300",
            "AGENTSTACK_JOB_GRACE_SECONDS": "60",
            "AGENTSTACK_JOB_RESOURCES": (
                '{"limits":{"memory":"512Mi"},"requests":{"cpu":"50m","memory":"128Mi"}}'
            ),
        }
        plain = _plain_env(operator)
        assert {key: plain[key] for key in expected} == expected
        assert operator["image"] == "agentstack-operator:0.1.0"
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            assert operator[probe]["httpGet"] == {"path": path, "port": "metrics", "scheme": "HTTP"}
        assert operator["ports"][0]["containerPort"] == 9101
        security = operator["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert security["seccompProfile"]["type"] == "RuntimeDefault"

        runner_spec = serialized[f"{full}-runner"]["spec"]["template"]["spec"]
        runner_env = _plain_env(_container(serialized[f"{full}-runner"]))
        assert runner_env == {
            "REDIS_URL": "redis://redis:6379/0",
            "AGENTSTACK_REDIS_CLUSTER": "false",
            "AGENTSTACK_RUNNER_CONCURRENCY": "64",
            "AGENTSTACK_RUNNER_VISIBILITY_TIMEOUT": "60",
            "AGENTSTACK_RUNNER_LEASE_TTL": "30",
            "AGENTSTACK_RUNNER_CLAIM_INTERVAL": "5",
            "AGENTSTACK_RUNNER_DRAIN_TIMEOUT": "30",
            "AGENTSTACK_RUNNER_METRICS_PORT": "9102",
            "AGENTSTACK_LLM_CONCURRENCY_GROQ": "64",
            "AGENTSTACK_LLM_CONCURRENCY_OPENAI": "64",
            "AGENTSTACK_LLM_MAX_ATTEMPTS": "3",
            "AGENTSTACK_LLM_BASE_DELAY": "0.5",
            "AGENTSTACK_RUNNER_CREDENTIALS": "kubernetes",
            "AGENTSTACK_RUNNER_SECRET_CACHE_SECONDS": "60",
        }
        assert runner_spec["terminationGracePeriodSeconds"] > 30 + 10
        assert runner_spec["automountServiceAccountToken"] is True  # it reads stacks' Secrets
        api_env = _plain_env(_container(serialized[f"{full}-api"]))
        assert api_env["AGENTSTACK_API_AUTH"] == "kubernetes"  # authentication on by default
        assert api_env["AGENTSTACK_API_PORT"] == "8080"

        accounts = {
            sa.metadata.name: sa for sa in core.list_namespaced_service_account(namespace).items
        }
        assert {f"{full}-operator", f"{full}-runner", f"{full}-api"} <= set(accounts)
        assert accounts[f"{full}-runner"].automount_service_account_token is True
        services = {s.metadata.name: s for s in core.list_namespaced_service(namespace).items}
        assert {name: s.spec.ports[0].port for name, s in services.items()} == {
            f"{full}-operator": 9101,
            f"{full}-runner": 9102,
            f"{full}-api": 8080,
        }
        dashboards = core.list_namespaced_config_map(
            namespace, label_selector="grafana_dashboard=1"
        )
        assert len(dashboards.items) == len(DASHBOARD_UIDS)
        cluster_roles = {f"{full}-operator", f"{full}-operator-cluster", f"{full}-api"}
        cluster_roles |= {f"{full}-api-auth", f"{full}-runner", f"{full}-api-webhooks"}
        cluster_roles |= {"agentstack-view", "agentstack-edit", "agentstack-budget-admin"}
        existing = {r.metadata.name for r in rbac.list_cluster_role().items}
        assert cluster_roles <= existing
        client.ApiextensionsV1Api(k8s_api).read_custom_resource_definition(crd)
        # The pods were admitted under `restricted` (then stay Pending: no kubelet).
        pods = eventually(
            lambda: (lambda items: items if len(items) == 5 else None)(
                core.list_namespaced_pod(namespace).items
            ),
            "the Deployments' five pods to be created",
        )
        assert {p.spec.service_account_name for p in pods} == {
            f"{full}-operator",
            f"{full}-runner",
            f"{full}-api",
        }

        # -- what the ServiceAccounts may do ---------------------------------------------------
        _check_access(
            k8s_api,
            _account(namespace, f"{full}-operator"),
            allowed=_operator_needs(namespace, elsewhere, full),
            denied=_operator_must_not(namespace, elsewhere, full),
        )
        _check_access(
            k8s_api,
            _account(namespace, f"{full}-api"),
            allowed=[
                *(
                    Access(verb, "agentstacks", group="agentstack.dev")
                    for verb in ("get", "list", "watch")
                ),
                Access("create", "tokenreviews", group="authentication.k8s.io"),
                Access("create", "subjectaccessreviews", group="authorization.k8s.io"),
                # api.webhooks (on by default): a webhook's key, by name.
                Access("get", "secrets", namespace=elsewhere, name="hooks"),
            ],
            denied=[
                Access("patch", "agentstacks", namespace=elsewhere, group="agentstack.dev"),
                Access("list", "secrets"),
                Access("watch", "secrets"),
                Access("create", "events", namespace=elsewhere),
            ],
        )
        # The runners (credentials=kubernetes) get a stack's Secret from any namespace, by
        # name; nothing else.
        runner_user = f"system:serviceaccount:{namespace}:{full}-runner"
        _secret_access(control_plane, runner_user, allowed=[elsewhere, namespace], denied=[])
        _check_access(
            k8s_api,
            _account(namespace, f"{full}-runner"),
            allowed=[Access("get", "secrets", namespace=elsewhere, name="groq-keys")],
            denied=[
                Access("list", "secrets", namespace=elsewhere),
                Access("watch", "secrets"),
                Access("delete", "secrets", namespace=elsewhere),
                Access("get", "configmaps", namespace=elsewhere),
                Access("list", "agentstacks", group="agentstack.dev"),
                Access("get", "leases", namespace=namespace, group="coordination.k8s.io"),
            ],
        )

        # -- people: the aggregated roles reach the built-in view/edit/admin -------------------
        for role, user in (("view", "viewer"), ("edit", "editor"), ("admin", "owner")):
            rbac.create_namespaced_role_binding(
                elsewhere,
                client.V1RoleBinding(
                    metadata=client.V1ObjectMeta(name=f"{user}-{role}"),
                    role_ref=client.V1RoleRef(
                        api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role
                    ),
                    subjects=[
                        client.RbacV1Subject(
                            kind="User", name=user, api_group="rbac.authorization.k8s.io"
                        )
                    ],
                ),
            )
        stacks = {"group": "agentstack.dev", "resource": "agentstacks", "namespace": elsewhere}
        writes = [Access(verb, **stacks) for verb in ("create", "patch", "delete")]
        reads = [Access(verb, **stacks) for verb in ("get", "list", "watch")]
        status_write = Access("patch", subresource="status", **stacks)
        writes.append(Access("create", subresource="inputs", **stacks))  # steering: send
        writes.append(Access("update", subresource="approvals", **stacks))  # and decide
        writes.append(Access("create", subresource="rollback", **stacks))  # and roll back
        _check_access(k8s_api, ("viewer", []), allowed=reads, denied=[*writes, status_write])
        _check_access(k8s_api, ("editor", []), allowed=reads + writes, denied=[status_write])
        _check_access(k8s_api, ("owner", []), allowed=reads + writes, denied=[status_write])
        # A tenant reads its namespace's budgets, even as its admin, and never changes
        # them; the platform's budget-admin role does (bound here in the namespace).
        budgets = {"group": "agentstack.dev", "resource": "agentbudgets", "namespace": elsewhere}
        budget_reads = [Access(verb, **budgets) for verb in ("get", "list", "watch")]
        budget_writes = [Access(verb, **budgets) for verb in ("create", "patch", "delete")]
        budget_status = Access("patch", subresource="status", **budgets)
        for user in ("viewer", "editor", "owner"):
            _check_access(
                k8s_api, (user, []), allowed=budget_reads, denied=[*budget_writes, budget_status]
            )
        rbac.create_namespaced_role_binding(
            elsewhere,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="platform-budgets"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io",
                    kind="ClusterRole",
                    name="agentstack-budget-admin",
                ),
                subjects=[
                    client.RbacV1Subject(
                        kind="User", name="platform", api_group="rbac.authorization.k8s.io"
                    )
                ],
            ),
        )
        _check_access(
            k8s_api,
            ("platform", []),
            allowed=budget_reads + budget_writes,
            denied=[budget_status, *writes],
        )

        # -- uninstall ---------------------------------------------------------------------
        uninstalled = helm.uninstall(release, namespace)
        assert uninstalled.returncode == 0, uninstalled.stderr
        eventually(
            lambda: True if not apps.list_namespaced_deployment(namespace).items else None,
            "the Deployments to be deleted",
        )
        assert not [s for s in core.list_namespaced_service(namespace).items], (
            "Services left behind"
        )
        names = {sa.metadata.name for sa in core.list_namespaced_service_account(namespace).items}
        assert not names & {f"{full}-operator", f"{full}-runner", f"{full}-api"}
        assert not core.list_namespaced_config_map(
            namespace, label_selector="grafana_dashboard=1"
        ).items
        assert not rbac.list_namespaced_role(namespace).items
        assert not rbac.list_namespaced_role_binding(namespace).items
        remaining = {r.metadata.name for r in rbac.list_cluster_role().items}
        assert not remaining & cluster_roles
        remaining_bindings = {b.metadata.name for b in rbac.list_cluster_role_binding().items}
        assert not {name for name in remaining_bindings if name.startswith(full)}
        eventually(
            lambda: True if not core.list_namespaced_pod(namespace).items else None,
            "the garbage collector to delete the pods",
        )
        # Helm never deletes what crds/ installed: stacks outlive a reinstall.
        client.ApiextensionsV1Api(k8s_api).read_custom_resource_definition(crd)
        user, groups = _account(namespace, f"{full}-operator")
        patch = Access("patch", "agentstacks", namespace=elsewhere, group="agentstack.dev")
        eventually(
            lambda: True if not _allowed(k8s_api, user, groups, patch) else None,
            "the operator's grants to go with the release",
            timeout=30,
        )
        eventually(
            lambda: (
                True
                if not _can_i(control_plane, runner_user, "get", "secrets", elsewhere)
                else None
            ),
            "the runners' grant to go with the release",
            timeout=30,
        )
    finally:
        helm.uninstall(release, namespace)  # a no-op once uninstalled
        _delete_namespace(k8s_api, elsewhere)


def test_watch_namespaces_limit_the_grants_to_those_namespaces(
    helm: Helm, control_plane: ControlPlane, k8s_api: client.ApiClient, crd: str, namespace: str
) -> None:
    release = f"ags-{secrets.token_hex(3)}"
    full = f"{release}-agentstack-operator"
    watched = _create_namespace(k8s_api, "watched")
    other = _create_namespace(k8s_api, "other")
    try:
        helm.install(
            release,
            namespace,
            *_sets({"watchNamespaces[0]": watched, "rbac.userRoles.create": "false"}),
        )
        stacks = {"group": "agentstack.dev", "resource": "agentstacks"}
        _check_access(
            k8s_api,
            _account(namespace, f"{full}-operator"),
            allowed=[
                Access("list", namespace=watched, **stacks),
                Access("patch", namespace=watched, subresource="status", **stacks),
                Access("get", "secrets", namespace=watched),
                Access("create", "jobs", namespace=watched, group="batch"),
                Access("list", "namespaces"),
                Access("watch", "customresourcedefinitions", group="apiextensions.k8s.io"),
                Access(
                    "update", "leases", namespace=namespace, group="coordination.k8s.io", name=full
                ),
            ],
            denied=[
                Access("list", **stacks),
                Access("list", namespace=other, **stacks),
                Access("patch", namespace=other, subresource="status", **stacks),
                Access("get", "secrets", namespace=other),
                Access("get", "secrets", namespace=namespace),
                Access("create", "jobs", namespace=other, group="batch"),
            ],
        )
        _check_access(
            k8s_api,
            _account(namespace, f"{full}-api"),
            allowed=[Access("watch", namespace=watched, **stacks)],
            denied=[Access("watch", **stacks), Access("get", namespace=other, **stacks)],
        )
        _secret_access(
            control_plane,
            f"system:serviceaccount:{namespace}:{full}-runner",
            allowed=[watched],
            denied=[other, namespace],
        )
    finally:
        uninstalled = helm.uninstall(release, namespace)
        assert uninstalled.returncode == 0, uninstalled.stderr
        for name in (watched, other):
            _delete_namespace(k8s_api, name)


def test_env_credentials_give_the_runners_no_secret_access_and_no_token(
    helm: Helm, control_plane: ControlPlane, k8s_api: client.ApiClient, crd: str, namespace: str
) -> None:
    release = f"ags-{secrets.token_hex(3)}"
    full = f"{release}-agentstack-operator"
    elsewhere = _create_namespace(k8s_api, "stacks")
    try:
        printed = helm.install(
            release,
            namespace,
            *_sets({"runner.credentials": "env", "rbac.userRoles.create": "false"}),
        )
        assert "runner.credentials=env" in printed.split("NOTES:", 1)[1]
        deployment = k8s_api.sanitize_for_serialization(
            client.AppsV1Api(k8s_api).read_namespaced_deployment(f"{full}-runner", namespace)
        )
        assert _plain_env(_container(deployment))["AGENTSTACK_RUNNER_CREDENTIALS"] == "env"
        assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
        account = client.CoreV1Api(k8s_api).read_namespaced_service_account(
            f"{full}-runner", namespace
        )
        assert account.automount_service_account_token is False
        rbac = client.RbacAuthorizationV1Api(k8s_api)
        assert f"{full}-runner" not in {r.metadata.name for r in rbac.list_cluster_role().items}
        # The operator's grants exist (RBAC caches have seen the release), the runners' none.
        _check_access(
            k8s_api,
            _account(namespace, f"{full}-operator"),
            allowed=[Access("get", "secrets", namespace=elsewhere)],
            denied=[],
        )
        _secret_access(
            control_plane,
            f"system:serviceaccount:{namespace}:{full}-runner",
            allowed=[],
            denied=[elsewhere, namespace],
        )
    finally:
        uninstalled = helm.uninstall(release, namespace)
        assert uninstalled.returncode == 0, uninstalled.stderr
        _delete_namespace(k8s_api, elsewhere)


# == the real processes, with the chart's environment and ServiceAccounts =======================


def _secret_mounts(
    deployment: dict[str, Any], core: client.CoreV1Api, namespace: str, root: Path
) -> dict[str, Path]:
    """The container's Secret volumes written under ``root`` as the kubelet would mount
    them: each mount path → the local directory standing for it."""
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"].get("volumes", [])}
    mounts = {}
    for mount in _container(deployment).get("volumeMounts") or []:
        source = volumes[mount["name"]].get("secret")
        if source is None:
            continue
        data = core.read_namespaced_secret(source["secretName"], namespace).data or {}
        local = root / mount["name"]
        local.mkdir(parents=True, exist_ok=True)
        for item in source.get("items") or [{"key": key, "path": key} for key in data]:
            (local / item["path"]).write_bytes(base64.b64decode(data[item["key"]]))
        mounts[mount["mountPath"]] = local
    return mounts


def _process_env(
    deployment: dict[str, Any], core: client.CoreV1Api, namespace: str, pod: str, root: Path
) -> dict[str, str]:
    """The container's environment as the kubelet would resolve it for pod ``pod``, its
    Secret volumes mounted under ``root`` (a path into one points there instead)."""
    mounts = _secret_mounts(deployment, core, namespace, root)
    resolved = {}
    for item in _container(deployment).get("env") or []:
        if "valueFrom" not in item:
            resolved[item["name"]] = item.get("value", "")  # the API server drops ""
            continue
        source = item["valueFrom"]
        if "fieldRef" in source:
            field = source["fieldRef"]["fieldPath"]
            resolved[item["name"]] = {"metadata.namespace": namespace, "metadata.name": pod}[field]
        else:
            ref = source["secretKeyRef"]
            try:
                secret = core.read_namespaced_secret(ref["name"], namespace)
            except ApiException as exc:
                if exc.status == 404 and ref.get("optional"):
                    continue
                raise
            data = secret.data or {}
            if ref["key"] not in data and ref.get("optional"):
                continue  # the kubelet leaves the variable out
            resolved[item["name"]] = base64.b64decode(data[ref["key"]]).decode()
    for name, value in resolved.items():
        for mount_path, local in mounts.items():
            if value.startswith(f"{mount_path}/"):
                resolved[name] = str(local / value.removeprefix(f"{mount_path}/"))
    return resolved


def _kubeconfig(control_plane: ControlPlane, path: Path, token: str, user: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            build_kubeconfig(
                server=control_plane.url, ca_path=control_plane.ca_path, token=token, user=user
            )
        )
    )
    path.chmod(0o600)
    return path


@pytest.fixture
def fake_llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


def _pool_user_rules(helm: Helm) -> dict[str, list[str]]:
    """The runners' and the API's Redis users as the chart makes them in its own Redis:
    each user's name → its rules after the password (the in-chart Redis's arguments)."""
    objects = helm.template("--set", "redis.standalone.enabled=true")
    (statefulset,) = _kind(objects, "StatefulSet")
    args = _container(statefulset)["args"]
    users: dict[str, list[str]] = {}
    for start in (i for i, arg in enumerate(args) if arg == "--user"):
        end = next((i for i in range(start + 1, len(args)) if args[i].startswith("--")), None)
        name, enabled, password, *rules = args[start + 1 : end]
        assert (enabled, password[0]) == ("on", ">"), args[start:end]
        users[name] = rules
    return users


@dataclass(frozen=True)
class ChartFleet:
    api_port: int
    redis_users: dict[str, tuple[str, str]]
    """Component (runner, api) → the Redis username and password it was given."""
    password_files: dict[str, Path]
    """Component → the file standing for its mounted Redis password."""
    kubeconfigs: dict[str, Path]
    """Component → a kubeconfig with its ServiceAccount's token."""


@pytest.fixture
def chart_fleet(
    helm: Helm,
    control_plane: ControlPlane,
    k8s_api: client.ApiClient,
    crd: str,
    namespace: str,
    redis_server: RedisServer,
    redis_reader: redis.Redis,
    fake_llm: FakeLLMServer,
    tmp_path: Path,
) -> Iterator[ChartFleet]:
    """The chart installed, and its three processes running locally as the chart would run
    them: the Deployments' environment (the runners' with the default keys of
    llm.existingSecret, OPENAI_API_KEY=POOL_KEY, which llm.allowedBaseURLs lets go to the
    fake LLM's endpoint; the runners and the API as the Redis users a platform team made
    with the chart's rules, given through redis.users) and the ServiceAccounts' own
    tokens."""
    release = f"ags-{secrets.token_hex(3)}"
    full = f"{release}-agentstack-operator"
    core = client.CoreV1Api(k8s_api)
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=f"{release}-llm-keys"),
            string_data={"OPENAI_API_KEY": POOL_KEY},
        ),
    )
    redis_users: dict[str, tuple[str, str]] = {}
    chart_rules = _pool_user_rules(helm)
    for component in ("runner", "api"):
        user, password = f"agentstack-{component}-{release}", secrets.token_hex(16)
        rules = chart_rules[f"agentstack-{component}"]
        redis_reader.execute_command("ACL", "SETUSER", user, "reset", "on", f">{password}", *rules)
        redis_users[component] = (user, password)
        core.create_namespaced_secret(
            namespace,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name=f"{release}-{component}-redis"),
                string_data={"redis-username": user, "redis-password": password},
            ),
        )
    helm.install(
        release,
        namespace,
        *_sets(
            {
                "redis.url": redis_server.url,
                "redis.users.runner.existingSecret": f"{release}-runner-redis",
                "redis.users.api.existingSecret": f"{release}-api-redis",
                "llm.existingSecret": f"{release}-llm-keys",
                "llm.allowedBaseURLs[0]": fake_llm.openai_base_url,
                "rbac.userRoles.namePrefix": f"agentstack-{release}",
                "api.authCacheSeconds": "1",
            }
        ),
    )
    apps = client.AppsV1Api(k8s_api)
    fleets: list[Fleet] = []
    try:
        ports: dict[str, int] = {}
        kubeconfigs: dict[str, Path] = {}
        password_files: dict[str, Path] = {}
        for component in ("operator", "runner", "api"):
            name = f"{full}-{component}"
            deployment = k8s_api.sanitize_for_serialization(
                apps.read_namespaced_deployment(name, namespace)
            )
            account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
            kubeconfigs[component] = _kubeconfig(
                control_plane,
                tmp_path / f"{component}.kubeconfig",
                _token(k8s_api, namespace, account),
                account,
            )
            env = _process_env(
                deployment, core, namespace, f"{name}-0", tmp_path / f"{component}-volumes"
            )
            if "REDIS_PASSWORD_FILE" in env:  # the operator's user here has no password
                password_files[component] = Path(env["REDIS_PASSWORD_FILE"])
            fleet = Fleet(
                kubeconfig=kubeconfigs[component],
                redis_url=redis_server.url,
                logs_dir=tmp_path,
                extra_env=env,
            )
            fleets.append(fleet)
            _process, ports[component] = getattr(fleet, component)(name=component)
        yield ChartFleet(ports["api"], redis_users, password_files, kubeconfigs)
        for component in ("operator", "runner", "api"):
            log = (tmp_path / f"{component}.log").read_text()
            denied = [
                line
                for line in log.splitlines()
                # (after the timestamp, whose milliseconds may read 403)
                if re.search(
                    r"[Ff]orbidden|Not enough permissions|\b403\b|NOPERM|no permissions",
                    line.split(" ", 2)[-1],
                )
            ]
            assert not denied, f"the {component} was refused something: {denied[:5]}"
    finally:
        for fleet in reversed(fleets):
            fleet.stop()
        helm.uninstall(release, namespace)
        for user, _password in redis_users.values():
            redis_reader.execute_command("ACL", "DELUSER", user)


def _read_lease(api: client.CoordinationV1Api, namespace: str) -> Any:
    """The release's held leader Lease (named after the release), if any."""
    for lease in api.list_namespaced_lease(namespace).items:
        if lease.metadata.name.endswith("-agentstack-operator") and lease.spec.holder_identity:
            return lease
    return None


def test_the_chart_processes_work_with_exactly_the_granted_permissions(
    chart_fleet: ChartFleet,
    fake_llm: FakeLLMServer,
    k8s_api: client.ApiClient,
    redis_reader: redis.Redis,
    redis_server: RedisServer,
    namespace: str,
) -> None:
    api_port = chart_fleet.api_port
    coordination = client.CoordinationV1Api(k8s_api)
    elsewhere = _create_namespace(k8s_api, "team")
    try:
        stacks = Stacks(k8s_api, elsewhere, redis_reader)
        # Leader election in the release namespace (create, get, update of the Lease).
        lease = eventually(
            lambda: _read_lease(coordination, namespace),
            "the operator to take the Lease in the release namespace",
        )
        assert lease.spec.holder_identity == "operator"

        # Watch, finalizer (patch), status subresource, Events, runners through Redis.
        stacks.create("team", tickIntervalSeconds=1, llm={"model": {"provider": "scripted"}})
        stacks.wait_ticks("team", 1)
        stacks.wait_event("team", "Started")
        stacks.patch_spec("team", executionState="Paused")
        stacks.wait_condition("team", "Paused", "True")
        stacks.wait_event("team", "Paused")

        # Secrets: a missing one holds the stack, creating it releases it (get secrets).
        stacks.create(
            "keyed",
            executionState="Paused",
            llm={
                "model": {"provider": "groq", "name": "llama-3.3-70b-versatile"},
                "providers": {"groq": {"secretRef": {"name": "groq-keys", "key": "apiKey"}}},
            },
        )
        stacks.wait_condition("keyed", "Ready", "False", "SecretNotFound")
        client.CoreV1Api(k8s_api).create_namespaced_secret(
            elsewhere,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name="groq-keys"), string_data={"apiKey": "k"}
            ),
        )
        stacks.wait_condition("keyed", "Ready", "True", timeout=90)

        # Triggers: the operator asks whether the trigger's ServiceAccount may watch Events
        # (create subjectaccessreviews), then watches them itself (list, watch events).
        core = client.CoreV1Api(k8s_api)
        core.create_namespaced_service_account(
            elsewhere, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="watcher"))
        )
        bind_service_account(k8s_api, elsewhere, "watcher", "view", kind="ClusterRole")
        stacks.create(
            "triggered",
            tickIntervalSeconds=3600,
            llm={"model": {"provider": "scripted"}},
            triggers=[{"name": "oom", "serviceAccountName": "watcher", "event": {}}],
        )
        stacks.wait_ticks("triggered", 1, timeout=90)
        core.create_namespaced_event(
            elsewhere,
            client.CoreV1Event(
                metadata=client.V1ObjectMeta(generate_name="web."),
                involved_object=client.V1ObjectReference(
                    kind="Pod", name="web", namespace=elsewhere, uid="u-web"
                ),
                reason="OOMKilling",
                message="out of memory",
                type="Warning",
                last_timestamp=dt.datetime.now(dt.UTC),
            ),
        )
        triggered = StackKeys(StackRef(elsewhere, "triggered")).inputs
        eventually(lambda: redis_reader.xlen(triggered) or None, "the trigger's input")
        stacks.patch_spec("triggered", executionState="Stopped")

        # The runners (runner.credentials=kubernetes, the chart's default) read a stack's
        # own Secret from the stack's namespace with their ServiceAccount's token (get
        # secrets); a stack without a secretRef gets the runners' own key.
        client.CoreV1Api(k8s_api).create_namespaced_secret(
            elsewhere,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name="team-keys"),
                string_data={"OPENAI_API_KEY": "sk-stack-own"},
            ),
        )
        openai = {"baseURL": fake_llm.openai_base_url}
        model = {"provider": "openai", "name": "gpt-4o-mini"}
        own_ref = {"secretRef": {"name": "team-keys", "key": "OPENAI_API_KEY"}}
        stacks.create(
            "own-key", llm={"model": model, "providers": {"openai": {**openai, **own_ref}}}
        )
        stacks.create("pool-key", llm={"model": model, "providers": {"openai": openai}})
        for name in ("own-key", "pool-key"):
            stacks.wait_ticks(name, 1, timeout=90)
            assert stacks.status(name)["lastTickResult"] == "Succeeded", stacks.status(name)

        def used_by(stack: str) -> set[str | None]:
            tick_prefix = f"{elsewhere}/{stack}/"
            return {
                r.credential
                for r in fake_llm.requests
                if r.headers.get("x-agentstack-tick", "").startswith(tick_prefix)
            }

        assert used_by("own-key") == {credential_digest("Bearer sk-stack-own")}
        assert used_by("pool-key") == {credential_digest(f"Bearer {POOL_KEY}")}
        for name in ("own-key", "pool-key"):
            stacks.patch_spec(name, executionState="Stopped")

        # The Job executor creates Jobs; deleting the stack deletes them (deletecollection)
        # and the finalizer goes (patch).
        batch = client.BatchV1Api(k8s_api)
        stacks.create(
            "jobbed",
            executor="job",
            tickIntervalSeconds=5,
            llm={"model": {"provider": "scripted"}},
        )
        jobs = eventually(
            lambda: (
                batch.list_namespaced_job(
                    elsewhere, label_selector="agentstack.dev/stack=jobbed"
                ).items
                or None
            ),
            "a tick Job for the job-executor stack",
        )
        assert jobs[0].spec.template.spec.containers[0].image == "agentstack-operator:0.1.0"

        # A slot sent again finds its Job (409) and reads it, by list: the operator may
        # list Jobs, not get them.
        async def read_as_the_operator(*names: str) -> list[Job | None]:
            kube = operator_kube(
                config.new_client_from_config(config_file=str(chart_fleet.kubeconfigs["operator"]))
            )
            try:
                return [await kube.read_job(elsewhere, name) for name in names]
            finally:
                await kube.close()

        found, missing = asyncio.run(read_as_the_operator(jobs[0].metadata.name, "no-such-job"))
        assert found is not None
        assert found.meta.uid == jobs[0].metadata.uid
        assert missing is None
        stacks.delete("jobbed")
        eventually(lambda: gone(lambda: stacks.get("jobbed")), "the stack's finalizer to run")
        eventually(
            lambda: (
                True
                if not batch.list_namespaced_job(
                    elsewhere, label_selector="agentstack.dev/stack=jobbed"
                ).items
                else None
            ),
            "the stack's Jobs to be deleted",
        )

        # The API (authentication on): a token bound to the built-in `view` role (through
        # the aggregated ClusterRole) reads the stack; an unbound one is refused.
        for account in ("dashboard", "stranger"):
            core.create_namespaced_service_account(
                elsewhere, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=account))
            )
        bind_service_account(k8s_api, elsewhere, "dashboard", "view", kind="ClusterRole")
        path = f"/api/v1/namespaces/{elsewhere}/stacks/team"
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10) as http:
            assert http.get(path).status_code == 401
            stranger = {"Authorization": f"Bearer {_token(k8s_api, elsewhere, 'stranger')}"}
            assert http.get(path, headers=stranger).status_code == 403
            viewer = {"Authorization": f"Bearer {_token(k8s_api, elsewhere, 'dashboard')}"}
            response = eventually(
                lambda: (lambda r: r if r.status_code == 200 else None)(
                    http.get(path, headers=viewer)
                ),
                "the dashboard's view grant to reach the API",
            )
            assert response.json()["name"] == "team"

            # Steering through the API as its own Redis user: an input (the stack's keys
            # and the wake-up stream) and a decision on a waiting tool call.
            core.create_namespaced_service_account(
                elsewhere, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="editor"))
            )
            bind_service_account(k8s_api, elsewhere, "editor", "edit", kind="ClusterRole")
            editor = {"Authorization": f"Bearer {_token(k8s_api, elsewhere, 'editor')}"}
            team = StackKeys(StackRef(elsewhere, "team"))
            pending = waiting_approval("0123456789ab")
            redis_reader.hset(team.approvals, "0123456789ab", pending.to_json())
            sent = eventually(
                lambda: (lambda r: r if r.status_code == 202 else None)(
                    http.post(f"{path}/inputs", headers=editor, json={"content": "hello"})
                ),
                "the editor's grant to reach the API",
            )
            assert sent.json()["number"] >= 1
            assert redis_reader.xlen(team.inputs) == 1
            decided = http.post(
                f"{path}/approvals/0123456789ab", headers=editor, json={"decision": "Approved"}
            )
            assert decided.status_code == 200, decided.text
            approval = Approval.from_json(redis_reader.hget(team.approvals, "0123456789ab"))
            assert approval.state == ApprovalState.APPROVED

        # The runners' password rotated (README "Redis rights"): the new one added, the
        # mounted file rewritten (what the kubelet does), the old one removed, the
        # runners' connections dropped: they log in again from the file, no restart.
        user, old_password = chart_fleet.redis_users["runner"]
        new_password = secrets.token_hex(16)
        redis_reader.execute_command("ACL", "SETUSER", user, f">{new_password}")
        chart_fleet.password_files["runner"].write_text(new_password)
        redis_reader.execute_command("ACL", "SETUSER", user, f"<{old_password}")
        chart_fleet.redis_users["runner"] = (user, new_password)
        assert redis_reader.execute_command("CLIENT", "KILL", "USER", user) >= 1
        stacks.create("rotated", tickIntervalSeconds=1, llm={"model": {"provider": "scripted"}})
        stacks.wait_ticks("rotated", 2, timeout=90)
        assert stacks.status("rotated")["lastTickResult"] == "Succeeded"
    finally:
        _delete_namespace(k8s_api, elsewhere)
    _check_pool_redis_users(chart_fleet, redis_server, redis_reader)


def _check_pool_redis_users(
    fleet: ChartFleet, redis_server: RedisServer, redis_reader: redis.Redis
) -> None:
    """The runners and the API connected as their own users, which open the product's
    keys only and refuse what neither needs (README "Redis rights")."""
    connected = {
        entry["user"] for entry in redis_reader.client_list() if entry.get("user") != "default"
    }
    assert {user for user, _ in fleet.redis_users.values()} <= connected, connected
    refused_to_both: list[tuple[Any, ...]] = [
        ("FLUSHALL",),
        ("KEYS", "*"),
        ("CONFIG", "GET", "requirepass"),
        ("ACL", "LIST"),
        ("INFO",),
        ("SCRIPT", "FLUSH"),
        ("SET", "elsewhere:key", "x"),  # not the product's
        ("PUBLISH", "news", "x"),
    ]
    refused_to_api: list[tuple[Any, ...]] = [
        ("XADD", FleetKeys.lane(Priority.NORMAL.value), "*", "forged", "tick"),
        ("XADD", FleetKeys.results, "*", "forged", "result"),
        ("DEL", FleetKeys.marker),
        ("ZADD", FleetKeys.llm_slots("openai"), "1", "slot"),
    ]
    for component, (user, password) in fleet.redis_users.items():
        with redis.Redis.from_url(
            redis_server.url, username=user, password=password, decode_responses=True
        ) as connection:
            refused = refused_to_both + (refused_to_api if component == "api" else [])
            for command in refused:
                with pytest.raises(redis.exceptions.NoPermissionError):
                    connection.execute_command(*command)
            # What each does need: the stacks' keys (and, for the runners, the fleet's).
            connection.xlen("{team/x}:inputs")
            if component == "runner":
                connection.xlen(FleetKeys.results)


def test_readme_gives_the_chart_redis_user_rules(helm: Helm) -> None:
    """README "Redis rights" shows a platform team the rules to create the runners' and
    the API's users in an external Redis: the very rules the in-chart Redis uses."""
    readme = (REPO / "README.md").read_text()
    documented = {
        match.group(1): match.group(2).split()
        for match in re.finditer(
            r"^ACL SETUSER (agentstack-\w+) reset on >[A-Z-]+PASSWORD (.+)$", readme, re.M
        )
    }
    assert documented == _pool_user_rules(helm)
