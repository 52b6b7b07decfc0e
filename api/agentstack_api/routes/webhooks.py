"""Signed webhooks: the one route without a bearer token (:mod:`..webhooks`).

Route::

    POST /api/v1/namespaces/{namespace}/stacks/{name}/webhooks/{webhook}   a delivery (202)

Expose this path alone to callers outside the cluster (see the README's Ingress
example); every other route of the API expects a Kubernetes identity.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from agentstack_api import models
from agentstack_api.errors import error_responses
from agentstack_api.params import (
    STACK_PATH,
    Name,
    Namespace,
    WebhookName,
    WebhooksService,
)
from agentstack_api.webhooks import read_body

router = APIRouter()

WEBHOOK_ERRORS = error_responses(
    (401, "No such webhook, or the delivery's signature does not verify"),
    (404, "The webhook's agent is not in the team"),
    (409, "A delivery with this id was accepted before, or the stack is stopped or not ready"),
    (413, "The delivery is larger than the webhook's maxBodyBytes"),
    (429, "Over spec.inputs.maxPerMinute (see Retry-After)"),
    (503, "The webhook's key cannot be read from its Secret"),
)


@router.post(
    f"{STACK_PATH}/webhooks/{{webhook}}",
    status_code=202,
    response_model=models.InputAccepted,
    responses=WEBHOOK_ERRORS,
    summary="Deliver a signed webhook as an input",
    description="Signed with the webhook's key (GitHub's X-Hub-Signature-256, or Standard "
    "Webhooks' webhook-signature); no bearer token. A verified delivery becomes an input "
    "to the webhook's agent, its sender the webhook's name; nothing is written otherwise.",
)
async def deliver(
    namespace: Namespace,
    name: Name,
    webhook: WebhookName,
    request: Request,
    webhooks: WebhooksService,
) -> models.InputAccepted:
    stack, spec, hook = webhooks.find(namespace, name, webhook)
    body = await read_body(request.stream(), hook.max_body_bytes)
    return await webhooks.deliver(stack, spec, hook, body, request.headers)
