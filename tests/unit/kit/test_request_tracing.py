"""A request's trace context without an SDK tracer provider: carried on, never invented."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.trace import ProxyTracerProvider
from starlette.types import Message, Receive, Scope, Send

from deliveryhub_kit.app import RequestTracing
from deliveryhub_kit.context import current_traceparent

CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def traced(headers: list[tuple[bytes, bytes]]) -> list[str | None]:
    """The traceparent the app saw while it answered a request with these headers."""
    seen: list[str | None] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(current_traceparent())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        return None

    scope: Scope = {"type": "http", "method": "GET", "path": "/", "headers": headers}
    await RequestTracing(inner)(scope, receive, send)
    return seen


@pytest.fixture
def not_recording(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trace, "get_tracer_provider", ProxyTracerProvider)


@pytest.mark.usefixtures("not_recording")
async def test_the_callers_trace_is_carried_on_when_nothing_records() -> None:
    assert await traced([(b"traceparent", CALLER.encode())]) == [CALLER]
    assert current_traceparent() is None  # and it does not outlive the request


@pytest.mark.usefixtures("not_recording")
@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"traceparent", b"not a traceparent")],
        [(b"traceparent", b"00-" + b"0" * 32 + b"-" + b"0" * 16 + b"-01")],
    ],
    ids=["none", "garbage", "all-zero ids"],
)
async def test_no_trace_is_invented_for_a_request_without_a_valid_one(
    headers: list[tuple[bytes, bytes]],
) -> None:
    assert await traced(headers) == [None]
