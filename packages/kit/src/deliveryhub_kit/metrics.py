"""Prometheus metrics of one service, on a registry of its own."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)


def install_metrics(app: FastAPI, *, service: str) -> None:
    """Count and time every request by route template; serve `/metrics`."""
    registry = CollectorRegistry()
    requests = Counter(
        "http_requests_total",
        "HTTP requests answered",
        ["service", "method", "route", "status"],
        registry=registry,
    )
    latency = Histogram(
        "http_request_duration_seconds",
        "Time to answer an HTTP request",
        ["service", "method", "route"],
        registry=registry,
    )
    app.state.metrics_registry = registry

    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        requests.labels(service, request.method, template, str(response.status_code)).inc()
        latency.labels(service, request.method, template).observe(time.perf_counter() - started)
        return response

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
