"""Fixtures shared by the whole suite: a real control plane, real Redis, namespaces.

The fixtures are thin: they call the same ``agentstack_devkit`` code that
``agentstack dev`` runs, so the suite exercises the developer's environment too.

Markers follow the directory a test lives in (``tests/unit``, ``tests/integration``,
``tests/e2e``, ``tests/reliability``, ``tests/node``), so ``pytest -m unit`` selects what needs no
external process.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from agentstack_devkit.controlplane import ControlPlane
from agentstack_devkit.rediscluster import RedisClusterServers
from agentstack_devkit.redisserver import RedisServer
from agentstack_devkit.toolchain import controlplane_binaries

_MARKER_BY_DIRECTORY = {
    "unit": "unit",
    "integration": "integration",
    "e2e": "e2e",
    "reliability": "reliability",
    "node": "node",
}
CRD_FILE = Path(__file__).resolve().parents[1] / "crds" / "agentstack.dev_agentstacks.yaml"
MARATHON_SELECTED = pytest.StashKey[bool]()
"""Whether the marathon's check runs in this session (:mod:`tests.e2e.marathon`)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests_root = Path(__file__).parent
    for item in items:
        relative = item.path.relative_to(tests_root)
        marker = _MARKER_BY_DIRECTORY.get(relative.parts[0])
        if marker is None:
            raise pytest.UsageError(
                f"{item.nodeid}: tests live in tests/unit, tests/integration, tests/e2e "
                "or tests/reliability"
            )
        item.add_marker(marker)
    _marathon_last(config, items, tests_root)


def _marathon_last(config: pytest.Config, items: list[pytest.Item], root: Path) -> None:
    """The marathon's check goes after every other end-to-end test: the stack it checks
    ticks beside them all (:mod:`tests.e2e.marathon`)."""
    marathon = [item for item in items if item.path.name == "test_marathon.py"]
    config.stash[MARATHON_SELECTED] = bool(marathon)
    if not marathon:
        return
    for item in marathon:
        items.remove(item)
    e2e = [i for i, item in enumerate(items) if item.path.relative_to(root).parts[0] == "e2e"]
    at = e2e[-1] + 1 if e2e else len(items)
    items[at:at] = marathon


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager for the whole session."""
    with ControlPlane(controlplane_binaries()) as plane:
        yield plane


@pytest.fixture(scope="session")
def k8s_api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    """An admin API client built from the control plane's kubeconfig file."""
    api = config.new_client_from_config(config_file=str(control_plane.kubeconfig_path))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def namespace(k8s_api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting for it to go)."""
    name = f"test-{secrets.token_hex(4)}"
    core = client.CoreV1Api(k8s_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        with contextlib.suppress(ApiException):  # a test may have deleted it already
            core.delete_namespace(name)


@pytest.fixture(scope="session")
def crd(control_plane: ControlPlane, k8s_api: client.ApiClient) -> str:
    """Apply the project's CRDs with kubectl and wait until they are established;
    returns the AgentStack CRD's name."""
    control_plane.apply_project_crds(CRD_FILE.parents[1])
    return "agentstacks.agentstack.dev"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server on a free loopback port for the whole session."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the session's Redis; the database is flushed after each test."""
    connection = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        yield connection
    finally:
        connection.flushall()
        connection.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A real three-master Redis Cluster on free loopback ports for the whole session."""
    with RedisClusterServers() as cluster:
        yield cluster
