"""``agentstack uninstall``: after it, no stack keeps a finalizer nobody will remove.

The command as the chart's pre-delete hook runs it, against the session's control plane
(with its namespace controller, which is what hangs on a finalizer) and a real
operator: ``delete`` has the running operator clean every stack up (Redis keys gone);
``release`` — also the path for a cluster whose operator is already gone — takes only
the operator's finalizer off, and the stacks' namespaces can then be deleted. The
chart's hook itself (scaling the operator down first) runs on the node
(``tests/node``).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest
import redis
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agentstack_core.keys import StackKeys, StackRef
from agentstack_core.resource import GROUP, PLURAL, VERSION
from agentstack_devkit.controlplane import ControlPlane
from agentstack_devkit.fleet import Fleet
from agentstack_operator.finalizing import FINALIZER
from tests.e2e.stacks import Stacks
from tests.helpers import eventually, gone

OTHER_FINALIZER = "example.com/keep-until-archived"


@pytest.fixture
def two_namespaces(k8s_api: client.ApiClient) -> Iterator[list[str]]:
    core = client.CoreV1Api(k8s_api)
    names = [f"uninstall-{secrets.token_hex(3)}" for _ in range(2)]
    for name in names:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield names
    finally:
        for name in names:
            try:
                core.delete_namespace(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise


def _uninstall(plane: ControlPlane, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentstack_cli", "uninstall", *arguments],
        env={**os.environ, "KUBECONFIG": str(plane.kubeconfig_path)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _finalizers(stacks: Stacks, name: str) -> list[str]:
    return list(stacks.get(name)["metadata"].get("finalizers") or [])


def test_delete_has_the_running_operator_clean_up_every_stack(
    running_fleet: Fleet,
    control_plane: ControlPlane,
    k8s_api: client.ApiClient,
    redis_reader: redis.Redis,
    two_namespaces: list[str],
) -> None:
    teams = [Stacks(k8s_api, namespace, redis_reader) for namespace in two_namespaces]
    for team in teams:
        team.create("alpha", tickIntervalSeconds=2)
        team.wait_ticks("alpha", 1)
        assert FINALIZER in _finalizers(team, "alpha")
    result = _uninstall(
        control_plane, "--stacks", "delete", "--namespaces", ",".join(two_namespaces)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for team in teams:
        assert gone(lambda team=team: team.get("alpha"))
        ref = StackRef(team.namespace, "alpha")
        assert not list(redis_reader.scan_iter(match=f"{StackKeys(ref).prefix}*"))


def test_release_frees_the_namespaces_of_an_operator_that_is_gone(
    fleet: Fleet,
    control_plane: ControlPlane,
    k8s_api: client.ApiClient,
    redis_reader: redis.Redis,
    two_namespaces: list[str],
) -> None:
    """No operator runs here: the stacks carry the finalizer it left behind."""
    fleet.stop()  # this module's operator, if an earlier test started it
    custom = client.CustomObjectsApi(k8s_api)
    for namespace in two_namespaces:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AgentStack",
            "metadata": {"name": "left", "finalizers": [FINALIZER, OTHER_FINALIZER]},
            "spec": {"goal": "outlive the operator"},
        }
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            {**body, "metadata": {"name": "ours-only", "finalizers": [FINALIZER]}},
        )
    result = _uninstall(control_plane, "--namespaces", ",".join(two_namespaces))  # release
    assert result.returncode == 0, result.stdout + result.stderr
    for namespace in two_namespaces:
        team = Stacks(k8s_api, namespace, redis_reader)
        assert _finalizers(team, "left") == [OTHER_FINALIZER]  # another's stays
        assert _finalizers(team, "ours-only") == []
        assert f"released {namespace}/ours-only" in result.stdout
    # The other controller releases its own; then the namespaces go, nothing hangs.
    core = client.CoreV1Api(k8s_api)
    for namespace in two_namespaces:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "left", {"metadata": {"finalizers": []}}
        )
        core.delete_namespace(namespace)
    for namespace in two_namespaces:
        eventually(
            lambda namespace=namespace: gone(lambda: core.read_namespace(namespace)),
            f"namespace {namespace} deleted",
            timeout=120,
        )
