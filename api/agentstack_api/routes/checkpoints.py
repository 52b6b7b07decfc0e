"""A stack's checkpoints, and rolling it back to one.

Routes::

    GET  /api/v1/namespaces/{namespace}/stacks/{name}/checkpoints   the checkpoints kept
    POST /api/v1/namespaces/{namespace}/stacks/{name}/rollback      restore one (paused)

Listing is a read (``get agentstacks``); a rollback is authorised by a
SubjectAccessReview of ``create agentstacks/rollback`` in the stack's namespace (the
chart's edit role grants it), and pauses the stack with the caller's own token
(:mod:`~..rollbacks`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header

from agentstack_api import models
from agentstack_api.auth import bearer_token
from agentstack_api.errors import error_responses
from agentstack_api.params import STACK_PATH, Access, Caller, Name, Namespace, RollbacksService

router = APIRouter()

ROLLBACK_ERRORS = error_responses(
    (403, "RBAC does not allow create on agentstacks/rollback, or patch of agentstacks"),
    (404, "No such stack, or no checkpoint of that tick is kept"),
    (409, "Paused, but a tick still runs (or the pause is not yet published): ask again"),
    (503, "The API server could not be reached"),
)


@router.get(
    f"{STACK_PATH}/checkpoints",
    response_model=models.CheckpointList,
    summary="The checkpoints kept: the state each tick left",
)
async def list_checkpoints(
    namespace: Namespace, name: Name, caller: Caller, access: Access, rollbacks: RollbacksService
) -> models.CheckpointList:
    stack = await access.readable(caller, namespace, name)
    return await rollbacks.listing(stack)


@router.post(
    f"{STACK_PATH}/rollback",
    response_model=models.RollbackResult,
    responses=ROLLBACK_ERRORS,
    summary="Pause the stack and restore the state a tick left (it stays paused)",
)
async def rollback(
    namespace: Namespace,
    name: Name,
    body: models.RollbackRequest,
    caller: Caller,
    access: Access,
    rollbacks: RollbacksService,
    authorization: Annotated[str | None, Header()] = None,
) -> models.RollbackResult:
    stack = await access.steerable(caller, namespace, name, verb="create", subresource="rollback")
    token = bearer_token(authorization) if access.auth.forwards_token else None
    return await rollbacks.rollback(stack, caller, body, token)
