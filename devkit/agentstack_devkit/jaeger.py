"""A real Jaeger receiving OpenTelemetry traces, for tests that assert span trees.

What a tick exports as spans (their names, nesting and attributes) is a contract with
whoever reads the traces. An in-process exporter would show what the SDK produced, not
what a collector receives over the wire: a wrong endpoint, an exporter that is never
flushed before the process exits, a parent context lost between two processes would all
go unseen. So the tests run the real receiving side — Jaeger v2, the all-in-one built on
the OpenTelemetry collector, built once from the Go module proxy like helm and the
control plane (``hack/jaeger/go.mod``, :func:`agentstack_devkit.toolchain.jaeger_binary`)
— and read the spans back through its query API.

Each server gets a generated collector configuration: the OTLP receiver (HTTP and gRPC),
in-memory trace storage and the ``jaeger_query`` API, every listener on its own free
loopback port, and none of the collector's own telemetry endpoints (metrics, health,
zpages) or Jaeger's self-tracing. Two servers can therefore run side by side, nothing
listens beyond loopback, and one server's own spans never land in another's (or in a
test's) store. Its scratch directory holds only the configuration and the log.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from agentstack_devkit.processes import (
    LOOPBACK,
    DevEnvError,
    ManagedProcess,
    Service,
    free_port,
)
from agentstack_devkit.toolchain import jaeger_binary

READY_TIMEOUT = 60.0
"""Jaeger starts in about a second; the margin is for a loaded two-core machine."""

HTTP_TIMEOUT = 10.0
MAX_TRACES = 100_000
"""In-memory store bound: far above any test, small enough never to exhaust memory."""

_STORE = "memstore"


@dataclass(frozen=True)
class Span:
    """One span as the query API returns it, flattened for assertions.

    ``attributes`` are the span's tags (the OTLP attributes plus what Jaeger derives,
    such as ``span.kind`` and ``otel.scope.name``); ``resource`` are the tags of the
    process that emitted it (the OTLP resource attributes, ``service.name`` excepted,
    which is :attr:`service`). Hashable by its other fields, so spans fit in sets.
    """

    trace_id: str
    span_id: str
    parent_id: str | None
    operation: str
    service: str
    attributes: dict[str, Any] = field(hash=False)
    resource: dict[str, Any] = field(hash=False)
    start_us: int
    duration_us: int


def collector_config(
    *, otlp_http_port: int, otlp_grpc_port: int, query_http_port: int, query_grpc_port: int
) -> dict[str, Any]:
    """The Jaeger v2 configuration: OTLP in, memory store, query API out, loopback only."""
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query"],
            "pipelines": {
                # No batch processor: a span is queryable as soon as it is received, so
                # tests wait on the span, never on a flush interval.
                "traces": {"receivers": ["otlp"], "exporters": ["jaeger_storage_exporter"]},
            },
            "telemetry": {
                # No metrics: the collector would otherwise open its Prometheus endpoint
                # on the fixed port 8888 and two servers would clash.
                "metrics": {"level": "none"},
                "logs": {"level": "info"},
            },
        },
        "extensions": {
            "jaeger_storage": {"backends": {_STORE: {"memory": {"max_traces": MAX_TRACES}}}},
            "jaeger_query": {
                "storage": {"traces": _STORE},
                # On by default in v2: the query service would trace itself into the
                # store under test, exporting via whatever OTEL_* variables it finds.
                "enable_tracing": False,
                "http": {"endpoint": f"{LOOPBACK}:{query_http_port}"},
                "grpc": {"endpoint": f"{LOOPBACK}:{query_grpc_port}"},
            },
        },
        "receivers": {
            "otlp": {
                "protocols": {
                    "http": {"endpoint": f"{LOOPBACK}:{otlp_http_port}"},
                    "grpc": {"endpoint": f"{LOOPBACK}:{otlp_grpc_port}"},
                }
            }
        },
        "exporters": {"jaeger_storage_exporter": {"trace_storage": _STORE}},
    }


def _distinct_free_ports(count: int) -> list[int]:
    """``count`` different free loopback ports (the kernel may hand one out twice)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _tag_value(tag: Mapping[str, Any]) -> Any:
    """A tag's value as its declared ``type`` says, whatever JSON made of it."""
    value = tag["value"]
    kind = tag.get("type")
    if kind == "int64":
        return int(value)
    if kind == "float64":
        return float(value)
    return value


def _tags(tags: Iterable[Mapping[str, Any]] | None) -> dict[str, Any]:
    return {str(tag["key"]): _tag_value(tag) for tag in tags or ()}


def flatten(traces: Iterable[Mapping[str, Any]]) -> list[Span]:
    """Spans of the query API's traces, ordered by start time (then operation name)."""
    spans: list[Span] = []
    for trace in traces:
        processes = cast(dict[str, dict[str, Any]], trace.get("processes") or {})
        for raw in trace.get("spans") or ():
            process = processes.get(str(raw.get("processID")), {})
            parents = [
                str(reference["spanID"])
                for reference in raw.get("references") or ()
                if reference.get("refType") == "CHILD_OF"
            ]
            spans.append(
                Span(
                    trace_id=str(raw["traceID"]),
                    span_id=str(raw["spanID"]),
                    parent_id=parents[0] if parents else None,
                    operation=str(raw["operationName"]),
                    service=str(process.get("serviceName", "")),
                    attributes=_tags(raw.get("tags")),
                    resource=_tags(process.get("tags")),
                    start_us=int(raw.get("startTime", 0)),
                    duration_us=int(raw.get("duration", 0)),
                )
            )
    spans.sort(key=lambda span: (span.start_us, span.operation))
    return spans


