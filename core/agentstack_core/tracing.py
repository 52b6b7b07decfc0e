"""OpenTelemetry traces of ticks, after the GenAI semantic conventions; off and free by default.

Why a tick was slow is a question about one tick across two processes: the operator that
dispatched it and the runner that ran its agents, their LLM calls and tool calls. So
every tick is one trace:

```
dispatch tick            (operator, PRODUCER)   agentstack.stack, agentstack.tick_id
└── tick                 (runner, CONSUMER)     outcome, reason, tokens, cost
    └── invoke_agent A   (runner)               gen_ai.agent.name, role
        ├── chat MODEL   (runner, CLIENT)       gen_ai.* request/response/usage
        └── execute_tool T                      gen_ai.tool.name, outcome
```

The operator's span context crosses the process boundary in the tick message
(:attr:`~agentstack_core.messages.TickRequest.traceparent`, W3C Trace Context), so the
runner's spans join the operator's trace even when another runner claims the tick.

Tracing is on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the traces-only
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set: spans go to that OTLP/HTTP receiver in
batches, off the event loop (the SDK's batch processor thread); the SDK's own
``OTEL_*`` variables (sampler, headers, resource attributes) apply. Otherwise nothing is
installed and :func:`span` hands out the API's non-recording span without touching the
SDK: no ids are drawn, no context is attached, nothing crosses the tick message.

Prompts and completions are recorded (``gen_ai.input.messages``/``gen_ai.output.messages``)
only with ``AGENTSTACK_TRACE_CONTENT=true``: they are the stack's data, and may be large.
Secrets never enter a span — API keys and tool headers travel in HTTP headers, which no
span records.
"""

from __future__ import annotations

import atexit
import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from agentstack_core.settings import ModelSettings, variable_names

ENDPOINT_VARIABLES = variable_names(ModelSettings.model_fields["otlp_endpoint"].validation_alias)
CONTENT_VARIABLE = variable_names(ModelSettings.model_fields["trace_content"].validation_alias)[0]
INSTRUMENTATION = "agentstack"

_PROPAGATOR = TraceContextTextMapPropagator()
_state: dict[str, Any] = {"provider": None, "tracer": None, "content": False}


def configure(service: str, settings: ModelSettings | None = None) -> bool:
    """Install the OTLP exporter for this process if its ``settings`` (default: the
    environment's) name an endpoint; ``True`` if on.

    Called once at the start of the operator and the runner (``service`` names them in
    the traces). The SDK is imported only here, so a process without an endpoint never
    loads it; it reads its own ``OTEL_*`` variables.
    """
    if _state["provider"] is not None:
        return True
    settings = settings or ModelSettings.from_env()
    if not settings.otlp_endpoint:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _state["provider"] = provider
    # Made once: the SDK's get_tracer builds objects and filters a warning on every
    # call (~20 µs, measured by bench/tracing_overhead.py), sampled span or not.
    _state["tracer"] = provider.get_tracer(INSTRUMENTATION)
    _state["content"] = settings.trace_content
    atexit.register(shutdown)
    return True


def enabled() -> bool:
    return _state["provider"] is not None


def record_content() -> bool:
    """Whether prompts and completions go into spans (``AGENTSTACK_TRACE_CONTENT``)."""
    return bool(_state["content"]) and enabled()


def shutdown() -> None:
    """Export what is still buffered (a Job's runner exits right after its tick)."""
    provider = _state["provider"]
    if provider is not None:
        provider.shutdown()


@contextlib.contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    traceparent: str = "",
) -> Iterator[Span]:
    """A span around the block, current inside it; the non-recording span when off.

    ``traceparent`` makes it the child of a span of another process (the tick message's
    context); empty, it is the child of the current span, or a root. An exception that
    leaves the block marks the span as an error and is re-raised.
    """
    if not enabled():
        yield trace.INVALID_SPAN
        return
    parent = _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else None
    tracer: trace.Tracer = _state["tracer"]
    with tracer.start_as_current_span(
        name, context=parent, kind=kind, attributes=dict(attributes or {})
    ) as current:
        yield current


def carrier() -> str:
    """The current span's W3C ``traceparent`` (empty when off or outside any span)."""
    if not enabled():
        return ""
    headers: dict[str, str] = {}
    _PROPAGATOR.inject(headers, context=otel_context.get_current())
    return headers.get("traceparent", "")


def failed(current: Span, error_type: str, message: str = "") -> None:
    """Mark ``current`` as failed with a low-cardinality ``error.type`` (the reason)."""
    current.set_attribute("error.type", error_type)
    current.set_status(Status(StatusCode.ERROR, message[:200]))
