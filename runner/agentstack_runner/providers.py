"""Which provider instance serves a stack: credentials, base URL, client reuse.

API keys never travel through Redis or the tick protocol. A runner resolves them
itself, for the stack at hand, through a :class:`Credentials` source chosen by
``AGENTSTACK_RUNNER_CREDENTIALS``:

- ``env`` (default) — :class:`EnvCredentials`: ``GROQ_API_KEY`` / ``OPENAI_API_KEY`` from
  the process environment. Right for a Job-executor pod, whose environment the operator
  fills from the stack's own Secret, and for local development.
- ``kubernetes`` — :class:`KubernetesCredentials`, for the shared runner pool: a stack with
  a ``secretRef`` gets the key from that Secret in its namespace (read through the API,
  cached briefly); a stack without one gets the runner's own environment keys. A
  ``secretRef`` that cannot be read is an error for that stack — never a silent fall
  back to the pool's keys, which would bill and authorise the wrong account.

The base URL comes from the stack's provider config, else from the SDK's own
environment variable (``GROQ_BASE_URL``, ``OPENAI_BASE_URL``). Provider clients are
cached per (provider, base URL, key digest), so connection pools are shared by every
stack using the same account.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from typing import Any, Protocol

from agentstack_core.environment import env_float
from agentstack_core.spec import ProviderConfig, StackSpec
from agentstack_runner.llm.base import Provider, UnavailableError
from agentstack_runner.llm.scripted import ScriptedProvider
from agentstack_runner.llm.sdk import SdkProvider, client_key

ENV_KEYS = {"groq": "GROQ_API_KEY", "openai": "OPENAI_API_KEY"}
SECRET_CACHE_SECONDS = 60.0


class Credentials(Protocol):
    async def api_key(self, namespace: str, provider: str, config: ProviderConfig) -> str | None:
        """The API key for ``provider`` as configured for a stack in ``namespace``."""
        ...


class EnvCredentials:
    """Keys from the runner's environment."""

    async def api_key(self, namespace: str, provider: str, config: ProviderConfig) -> str | None:
        env = ENV_KEYS.get(provider)
        return (os.environ.get(env) or None) if env else None


class KubernetesCredentials:
    """A stack's ``secretRef`` read from its namespace through the Kubernetes API."""

    def __init__(self, api: Any = None, ttl: float = SECRET_CACHE_SECONDS) -> None:
        from kubernetes import client, config

        if api is None:
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
            except config.ConfigException:
                config.load_kube_config()  # type: ignore[no-untyped-call]
            api = client.ApiClient()
        self.core = client.CoreV1Api(api)
        self.ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}
        self._fallback = EnvCredentials()

    async def api_key(self, namespace: str, provider: str, config: ProviderConfig) -> str | None:
        ref = config.secret_ref
        if ref is None:
            return await self._fallback.api_key(namespace, provider, config)
        data = await self._secret(namespace, ref.name)
        value = data.get(ref.key)
        if not value:
            raise UnavailableError(
                f"{provider}: key {ref.key!r} of Secret {ref.name!r} is not readable"
            )
        return value

    async def _secret(self, namespace: str, name: str) -> dict[str, str]:
        cached = self._cache.get((namespace, name))
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        from kubernetes.client.exceptions import ApiException

        try:
            secret = await asyncio.to_thread(self.core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            raise UnavailableError(
                f"Secret {name!r} in {namespace} is not readable ({exc.status})"
            ) from exc
        data = {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}
        self._cache[(namespace, name)] = (time.monotonic() + self.ttl, data)
        return data


def credentials_from_env() -> Credentials:
    """The source ``AGENTSTACK_RUNNER_CREDENTIALS`` names (``env`` or ``kubernetes``);
    ``AGENTSTACK_RUNNER_SECRET_CACHE_SECONDS`` (60) bounds how long a read Secret is reused."""
    mode = os.environ.get("AGENTSTACK_RUNNER_CREDENTIALS", "env").lower()
    if mode == "kubernetes":
        ttl = env_float("AGENTSTACK_RUNNER_SECRET_CACHE_SECONDS", SECRET_CACHE_SECONDS)
        return KubernetesCredentials(ttl=ttl)
    if mode != "env":
        raise ValueError(f"AGENTSTACK_RUNNER_CREDENTIALS must be env or kubernetes, not {mode!r}")
    return EnvCredentials()


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
                if config.secret_ref and not isinstance(self.credentials, EnvCredentials)
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
