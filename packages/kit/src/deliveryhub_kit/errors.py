"""The error categories every service's error tree derives from; free of HTTP."""

from __future__ import annotations

from typing import ClassVar

from sqlalchemy import exc as sa_exc


class DomainError(Exception):
    """Base of every service's error tree; free of HTTP, it names a machine code and a category."""

    code: ClassVar[str] = "error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class InvalidInput(DomainError):
    code = "invalid_input"


class PermissionDenied(DomainError):
    code = "forbidden"


class Unauthenticated(DomainError):
    code = "unauthenticated"


class Unavailable(DomainError):
    code = "unavailable"


def is_database_unavailable(error: BaseException) -> bool:
    """True when the error means the database cannot be reached, not that the query was wrong."""
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError):
        return True
    if isinstance(error, sa_exc.TimeoutError):  # the pool had no connection in time
        return True
    return isinstance(error, OSError | TimeoutError) or type(error).__name__ in {
        "ConnectionDoesNotExistError",
        "CannotConnectNowError",
        "TooManyConnectionsError",
    }
