"""The suite's Jaeger is real: OTLP spans sent over HTTP come back as a tree.

The trace is sent the way an exporter sends it (OTLP/HTTP with the JSON encoding, to
``{otlp_endpoint}/v1/traces``) but written by hand, so these tests check the receiving
side alone: what later tests assert about a real tick's spans rests on it.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentstack_devkit.jaeger import JaegerServer, Span, outline
from agentstack_devkit.processes import LOOPBACK
from tests.helpers import eventually

_TCP_LISTEN = "0A"


@pytest.fixture(scope="module")
def jaeger() -> Iterator[JaegerServer]:
    with JaegerServer() as server:
        yield server


def _hex_id(length: int) -> str:
    """A random id as OTLP/JSON writes it; non-zero first digit so that Jaeger, which
    drops a zero upper half of a trace id, prints it back unchanged."""
    return "a" + secrets.token_hex(length)[1:]


def _attribute(key: str, value: str | int | bool) -> dict[str, Any]:
    if isinstance(value, bool):  # before int: a bool is an int to Python
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):  # OTLP/JSON writes int64 as a string
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def _span(
    trace_id: str,
    span_id: str,
    parent_id: str | None,
    name: str,
    start_ns: int,
    attributes: dict[str, str | int | bool],
) -> dict[str, Any]:
    return {
        "traceId": trace_id,
        "spanId": span_id,
        "parentSpanId": parent_id or "",
        "name": name,
        "kind": 1,  # SPAN_KIND_INTERNAL
        "startTimeUnixNano": str(start_ns),
        "endTimeUnixNano": str(start_ns + 5_000_000),
        "attributes": [_attribute(key, value) for key, value in attributes.items()],
    }


def send_tick_trace(server: JaegerServer, service: str) -> tuple[str, str, str]:
    """POST a parent span and its child; return (trace id, parent id, child id)."""
    trace_id, parent_id, child_id = _hex_id(16), _hex_id(8), _hex_id(8)
    start = time.time_ns()
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        _attribute("service.name", service),
                        _attribute("service.version", "0.1.0"),
                    ]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "tests.integration.test_jaeger"},
                        "spans": [
                            _span(
                                trace_id,
                                parent_id,
                                None,
                                "tick",
                                start,
                                {"agentstack.stack": "default/demo", "agentstack.tick": 7},
                            ),
                            _span(
                                trace_id,
                                child_id,
                                parent_id,
                                "llm.call",
                                start + 1_000_000,
                                {"llm.provider": "scripted", "llm.tokens": 42, "llm.cached": True},
                            ),
                        ],
                    }
                ],
            }
        ]
    }
    response = httpx.post(f"{server.otlp_endpoint}/v1/traces", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return trace_id, parent_id, child_id


def wait_for_spans(server: JaegerServer, service: str, count: int) -> list[Span]:
    def received() -> list[Span] | None:
        spans = server.spans(service)
        return spans if len(spans) >= count else None

    return eventually(received, f"{count} spans of {service} in jaeger", timeout=30)


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(IPv4 address or "ipv6", port) of every TCP socket ``pid`` listens on.

    Read from /proc rather than ``ss`` (not installed everywhere): the process's socket
    inodes, matched against the kernel's TCP tables.
    """
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed between listing and reading
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found: set[tuple[str, int]] = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != _TCP_LISTEN or inode not in inodes:
                continue
            address, port = local.split(":")
            host = socket.inet_ntoa(bytes.fromhex(address)[::-1]) if table == "tcp" else "ipv6"
            found.add((host, int(port, 16)))
    return found


def test_parent_and_child_span_come_back_as_a_tree(jaeger: JaegerServer) -> None:
    service = f"test-{secrets.token_hex(4)}"
    trace_id, parent_id, child_id = send_tick_trace(jaeger, service)

    spans = wait_for_spans(jaeger, service, 2)

    assert service in jaeger.services()
    assert outline(spans) == ["tick", "  llm.call"]
    parent, child = spans
    assert (parent.trace_id, child.trace_id) == (trace_id, trace_id)
    assert (parent.span_id, parent.parent_id) == (parent_id, None)
    assert (child.span_id, child.parent_id) == (child_id, parent_id)
    assert {parent.service, child.service} == {service}
    assert parent.attributes["agentstack.stack"] == "default/demo"
    assert parent.attributes["agentstack.tick"] == 7
    assert child.attributes["llm.tokens"] == 42
    assert child.attributes["llm.cached"] is True
    assert child.resource["service.version"] == "0.1.0"
    assert child.duration_us == 5_000


def test_traces_filter_by_operation(jaeger: JaegerServer) -> None:
    service = f"test-{secrets.token_hex(4)}"
    trace_id, _, _ = send_tick_trace(jaeger, service)
    wait_for_spans(jaeger, service, 2)

    [trace] = jaeger.traces(service, operation="llm.call", limit=5)
    assert trace["traceID"] == trace_id
    assert jaeger.traces(service, operation="no-such-operation") == []
    assert jaeger.traces(f"never-sent-{secrets.token_hex(4)}") == []


def test_two_servers_side_by_side_listen_on_loopback_only_and_stop_clean() -> None:
    with JaegerServer() as first, JaegerServer() as second:
        pids = [first.process.pid, second.process.pid]
        work_dirs = [first.work_dir, second.work_dir]
        ports: list[int] = []
        for server in (first, second):
            own = [
                server.otlp_http_port,
                server.otlp_grpc_port,
                server.query_port,
                server.query_grpc_port,
            ]
            ports += own
            pid = server.process.pid
            assert pid is not None
            assert listening_addresses(pid) == {(LOOPBACK, port) for port in own}
        assert len(set(ports)) == 8

        first_service = f"first-{secrets.token_hex(4)}"
        second_service = f"second-{secrets.token_hex(4)}"
        send_tick_trace(first, first_service)
        send_tick_trace(second, second_service)
        wait_for_spans(first, first_service, 2)
        wait_for_spans(second, second_service, 2)
        assert first.services() == [first_service]
        assert second.services() == [second_service]

    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    for directory in work_dirs:
        assert not directory.exists()
    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((LOOPBACK, port), timeout=2).close()
