"""Fixtures of the end-to-end suite: a fleet of processes per module, a Redis reader."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import redis
from kubernetes import client

from agentstack_devkit.controlplane import ControlPlane
from agentstack_devkit.fleet import Fleet
from agentstack_devkit.redisserver import RedisServer
from tests.conftest import CRD_FILE, MARATHON_SELECTED
from tests.e2e.marathon import Marathon
from tests.e2e.stacks import Stacks


@pytest.fixture(scope="module")
def fleet(
    control_plane: ControlPlane,
    k8s_api: client.ApiClient,
    redis_server: RedisServer,
    crd: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Fleet]:
    """Operator and runner processes of this module (started by the tests that need them).

    The operator's leader Lease lives in a namespace of the module's own, so fleets of
    different modules never wait for each other's lease.
    """
    lease_namespace = f"ops-{secrets.token_hex(4)}"
    client.CoreV1Api(k8s_api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=lease_namespace))
    )
    fleet = Fleet(
        kubeconfig=control_plane.kubeconfig_path,
        redis_url=redis_server.url,
        logs_dir=tmp_path_factory.mktemp("fleet"),
        extra_env={
            "AGENTSTACK_OPERATOR_NAMESPACE": lease_namespace,
            "AGENTSTACK_LEASE_SECONDS": "3",
            "AGENTSTACK_STATUS_MIN_INTERVAL": "0.5",
            "AGENTSTACK_RUNNER_CLAIM_INTERVAL": "0.5",
        },
    )
    try:
        yield fleet
    finally:
        fleet.stop()
        client.CoreV1Api(k8s_api).delete_namespace(lease_namespace)


@pytest.fixture(scope="module")
def running_fleet(fleet: Fleet) -> Fleet:
    """One operator and one runner for the whole module."""
    fleet.operator()
    fleet.runner()
    return fleet


@pytest.fixture(scope="session")
def redis_reader(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the session's Redis that never flushes it (operators are using it)."""
    connection = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture(scope="module")
def steering(
    fleet: Fleet, k8s_api: client.ApiClient, redis_reader: redis.Redis
) -> Iterator[tuple[str, Stacks]]:
    """Operator, runner and an API with Kubernetes authentication (decisions cached for
    a second) serving a namespace of this module's own: the API's URL and the stacks.
    The runner reads stacks' Secrets as the chart's does (``runner.credentials:
    kubernetes``): tool servers' headers come from them."""
    namespace = f"steer-{secrets.token_hex(3)}"
    core = client.CoreV1Api(k8s_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    fleet.operator()
    fleet.runner(AGENTSTACK_RUNNER_CREDENTIALS="kubernetes")
    _process, port = fleet.api(
        AGENTSTACK_API_AUTH="kubernetes", AGENTSTACK_API_AUTH_CACHE_SECONDS="1"
    )
    try:
        yield f"http://127.0.0.1:{port}", Stacks(k8s_api, namespace, redis_reader)
    finally:
        core.delete_namespace(namespace)


@pytest.fixture(scope="session", autouse=True)
def _marathon(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Marathon | None]:
    """The marathon stack, started with the first end-to-end test when its check is
    selected (it ticks beside every other test; see :mod:`tests.e2e.marathon`)."""
    if not request.config.stash.get(MARATHON_SELECTED, False):
        yield None
        return
    marathon = Marathon(CRD_FILE, tmp_path_factory.mktemp("marathon"))
    try:
        marathon.start()
        yield marathon
    finally:
        marathon.stop()


@pytest.fixture
def marathon(_marathon: Marathon | None) -> Marathon:
    assert _marathon is not None, "the marathon starts only when its check is selected"
    return _marathon
