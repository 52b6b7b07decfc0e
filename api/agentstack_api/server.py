"""``agentstack api``: the API process (uvicorn serving :func:`~.app.create_app`).

Its settings are :class:`~.config.ApiConfig`, from the environment.

The process holds two Redis clients: one serves requests; the other, with a pool of its
own, serves only the blocking reads of the live streams' :class:`~.tailing.StreamHub`
(one connection per group of watched streams), so live clients never take a connection
a request waits for.
"""

from __future__ import annotations

import logging

import uvicorn

from agentstack_api.app import create_app
from agentstack_api.auth import Authorizer, KubernetesAccess, OpenAccess
from agentstack_api.cache import StackCache
from agentstack_api.config import ApiConfig
from agentstack_api.executionstate import KubeStateWriter
from agentstack_api.tailing import StreamHub
from agentstack_api.webhooks import KubeSecrets
from agentstack_core.connection import connect
from agentstack_core.kube.client import KubeClient
from agentstack_core.kube.settings import load_settings

logger = logging.getLogger(__name__)


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
    writer = KubeStateWriter(kube)
    app = create_app(
        cache=cache,
        redis=redis,
        hub=hub,
        auth=authorizer,
        state_writer=writer,
        creator=writer,
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
