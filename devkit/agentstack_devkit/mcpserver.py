"""A real MCP server (the official ``mcp`` SDK, Streamable HTTP) for tests and demos.

Its tools cover what a tool server does to a caller: ``lookup`` answers, ``add`` takes
typed arguments (so a schema violation can be refused before a call), ``fail`` raises,
``hang`` never answers, ``slow`` answers after a while (a window to kill the caller
in), ``huge`` answers a megabyte, and ``secret`` is never meant to
be offered (an allow-list test). It runs in a process of its own (``python -m
agentstack_devkit.mcpserver``), so a test can hang it, kill it (a server down) or
restart it; every tool call and the headers of every request are appended to a JSON
lines file, so a test proves what reached the server — and what did not.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from agentstack_devkit.processes import (
    LoggingServer,
    append_entry,
    serve_logged,
    server_main,
    wait_until,
)

HUGE_CHARS = 1_000_000


def serve(port: int, log: Path, host: str) -> None:
    """Run the server on ``host`` until killed (the child process's main)."""
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("agentstack-test-tools")

    @server.tool(description="Look up facts about a subject.")
    def lookup(query: str) -> str:
        append_entry(log, tool="lookup", arguments={"query": query})
        return f"Facts about {query}: it is well documented."

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> str:
        append_entry(log, tool="add", arguments={"a": a, "b": b})
        return str(a + b)

    @server.tool(description="Always fails.")
    def fail() -> str:
        append_entry(log, tool="fail", arguments={})
        raise RuntimeError("the tool failed on purpose")

    @server.tool(description="Never answers.")
    async def hang() -> str:
        append_entry(log, tool="hang", arguments={})
        await asyncio.sleep(3600)
        return "too late"

    @server.tool(description="Answers after the given number of seconds.")
    async def slow(seconds: int) -> str:
        append_entry(log, tool="slow", arguments={"seconds": seconds})
        await asyncio.sleep(seconds)
        return f"done after {seconds}s"

    @server.tool(description="Answers a megabyte of text.")
    def huge() -> str:
        append_entry(log, tool="huge", arguments={})
        return "x" * HUGE_CHARS

    @server.tool(description="Must never be offered to an agent.")
    def secret() -> str:
        append_entry(log, tool="secret", arguments={})
        return "the secret tool ran"

    # ``host`` sets the SDK's DNS-rebinding guard: loopback names on loopback, none else.
    app = server.streamable_http_app(streamable_http_path="/mcp", host=host)

    serve_logged(app, port, log, host)


class ToolServer(LoggingServer):
    """The server as a managed child process: ``with ToolServer(dir) as server: …``."""

    module = "agentstack_devkit.mcpserver"
    name = "mcp-server"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/mcp"

    def calls(self, tool: str | None = None) -> list[dict[str, Any]]:
        """Tool calls that reached the tools, oldest first (of ``tool`` only, if named)."""
        return [e for e in self.entries() if "tool" in e and tool in (None, e["tool"])]

    def wait_calls(self, tool: str, count: int, timeout: float = 30.0) -> None:
        wait_until(
            lambda: True if len(self.calls(tool)) >= count else None,
            timeout=timeout,
            what=f"{count} call(s) of {tool}",
        )


def main(argv: list[str] | None = None) -> int:
    return server_main("agentstack_devkit.mcpserver", serve, argv)


if __name__ == "__main__":
    sys.exit(main())
