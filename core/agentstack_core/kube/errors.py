"""What a failed Kubernetes call raises: one class per answer a caller acts on.

The API server explains a refusal in a ``Status`` body (``reason``, ``message``); the
error carries both with the HTTP status, so a caller branches on the class (a 404 is
:class:`NotFoundError`, a 410 :class:`GoneError`) and logs the message. An API server that
cannot be reached, or that does not answer within the call's timeout, is
:class:`UnreachableError` (status 0): a caller treats it like a 503.
"""

from __future__ import annotations

import json
from typing import Any

MESSAGE_LIMIT = 500
"""Characters of the API server's message kept: enough to read, never a whole body."""


class KubeError(Exception):
    """A call the API server refused (or could not be made: :class:`UnreachableError`)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(status, reason, message)
        self.status: int = status
        self.reason: str = reason
        self.message: str = message

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.message}"


class UnauthorizedError(KubeError):
    """401: the credentials were not accepted."""


class ForbiddenError(KubeError):
    """403: RBAC (or admission) refuses the call."""


class NotFoundError(KubeError):
    """404: no such object (or resource)."""


class ConflictError(KubeError):
    """409: it exists already, or its resourceVersion moved on."""


class GoneError(KubeError):
    """410: a watch's resourceVersion is too old; list again."""


class InvalidError(KubeError):
    """422: the object (or a JSON patch's ``test``) does not hold."""


class UnreachableError(KubeError):
    """No answer: the connection failed or the call ran past its timeout."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "Unreachable", message)


_BY_STATUS: dict[int, type[KubeError]] = {
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    422: InvalidError,
}


def error_for(status: int, body: str | dict[str, Any]) -> KubeError:
    """The error of an answer with HTTP ``status`` and ``body`` (a ``Status`` object as
    text or parsed, or whatever else came back), of the class its status names."""
    found: Any = body
    if isinstance(body, str):
        try:
            found = json.loads(body)
        except ValueError:
            found = {"message": body}
    if not isinstance(found, dict):
        found = {}
    reason = found.get("reason")
    message = found.get("message")
    kind = _BY_STATUS.get(status, KubeError)
    return kind(
        status,
        reason if isinstance(reason, str) and reason else f"HTTP{status}",
        (message if isinstance(message, str) else "")[:MESSAGE_LIMIT],
    )
