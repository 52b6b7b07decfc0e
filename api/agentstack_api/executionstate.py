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

from typing import Any, Protocol

from agentstack_api.errors import ApiError, kubernetes_unavailable
from agentstack_core.kube.client import KubeClient
from agentstack_core.kube.errors import (
    ConflictError,
    ForbiddenError,
    InvalidError,
    KubeError,
    NotFoundError,
    UnauthorizedError,
)
from agentstack_core.kube.stacks import stack_path, stacks_path
from agentstack_core.spec import ExecutionState


class StateWriter(Protocol):
    async def set_state(
        self, namespace: str, name: str, state: ExecutionState, token: str | None
    ) -> None:
        """Patch ``spec.executionState``; :class:`ApiError` with the API server's verdict."""
        ...


class StackCreator(Protocol):
    async def create(
        self, namespace: str, body: dict[str, Any], token: str | None
    ) -> dict[str, Any]:
        """Create the AgentStack ``body``; :class:`ApiError` with the API server's verdict
        (code ``AlreadyExists`` for a name taken)."""
        ...

    async def get(self, namespace: str, name: str, token: str | None) -> dict[str, Any]:
        """The AgentStack as the API server serves it to the token's owner."""
        ...


class KubeStateWriter:
    """:class:`StateWriter` and :class:`StackCreator` over the async client: calls made
    with the caller's token (:meth:`~agentstack_core.kube.client.KubeClient.merge_patch`,
    ``create``, ``get``), else with the API's own credentials."""

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

    async def create(
        self, namespace: str, body: dict[str, Any], token: str | None
    ) -> dict[str, Any]:
        """Create an AgentStack with the caller's token (RBAC's ``create agentstacks``
        in ``namespace``, and the CRD's schema, decided by the API server)."""
        name = str(body["metadata"]["name"])
        try:
            return await self.kube.create(stacks_path(namespace), body, token=token)
        except ConflictError as exc:
            raise ApiError(409, "AlreadyExists", f"AgentStack {namespace}/{name} exists") from exc
        except InvalidError as exc:
            raise ApiError(422, "Invalid", f"the API server refused it: {exc.message}") from exc
        except KubeError as exc:
            raise _refusal(exc, namespace, name, verb="create") from exc

    async def get(self, namespace: str, name: str, token: str | None) -> dict[str, Any]:
        try:
            return await self.kube.get(stack_path(namespace, name), token=token)
        except KubeError as exc:
            raise _refusal(exc, namespace, name, verb="get") from exc


def _refusal(exc: KubeError, namespace: str, name: str, verb: str = "patch") -> ApiError:
    if isinstance(exc, ForbiddenError):
        return ApiError(
            403, "Forbidden", f"RBAC does not allow {verb} of agentstacks in {namespace}"
        )
    if isinstance(exc, NotFoundError):
        return ApiError(404, "NotFound", f"no AgentStack {namespace}/{name}")
    if isinstance(exc, UnauthorizedError):
        return ApiError(401, "Unauthorized", "the API server did not accept the token")
    return kubernetes_unavailable(exc)
