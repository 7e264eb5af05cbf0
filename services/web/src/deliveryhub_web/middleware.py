"""The console's one ASGI layer of its own: the visitor cookie and the security headers."""

from __future__ import annotations

import secrets

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deliveryhub_web.cookies import VISITOR_COOKIE, cookie_name


class VisitorCookie:
    """Give each browser a random visitor id, so that forms before sign-in carry a CSRF token too."""

    def __init__(self, app: ASGIApp, secure: bool) -> None:
        self.app = app
        self.secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        name = cookie_name(VISITOR_COOKIE, self.secure)
        visitor = request.cookies.get(name)
        fresh = visitor is None or len(visitor) > 100
        if fresh:
            visitor = secrets.token_urlsafe(24)
        scope.setdefault("state", {})["visitor"] = visitor
        # Over HTTPS (here, or at a proxy the console believes), browsers are told to keep to it.
        https = scope.get("scheme") == "https"

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(SECURITY_HEADERS)
                if https:
                    headers.append(STRICT_TRANSPORT_SECURITY)
                if fresh:
                    cookie = f"{name}={visitor}; Path=/; HttpOnly; SameSite=Lax"
                    headers.append((b"set-cookie", (cookie + ("; Secure" if self.secure else "")).encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_cookie)


# A year; only ever sent over HTTPS, where a browser heeds it.
STRICT_TRANSPORT_SECURITY = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]
