"""Steering a stack: inputs sent to its agents, and what became of them.

Routes::

    POST /api/v1/namespaces/{namespace}/stacks/{name}/inputs   send an input (202)
    GET  /api/v1/namespaces/{namespace}/stacks/{name}/inputs   the inputs, newest first
    POST /api/v1/namespaces/{namespace}/stacks/{name}/state    pause, resume or stop
    GET  /api/v1/namespaces/{namespace}/stacks/{name}/approvals          tool calls waiting
    POST /api/v1/namespaces/{namespace}/stacks/{name}/approvals/{id}     approve or deny

Sending is authorised by a SubjectAccessReview of ``create agentstacks/inputs`` in the
stack's namespace (the chart's edit role grants it); reading the log by ``get``, like
every read. A decision on a tool call is authorised by ``update agentstacks/approvals``
(the edit role grants it; grant it alone to make approvers), recorded with the
caller's name and announced by an Event on the stack. The services are
:class:`~..inputs.Inputs`, :class:`~..approvals.Approvals` and, for the state, a
:class:`~..executionstate.StateWriter` that patches the stack with the caller's own
token (RBAC's ``patch agentstacks``, decided and audited by the API server).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path

from agentstack_api import models
from agentstack_api.auth import bearer_token
from agentstack_api.errors import error_responses
from agentstack_api.params import (
    STACK_PATH,
    Access,
    ApprovalsService,
    Caller,
    Cursor,
    InputsService,
    Limit,
    Name,
    Namespace,
    StateWriterService,
)
from agentstack_core.spec import ExecutionState

router = APIRouter()

INPUT_ERRORS = error_responses(
    (403, "RBAC does not allow create on agentstacks/inputs in the namespace"),
    (404, "No such stack, or no such agent in it"),
    (409, "The stack is stopped, invalid, or not yet taken on by the operator"),
    (413, "The content is larger than spec.inputs.maxBytes"),
    (429, "Over spec.inputs.maxPerMinute (see Retry-After)"),
)


STATE_ERRORS = error_responses(
    (403, "RBAC does not allow the caller to patch agentstacks in the namespace"),
    (503, "The API server could not be reached"),
)


@router.post(
    f"{STACK_PATH}/inputs",
    status_code=202,
    response_model=models.InputAccepted,
    responses=INPUT_ERRORS,
    summary="Send an input to one of the stack's agents",
)
async def send_input(
    namespace: Namespace,
    name: Name,
    body: models.InputRequest,
    caller: Caller,
    access: Access,
    inputs: InputsService,
) -> models.InputAccepted:
    stack = await access.steerable(caller, namespace, name, verb="create", subresource="inputs")
    return await inputs.send(stack, caller, body)


@router.get(f"{STACK_PATH}/inputs", response_model=models.InputPage, summary="Inputs sent")
async def list_inputs(
    namespace: Namespace,
    name: Name,
    caller: Caller,
    access: Access,
    inputs: InputsService,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> models.InputPage:
    stack = await access.readable(caller, namespace, name)
    return await inputs.page(stack, cursor=cursor, limit=limit)


@router.post(
    f"{STACK_PATH}/state",
    response_model=models.StackState,
    responses=STATE_ERRORS,
    summary="Pause, resume or stop the stack (a patch made with the caller's token)",
)
async def set_state(
    namespace: Namespace,
    name: Name,
    body: models.StateRequest,
    caller: Caller,
    access: Access,
    writer: StateWriterService,
    authorization: Annotated[str | None, Header()] = None,
) -> models.StackState:
    token = bearer_token(authorization) if access.auth.forwards_token else None
    await writer.set_state(namespace, name, ExecutionState(body.executionState), token)
    return models.StackState(namespace=namespace, name=name, executionState=body.executionState)


APPROVAL_ERRORS = error_responses(
    (403, "RBAC does not allow update on agentstacks/approvals in the namespace"),
    (404, "No such stack, or no such approval in it"),
    (409, "The call was decided already, or its approval expired"),
)
ApprovalId = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$", description="The approval's id.")]


@router.get(
    f"{STACK_PATH}/approvals", response_model=models.ApprovalList, summary="Tool calls waiting"
)
async def list_approvals(
    namespace: Namespace, name: Name, caller: Caller, access: Access, approvals: ApprovalsService
) -> models.ApprovalList:
    stack = await access.readable(caller, namespace, name)
    return await approvals.listing(stack)


@router.post(
    f"{STACK_PATH}/approvals/{{approval}}",
    response_model=models.DecisionResult,
    responses=APPROVAL_ERRORS,
    summary="Approve or deny a tool call that waits for a person",
)
async def decide_approval(
    namespace: Namespace,
    name: Name,
    approval: ApprovalId,
    body: models.DecisionRequest,
    caller: Caller,
    access: Access,
    approvals: ApprovalsService,
) -> models.DecisionResult:
    stack = await access.steerable(caller, namespace, name, verb="update", subresource="approvals")
    return await approvals.decide(stack, caller, approval, body)
