"""The two kinds of tool server agents reach, behind one face: MCP servers and A2A peers.

A :class:`~.tools.Toolbox` lists a server's tools and calls one; what that means
depends on the server's ``protocol`` (:class:`~agentstack_core.spec.ToolProtocol`):

- **MCP** — the server's tools, listed and called with the official ``mcp`` SDK
  (``Client`` over ``streamable_http_client``), one session per listing or call.
- **A2A** — another agent (another stack through the agentstack API, or any agent that
  speaks A2A), through the official ``a2a-sdk``'s client: its agent card's skills are
  the tools (each takes one argument, ``text``); a call sends the text as a message
  (naming the skill in its metadata, as agentstack stacks read it; its message id the
  call's, the same when a resumed step calls again) and answers with
  what the peer replied: its task's artifacts and status message, or its message.
  A task the peer has not finished within the call's time is reported with its state
  and id (the call does not wait on: the step must end).

Everything else — the allow-list, the schema check, approvals, headers from the
author's Secrets, the per-call timeout, results cut to size, at-least-once — is the
toolbox's, the same for both.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import httpx2
from a2a.client import A2ACardResolver, ClientConfig, ClientFactory
from a2a.types.a2a_pb2 import (
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from agentstack_core.spec import ToolProtocol, ToolServer

MESSAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"text": {"type": "string", "description": "What to ask the agent."}},
    "required": ["text"],
    "additionalProperties": False,
}
"""The input of every A2A peer's tool: the message's text."""
FAILED = frozenset({TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_REJECTED})


@dataclass(frozen=True)
class Answer:
    text: str
    is_error: bool = False


class Peer(Protocol):
    """How a toolbox lists and calls one kind of server (headers already resolved)."""

    async def list_tools(self, server: ToolServer, headers: dict[str, str]) -> list[dict[str, Any]]:
        """``[{name, description, input_schema}]`` of every tool the server has."""
        ...

    async def call(
        self,
        server: ToolServer,
        headers: dict[str, str],
        tool: str,
        arguments: dict[str, Any],
        *,
        call_id: str,
    ) -> Answer:
        """Call ``tool``; ``call_id`` is the same when a resumed step calls again."""
        ...


class RefusedError(Exception):
    """The server answered 401 or 403: the credential in the headers was refused (the
    toolbox reads their Secrets again; :func:`~agentstack_runner.tools._key_refused`)."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"the server refused the credential (HTTP {status_code})")
        self.status_code = status_code


@contextlib.asynccontextmanager
async def _mcp_session(server: ToolServer, headers: dict[str, str]) -> AsyncIterator[Client]:
    """An MCP session with ``server`` (and its HTTP client), closed on the way out. The
    SDK reports any HTTP error as the same JSON-RPC error, so the client's responses
    are watched for a refused credential, which is raised as :class:`RefusedError`."""
    refused: list[int] = []

    async def watch(response: httpx2.Response) -> None:
        if response.status_code in (401, 403):
            refused.append(response.status_code)

    hooks = {"response": [watch]}
    try:
        async with (
            httpx2.AsyncClient(
                headers=headers, timeout=server.timeout_seconds, event_hooks=hooks
            ) as http,
            Client(streamable_http_client(server.url, http_client=http)) as client,
        ):
            yield client
    except Exception as exc:
        if refused:
            raise RefusedError(refused[0]) from exc
        raise


class McpPeer:
    """An MCP server: its own tools, through the ``mcp`` SDK."""

    async def list_tools(self, server: ToolServer, headers: dict[str, str]) -> list[dict[str, Any]]:
        async with _mcp_session(server, headers) as client:
            listed = await client.list_tools()
        return [
            {"name": t.name, "description": t.description, "input_schema": t.input_schema}
            for t in listed.tools
        ]

    async def call(
        self,
        server: ToolServer,
        headers: dict[str, str],
        tool: str,
        arguments: dict[str, Any],
        *,
        call_id: str,
    ) -> Answer:
        async with _mcp_session(server, headers) as client:
            answer = await client.call_tool(tool, arguments)
        return Answer(_mcp_text(answer.content), is_error=bool(answer.is_error))


class A2aPeer:
    """An A2A agent: its card's skills, each a message to it, through the ``a2a-sdk``."""

    async def list_tools(self, server: ToolServer, headers: dict[str, str]) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(headers=headers, timeout=server.timeout_seconds) as http:
            card = await A2ACardResolver(http, server.url).get_agent_card()
        return [
            {
                "name": skill.id,
                "description": f"Ask {card.name} ({skill.name}): "
                f"{skill.description or card.description}",
                "input_schema": MESSAGE_SCHEMA,
            }
            for skill in card.skills
        ]

    async def call(
        self,
        server: ToolServer,
        headers: dict[str, str],
        tool: str,
        arguments: dict[str, Any],
        *,
        call_id: str,
    ) -> Answer:
        message = Message(
            message_id=f"agentstack-{call_id}",
            role=Role.ROLE_USER,
            parts=[Part(text=str(arguments["text"]))],
        )
        message.metadata.update({"skillId": tool})
        request = SendMessageRequest(
            message=message, configuration=SendMessageConfiguration(return_immediately=False)
        )
        last: StreamResponse | None = None
        async with httpx.AsyncClient(headers=headers, timeout=server.timeout_seconds) as http:
            card = await A2ACardResolver(http, server.url).get_agent_card()
            client = ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(card)
            async for event in client.send_message(request):
                last = event
        return answer_of(last)


PEERS: dict[ToolProtocol, Peer] = {ToolProtocol.MCP: McpPeer(), ToolProtocol.A2A: A2aPeer()}


def answer_of(event: StreamResponse | None) -> Answer:
    """What an agent reads of a peer's reply: a finished task's artifacts and status
    message, an unfinished one's state and id, or the message the peer answered."""
    if event is None:
        return Answer("the agent answered nothing", is_error=True)
    if event.HasField("message"):
        return Answer(_a2a_text(event.message.parts))
    if not event.HasField("task"):
        return Answer("the agent answered neither a task nor a message", is_error=True)
    return _task_answer(event.task)


def _task_answer(task: Task) -> Answer:
    state = TaskState.Name(task.status.state).removeprefix("TASK_STATE_").lower()
    texts = [_a2a_text(artifact.parts) for artifact in task.artifacts]
    if task.status.HasField("message"):
        texts.append(_a2a_text(task.status.message.parts))
    body = "\n\n".join(text for text in texts if text)
    terminal = task.status.state in FAILED or task.status.state in (
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_CANCELED,
    )
    head = f"task {task.id}: {state}" + ("" if terminal else " (not finished when asked)")
    return Answer(f"{head}\n{body}" if body else head, is_error=task.status.state in FAILED)


def _a2a_text(parts: Sequence[Part]) -> str:
    return "\n".join(part.text if part.HasField("text") else "[non-text part]" for part in parts)


def _mcp_text(content: Sequence[Any]) -> str:
    parts = []
    for block in content:
        text = getattr(block, "text", None)
        parts.append(text if isinstance(text, str) else f"[{getattr(block, 'type', 'content')}]")
    return "\n".join(parts)
