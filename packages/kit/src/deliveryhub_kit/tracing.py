"""OpenTelemetry: exported over OTLP when an endpoint is configured, otherwise off at no cost."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

from deliveryhub_kit.context import trace_context

TRACER_NAME = "deliveryhub"


def tracing_requested() -> bool:
    """The standard OTEL_* variables ask for traces to be exported."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if os.environ.get("OTEL_TRACES_EXPORTER", "").lower() == "none":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def configure_tracing(service: str) -> None:
    """Install an SDK tracer provider exporting over OTLP/HTTP, once, if the environment asks."""
    if not tracing_requested() or isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    name = os.environ.get("OTEL_SERVICE_NAME") or f"deliveryhub-{service}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def exporting() -> bool:
    """An SDK tracer provider is installed: spans are recorded and exported. Without one a span
    records nothing, and a path run for every message skips making it (see `continuing`)."""
    return isinstance(trace.get_tracer_provider(), TracerProvider)


def message_span(
    name: str, traceparent: str | None, kind: SpanKind, message_id: str
) -> AbstractContextManager[object]:
    """The span of publishing or handling one message, continuing the trace of `traceparent`.
    Made only while a tracer records (`exporting()`, asked once a batch): without one it would
    record nothing, and the caller goes on without it."""
    return tracer().start_as_current_span(
        name,
        context=trace_context(traceparent),
        kind=kind,
        attributes={"messaging.system": "rabbitmq", "messaging.message.id": message_id},
    )
