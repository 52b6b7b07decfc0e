"""A real A2A agent (built from the official ``a2a-sdk``'s server parts) for tests and demos.

Its skills cover what a peer does to a caller: ``echo`` answers with an artifact
(``echo: <text>``), and the text ``fail`` makes it fail the task, ``hang`` never
finish it; ``secret`` is a skill no allow-list should offer. It runs in a process of its
own (``python -m agentstack_devkit.a2aagent``), so a test can kill it (a peer down);
every message it receives, with its skill, and the headers of every request are
appended to a JSON lines file, so a test proves what reached the peer — and what did
not.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from agentstack_devkit.processes import (
    LOOPBACK,
    LoggingServer,
    append_entry,
    serve_logged,
    server_main,
)


def serve(port: int, log: Path, host: str) -> None:
    """Run the agent on ``host`` until killed (the child process's main)."""
    from a2a.helpers import new_task
    from a2a.server.agent_execution import AgentExecutor, RequestContext
    from a2a.server.events import EventQueue
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
    from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
    from a2a.types.a2a_pb2 import (
        AgentCapabilities,
        AgentCard,
        AgentInterface,
        AgentSkill,
        Part,
        TaskState,
    )
    from a2a.utils.constants import PROTOCOL_VERSION_1_0
    from starlette.applications import Starlette

    class Peer(AgentExecutor):
        async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
            text = context.get_user_input()
            skill = context.message.metadata["skillId"] if context.message else None
            message_id = context.message.message_id if context.message else None
            append_entry(log, message=text, skill=skill, message_id=message_id)
            task_id, context_id = context.task_id or "", context.context_id or ""
            await event_queue.enqueue_event(
                new_task(task_id, context_id, TaskState.TASK_STATE_SUBMITTED)
            )
            updater = TaskUpdater(event_queue, task_id, context_id)
            await updater.start_work()
            if text == "hang":
                await asyncio.sleep(3600)
            if text == "fail":
                await updater.failed(
                    updater.new_agent_message([Part(text="the peer failed on purpose")])
                )
                return
            await updater.add_artifact([Part(text=f"echo: {text}")], name="answer")
            await updater.complete(updater.new_agent_message([Part(text="done")]))

        async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
            raise NotImplementedError("tasks of this peer are not cancelled")

    url = f"http://{LOOPBACK}:{port}/"
    card = AgentCard(
        name="peer",
        description="A test agent that echoes what it is told.",
        version="1.0",
        supported_interfaces=[
            AgentInterface(
                url=url, protocol_binding="JSONRPC", protocol_version=PROTOCOL_VERSION_1_0
            )
        ],
        capabilities=AgentCapabilities(streaming=False),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[
            AgentSkill(id="echo", name="Echo", description="Repeats the text.", tags=["test"]),
            AgentSkill(id="secret", name="Secret", description="Never offered.", tags=["test"]),
        ],
    )
    handler = DefaultRequestHandler(
        agent_executor=Peer(), task_store=InMemoryTaskStore(), agent_card=card
    )
    app = Starlette(routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, "/")])

    serve_logged(app, port, log, host)


class A2aAgent(LoggingServer):
    """The agent as a managed child process: ``with A2aAgent(dir) as peer: …``."""

    module = "agentstack_devkit.a2aagent"
    name = "a2a-agent"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def messages(self) -> list[dict[str, Any]]:
        """The messages received, in order: ``{message, skill}``."""
        return [entry for entry in self.entries() if "message" in entry]


def main(argv: list[str] | None = None) -> int:
    return server_main("agentstack_devkit.a2aagent", serve, argv)


if __name__ == "__main__":
    sys.exit(main())
