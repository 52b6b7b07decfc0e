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

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from agentstack_devkit.processes import LOOPBACK, ManagedProcess, free_port, wait_until

HUGE_CHARS = 1_000_000

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _record(log: Path, **entry: Any) -> None:
    with log.open("a", encoding="utf-8") as out:
        out.write(json.dumps({"at": time.time(), **entry}) + "\n")


def serve(port: int, log: Path) -> None:
    """Run the server on loopback until killed (the child process's main)."""
    import uvicorn
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("agentstack-test-tools")

    @server.tool(description="Look up facts about a subject.")
    def lookup(query: str) -> str:
        _record(log, tool="lookup", arguments={"query": query})
        return f"Facts about {query}: it is well documented."

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> str:
        _record(log, tool="add", arguments={"a": a, "b": b})
        return str(a + b)

    @server.tool(description="Always fails.")
    def fail() -> str:
        _record(log, tool="fail", arguments={})
        raise RuntimeError("the tool failed on purpose")

    @server.tool(description="Never answers.")
    async def hang() -> str:
        _record(log, tool="hang", arguments={})
        await asyncio.sleep(3600)
        return "too late"

    @server.tool(description="Answers after the given number of seconds.")
    async def slow(seconds: int) -> str:
        _record(log, tool="slow", arguments={"seconds": seconds})
        await asyncio.sleep(seconds)
        return f"done after {seconds}s"

    @server.tool(description="Answers a megabyte of text.")
    def huge() -> str:
        _record(log, tool="huge", arguments={})
        return "x" * HUGE_CHARS

    @server.tool(description="Must never be offered to an agent.")
    def secret() -> str:
        _record(log, tool="secret", arguments={})
        return "the secret tool ran"

    app = server.streamable_http_app(streamable_http_path="/mcp")

    async def logged(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode(): v.decode() for k, v in scope.get("headers", [])}
            _record(log, request=scope["path"], headers=headers)
        await app(scope, receive, send)

    uvicorn.run(logged, host=LOOPBACK, port=port, log_level="warning")


class ToolServer:
    """The server as a managed child process: ``with ToolServer(dir) as server: …``."""

    def __init__(self, work: Path) -> None:
        self.port = free_port()
        self.log = work / "mcp-calls.jsonl"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.touch()
        self.process = ManagedProcess(
            "mcp-server",
            [
                sys.executable,
                "-m",
                "agentstack_devkit.mcpserver",
                "--port",
                str(self.port),
                "--log",
                str(self.log),
            ],
            log_path=work / "mcp-server.log",
        )

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/mcp"

    def start(self) -> None:
        self.process.start()
        self.process.wait_ready(self._listening, timeout=30, what="listening")

    def _listening(self) -> bool | None:
        import socket

        with socket.socket() as probe:
            probe.settimeout(0.5)
            return True if probe.connect_ex((LOOPBACK, self.port)) == 0 else None

    def stop(self) -> None:
        self.process.stop(timeout=5)

    def __enter__(self) -> ToolServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def entries(self) -> list[dict[str, Any]]:
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def calls(self, tool: str | None = None) -> list[dict[str, Any]]:
        """Tool calls that reached the tools, oldest first (of ``tool`` only, if named)."""
        return [e for e in self.entries() if "tool" in e and tool in (None, e["tool"])]

    def request_headers(self) -> list[dict[str, str]]:
        return [e["headers"] for e in self.entries() if "request" in e]

    def wait_calls(self, tool: str, count: int, timeout: float = 30.0) -> None:
        wait_until(
            lambda: True if len(self.calls(tool)) >= count else None,
            timeout=timeout,
            what=f"{count} call(s) of {tool}",
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agentstack_devkit.mcpserver")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args(argv)
    serve(args.port, args.log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
