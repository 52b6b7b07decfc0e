"""``agentstack api``: the API process (uvicorn serving :func:`~.app.create_app`).

Settings come from the environment (defaults in parentheses): ``REDIS_URL`` (required)
and ``AGENTSTACK_REDIS_CLUSTER``; ``AGENTSTACK_API_HOST`` (``0.0.0.0``) and
``AGENTSTACK_API_PORT`` (8080); ``AGENTSTACK_API_AUTH`` (``none``; ``kubernetes`` checks
bearer tokens with TokenReview and access with SubjectAccessReview);
``AGENTSTACK_API_AUTH_CACHE_SECONDS`` (30); ``AGENTSTACK_API_CORS_ORIGINS``
(comma-separated; empty: no CORS); ``AGENTSTACK_API_PUBLIC_URL`` (the API's URL as
callers outside reach it, for the endpoint URL of A2A agent cards; empty: the URL each
request came in on); ``AGENTSTACK_WATCH_NAMESPACES`` (empty: all).

The process holds two Redis clients: one serves requests; the other, with a pool of its
own, serves only the blocking reads of the live streams' :class:`~.tailing.StreamHub`
(one connection per group of watched streams), so live clients never take a connection
a request waits for.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import uvicorn

from agentstack_api.app import create_app
from agentstack_api.auth import Authorizer, KubernetesAccess, OpenAccess
from agentstack_api.cache import StackCache
from agentstack_api.executionstate import KubeStateWriter
from agentstack_api.tailing import StreamHub
from agentstack_api.webhooks import KubeSecrets
from agentstack_core.connection import connect
from agentstack_core.environment import env_bool, env_float, env_int, env_list
from agentstack_core.kube.client import KubeClient
from agentstack_core.kube.settings import load_settings

logger = logging.getLogger(__name__)


@dataclass
class ApiConfig:
    redis_url: str = ""
    host: str = "0.0.0.0"  # noqa: S104 - serves dashboards outside the pod
    port: int = 8080
    auth: str = "none"
    auth_cache_seconds: float = 30.0
    cors_origins: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    webhooks: bool = True
    public_url: str = ""

    @classmethod
    def from_env(cls) -> ApiConfig:
        defaults = cls()
        auth = os.environ.get("AGENTSTACK_API_AUTH", defaults.auth).lower()
        if auth not in ("none", "kubernetes"):
            raise ValueError(f"AGENTSTACK_API_AUTH must be none or kubernetes, not {auth!r}")
        return cls(
            redis_url=os.environ.get("REDIS_URL", ""),
            host=os.environ.get("AGENTSTACK_API_HOST", defaults.host),
            port=env_int("AGENTSTACK_API_PORT", defaults.port),
            auth=auth,
            auth_cache_seconds=env_float(
                "AGENTSTACK_API_AUTH_CACHE_SECONDS", defaults.auth_cache_seconds
            ),
            cors_origins=env_list("AGENTSTACK_API_CORS_ORIGINS"),
            namespaces=env_list("AGENTSTACK_WATCH_NAMESPACES"),
            webhooks=env_bool("AGENTSTACK_API_WEBHOOKS", defaults.webhooks),
            public_url=os.environ.get("AGENTSTACK_API_PUBLIC_URL", "").strip(),
        )


async def serve(config: ApiConfig) -> None:
    kube = KubeClient(load_settings())
    redis = connect(config.redis_url)
    readers = connect(config.redis_url)
    hub = StreamHub(redis, readers)
    cache = StackCache(kube, config.namespaces)
    authorizer: Authorizer = (
        KubernetesAccess(kube, ttl=config.auth_cache_seconds)
        if config.auth == "kubernetes"
        else OpenAccess()
    )
    app = create_app(
        cache=cache,
        redis=redis,
        hub=hub,
        auth=authorizer,
        state_writer=KubeStateWriter(kube),
        secrets=KubeSecrets(kube) if config.webhooks else None,
        cors_origins=config.cors_origins,
        public_url=config.public_url,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level="info",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    )
    cache.start()
    logger.info("API on %s:%d, authentication %s", config.host, config.port, config.auth)
    try:
        await server.serve()
    finally:
        await cache.stop()
        await hub.stop()
        await readers.aclose()
        await redis.aclose()
        await kube.close()
