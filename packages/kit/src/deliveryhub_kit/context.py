"""What a unit of work knows of where it came from: the correlation id and the trace."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import structlog
from opentelemetry import context, propagate, trace
from opentelemetry.context import Context

CORRELATION_HEADER = "X-Request-ID"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def accepted_correlation_id(value: str | None) -> str:
    """The caller's id if it is a sane one, else a new one."""
    return value if value and _SAFE_ID.match(value) else new_correlation_id()


def current_correlation_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return value if isinstance(value, str) else None


@contextmanager
def correlated(correlation_id: str, **more: str) -> Iterator[None]:
    """Log lines (and events written) inside the block carry this correlation id."""
    with structlog.contextvars.bound_contextvars(request_id=correlation_id, **more):
        yield


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span, if there is a trace."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


def trace_context(traceparent: str | None) -> Context:
    """The OpenTelemetry context a `traceparent` continues (an empty one without it)."""
    return propagate.extract({"traceparent": traceparent} if traceparent else {})


@contextmanager
def continuing(traceparent: str | None) -> Iterator[None]:
    """Inside the block the trace of `traceparent` is the current one, with no span of its own:
    what a span does when no tracer records it (events written inside carry the trace on)."""
    token = context.attach(trace_context(traceparent))
    try:
        yield
    finally:
        context.detach(token)
