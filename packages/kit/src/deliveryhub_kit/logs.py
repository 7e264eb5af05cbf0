"""Logs: one JSON object a line (readable lines in a terminal), with correlation and trace ids."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import structlog
from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deliveryhub_kit.context import CORRELATION_HEADER, accepted_correlation_id, correlated

_QUIET_PATHS = ("/health/", "/metrics", "/static/")


def _add_trace_ids(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event


def configure_logging(service: str, *, level: str = "INFO", json_lines: bool | None = None) -> None:
    """Send every log record (ours, uvicorn's, the libraries') through one formatter to stdout."""
    if json_lines is None:
        json_lines = not sys.stdout.isatty()

    def add_service(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        event.setdefault("service", service)
        return event

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
        add_service,
        _add_trace_ids,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    final: list[Any] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if json_lines:
        final.append(structlog.processors.format_exc_info)
    final.append(renderer)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers = []
        uvicorn_logger.propagate = True
    # Each request is logged once, by RequestLog, with its correlation id.
    logging.getLogger("uvicorn.access").disabled = True
    for noisy in ("aiormq", "aio_pika"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Our own lines (one a request) are rendered by the same processors and written straight to
    # stdout, without a stdlib record, handler and formatter on the way (a third of the cost).
    own: list[Any] = [*shared]
    if json_lines:
        own.append(structlog.processors.format_exc_info)
    own.append(renderer)
    structlog.configure(
        processors=own,
        logger_factory=_NamedWriter.factory(sys.stdout),
        # A line below the level is dropped before anything is added to it or rendered.
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        cache_logger_on_first_use=True,
    )


class _NamedWriter(structlog.WriteLogger):
    """structlog's line writer with the name it was asked for, which `add_logger_name` reads."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name

    @classmethod
    def factory(cls, file: TextIO) -> Callable[..., _NamedWriter]:
        def named(*args: Any) -> _NamedWriter:
            return cls(file, str(args[0]) if args else "")

        return named


class RequestLog:
    """Give each request a correlation id (the caller's `X-Request-ID` or a new one), answer it in
    the same header, and log one line when the request ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.logger = structlog.get_logger("deliveryhub.http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        raw = headers.get(CORRELATION_HEADER.lower().encode())
        correlation_id = accepted_correlation_id(raw.decode("latin-1") if raw else None)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", correlation_id.encode()),
                ]
            await send(message)

        with correlated(correlation_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                path = scope.get("path", "")
                route = getattr(scope.get("route"), "path", None)
                log = self.logger.debug if path.startswith(_QUIET_PATHS) else self.logger.info
                log(
                    "request",
                    method=scope.get("method"),
                    path=path,
                    route=route,
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                )
