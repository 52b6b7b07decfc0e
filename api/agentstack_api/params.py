"""What routes take: validated parameters, the caller, and the services they call.

Parameter types carry their validation (patterns, ranges, lengths), so a bad value is a
400 with the one error body before a route runs, and the OpenAPI schema says what is
accepted. Services come from ``app.state`` (``access``, ``views``, ``streams``,
``inputs``, ``approvals``, ``state_writer``, ``webhooks``, ``a2a``, ``chargeback``,
``rollbacks``, ``forks``, set by
:func:`~.app.create_app`) through the dependencies below, so a test builds an app with
fakes, or overrides a dependency, without touching a route.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Path, Query, Request

from agentstack_api.a2aserver import StackAgents
from agentstack_api.access import StackAccess
from agentstack_api.approvals import Approvals
from agentstack_api.auth import User
from agentstack_api.chargeback import Chargeback
from agentstack_api.executionstate import StateWriter
from agentstack_api.forks import Forks
from agentstack_api.inputs import Inputs
from agentstack_api.models import NAME_PATTERN
from agentstack_api.rollbacks import Rollbacks
from agentstack_api.sse import StreamViews
from agentstack_api.views import StackViews
from agentstack_api.webhooks import Webhooks
from agentstack_core.records import ArchiveKind
from agentstack_core.redis.search import MAX_LIMIT as MAX_SEARCH_LIMIT

STACK_PATH = "/api/v1/namespaces/{namespace}/stacks/{name}"
"""Where one stack's routes live."""
MAX_PAGE = 500
STREAM_ID_PATTERN = r"^\d{1,20}-\d{1,20}$"
"""A Redis stream id, ``<milliseconds>-<sequence>``."""
STACK_CURSOR_PATTERN = NAME_PATTERN.rstrip("$") + "/" + NAME_PATTERN.lstrip("^")
"""``namespace/name``: where a stack list resumes."""

Namespace = Annotated[str, Path(pattern=NAME_PATTERN, max_length=253)]
Name = Annotated[str, Path(pattern=NAME_PATTERN, max_length=253)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"Page size (max {MAX_PAGE}).")]
Cursor = Annotated[
    str | None,
    Query(
        description="Stream id: return entries older than this one.",
        pattern=STREAM_ID_PATTERN,
        max_length=41,
    ),
]
NamespaceFilter = Annotated[str | None, Query(pattern=NAME_PATTERN, max_length=253)]
StateFilter = Annotated[str | None, Query(pattern="^(Running|Paused|Stopped)$")]
StackCursor = Annotated[
    str | None,
    Query(
        description="namespace/name of the last item seen",
        pattern=STACK_CURSOR_PATTERN,
        max_length=507,
    ),
]
WebhookName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=63)]
AgentName = Annotated[str, Query(pattern=NAME_PATTERN, max_length=63, description="Inbox owner")]
MAX_QUERY_CHARS = 500
SearchQuery = Annotated[
    str,
    Query(
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        description="What to look for: words (case and punctuation do not matter; words of "
        "one letter and common English stopwords are left out).",
    ),
]
SearchLimit = Annotated[
    int, Query(ge=1, le=MAX_SEARCH_LIMIT, description=f"Hits (max {MAX_SEARCH_LIMIT}).")
]
KindFilter = Annotated[ArchiveKind | None, Query(description="Only items of this kind.")]
LastStreamId = Annotated[
    str | None, Header(alias="Last-Event-ID", pattern=STREAM_ID_PATTERN, max_length=41)
]
"""A stack stream's ``Last-Event-ID``: the Redis stream id of the last entry seen."""
LastChange = Annotated[str | None, Header(alias="Last-Event-ID", pattern=r"^\d{1,18}$")]
"""The fleet stream's ``Last-Event-ID``: the number of the last change seen."""


# -- services ----------------------------------------------------------------------------


def _service(name: str) -> Callable[[Request], Any]:
    """The dependency that hands a route ``app.state.<name>``."""

    def service(request: Request) -> Any:
        return getattr(request.app.state, name)

    return service


Access = Annotated[StackAccess, Depends(_service("access"))]
Views = Annotated[StackViews, Depends(_service("views"))]
Streams = Annotated[StreamViews, Depends(_service("streams"))]
InputsService = Annotated[Inputs, Depends(_service("inputs"))]
ApprovalsService = Annotated[Approvals, Depends(_service("approvals"))]
StateWriterService = Annotated[StateWriter, Depends(_service("state_writer"))]
WebhooksService = Annotated[Webhooks, Depends(_service("webhooks"))]
A2AService = Annotated[StackAgents, Depends(_service("a2a"))]
ChargebackService = Annotated[Chargeback, Depends(_service("chargeback"))]
RollbacksService = Annotated[Rollbacks, Depends(_service("rollbacks"))]
ForksService = Annotated[Forks, Depends(_service("forks"))]


async def current_user(
    access: Access, authorization: Annotated[str | None, Header()] = None
) -> User:
    """The caller, authenticated by the app's Authorizer (401 if refused)."""
    return await access.authenticate(authorization)


Caller = Annotated[User, Depends(current_user)]
