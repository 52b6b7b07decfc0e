"""REST reads of stacks: the list, one stack, and its agents, streams and state.

Routes (``GET``)::

    /api/v1/stacks                                        list (namespace, state; cursor paging)
    /api/v1/namespaces/{namespace}/stacks/{name}          spec summary (no secrets) and status
    /api/v1/namespaces/{namespace}/stacks/{name}/agents   agents, memory and inbox sizes
    …/ticks  …/traces  …/feed                             stream pages, newest first
    …/messages?agent=                                     an agent's inbox, newest first
    …/memory  …/artifacts                                 plan, agents' memory, usage; artifacts
    …/search?q=&limit=&kind=                              the archive searched (BM25), best first

Every route resolves the stack with :meth:`~..access.StackAccess.readable` (403, 404)
after its parameters are validated (400), then asks :class:`~..views.StackViews`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from agentstack_api import models
from agentstack_api.params import (
    STACK_PATH,
    Access,
    AgentName,
    Caller,
    Cursor,
    KindFilter,
    Limit,
    Name,
    Namespace,
    NamespaceFilter,
    SearchLimit,
    SearchQuery,
    StackCursor,
    StateFilter,
    Views,
)
from agentstack_api.views import FEED, TICKS, TRACES, StreamKind, stack_detail

router = APIRouter()


@router.get("/api/v1/stacks", response_model=models.StackList)
async def list_stacks(
    caller: Caller,
    access: Access,
    limit: Limit = 100,
    namespace: NamespaceFilter = None,
    state: StateFilter = None,
    cursor: StackCursor = None,
) -> models.StackList:
    return await access.listing(
        caller, limit=limit, namespace=namespace, state=state, cursor=cursor
    )


@router.get(STACK_PATH, response_model=models.StackDetail)
async def get_stack(
    namespace: Namespace, name: Name, caller: Caller, access: Access
) -> models.StackDetail:
    return stack_detail(await access.readable(caller, namespace, name))


@router.get(f"{STACK_PATH}/agents", response_model=models.AgentList)
async def agents(
    namespace: Namespace, name: Name, caller: Caller, access: Access, views: Views
) -> models.AgentList:
    return await views.agents(await access.readable(caller, namespace, name))


def _stream_page(kind: StreamKind[Any]) -> Any:
    """The route serving ``kind``'s stream a page at a time (one for ticks, traces, feed)."""

    async def endpoint(
        namespace: Namespace,
        name: Name,
        caller: Caller,
        access: Access,
        views: Views,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> BaseModel:
        stack = await access.readable(caller, namespace, name)
        return await views.page(stack, kind, cursor=cursor, limit=limit)

    return endpoint


for _suffix, _kind, _summary in (
    ("ticks", TICKS, "Tick history"),
    ("traces", TRACES, "Agent step traces"),
    ("feed", FEED, "Progress updates"),
):
    router.get(f"{STACK_PATH}/{_suffix}", response_model=_kind.page_model, summary=_summary)(
        _stream_page(_kind)
    )


@router.get(
    f"{STACK_PATH}/messages", response_model=models.MessagePage, response_model_by_alias=True
)
async def messages(
    namespace: Namespace,
    name: Name,
    caller: Caller,
    access: Access,
    views: Views,
    agent: AgentName,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> models.MessagePage:
    stack = await access.readable(caller, namespace, name)
    return await views.messages(stack, agent, cursor=cursor, limit=limit)


@router.get(f"{STACK_PATH}/memory", response_model=models.Memory)
async def memory(
    namespace: Namespace, name: Name, caller: Caller, access: Access, views: Views
) -> models.Memory:
    return await views.memory(await access.readable(caller, namespace, name))


@router.get(f"{STACK_PATH}/artifacts", response_model=models.ArtifactList)
async def artifacts(
    namespace: Namespace, name: Name, caller: Caller, access: Access, views: Views
) -> models.ArtifactList:
    return await views.artifacts(await access.readable(caller, namespace, name))


@router.get(
    f"{STACK_PATH}/search",
    response_model=models.SearchResult,
    summary="Search the stack's archive",
    description="Every task that left the plan, every artifact version, input, message, "
    "feed post and consolidation note the stack's archive keeps — long after the capped "
    "streams moved on — ranked by BM25 over a lexical index Redis keeps with the archive "
    "(words lower-cased; ASCII letters and digits, other UTF-8 words matched as written).",
)
async def search(
    namespace: Namespace,
    name: Name,
    caller: Caller,
    access: Access,
    views: Views,
    q: SearchQuery,
    limit: SearchLimit = 20,
    kind: KindFilter = None,
) -> models.SearchResult:
    stack = await access.readable(caller, namespace, name)
    return await views.search(stack, q, limit=limit, kind=kind)
