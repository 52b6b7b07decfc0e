"""Pause, resume and stop through the API — as the caller, not as the API.

``POST …/stacks/{name}/state`` makes the same change as ``kubectl patch`` of
``spec.executionState``, and it is made the same way: the API sends the merge patch to
the API server with the *caller's* bearer token. The API server then decides with RBAC
(``patch agentstacks`` in the namespace) and writes the caller, not the API's
ServiceAccount, into its audit log; the API needs no right to change stacks at all.
With authentication off (local development) there is no caller's token, and the
API's own credentials are used.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agentstack_api.errors import ApiError
from agentstack_core.resource import GROUP, PLURAL, VERSION
from agentstack_core.spec import ExecutionState

PATCH_TIMEOUT_SECONDS = 10.0


class StateWriter(Protocol):
    async def set_state(
        self, namespace: str, name: str, state: ExecutionState, token: str | None
    ) -> None:
        """Patch ``spec.executionState``; :class:`ApiError` with the API server's verdict."""
        ...


class KubeStateWriter:
    """:class:`StateWriter` over the official client, one short-lived client per call
    with the caller's token (a steering action is rare; a pool per caller is not worth
    keeping)."""

    def __init__(self, kube: client.ApiClient) -> None:
        self.kube = kube

    async def set_state(
        self, namespace: str, name: str, state: ExecutionState, token: str | None
    ) -> None:
        await asyncio.to_thread(self._patch, namespace, name, state, token)

    def _caller(self, token: str) -> client.ApiClient:
        base = self.kube.configuration
        configuration = client.Configuration()
        configuration.host = base.host
        configuration.ssl_ca_cert = base.ssl_ca_cert
        configuration.verify_ssl = base.verify_ssl
        configuration.tls_server_name = getattr(base, "tls_server_name", None)
        configuration.api_key = {"authorization": f"Bearer {token}"}
        return client.ApiClient(configuration)

    def _patch(self, namespace: str, name: str, state: ExecutionState, token: str | None) -> None:
        api = self._caller(token) if token is not None else self.kube
        try:
            client.CustomObjectsApi(api).patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"spec": {"executionState": state.value}},
                _request_timeout=PATCH_TIMEOUT_SECONDS,
            )
        except ApiException as exc:
            raise _refusal(exc, namespace, name) from exc
        finally:
            if api is not self.kube:
                api.close()  # type: ignore[no-untyped-call]


def _refusal(exc: ApiException, namespace: str, name: str) -> ApiError:
    if exc.status == 403:
        return ApiError(
            403, "Forbidden", f"RBAC does not allow patch of agentstacks in {namespace}"
        )
    if exc.status == 404:
        return ApiError(404, "NotFound", f"no AgentStack {namespace}/{name}")
    if exc.status == 401:
        return ApiError(401, "Unauthorized", "the API server did not accept the token")
    return ApiError(
        503, "KubernetesUnavailable", f"the API server answered {exc.status}: {exc.reason}"
    )
