"""The one mapping of errors to HTTP status codes and `{"error", "detail"}` bodies."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from deliveryhub_kit.errors import (
    Conflict,
    DomainError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    TooManyRequests,
    Unauthenticated,
    Unavailable,
)
from deliveryhub_kit.failures import Verdict, classify

logger = logging.getLogger(__name__)

_STATUS_BY_CATEGORY: dict[type[DomainError], int] = {
    Unauthenticated: 401,
    PermissionDenied: 403,
    NotFound: 404,
    Conflict: 409,
    InvalidInput: 422,
    TooManyRequests: 429,
    Unavailable: 503,
}


def status_of(error: DomainError) -> int:
    for category, status in _STATUS_BY_CATEGORY.items():
        if isinstance(error, category):
            return status
    return 400


class ErrorBody(BaseModel):
    """Every error answer: a machine code and a sentence for people."""

    error: str
    detail: str


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the given error statuses."""
    return {status: {"model": ErrorBody} for status in statuses}


def error_response(status: int, code: str, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        ErrorBody(error=code, detail=detail).model_dump(),
        status_code=status,
        headers=headers or None,
    )


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "unavailable",
}


def _validation_detail(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors():
        if item.get("type") == "json_invalid":
            parts.append(f"the body is not valid JSON ({item.get('ctx', {}).get('error', 'parse error')})")
            continue
        location = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        parts.append(f"{location or 'body'}: {item.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is not valid"


def install_error_handlers(app: FastAPI) -> None:
    """Render every error as `{"error", "detail"}` with the status HTTP means for it."""

    async def on_domain_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, DomainError)
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(error, Unauthenticated) else {}
        if isinstance(error, TooManyRequests):
            headers = {"Retry-After": str(error.retry_after_seconds)}
        return error_response(status_of(error), error.code, error.detail, **headers)

    async def on_validation_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return error_response(422, "validation_error", _validation_detail(error))

    async def on_http_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        code = _HTTP_CODES.get(error.status_code, "http_error")
        detail = error.detail if isinstance(error.detail, str) else code.replace("_", " ")
        return error_response(error.status_code, code, detail, **(error.headers or {}))

    async def on_unexpected_error(request: Request, error: Exception) -> JSONResponse:
        # The same reading of a failure as the consumers' (deliveryhub_kit.failures).
        failure = classify(error)
        where = f"{request.method} {request.url.path}"
        if failure.verdict is Verdict.OUTAGE:
            logger.warning("database unavailable during %s: %s", where, failure.cause)
            return error_response(
                503, "unavailable", "the database is not available; try again shortly", **{"Retry-After": "1"}
            )
        # Through SQLAlchemy, or straight from the driver (a transaction written in one statement).
        if isinstance(error, sa_exc.IntegrityError) or (failure.code or "").startswith("23"):
            logger.warning("integrity error during %s: %s", where, error)
            return error_response(409, "conflict", "the change conflicts with the current state")
        if failure.from_database and failure.verdict is Verdict.RETRY:
            logger.warning("a passing database failure during %s: %s", where, failure.cause)
            return error_response(
                503, "unavailable", "the database is busy; try again shortly", **{"Retry-After": "1"}
            )
        if failure.code is not None and failure.code.startswith("22"):
            logger.warning("the database refused a value during %s: %s", where, error)
            return error_response(422, "validation_error", "a value is not one the database can store")
        logger.exception("unhandled error during %s", where)
        return error_response(500, "internal_error", "an unexpected error occurred")

    app.add_exception_handler(DomainError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    # Database and network failures are answered here, not by the server-error middleware,
    # so that an outage is a 503 and not a logged traceback per request.
    for expected in (sa_exc.SQLAlchemyError, OSError, TimeoutError):
        app.add_exception_handler(expected, on_unexpected_error)
    app.add_exception_handler(Exception, on_unexpected_error)
