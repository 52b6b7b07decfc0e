"""What every long-running process shares: logging set-up, metrics and health endpoint.

``/metrics`` is the Prometheus exposition of the process's default registry;
``/healthz`` answers 200 while the process's main loop is alive (liveness) and
``/readyz`` while it can do its work (readiness). The runner and the operator share it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


async def serve_http(
    host: str, port: int, *, healthy: Callable[[], bool], ready: Callable[[], bool]
) -> web.AppRunner:
    """Start serving; stop with ``await runner.cleanup()`` on the returned runner."""

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    def probe(check: Callable[[], bool]) -> Callable[[web.Request], object]:
        async def handler(_request: web.Request) -> web.Response:
            ok = check()
            return web.Response(status=200 if ok else 503, text="ok" if ok else "not ok")

        return handler

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", probe(healthy))  # type: ignore[arg-type]
    app.router.add_get("/readyz", probe(ready))  # type: ignore[arg-type]
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def configure_logging() -> None:
    """INFO to stderr, with the LLM SDKs' HTTP clients quietened: they log every request
    at INFO, thousands of lines a second on a busy runner."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("httpx", "httpx2", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
