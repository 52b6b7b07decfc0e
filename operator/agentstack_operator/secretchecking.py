"""Whether the Secrets a stack's spec references exist, and the Events when that changes.

Data flow::

    new generation (observe) ─┐
    every SECRET_RECHECK_SECONDS, stacks still waiting ─┴─► check_secrets(reader, record)
        │ record.missing_secrets (blocks ticking: Ready=False, SecretNotFound)
        ▼
    Events: SecretNotFound (when the missing set changes), SecretFound (when it empties)

A stack whose API key is missing cannot tick, and saying so at once beats a tick that
fails inside a runner. Secrets are not watched (that would need list/watch on every
Secret of every namespace): the stacks still waiting are polled instead, and only for
existence and the key — the value is never read into the operator.
"""

from __future__ import annotations

from typing import Protocol

from agentstack_core.reasons import EventReason
from agentstack_operator.stackstate import Event, StackRecord

SECRET_RECHECK_SECONDS = 10.0


class SecretReader(Protocol):
    """Whether a Secret exists and holds ``key`` (``False`` when it may not be read)."""

    async def secret_has_key(self, namespace: str, name: str, key: str) -> bool: ...


async def check_secrets(reader: SecretReader, record: StackRecord) -> list[Event]:
    """Update ``record.missing_secrets``; returns the Events the change calls for."""
    before = list(record.missing_secrets)
    missing: list[str] = []
    if record.spec is not None:
        for provider in record.spec.providers_used:
            settings = record.spec.providers.get(provider)
            ref = settings.secret_ref if settings else None
            if ref is not None and not await reader.secret_has_key(
                record.ref.namespace, ref.name, ref.key
            ):
                missing.append(f"Secret {ref.name!r} with key {ref.key!r} (for {provider})")
    record.missing_secrets = missing
    if missing and missing != before:
        return [
            Event(EventReason.SECRET_NOT_FOUND, "waiting for " + ", ".join(missing), warning=True)
        ]
    if before and not missing:
        return [Event(EventReason.SECRET_FOUND, "the referenced Secrets are available")]
    return []
