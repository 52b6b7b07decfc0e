"""The API process's Kubernetes parts on the async layer, against a real kube-apiserver:
the stack cache (a list, then a watch, on the event loop), TokenReview and
SubjectAccessReview, the execution-state patch made as the caller, webhook Secrets."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis
from kubernetes import client

from agentstack_api.auth import AuthError, KubernetesAccess
from agentstack_api.cache import StackCache, StackChange
from agentstack_api.errors import ApiError
from agentstack_api.executionstate import KubeStateWriter
from agentstack_api.webhooks import KubeSecrets
from agentstack_core.kube.client import KubeClient
from agentstack_core.kube.settings import from_kubeconfig
from agentstack_core.spec import ExecutionState
from agentstack_devkit.controlplane import ControlPlane
from tests.e2e.accounts import account
from tests.e2e.stacks import Stacks
from tests.helpers import until


@pytest_asyncio.fixture
async def kube(control_plane: ControlPlane, crd: str) -> AsyncIterator[KubeClient]:
    kube = KubeClient(from_kubeconfig(str(control_plane.kubeconfig_path)))
    yield kube
    await kube.close()


@pytest.fixture
def stacks(k8s_api: client.ApiClient, namespace: str, redis_reader: redis.Redis) -> Stacks:
    return Stacks(k8s_api, namespace, redis_reader)


@pytest.mark.asyncio
async def test_the_cache_lists_then_follows_its_namespaces_stacks(
    kube: KubeClient, stacks: Stacks, namespace: str
) -> None:
    stacks.create("listed")
    cache = StackCache(kube, [namespace])
    cache.start()
    try:
        await until(cache.ready.is_set, "the first list")
        assert [s["metadata"]["name"] for s in cache.items()] == ["listed"]
        subscription = cache.subscribe(cache.seq)
        stacks.create("watched")
        await until(lambda: cache.get(namespace, "watched") is not None, "the watched stack")
        stacks.patch_spec("listed", executionState="Paused")
        await until(
            lambda: (
                (cache.get(namespace, "listed") or {})["spec"].get("executionState") == "Paused"
            ),
            "the paused stack",
        )
        stacks.delete("watched")
        await until(lambda: cache.get(namespace, "watched") is None, "the deleted stack")
        changes: list[StackChange] = []
        while (change := await subscription.next(1.0)) is not None:
            changes.append(change)
        subscription.close()
    finally:
        await cache.stop()
    assert [(c.kind, c.stack["name"], c.stack["executionState"]) for c in changes] == [
        ("upsert", "watched", "Running"),
        ("upsert", "listed", "Paused"),
        ("delete", "watched", "Running"),
    ]


@pytest.mark.asyncio
async def test_tokens_and_rights_are_reviewed_by_the_api_server(
    kube: KubeClient, k8s_api: client.ApiClient, namespace: str
) -> None:
    token = account(k8s_api, namespace, "reader")  # may get stacks here, nothing else
    access = KubernetesAccess(kube, ttl=0.0)
    user = await access.authenticate(f"Bearer {token}")
    assert user.name == f"system:serviceaccount:{namespace}:reader"
    with pytest.raises(AuthError):
        await access.authenticate("Bearer not-a-token")
    assert await access.may_get(user, namespace)
    assert not await access.may_get(user, "kube-system")
    assert not await access.may(user, namespace, "patch")


@pytest.mark.asyncio
async def test_a_state_change_is_made_as_the_caller(
    kube: KubeClient, k8s_api: client.ApiClient, stacks: Stacks, namespace: str
) -> None:
    stacks.create("steered")
    writer = KubeStateWriter(kube)
    await writer.set_state(namespace, "steered", ExecutionState.PAUSED, None)  # as the API
    assert stacks.get("steered")["spec"]["executionState"] == "Paused"
    onlooker = account(k8s_api, namespace, "onlooker")
    with pytest.raises(ApiError) as refused:
        await writer.set_state(namespace, "steered", ExecutionState.RUNNING, onlooker)
    assert (refused.value.status, refused.value.code) == (403, "Forbidden")
    assert stacks.get("steered")["spec"]["executionState"] == "Paused"
    with pytest.raises(ApiError) as missing:
        await writer.set_state(namespace, "nobody", ExecutionState.RUNNING, None)
    assert (missing.value.status, missing.value.code) == (404, "NotFound")


@pytest.mark.asyncio
async def test_a_webhook_key_is_read_from_its_secret(
    kube: KubeClient, k8s_api: client.ApiClient, namespace: str
) -> None:
    client.CoreV1Api(k8s_api).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="hooks"),
            data={"github": base64.b64encode(b"shared-key").decode()},
        ),
    )
    secrets = KubeSecrets(kube)
    assert await secrets.key(namespace, "hooks", "github") == b"shared-key"
    assert await secrets.key(namespace, "hooks", "absent") is None
    assert await secrets.key(namespace, "absent", "github") is None
