"""Webhook deliveries signed the way their senders document it — written here apart from
the API's verification (:mod:`agentstack_api.webhooks`), so a test of one does
not lean on the other."""

from __future__ import annotations

import base64
import hashlib
import hmac


def github_headers(
    body: bytes, key: bytes, delivery: str, event: str = "pull_request"
) -> dict[str, str]:
    """GitHub's: ``X-Hub-Signature-256`` is ``sha256=`` and the hex HMAC-SHA256 of the body."""
    signature = hmac.new(key, body, hashlib.sha256).hexdigest()
    return {
        "X-Hub-Signature-256": f"sha256={signature}",
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Event": event,
    }


def standard_headers(body: bytes, key: bytes, delivery: str, stamp: int) -> dict[str, str]:
    """Standard Webhooks': ``v1,`` and the base64 HMAC-SHA256 of ``id.timestamp.body``
    under the raw key (what a ``whsec_`` key decodes to)."""
    signed = f"{delivery}.{stamp}.".encode() + body
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": delivery,
        "webhook-timestamp": str(stamp),
        "webhook-signature": f"v1,{signature}",
    }
