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

from typing import Protocol

from agentstack_api.errors import ApiError, kubernetes_unavailable
from agentstack_core.kube.client import KubeClient
from agentstack_core.kube.errors import (
    ForbiddenError,
    KubeError,
    NotFoundError,
    UnauthorizedError,
)
from agentstack_core.kube.stacks import stack_path
from agentstack_core.spec import ExecutionState


class StateWriter(Protocol):
    async def set_state(
        self, namespace: str, name: str, state: ExecutionState, token: str | None
    ) -> None:
        """Patch ``spec.executionState``; :class:`ApiError` with the API server's verdict."""
        ...


class KubeStateWriter:
    """:class:`StateWriter` over the async client: a merge patch sent with the caller's
    token (:meth:`~agentstack_core.kube.client.KubeClient.merge_patch`), else with the
    API's own credentials."""

    def __init__(self, kube: KubeClient) -> None:
        self.kube = kube

    async def set_state(
        self, namespace: str, name: str, state: ExecutionState, token: str | None
    ) -> None:
        try:
            await self.kube.merge_patch(
                stack_path(namespace, name), {"spec": {"executionState": state.value}}, token=token
            )
        except KubeError as exc:
            raise _refusal(exc, namespace, name) from exc


def _refusal(exc: KubeError, namespace: str, name: str) -> ApiError:
    if isinstance(exc, ForbiddenError):
        return ApiError(
            403, "Forbidden", f"RBAC does not allow patch of agentstacks in {namespace}"
        )
    if isinstance(exc, NotFoundError):
        return ApiError(404, "NotFound", f"no AgentStack {namespace}/{name}")
    if isinstance(exc, UnauthorizedError):
        return ApiError(401, "Unauthorized", "the API server did not accept the token")
    return kubernetes_unavailable(exc)
