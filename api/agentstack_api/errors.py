"""The one error body of the API, and the handlers that turn every failure into it.

Every non-2xx answer is ``{"error": {"status", "code", "message"}}`` (see
:class:`~.models.ErrorResponse`), whoever raised it: a route or a service raises
:class:`ApiError`; FastAPI's own validation (400), Starlette's routing (404, 405) and
anything unexpected (500) are translated here, so a dashboard handles one shape. The
request-size limit (413) answers with the same body from the app's middleware. A
Kubernetes call a request needed and the API server failed (a review it could not
make, an API server out of reach) is a 503 (:func:`kubernetes_unavailable`), never a
500: the caller may try again. So is a decision or an input Redis's replicas did not
confirm (``NotConfirmed``, with ``REDIS_WAIT_REPLICAS``): it may or may not stand after
a failover, so the caller looks before sending it again.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from agentstack_api import models
from agentstack_core.kube.errors import KubeError, UnreachableError
from agentstack_core.redis.errors import NotDurableError

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """A failure a caller should see, with its HTTP status and CamelCase code."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        """Sent with the answer (``Retry-After`` on a 429)."""


def kubernetes_unavailable(exc: KubeError) -> ApiError:
    """503: the API server failed (or could not take) a call the request needed."""
    said = (
        "could not be reached"
        if isinstance(exc, UnreachableError)
        else f"answered {exc.status}: {exc.reason}"
    )
    return ApiError(503, "KubernetesUnavailable", f"the API server {said}; try again later")


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """The one error body, as a response."""
    body = models.ErrorResponse(error=models.ErrorBody(status=status, code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status)


def request_too_large(limit: int) -> JSONResponse:
    """413: a body larger than any the API takes (``limit`` bytes) is refused unread."""
    return error_response(
        413, "RequestTooLarge", f"request bodies are limited to {limit // 1024} KiB"
    )


def error_responses(*answers: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error answers (status, description), all of the one body."""
    return {
        status: {"model": models.ErrorResponse, "description": text} for status, text in answers
    }


ERROR_RESPONSES = error_responses(
    (400, "Invalid parameters"),
    (401, "Missing or rejected credentials"),
    (403, "RBAC does not allow get on this stack"),
    (404, "No such stack"),
)
"""The error answers every documented operation may give, for the OpenAPI schema."""


async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
    response = error_response(exc.status, exc.code, exc.message)
    response.headers.update(exc.headers)
    return response


async def _kube_error(request: Request, exc: KubeError) -> JSONResponse:
    logger.warning("Kubernetes call failed: %s", exc)
    return await _api_error(request, kubernetes_unavailable(exc))


async def _not_durable(_request: Request, exc: NotDurableError) -> JSONResponse:
    logger.warning("a write was not confirmed by Redis's replicas: %s", exc)
    response = error_response(
        503,
        "NotConfirmed",
        "Redis took the change but its replicas did not confirm it in time, so a failover "
        "could still lose it: look at the stack before sending it again",
    )
    response.headers["Retry-After"] = "1"
    return response


async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
    )
    return error_response(400, "InvalidParameter", problems or "invalid request")


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    codes = {404: "NotFound", 405: "MethodNotAllowed"}
    response = error_response(
        exc.status_code, codes.get(exc.status_code, "HTTPError"), str(exc.detail)
    )
    response.headers.update(exc.headers or {})
    if exc.status_code == 405:
        allowed = _allowed_methods(request)
        if allowed:
            response.headers["Allow"] = ", ".join(allowed)
    return response


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path (``app.state.routes``, the
    routes :func:`~.app.create_app` included). Starlette names only the first route
    that matched the path, and a path two routes serve (``GET`` and ``POST …/inputs``)
    would then claim to allow one method."""
    methods: set[str] = set()
    for route in getattr(request.app.state, "routes", ()):
        match, _child = route.matches({**request.scope, "method": ""})
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unexpected error", exc_info=exc)
    return error_response(500, "InternalError", "unexpected error; see the API's log")


def install_error_handlers(app: FastAPI) -> None:
    """Make every failure of ``app`` answer with the one error body."""
    app.exception_handler(ApiError)(_api_error)
    app.exception_handler(KubeError)(_kube_error)
    app.exception_handler(NotDurableError)(_not_durable)
    app.exception_handler(RequestValidationError)(_invalid)
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.exception_handler(Exception)(_unexpected)