def outline(spans: Iterable[Span]) -> list[str]:
    """The span tree as indented operation names, one line per span, children in start
    order: a whole tree's shape becomes one ``assert outline(spans) == [...]``.

    A span whose parent is not among ``spans`` (not received, or sent from elsewhere)
    is shown as a root, so a lost parent context shows up as a second root.
    """
    ordered = sorted(spans, key=lambda span: (span.start_us, span.operation))
    known = {span.span_id for span in ordered}
    children: dict[str | None, list[Span]] = {}
    for span in ordered:
        parent = span.parent_id if span.parent_id in known else None
        children.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for span in children.get(parent, []):
            lines.append("  " * depth + span.operation)
            walk(span.span_id, depth + 1)

    walk(None, 0)
    return lines


class JaegerServer(Service):
    """One Jaeger v2 process; use as a context manager or start()/stop()."""

    def __init__(self, *, work_dir: Path | None = None) -> None:
        self._owns_work_dir = work_dir is None
        self.work_dir = (
            Path(tempfile.mkdtemp(prefix="agentstack-jaeger-")) if work_dir is None else work_dir
        )
        self.otlp_http_port = 0
        self.otlp_grpc_port = 0
        self.query_port = 0
        self.query_grpc_port = 0
        self._process: ManagedProcess | None = None

    @property
    def otlp_endpoint(self) -> str:
        """Base URL of the OTLP/HTTP receiver, for ``OTEL_EXPORTER_OTLP_ENDPOINT``
        (exporters append ``/v1/traces``)."""
        return f"http://{LOOPBACK}:{self.otlp_http_port}"

    @property
    def query_url(self) -> str:
        """Base URL of the query API (and of the UI, for a person looking at a trace)."""
        return f"http://{LOOPBACK}:{self.query_port}"

    @property
    def config_path(self) -> Path:
        return self.work_dir / "jaeger.yaml"

    @property
    def process(self) -> ManagedProcess:
        if self._process is None:
            raise DevEnvError("jaeger is not running")
        return self._process

    def _start(self) -> None:
        binary = jaeger_binary()
        self.otlp_http_port, self.otlp_grpc_port, self.query_port, self.query_grpc_port = (
            _distinct_free_ports(4)
        )
        self.work_dir.mkdir(parents=True, exist_ok=True)
        config = collector_config(
            otlp_http_port=self.otlp_http_port,
            otlp_grpc_port=self.otlp_grpc_port,
            query_http_port=self.query_port,
            query_grpc_port=self.query_grpc_port,
        )
        # JSON is YAML: no YAML writer needed, and no quoting surprises.
        self.config_path.write_text(json.dumps(config, indent=2) + "\n")
        # The OTel SDK inside the collector reads OTEL_* variables; a test that points
        # its own processes at this server must not point the server at itself.
        env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
        self._process = ManagedProcess(
            "jaeger",
            [binary, f"--config={self.config_path}"],
            log_path=self.work_dir / "jaeger.log",
            env=env,
            cwd=self.work_dir,
        )
        self._process.start()
        self._process.wait_ready(self._ready, timeout=READY_TIMEOUT)

    def _ready(self) -> bool | None:
        """Both ends up: the query API answers, and the receiver (started after the
        extensions, so possibly a moment later) accepts an empty export."""
        self._get("/api/services")
        request = urllib.request.Request(  # noqa: S310 - loopback http only
            f"{self.otlp_endpoint}/v1/traces",
            data=b"{}",
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
            return True if response.status == 200 else None

    def _get(self, path: str, params: Mapping[str, str | int] | None = None) -> Any:
        """GET a query API path and return its ``data``, raising on an error response."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"{self.query_url}{path}{query}"
        try:
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:  # noqa: S310
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # 4xx carry the API's error list
            raise DevEnvError(
                f"jaeger {path} failed with HTTP {exc.code}: "
                f"{exc.read()[:500].decode(errors='replace')}"
            ) from exc
        if body.get("errors"):
            raise DevEnvError(f"jaeger {path} failed: {body['errors']}")
        return body["data"]

    def services(self) -> list[str]:
        """Names of the services that have sent spans, sorted."""
        return sorted(cast(list[str], self._get("/api/services") or []))

    def traces(self, service: str, **filters: str | int) -> list[dict[str, Any]]:
        """The traces of ``service`` (``/api/traces``), as the API returns them.

        ``filters`` are the API's other parameters: ``operation``, ``tags`` (a JSON
        object as a string), ``limit``, ``lookback``, ``start``/``end`` (microseconds),
        ``minDuration``/``maxDuration``. No trace yet is an empty list, not an error.
        """
        return cast(
            list[dict[str, Any]], self._get("/api/traces", {"service": service, **filters}) or []
        )

    def spans(self, service: str, **filters: str | int) -> list[Span]:
        """Every span of every trace of ``service`` (see :func:`flatten`), including
        spans other services contributed to those traces."""
        return flatten(self.traces(service, **filters))

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None
        if self._owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
