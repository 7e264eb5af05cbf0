"""The error categories every service's error tree derives from; free of HTTP."""

from __future__ import annotations

from typing import ClassVar


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


class InvalidTransition(Conflict):
    """A state machine refused a move (an order's or a delivery's): 409."""

    code = "invalid_transition"


class InvalidInput(DomainError):
    code = "invalid_input"


class PermissionDenied(DomainError):
    code = "forbidden"


class Unauthenticated(DomainError):
    code = "unauthenticated"


class Unavailable(DomainError):
    code = "unavailable"


class TooManyRequests(DomainError):
    """The caller is over its rate; it may try again after `retry_after_seconds`."""

    code = "too_many_requests"

    def __init__(self, detail: str, retry_after_seconds: int) -> None:
        super().__init__(detail)
        self.retry_after_seconds = retry_after_seconds
