"""The chart on a real node: the image built here, pods run by containerd, helm install.

One :class:`NodeCluster` per module (one node per machine: the bridge, the iptables
chains and the cgroups are the machine's, so modules take turns; ``agentstack dev up``
runs its own), and one release in it, published to the cluster's registry and installed
from there the way ``agentstack dev up`` does it. Redis and the read API are reached as a user
reaches them, through ``kubectl port-forward``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from kubernetes import client, config

from agentstack_devkit.controlplane import PortForward
from agentstack_devkit.helm import (
    API_SERVICE,
    REDIS_SERVICE,
    RELEASE,
    RELEASE_NAMESPACE,
    ChartSource,
    Helm,
    dev_values,
    external_redis_values,
    install_dev_release,
    redis_password,
)
from agentstack_devkit.node import NodeCluster
from agentstack_devkit.release import DevRelease, publish_dev
from tests.helpers import eventually


@pytest.fixture(scope="module")
def node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    with NodeCluster(data_dir=tmp_path_factory.mktemp("node-plane")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def dev_release(node_cluster: NodeCluster) -> DevRelease:
    """The checkout's images and chart, published to the cluster's registry."""
    published = publish_dev(node_cluster.registry.target)
    node_cluster.node.prune_images(published.images)
    return published


@pytest.fixture(scope="module")
def external_redis() -> str | None:
    """The URL of a Redis outside the cluster for :func:`release` (reached by pods and
    the test alike), or ``None``: the in-chart Redis, through a port-forward. A module
    overrides it."""
    return None


@pytest.fixture(scope="module")
def installed(dev_release: DevRelease) -> DevRelease:
    """What :func:`release` installs: the checkout's (a module upgrading from an earlier
    version overrides it)."""
    return dev_release


@pytest.fixture(scope="module")
def node_api(node_cluster: NodeCluster) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(node_cluster.plane.kubeconfig_path))
    try:
        yield api
    finally:
        api.close()


@dataclass
class Release:
    """The installed chart and the ways in: helm, the API server, Redis, the read API."""

    cluster: NodeCluster
    helm: Helm
    api: client.ApiClient
    chart: ChartSource
    values: dict[str, str]
    redis_url: str
    api_url: str
    forwards: list[PortForward] = field(default_factory=list)

    def reader(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, decode_responses=True)

    def login(self, username: str, password: str) -> redis.Redis:
        """A client of the in-chart Redis as ``username`` (through the same forward)."""
        address = urlsplit(self.redis_url)
        return redis.Redis(
            host=address.hostname or "",
            port=address.port or 6379,
            username=username,
            password=password,
            decode_responses=True,
        )

    def reconnect(self) -> None:
        """Start the port-forwards again on their ports: kubectl ends one when the pod
        behind it restarts or the kubelet that carried its stream dies."""
        for forward in self.forwards:
            forward.restart()

    def pods(self, component: str) -> list[Any]:
        listed = client.CoreV1Api(self.api).list_namespaced_pod(
            RELEASE_NAMESPACE, label_selector=f"app.kubernetes.io/component={component}"
        )
        return list(listed.items)

    def ready_pods(self, component: str) -> list[str] | None:
        """Names of the component's pods when every one of them is Running and Ready
        (and none is terminating), else ``None``."""
        pods = self.pods(component)
        if not pods:
            return None
        for pod in pods:
            if pod.metadata.deletion_timestamp is not None or pod.status.phase != "Running":
                return None
            conditions = {c.type: c.status for c in pod.status.conditions or []}
            if conditions.get("Ready") != "True":
                return None
        return sorted(pod.metadata.name for pod in pods)


@pytest.fixture(scope="module")
def release(
    node_cluster: NodeCluster,
    node_api: client.ApiClient,
    installed: DevRelease,
    external_redis: str | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Release]:
    """The published chart installed with ``helm install --wait`` as ``agentstack dev
    up`` does (its values and nothing more); uninstalled afterwards if still there."""
    plane = node_cluster.plane
    helm = Helm(tmp_path_factory.mktemp("helm"), plane.kubeconfig_path)
    if external_redis is None:
        values = dev_values(installed.redis_image)
    else:
        values = external_redis_values(external_redis)
    install_dev_release(helm, installed.published.source(), values)
    api_forward, api_port = plane.port_forward(
        RELEASE_NAMESPACE, f"svc/{API_SERVICE}", 8080, name="test-forward-api"
    )
    forwards = [api_forward]
    if external_redis is None:
        redis_forward, redis_port = plane.port_forward(
            RELEASE_NAMESPACE, f"svc/{REDIS_SERVICE}", 6379, name="test-forward-redis"
        )
        forwards.append(redis_forward)
        redis_url = f"redis://:{redis_password(plane)}@127.0.0.1:{redis_port}/0"
    installed = Release(
        cluster=node_cluster,
        helm=helm,
        api=node_api,
        chart=installed.published.source(),
        values=values,
        redis_url=redis_url if external_redis is None else external_redis,
        api_url=f"http://127.0.0.1:{api_port}",
        forwards=forwards,
    )
    try:
        yield installed
    finally:
        for forward in installed.forwards:
            forward.stop()
        helm.uninstall(RELEASE, RELEASE_NAMESPACE)


def wait_rolled_out(release: Release, component: str, timeout: float = 180) -> list[str]:
    return eventually(
        lambda: release.ready_pods(component),
        f"every {component} pod Running and Ready",
        timeout=timeout,
    )
