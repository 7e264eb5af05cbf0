"""Liveness and readiness endpoints."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from deliveryhub_kit.failures import classify
from deliveryhub_kit.migrations import current_revision
from deliveryhub_kit.runtime import Runtime

router = APIRouter(tags=["health"])


@router.get("/health/live")
async def live() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/health/ready", responses={503: {"description": "a dependency is not reachable"}})
async def ready(request: Request) -> JSONResponse:
    """The database is reachable and migrated to the newest revision, the broker (where there is
    one) connected, and the service is not shutting down."""
    runtime: Runtime = request.app.state.runtime
    checks: dict[str, dict[str, Any]] = {"database": await _check_database(runtime)}
    if runtime.expected_revision is not None and checks["database"]["status"] == "ok":
        at = checks["database"].pop("revision")
        checks["migrations"] = {
            "status": "ok" if at == runtime.expected_revision else "failing",
            "at": at,
            "expected": runtime.expected_revision,
        }
    else:
        checks["database"].pop("revision", None)
    if runtime.broker is not None:
        started = time.perf_counter()
        connected = runtime.broker.connected
        checks["broker"] = {
            # Connected is not enough: until the topology is declared and the consumers run, the
            # service neither takes events nor has a queue to publish its own to.
            "status": "ok" if connected and runtime.attached else "failing",
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        }
    if runtime.consumers:
        states = [consumer.state for consumer in runtime.consumers]
        paused = [
            {
                "queue": state.queue,
                "reason": state.reason,
                "since": state.paused_since.isoformat() if state.paused_since else None,
                "messages_held": state.messages_held,
            }
            for state in states
            if state.paused
        ]
        checks["consumers"] = {"status": "failing" if paused else "ok", "paused": paused}
    checks["shutdown"] = {"status": "failing" if runtime.stopping else "ok"}

    healthy = all(check["status"] == "ok" for check in checks.values())
    return JSONResponse(
        {"status": "ok" if healthy else "failing", "checks": checks},
        status_code=200 if healthy else 503,
    )


async def _check_database(runtime: Runtime) -> dict[str, Any]:
    started = time.perf_counter()

    async def probe() -> str | None:
        await runtime.database.probe()  # reachable and taking writes
        async with runtime.database.engine.connect() as connection:
            return await current_revision(connection)

    try:
        revision = await asyncio.wait_for(probe(), timeout=2.0)
        result: dict[str, Any] = {"status": "ok", "revision": revision}
    except Exception as error:  # any failure means not ready; say which
        result = {"status": "failing", "error": type(error).__name__, "cause": classify(error).cause}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result
