"""Status patches on the event loop (``Kube.patch_status`` over aiohttp) against a real
kube-apiserver: written, 404 as "gone", schema errors raised, credentials checked."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest
from kubernetes import client

from agentstack_core.keys import StackRef
from agentstack_core.kube.errors import KubeError
from agentstack_core.resource import GROUP, PLURAL, VERSION
from agentstack_operator.kube import Kube
from tests.helpers import operator_kube


@pytest.fixture
def stack(k8s_api: client.ApiClient, crd: str, namespace: str) -> StackRef:
    name = f"status-{secrets.token_hex(3)}"
    client.CustomObjectsApi(k8s_api).create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AgentStack",
            "metadata": {"name": name},
            "spec": {"goal": "Say hello", "tickIntervalSeconds": 5},
        },
    )
    return StackRef(namespace, name)


def _status(k8s_api: client.ApiClient, ref: StackRef) -> dict[str, Any]:
    body = client.CustomObjectsApi(k8s_api).get_namespaced_custom_object(
        GROUP, VERSION, ref.namespace, PLURAL, ref.name
    )
    return dict(body.get("status") or {})


async def _patch(kube: Kube, ref: StackRef, body: dict[str, Any]) -> bool:
    try:
        return await kube.patch_status(ref, body)
    finally:
        await kube.close()


def test_a_status_patch_is_merged_into_the_status(
    k8s_api: client.ApiClient, stack: StackRef
) -> None:
    kube = operator_kube(k8s_api)

    async def two_patches() -> None:
        try:
            assert await kube.patch_status(stack, {"ticks": 3, "phase": "Running"})
            # A merge patch: fields it does not name stay as they were.
            assert await kube.patch_status(stack, {"ticks": 4})
        finally:
            await kube.close()

    asyncio.run(two_patches())
    status = _status(k8s_api, stack)
    assert (status["ticks"], status["phase"]) == (4, "Running")


def test_a_missing_stack_reads_as_gone(k8s_api: client.ApiClient, crd: str, namespace: str) -> None:
    written = asyncio.run(
        _patch(operator_kube(k8s_api), StackRef(namespace, "no-such-stack"), {"ticks": 1})
    )
    assert written is False


def test_a_status_the_schema_refuses_raises_with_the_api_servers_reason(
    k8s_api: client.ApiClient, stack: StackRef
) -> None:
    with pytest.raises(KubeError) as refused:
        asyncio.run(_patch(operator_kube(k8s_api), stack, {"ticks": "many"}))
    assert refused.value.status == 422
    assert "ticks" in str(refused.value)
    assert "ticks" not in _status(k8s_api, stack)


def test_a_token_the_api_server_does_not_know_is_refused(
    k8s_api: client.ApiClient, stack: StackRef
) -> None:
    configuration = client.Configuration()
    configuration.host = k8s_api.configuration.host
    configuration.ssl_ca_cert = k8s_api.configuration.ssl_ca_cert
    configuration.api_key = {"authorization": "not-a-token"}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    with pytest.raises(KubeError) as refused:
        asyncio.run(_patch(operator_kube(client.ApiClient(configuration)), stack, {"ticks": 9}))
    assert refused.value.status == 401
    assert "ticks" not in _status(k8s_api, stack)
