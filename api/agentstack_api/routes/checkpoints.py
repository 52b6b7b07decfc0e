"""A stack's checkpoints: listed, rolled back to, forked from.

Routes::

    GET  /api/v1/namespaces/{namespace}/stacks/{name}/checkpoints   the checkpoints kept
    POST /api/v1/namespaces/{namespace}/stacks/{name}/rollback      restore one (paused)
    POST /api/v1/namespaces/{namespace}/stacks/{name}/fork          a new stack from one

Listing is a read (``get agentstacks``); a rollback is authorised by a
SubjectAccessReview of ``create agentstacks/rollback`` in the stack's namespace (the
chart's edit role grants it), and pauses the stack with the caller's own token
(:mod:`~..rollbacks`). A fork needs ``get`` on the source (checked here) and ``create
agentstacks`` in the target namespace — decided by the API server itself, since the
fork is created with the caller's token (:mod:`~..forks`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header

from agentstack_api import models
from agentstack_api.auth import bearer_token
from agentstack_api.errors import error_responses
from agentstack_api.params import (
    STACK_PATH,
    Access,
    Caller,
    ForksService,
    Name,
    Namespace,
    RollbacksService,
)

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


FORK_ERRORS = error_responses(
    (400, "An override that names no place in the spec"),
    (403, "RBAC does not allow get on the source, or create of agentstacks in the target"),
    (404, "No such stack, or no checkpoint of that tick is kept"),
    (409, "The name is taken, or the fork is created but not yet seeded: ask again"),
    (422, "The API server refused the fork's spec (the CRD's schema)"),
    (503, "The API server could not be reached"),
)


@router.post(
    f"{STACK_PATH}/fork",
    status_code=201,
    response_model=models.ForkResult,
    responses=FORK_ERRORS,
    summary="A new stack from a checkpoint of this one: shadowed, with overrides",
)
async def fork(
    namespace: Namespace,
    name: Name,
    body: models.ForkRequest,
    caller: Caller,
    access: Access,
    forks: ForksService,
    authorization: Annotated[str | None, Header()] = None,
) -> models.ForkResult:
    stack = await access.readable(caller, namespace, name)
    token = bearer_token(authorization) if access.auth.forwards_token else None
    return await forks.fork(stack, caller, body, token)
