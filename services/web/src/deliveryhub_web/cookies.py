"""The console's cookies: their names (`__Host-` prefixed when Secure), reading and forgetting them,
and what a CSRF token is bound to."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from deliveryhub_web.runtime import WebRuntime

SESSION_COOKIE = "dh_session"
VISITOR_COOKIE = "dh_visitor"
FLASH_COOKIE = "dh_flash"


def cookie_name(name: str, secure: bool) -> str:
    """A cookie's name as the console sets it: a Secure one is `__Host-` prefixed, so that a
    browser keeps it only when this very host set it over HTTPS for every path (no subdomain and
    no plain-HTTP page can plant one)."""
    return f"__Host-{name}" if secure else name


def forget_cookie(response: Response, name: str, *, secure: bool) -> None:
    """Tell the browser to drop the cookie (a `__Host-` one is dropped only with the same attributes)."""
    response.delete_cookie(cookie_name(name, secure), path="/", secure=secure, httponly=True)


def read_cookie(request: Request, name: str) -> str | None:
    runtime: WebRuntime = request.app.state.runtime
    return request.cookies.get(cookie_name(name, runtime.settings.cookie_secure))


def csrf_binding(request: Request) -> str:
    """What a CSRF token is bound to: the session, or before sign-in the visitor cookie."""
    return read_cookie(request, SESSION_COOKIE) or request.state.visitor
