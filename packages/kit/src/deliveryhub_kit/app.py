"""The FastAPI application every service builds the same way."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress

from fastapi import APIRouter, FastAPI, Response
from fastapi.telemetry import TelemetryConfig
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deliveryhub_kit.health import router as health_router
from deliveryhub_kit.http_errors import error_response, install_error_handlers
from deliveryhub_kit.logs import RequestLog, configure_logging
from deliveryhub_kit.metrics import Metrics
from deliveryhub_kit.rates import AddressRate, RequestRate
from deliveryhub_kit.runtime import Runtime
from deliveryhub_kit.tokens import TokenVerifier
from deliveryhub_kit.tracing import configure_tracing, exporting


class BodyLimit:
    """Answer 413 to request bodies larger than the limit, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        received = 0
        too_large = False
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            # FastAPI turns a failed body read into a 400 of its own; the 413 replaces it.
            if too_large:
                return
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        with suppress(_BodyTooLarge):
            await self.app(scope, limited_receive, guarded_send)
        if too_large and not response_started:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, "payload_too_large", f"the request body is larger than {self.max_bytes} bytes"
        )
        await response(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def settle_garbage_collection() -> None:
    """Once started, leave the long-lived objects out of the collector's passes and run it less
    often: with the defaults, a busy service spends several percent of its time collecting
    young objects that die young anyway (requests, messages) while walking the whole heap."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)


GC_YOUNG_THRESHOLD = 20_000

# The framework's own traces, metrics and logs, off: the kit's layers make them (see build_app).
NO_FRAMEWORK_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def build_app(
    *,
    title: str,
    description: str,
    runtime: Runtime,
    routers: Sequence[APIRouter],
) -> FastAPI:
    """An app whose lifespan starts and stops the runtime, with errors, health and metrics."""
    settings = runtime.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.token_verifier = TokenVerifier(
            settings.public_key_pem(), issuer=settings.jwt_issuer, audience=settings.jwt_audience
        )
        await runtime.start()
        settle_garbage_collection()
        try:
            yield
        finally:
            await runtime.stop()

    configure = settings.configure_logging
    if configure or (configure is None and not logging.getLogger().handlers):
        configure_logging(settings.service_name, level=settings.log_level, json_lines=settings.log_json)
    configure_tracing(settings.service_name)

    app = FastAPI(
        title=title,
        description=description,
        version="0.1.0",
        lifespan=lifespan,
        # Traces, metrics and logs are the kit's own (RequestTracing, RequestMetrics, RequestLog):
        # the framework's would make a second server span of each request, and would look up
        # three telemetry providers on every request to find out whether to.
        telemetry=NO_FRAMEWORK_TELEMETRY,
    )
    app.state.runtime = runtime
    app.state.database = runtime.database
    install_error_handlers(app)
    install_metrics(app, runtime.metrics)
    app.include_router(health_router)
    for router in routers:
        app.include_router(router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    burst = settings.rate_limit_burst_seconds
    app.state.subject_rate = RequestRate(settings.rate_limit_per_subject, burst_seconds=burst)
    app.add_middleware(AddressRate, rate=RequestRate(settings.rate_limit_per_address, burst_seconds=burst))
    # Outermost: every request gets its trace and its correlation id before anything else.
    app.add_middleware(RequestTracing)
    app.add_middleware(RequestLog)
    return app


class RequestTracing:
    """Each request's server span while traces are recorded (an SDK tracer provider is set);
    otherwise only the caller's trace context is carried on, so that the events a request writes
    continue the caller's trace, at no cost to a request that brings none."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.recording = OpenTelemetryMiddleware(app, exclude_spans=["receive", "send"])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or exporting():
            await self.recording(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _TRACE_HEADERS
        }
        if not carrier:
            await self.app(scope, receive, send)
            return
        token = otel_context.attach(propagate.extract(carrier))
        try:
            await self.app(scope, receive, send)
        finally:
            otel_context.detach(token)


_TRACE_HEADERS = (b"traceparent", b"tracestate")


class RequestMetrics:
    """Count and time every request by route template (a plain ASGI middleware: no extra task)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope.get("method", "")
            self.metrics.http_requests.labels(method, route, str(status)).inc()
            self.metrics.http_duration.labels(method, route).observe(time.perf_counter() - started)


def install_metrics(app: FastAPI, metrics: Metrics) -> None:
    """Count and time every request by route template; serve `/metrics`."""
    app.add_middleware(RequestMetrics, metrics=metrics)

    @app.get("/metrics", include_in_schema=False)
    async def exposition() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
