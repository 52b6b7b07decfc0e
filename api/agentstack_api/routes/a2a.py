"""Each stack as an A2A agent (:mod:`..a2aserver`): its card and its JSON-RPC endpoint.

Routes::

    GET  /api/v1/namespaces/{namespace}/stacks/{name}/a2a/.well-known/agent-card.json
    POST /api/v1/namespaces/{namespace}/stacks/{name}/a2a        JSON-RPC (A2A 1.0, 0.3)

An A2A client given ``…/stacks/{name}/a2a`` as the agent's URL finds the card where the
SDK's resolver looks; the card names the endpoint by the URL the request came in on,
or under ``AGENTSTACK_API_PUBLIC_URL`` when set (a proxy in front that terminates TLS).
The card needs ``get`` on the stack, like every read; the endpoint needs ``create
agentstacks/inputs``, like ``POST …/inputs``, for every method (a message is an input;
a task is one). Both answer with the API's one error body
before the protocol starts (401, 403 before 404; 400 for a body that is not a JSON
object, so not a JSON-RPC call at all); past that, refusals are JSON-RPC errors in a
200, as the protocol says.
"""

from __future__ import annotations

import json
from typing import Any

from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from agentstack_api.a2a import CARD_PATH
from agentstack_api.a2aserver import StackCall
from agentstack_api.errors import ApiError, error_responses
from agentstack_api.params import (
    STACK_PATH,
    A2AService,
    Access,
    Caller,
    Name,
    Namespace,
)

router = APIRouter()

A2A_PATH = f"{STACK_PATH}/a2a"

_JSON_OBJECT = {"type": "object", "additionalProperties": True}
CARD_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The stack's A2A agent card, derived from its spec",
        "content": {"application/json": {"schema": _JSON_OBJECT}},
    },
    **error_responses((409, "The stack's spec is invalid")),
}
RPC_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A JSON-RPC response (a result or a JSON-RPC error); a stream of "
        "them as Server-Sent Events for SendStreamingMessage and SubscribeToTask",
        "content": {
            "application/json": {"schema": _JSON_OBJECT},
            "text/event-stream": {"schema": {"type": "string"}},
        },
    },
    **error_responses((403, "RBAC does not allow create on agentstacks/inputs in the namespace")),
}


@router.get(
    f"{A2A_PATH}{CARD_PATH}",
    response_model=None,
    responses=CARD_ANSWERS,
    summary="The stack's A2A agent card",
)
async def agent_card(
    namespace: Namespace,
    name: Name,
    request: Request,
    caller: Caller,
    access: Access,
    agents: A2AService,
) -> JSONResponse:
    stack = await access.readable(caller, namespace, name)
    if agents.public_url:  # behind a proxy that rewrites the scheme or host
        path = request.app.url_path_for("a2a_endpoint", namespace=namespace, name=name)
        url = f"{agents.public_url}{path}"
    else:
        url = str(request.url_for("a2a_endpoint", namespace=namespace, name=name))
    return JSONResponse(agent_card_to_dict(agents.card(stack, url)))


@router.post(
    A2A_PATH,
    name="a2a_endpoint",
    response_model=None,
    responses=RPC_ANSWERS,
    summary="The stack's A2A endpoint (JSON-RPC): a message is an input, a task its fate",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _JSON_OBJECT}},
        }
    },
)
async def a2a_endpoint(
    namespace: Namespace,
    name: Name,
    request: Request,
    caller: Caller,
    access: Access,
    agents: A2AService,
) -> Response:
    stack = await access.steerable(caller, namespace, name, verb="create", subresource="inputs")
    try:
        call = json.loads(await request.body())  # kept by Starlette for the dispatcher
    except ValueError:
        call = None
    if not isinstance(call, dict):
        raise ApiError(400, "InvalidParameter", "the body must be a JSON-RPC request object")
    request.state.a2a_call = StackCall(stack=stack, caller=caller)
    return await agents.dispatcher.handle_requests(request)
