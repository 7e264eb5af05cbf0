"""Liveness and readiness endpoints."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from deliveryhub_kit.runtime import Runtime

router = APIRouter(tags=["health"])


@router.get("/health/live")
async def live() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/health/ready", responses={503: {"description": "a dependency is not reachable"}})
async def ready(request: Request) -> JSONResponse:
    """The database is reachable and the broker, where there is one, connected."""
    runtime: Runtime = request.app.state.runtime
    checks: dict[str, dict[str, Any]] = {}

    started = time.perf_counter()
    try:
        await asyncio.wait_for(runtime.database.ping(), timeout=2.0)
        checks["database"] = {"status": "ok"}
    except Exception as error:  # any failure means not ready; say which
        checks["database"] = {"status": "failing", "error": type(error).__name__}
    checks["database"]["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)

    if runtime.broker is not None:
        checks["broker"] = {"status": "ok" if runtime.broker.connected else "failing"}
    if runtime.stopping:
        checks["shutdown"] = {"status": "failing"}

    healthy = all(check["status"] == "ok" for check in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "failing", "checks": checks},
        status_code=200 if healthy else 503,
    )
