"""Which provider instance serves a stack: credentials, base URL, client reuse.

API keys never travel through Redis or the tick protocol. A runner resolves them
itself, for the stack at hand, through a :class:`Credentials` source chosen by
``AGENTSTACK_RUNNER_CREDENTIALS``:

- ``env`` (default) — :class:`EnvCredentials`: ``GROQ_API_KEY`` / ``OPENAI_API_KEY`` from
  the process environment, the platform's own keys (local development, a pool that
  serves no tenant keys).
- ``kubernetes`` — :class:`KubernetesCredentials`, for the shared runner pool: a stack with
  a ``secretRef`` gets the key from that Secret in its namespace (read through the API,
  cached briefly — and read again at once when the provider refuses it, 401 or 403, so
  a rotated key costs one refused call, not a cache period of them); a stack without one
  gets the runner's own environment keys. A ``secretRef`` that cannot be read is an
  error for that stack — never a silent fall back to the pool's keys, which would bill
  and authorise the wrong account.
- ``job`` — :class:`JobCredentials`, set by the Job executor on its pods: the
  environment holds the stack's own keys (the operator fills it from the stack's
  Secrets and from nothing else).

Every key is marked as the stack's own or the platform's. The platform's keys go only
where :class:`~agentstack_core.endpoints.EndpointPolicy` allows (the provider's public
endpoint or an allow-listed one): a ``baseURL`` chosen by a stack author gets a key
only if the author supplied it.

The base URL comes from the stack's provider config, else from the SDK's own
environment variable (``GROQ_BASE_URL``, ``OPENAI_BASE_URL``). Provider clients are
cached per (provider, base URL, key digest), so connection pools are shared by every
stack using the same account; the cache is bounded, and so is the Secret cache.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
from dataclasses import dataclass
from typing import Protocol

from agentstack_core.endpoints import EndpointPolicy
from agentstack_core.kube.client import KubeClient
from agentstack_core.kube.errors import KubeError
from agentstack_core.kube.manifests import Secret
from agentstack_core.kube.paths import secret_path
from agentstack_core.settings import ModelSettings
from agentstack_core.spec import ProviderConfig, SecretKeyRef, StackSpec
from agentstack_runner.llm.base import Provider, UnavailableError
from agentstack_runner.llm.scripted import ScriptedProvider
from agentstack_runner.llm.sdk import SdkProvider, client_key

ENV_KEYS = {"groq": "GROQ_API_KEY", "openai": "OPENAI_API_KEY"}
SECRET_CACHE_SECONDS = 60.0
SECRET_CACHE_ENTRIES = 1_000
MAX_CLIENTS = 64
"""Provider clients kept open (one per account and endpoint in use)."""
CLIENT_CLOSE_GRACE_SECONDS = 660.0
"""An evicted client is closed only after any call it may still serve has ended (the
longest request timeout a spec allows is 600 s)."""


@dataclass(frozen=True)
class ApiKey:
    value: str
    owned: bool
    """The stack's own key (from its ``secretRef``), not the platform's."""

    def __repr__(self) -> str:  # never print a key, even by accident
        return f"ApiKey(owned={self.owned})"


class Credentials(Protocol):
    async def api_key(self, namespace: str, provider: str, config: ProviderConfig) -> ApiKey | None:
        """The API key for ``provider`` as configured for a stack in ``namespace``."""
        ...

    async def secret_value(self, namespace: str, ref: SecretKeyRef) -> str:
        """A key of a Secret in ``namespace`` (a tool server's header)."""
        ...

    def forget(self, namespace: str, name: str) -> None:
        """Read the Secret ``name`` again next time: what was read was refused (a
        rotated key)."""
        ...


class EnvCredentials:
    """The platform's keys, from the runner's environment."""

    owned = False

    async def api_key(self, namespace: str, provider: str, config: ProviderConfig) -> ApiKey | None:
        env = ENV_KEYS.get(provider)
        value = os.environ.get(env) if env else None
        return ApiKey(value, owned=self.owned) if value else None

    async def secret_value(self, namespace: str, ref: SecretKeyRef) -> str:
        raise UnavailableError(
            f"Secret {ref.name!r} can only be read by runners with credentials kubernetes"
        )

    def forget(self, namespace: str, name: str) -> None:
        """Nothing to read again: the environment is the process's for its life."""


class JobCredentials(EnvCredentials):
    """A Job pod's environment: the one stack's own keys, from its Secrets."""

    owned = True


class KubernetesCredentials:
    """A stack's ``secretRef`` read from its namespace through the Kubernetes API, over
    the async layer's client the runner service built (and closes)."""

    def __init__(
        self, kube: KubeClient, ttl: float = SECRET_CACHE_SECONDS, limit: int = SECRET_CACHE_ENTRIES
    ) -> None:
        self.kube = kube
        self.ttl = ttl
        self.limit = limit
        self._cache: collections.OrderedDict[tuple[str, str], tuple[float, dict[str, str]]] = (
            collections.OrderedDict()
        )
        self._fallback = EnvCredentials()

    async def api_key(self, namespace: str, provider: str, config: ProviderConfig) -> ApiKey | None:
        ref = config.secret_ref
        if ref is None:
            return await self._fallback.api_key(namespace, provider, config)
        data = await self._secret(namespace, ref.name)
        value = data.get(ref.key)
        if not value:
            raise UnavailableError(
                f"{provider}: key {ref.key!r} of Secret {ref.name!r} is not readable"
            )
        return ApiKey(value, owned=True)

    async def secret_value(self, namespace: str, ref: SecretKeyRef) -> str:
        value = (await self._secret(namespace, ref.name)).get(ref.key)
        if not value:
            raise UnavailableError(f"key {ref.key!r} of Secret {ref.name!r} is not readable")
        return value

    def forget(self, namespace: str, name: str) -> None:
        self._cache.pop((namespace, name), None)

    async def _secret(self, namespace: str, name: str) -> dict[str, str]:
        now = time.monotonic()
        cached = self._cache.get((namespace, name))
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            secret = Secret.of(await self.kube.get(secret_path(namespace, name)))
        except KubeError as exc:
            raise UnavailableError(
                f"Secret {name!r} in {namespace} is not readable ({exc.status})"
            ) from exc
        data = {key: value.decode() for key, value in secret.data.items()}
        self._cache[(namespace, name)] = (now + self.ttl, data)
        self._cache.move_to_end((namespace, name))
        while len(self._cache) > self.limit:  # the least recently read go first
            self._cache.popitem(last=False)
        return data


def credentials_for(
    source: str,
    secret_cache_seconds: float = SECRET_CACHE_SECONDS,
    *,
    kube: KubeClient | None = None,
) -> Credentials:
    """The keys' source a runner's settings name (``AGENTSTACK_RUNNER_CREDENTIALS``):
    ``env``, ``kubernetes`` (a Secret read with ``kube``, reused for
    ``secret_cache_seconds``) or ``job``."""
    if source == "kubernetes":
        if kube is None:
            raise ValueError("credentials kubernetes read Secrets: a Kubernetes client is needed")
        return KubernetesCredentials(kube, ttl=secret_cache_seconds)
    if source == "job":
        return JobCredentials()
    if source != "env":
        raise ValueError(f"no credentials source {source!r}: one of env, kubernetes, job")
    return EnvCredentials()


class ProviderRegistry:
    """Builds and caches provider clients; hands out a per-stack view."""

    def __init__(
        self,
        credentials: Credentials | None = None,
        endpoints: EndpointPolicy | None = None,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.credentials: Credentials = credentials or EnvCredentials()
        self.endpoints = endpoints if endpoints is not None else ModelSettings.from_env().endpoints
        self.scripted = ScriptedProvider()
        self.max_clients = max_clients
        self._clients: collections.OrderedDict[tuple[str, str, str], SdkProvider] = (
            collections.OrderedDict()
        )
        self._closing: dict[asyncio.Task[None], SdkProvider] = {}

    def for_stack(self, namespace: str, spec: StackSpec) -> StackProviders:
        return StackProviders(self, namespace, spec)

    async def resolve(self, namespace: str, name: str, config: ProviderConfig) -> Provider:
        if name == "scripted":
            return self.scripted
        key = await self.credentials.api_key(namespace, name, config)
        if not key:
            source = (
                f"Secret {config.secret_ref.name!r} key {config.secret_ref.key!r}"
                if config.secret_ref and isinstance(self.credentials, KubernetesCredentials)
                else ENV_KEYS.get(name, "an API key")
            )
            raise UnavailableError(f"{name}: no API key ({source} not available to the runner)")
        if not key.owned and not self.endpoints.pool_key_allowed(name, config.base_url):
            raise UnavailableError(
                f"{name}: the platform's API key is not sent to {config.base_url} (not an "
                "allow-listed endpoint); the stack needs a secretRef with its own key"
            )
        cache_key = client_key(name, key.value, config.base_url)
        client = self._clients.get(cache_key)
        if client is None:
            client = SdkProvider(name, api_key=key.value, base_url=config.base_url)
            self._clients[cache_key] = client
            while len(self._clients) > self.max_clients:
                _key, evicted = self._clients.popitem(last=False)
                self._close_later(evicted)
        self._clients.move_to_end(cache_key)
        return client

    async def refresh(self, namespace: str, name: str, config: ProviderConfig) -> bool:
        """Read the provider's key again, past the Secret cache; whether it changed (a
        key read anew from an unchanged Secret is the same key: nothing to retry)."""
        if name == "scripted" or config.secret_ref is None:
            return False
        before = await self.credentials.api_key(namespace, name, config)
        self.credentials.forget(namespace, config.secret_ref.name)
        after = await self.credentials.api_key(namespace, name, config)
        return after is not None and (before is None or after.value != before.value)

    def _close_later(self, client: SdkProvider) -> None:
        """Close an evicted client once calls it may still serve are over."""

        async def close() -> None:
            await asyncio.sleep(CLIENT_CLOSE_GRACE_SECONDS)
            await client.close()

        task = asyncio.create_task(close())
        self._closing[task] = client
        task.add_done_callback(self._closing.pop)

    async def close(self) -> None:
        """Close every client, the evicted ones still waiting included."""
        evicted = list(self._closing.items())
        for task, _client in evicted:
            task.cancel()
        for client in [*self._clients.values(), *(client for _task, client in evicted)]:
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

    async def refresh(self, name: str) -> bool:
        config = self.spec.providers.get(name, ProviderConfig())
        return await self.registry.refresh(self.namespace, name, config)
