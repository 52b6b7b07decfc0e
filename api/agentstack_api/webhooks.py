"""Signed webhooks: deliveries from callers without a Kubernetes identity become inputs.

``POST …/stacks/{name}/webhooks/{webhook}`` is the one route that takes no bearer
token: a GitHub repository, a CI system or a SaaS proves who it is by signing each
delivery with a key it shares with the stack (``spec.webhooks[].secretRef``, a Secret
in the stack's namespace, read with the API's own ServiceAccount and kept a few
seconds). Two schemes (``format``):

- ``GitHub``: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``, the
  delivery id in ``X-GitHub-Delivery``, the event in ``X-GitHub-Event``. GitHub signs
  no timestamp, so its delivery id alone tells a replay.
- ``StandardWebhooks`` (standardwebhooks.com, what Svix and others send):
  ``webhook-id``, ``webhook-timestamp`` (seconds; refused beyond
  ``toleranceSeconds`` of now, either way) and ``webhook-signature``, a space-separated
  list of ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, any of which may match;
  the key is ``whsec_<base64>`` or the raw bytes.

Checks run cheapest first and nothing is written until all pass: a body over the
webhook's ``maxBodyBytes`` is refused unread past that size (413); an unknown stack or
webhook and a signature that does not verify are both 401 with the same message, so an
unauthenticated caller learns nothing about which stacks exist; a Secret the API
cannot read is 503 (the stack's fault, not the caller's; retried by the sender). A
verified delivery goes in as any input (:meth:`~.inputs.Inputs.put`: the stack's rate,
its wake-up), its sender the webhook's name, with its delivery id, which Redis refuses
the second time (409).

What the agent reads is a compact text of the delivery: the event and the body —
JSON with its API-link fields (``*_url`` other than ``html_url``, which GitHub repeats
dozens of times) left out, then cut to ``spec.inputs.maxBytes``. Keys are compared in
constant time and never logged.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Counter

from agentstack_api import models
from agentstack_api.access import StackSource
from agentstack_api.auth import TTLCache
from agentstack_api.errors import ApiError
from agentstack_api.inputs import Inputs, spec_of
from agentstack_core.kube.client import KubeClient
from agentstack_core.kube.errors import NotFoundError
from agentstack_core.kube.manifests import ObjectMeta, Secret
from agentstack_core.kube.paths import secret_path
from agentstack_core.redis.inputs import cut_to_bytes
from agentstack_core.spec import StackSpec, Webhook, WebhookFormat

logger = logging.getLogger(__name__)

MAX_DELIVERY_BYTES = 1_048_576
"""The largest ``maxBodyBytes`` a webhook may set (the CRD's maximum)."""
SECRET_CACHE_SECONDS = 10.0
"""How long a webhook key read from its Secret is used before it is read again (a
rotated key is honoured within this)."""
STANDARD_PREFIX = "whsec_"

DELIVERIES = Counter(
    "agentstack_api_webhook_deliveries_total",
    "Webhook deliveries, by outcome (Accepted, Unauthorized, TooLarge, Duplicate, "
    "KeyUnavailable, Refused).",
    ["outcome"],
)

UNAUTHORIZED = ApiError(
    401,
    "Unauthorized",
    "no such webhook, or the delivery's signature does not verify with its key",
)


class SecretSource(Protocol):
    """Where a webhook's key comes from (the API's own Kubernetes credentials)."""

    async def key(self, namespace: str, name: str, key: str) -> bytes | None:
        """The Secret's key, ``None`` if the Secret or the key is not there."""
        ...


class KubeSecrets:
    """Secret keys read with the API's ServiceAccount (``get secrets``), cached briefly."""

    def __init__(self, kube: KubeClient, ttl: float = SECRET_CACHE_SECONDS) -> None:
        self.kube = kube
        self._cache: TTLCache[tuple[str, str, str], bytes | None] = TTLCache(ttl, limit=1_000)

    async def key(self, namespace: str, name: str, key: str) -> bytes | None:
        where = (namespace, name, key)
        if (cached := self._cache.get(where)) is not None:
            return cached
        try:
            secret = Secret.of(await self.kube.get(secret_path(namespace, name)))
        except NotFoundError:
            return None
        value = secret.data.get(key)
        if value is not None:
            self._cache.put(where, value)
        return value


@dataclass(frozen=True)
class Delivery:
    """What a verified delivery says about itself."""

    id: str
    event: str = ""


def _header(headers: Mapping[str, str], name: str) -> str:
    return headers.get(name, "").strip()


def verify_github(body: bytes, headers: Mapping[str, str], key: bytes) -> Delivery | None:
    """The delivery if ``X-Hub-Signature-256`` is the body's HMAC-SHA256 under ``key``."""
    signature = _header(headers, "x-hub-signature-256")
    delivery = _header(headers, "x-github-delivery")
    if not signature.startswith("sha256=") or not delivery:
        return None
    expected = hmac.new(key, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature.removeprefix("sha256=").lower(), expected):
        return None
    return Delivery(id=delivery, event=_header(headers, "x-github-event"))


def standard_key(secret: bytes) -> bytes:
    """A Standard Webhooks key: ``whsec_<base64>`` decoded, else the bytes as they are."""
    text = secret.strip()
    if text.startswith(STANDARD_PREFIX.encode()):
        try:
            return base64.b64decode(text[len(STANDARD_PREFIX) :], validate=True)
        except binascii.Error:
            return text
    return text


def verify_standard(
    body: bytes, headers: Mapping[str, str], key: bytes, *, now: float, tolerance: float
) -> Delivery | None:
    """The delivery if one of its ``v1`` signatures matches and its timestamp is within
    ``tolerance`` seconds of ``now``."""
    delivery = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    if not delivery or not stamp.isdigit() or abs(now - int(stamp)) > tolerance:
        return None
    signed = f"{delivery}.{stamp}.".encode() + body
    expected = base64.b64encode(hmac.new(standard_key(key), signed, hashlib.sha256).digest())
    for candidate in _header(headers, "webhook-signature").split():
        version, _comma, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            return Delivery(id=delivery, event=_header(headers, "webhook-event"))
    return None


def _without_api_links(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _without_api_links(v)
            for k, v in value.items()
            if not (k.endswith("_url") or k == "url") or k == "html_url"
        }
    if isinstance(value, list):
        return [_without_api_links(item) for item in value]
    return value


def content_of(hook: Webhook, delivery: Delivery, body: bytes, max_bytes: int) -> str:
    """What the agent reads of a delivery (at most ``max_bytes`` of UTF-8)."""
    text = body.decode("utf-8", errors="replace")
    with contextlib.suppress(ValueError):  # not JSON: the body as it came
        text = json.dumps(_without_api_links(json.loads(text)), separators=(",", ":"))
    head = f"webhook {hook.name}" + (f", event {delivery.event}" if delivery.event else "")
    return cut_to_bytes(f"{head}, delivery {delivery.id}:\n{text}", max_bytes)


async def read_body(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The request body, or 413 as soon as it passes ``limit`` bytes (never read on)."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            DELIVERIES.labels("TooLarge").inc()
            raise ApiError(
                413, "DeliveryTooLarge", f"the webhook takes at most {limit} bytes (maxBodyBytes)"
            )
    return bytes(body)


class Webhooks:
    """Deliveries to stacks' webhooks, verified, then sent as inputs."""

    def __init__(
        self,
        cache: StackSource,
        secrets: SecretSource,
        inputs: Inputs,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cache = cache
        self.secrets = secrets
        self.inputs = inputs
        self.clock = clock

    def find(
        self, namespace: str, name: str, webhook: str
    ) -> tuple[dict[str, Any], StackSpec, Webhook]:
        """The stack, its spec and the webhook named (401 if any is missing: see above)."""
        stack = self.cache.get(namespace, name)
        if stack is None:
            DELIVERIES.labels("Unauthorized").inc()
            raise UNAUTHORIZED
        spec = spec_of(stack)
        hook = next((h for h in spec.webhooks if h.name == webhook), None)
        if hook is None:
            DELIVERIES.labels("Unauthorized").inc()
            raise UNAUTHORIZED
        return stack, spec, hook

    async def deliver(
        self,
        stack: dict[str, Any],
        spec: StackSpec,
        hook: Webhook,
        body: bytes,
        headers: Mapping[str, str],
    ) -> models.InputAccepted:
        """Verify a delivery and send it as an input (the checks of the module doc)."""
        meta = ObjectMeta.of(stack)
        try:
            key = await self.secrets.key(meta.namespace, hook.secret_ref.name, hook.secret_ref.key)
        except Exception as exc:
            logger.warning(
                "webhook %s of %s/%s: Secret not read: %s",
                hook.name,
                meta.namespace,
                meta.name,
                exc,
            )
            key = None
        if key is None:
            DELIVERIES.labels("KeyUnavailable").inc()
            raise ApiError(
                503,
                "WebhookKeyUnavailable",
                f"the webhook's key (Secret {hook.secret_ref.name!r}, key "
                f"{hook.secret_ref.key!r}) cannot be read; try again later",
            )
        if hook.format is WebhookFormat.GITHUB:
            delivery = verify_github(body, headers, key)
        else:
            delivery = verify_standard(
                body, headers, key, now=self.clock(), tolerance=hook.tolerance_seconds
            )
        if delivery is None:
            DELIVERIES.labels("Unauthorized").inc()
            raise UNAUTHORIZED
        try:
            accepted = await self.inputs.put(
                stack,
                spec,
                agent=hook.agent,
                sender=hook.name,
                content=content_of(hook, delivery, body, spec.inputs.max_bytes),
                delivery=f"{hook.name}/{delivery.id}",
            )
        except ApiError as exc:
            DELIVERIES.labels("Duplicate" if exc.code == "DuplicateDelivery" else "Refused").inc()
            raise
        DELIVERIES.labels("Accepted").inc()
        return accepted
