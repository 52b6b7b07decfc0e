"""Which provider instance serves a stack: credentials, base URL, client reuse.

API keys never travel through Redis or the tick protocol. A runner resolves them
itself, for the stack at hand, through a :class:`Credentials` source:

- :class:`EnvCredentials` (default): a stack's ``secretRef`` is looked up as a file in
  a mounted Secret directory (``$AGENTSTACK_SECRETS_DIR/<secret>/<key>``, the layout of
  a Kubernetes Secret volume — how a Job-executor pod gets its stack's keys), else the
  runner's own ``GROQ_API_KEY`` / ``OPENAI_API_KEY`` (the pool's default keys).

The base URL comes from the stack's provider config, else from the SDK's own
environment variable (``GROQ_BASE_URL``, ``OPENAI_BASE_URL``). Provider clients are
cached per (provider, base URL, key digest), so connection pools are shared by every
stack using the same account.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from agentstack_runner.llm.base import Provider, UnavailableError
from agentstack_runner.llm.scripted import ScriptedProvider
from agentstack_runner.llm.sdk import SdkProvider, client_key
from agentstack_runner.spec import ProviderConfig, StackSpec

ENV_KEYS = {"groq": "GROQ_API_KEY", "openai": "OPENAI_API_KEY"}


class Credentials(Protocol):
    async def api_key(self, namespace: str, provider: str, config: ProviderConfig) -> str | None:
        """The API key for ``provider`` as configured for a stack in ``namespace``."""
        ...


class EnvCredentials:
    """Keys from mounted Secret files, then from the runner's environment."""

    def __init__(self, secrets_dir: Path | None = None) -> None:
        explicit = os.environ.get("AGENTSTACK_SECRETS_DIR")
        self.secrets_dir = secrets_dir or (Path(explicit) if explicit else None)

    async def api_key(self, namespace: str, provider: str, config: ProviderConfig) -> str | None:
        ref = config.secret_ref
        if ref is not None and self.secrets_dir is not None:
            path = self.secrets_dir / ref.name / ref.key
            if path.is_file():
                return path.read_text().strip() or None
        env = ENV_KEYS.get(provider)
        return os.environ.get(env) or None if env else None


class ProviderRegistry:
    """Builds and caches provider clients; hands out a per-stack view."""

    def __init__(self, credentials: Credentials | None = None) -> None:
        self.credentials: Credentials = credentials or EnvCredentials()
        self.scripted = ScriptedProvider()
        self._clients: dict[tuple[str, str, str], SdkProvider] = {}

    def for_stack(self, namespace: str, spec: StackSpec) -> StackProviders:
        return StackProviders(self, namespace, spec)

    async def resolve(self, namespace: str, name: str, config: ProviderConfig) -> Provider:
        if name == "scripted":
            return self.scripted
        key = await self.credentials.api_key(namespace, name, config)
        if not key:
            source = (
                f"Secret {config.secret_ref.name!r} key {config.secret_ref.key!r}"
                if config.secret_ref
                else ENV_KEYS.get(name, "an API key")
            )
            raise UnavailableError(f"{name}: no API key ({source} not available to the runner)")
        cache_key = client_key(name, key, config.base_url)
        client = self._clients.get(cache_key)
        if client is None:
            client = SdkProvider(name, api_key=key, base_url=config.base_url)
            self._clients[cache_key] = client
        return client

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()


class StackProviders:
    """The :class:`~agentstack_runner.llm.router.ProviderSource` of one stack."""

    def __init__(self, registry: ProviderRegistry, namespace: str, spec: StackSpec) -> None:
        self.registry = registry
        self.namespace = namespace
        self.spec = spec

    async def provider(self, name: str) -> Provider:
        config = self.spec.providers.get(name, ProviderConfig())
        return await self.registry.resolve(self.namespace, name, config)
