"""Where the platform's own LLM keys may be sent.

A runner holds keys of its own (``GROQ_API_KEY``, ``OPENAI_API_KEY``: the pool's, the
platform's account) for stacks that bring none. A stack author chooses ``baseURL``;
were the pool's key sent to any URL an author wrote, anyone allowed to create an
AgentStack could point it at a server of theirs and read the key. So a pool key goes
only to the provider's own public endpoint (a stack that sets no ``baseURL``, or sets
that very endpoint) or to an endpoint the platform allow-lists in
``AGENTSTACK_ALLOWED_BASE_URLS`` (comma-separated; the chart's
``llm.allowedBaseURLs``). Any other ``baseURL`` needs the stack's own key through a
``secretRef``. The runner enforces the rule where the key is used; the operator checks
the same rule on every spec, so the author learns it from a condition at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agentstack_core.spec import StackSpec

ALLOWED_BASE_URLS_ENV = "AGENTSTACK_ALLOWED_BASE_URLS"

PUBLIC_BASE_URLS = {
    "groq": "https://api.groq.com",
    "openai": "https://api.openai.com/v1",
}
"""Each SDK's own default endpoint (what a stack without ``baseURL`` talks to)."""


def normalize(url: str) -> str:
    """A URL in the form endpoints are compared in: no trailing slash, lower-case
    scheme and host (paths stay case-sensitive)."""
    url = url.strip().rstrip("/")
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    host, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{host.lower()}{slash}{path}"


@dataclass(frozen=True)
class EndpointPolicy:
    allowed: frozenset[str] = frozenset()
    """Normalized base URLs the platform allows its own keys to be sent to."""

    @classmethod
    def of(cls, urls: Iterable[str]) -> EndpointPolicy:
        return cls(frozenset(normalize(url) for url in urls if url.strip()))

    def pool_key_allowed(self, provider: str, base_url: str | None) -> bool:
        """Whether the platform's key of ``provider`` may be sent to ``base_url``."""
        if base_url is None:
            return True
        url = normalize(base_url)
        return url == normalize(PUBLIC_BASE_URLS.get(provider, "")) or url in self.allowed

    def problems(self, spec: StackSpec) -> list[str]:
        """The spec's providers that would send the platform's key where it may not go."""
        found = []
        for provider in spec.providers_used:
            config = spec.providers.get(provider)
            if provider not in PUBLIC_BASE_URLS or config is None or config.secret_ref:
                continue
            if not self.pool_key_allowed(provider, config.base_url):
                found.append(
                    f"spec.llm.providers.{provider}.baseURL: {config.base_url} is not an "
                    "endpoint the platform's API keys may be sent to; give the provider a "
                    "secretRef with your own key (or ask for the endpoint to be allow-listed)"
                )
        return found
