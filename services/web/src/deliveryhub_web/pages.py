"""What every page shares: templates, the signed-in user, CSRF-checked forms, flash messages, errors."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from html import escape
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import exc as sa_exc
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deliveryhub_kit.dependencies import SessionDep
from deliveryhub_kit.errors import DomainError, PermissionDenied
from deliveryhub_kit.failures import Verdict, classify
from deliveryhub_kit.identity import Role
from deliveryhub_web.clients import ApiError, Backends, ServiceDown
from deliveryhub_web.live import ChangeFeed, Interest, LiveView, Rendered, Stream, render
from deliveryhub_web.runtime import WebRuntime
from deliveryhub_web.security import Flash
from deliveryhub_web.service import SignedInUser

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


def _cookie(request: Request, name: str) -> str | None:
    runtime: WebRuntime = request.app.state.runtime
    return request.cookies.get(cookie_name(name, runtime.settings.cookie_secure))


CSRF_FIELD = "csrf_token"

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")


def _format_date(value: str | None) -> str:
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value).strftime("%d %b %Y, %H:%M UTC")
    except ValueError:
        return value


def _money(value: float | int | str | None) -> str:
    return f"{float(value or 0):,.2f}".replace(",", " ")


TEMPLATES.env.filters["date"] = _format_date
TEMPLATES.env.filters["money"] = _money
TEMPLATES.env.filters["short"] = lambda value: str(value)[:8]


class SignInRequired(Exception):
    """The page needs a signed-in user."""


class CsrfRejected(Exception):
    """A form came without this browser's token."""


class Pages:
    """Renders pages for one request, with the user, the CSRF token and a pending flash message."""

    def __init__(self, request: Request, user: SignedInUser | None) -> None:
        self.request = request
        self.user = user
        self.runtime: WebRuntime = request.app.state.runtime

    @property
    def backends(self) -> Backends:
        return self.runtime.backends

    @property
    def csrf_token(self) -> str:
        assert self.runtime.csrf is not None
        return self.runtime.csrf.token_for(csrf_binding(self.request))

    def render(
        self,
        template: str,
        context: dict[str, Any],
        *,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
    ) -> HTMLResponse:
        assert self.runtime.flash is not None
        flash = self.runtime.flash.decode(_cookie(self.request, FLASH_COOKIE))
        response = TEMPLATES.TemplateResponse(
            self.request,
            template,
            {
                "user": self.user,
                "csrf_token": self.csrf_token,
                "flash": flash,
                "path": self.request.url.path,
                "Role": Role,
                **context,
            },
            status_code=status_code,
            headers=headers,
        )
        if flash is not None and not template.startswith("_"):
            self.delete_cookie(response, FLASH_COOKIE)
        return response

    def rendered(self, view: LiveView, path: str) -> Rendered:
        """A live view's parts and items as its stream sends them (no one-time message in them)."""
        base = {"user": self.user, "csrf_token": self.csrf_token, "flash": None, "path": path, "Role": Role}
        return render(TEMPLATES.env, view, base)

    def live_page(
        self, view: LiveView, template: str, fragment_template: str, *, fragment: bool, stream_url: str
    ) -> HTMLResponse:
        """A page that keeps itself up to date: whole, or (`fragment`) its live part alone, as the
        page fetches it when its stream is cut. Both carry what they show as a digest."""
        digest = self.rendered(view, self.request.url.path).digest
        live = {"stream": stream_url, "fragment": _with_fragment(self.request), "digest": digest}
        response = self.render(fragment_template if fragment else template, {**view.context, "live": live})
        response.headers["X-Live-Digest"] = digest
        return response

    def live_stream(
        self,
        build: Callable[[], Awaitable[LiveView]],
        feed: ChangeFeed,
        interest: Interest,
        *,
        page_path: str,
        digest: str | None,
    ) -> StreamingResponse:
        """The page's server-sent events: what changes on it, as it changes."""
        settings = self.runtime.settings
        token = self.cookie(SESSION_COOKIE) or ""

        async def rebuilt() -> Rendered:
            return self.rendered(await build(), page_path)

        async def still_signed_in() -> bool:
            async with self.runtime.database.transaction() as session:
                return await self.runtime.accounts(session).signed_in_user(token) is not None

        stream = Stream(
            build=rebuilt,
            feed=feed,
            interest=interest,
            still_signed_in=still_signed_in,
            digest=digest,
            heartbeat_seconds=settings.live_heartbeat_seconds,
            lifetime_seconds=settings.live_stream_seconds,
            closing=self.runtime.closing,
        )
        # No proxy may hold the events back to fill a buffer.
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream.events(), media_type="text/event-stream", headers=headers)

    def set_cookie(
        self, response: Response, name: str, value: str, *, max_age: timedelta | None = None
    ) -> None:
        secure = self.runtime.settings.cookie_secure
        response.set_cookie(
            cookie_name(name, secure),
            value,
            max_age=int(max_age.total_seconds()) if max_age else None,
            path="/",
            secure=secure,
            httponly=True,
            samesite="lax",
        )

    def delete_cookie(self, response: Response, name: str) -> None:
        forget_cookie(response, name, secure=self.runtime.settings.cookie_secure)

    def cookie(self, name: str) -> str | None:
        return _cookie(self.request, name)


def _with_fragment(request: Request) -> str:
    params = [(key, value) for key, value in request.query_params.multi_items() if key != "fragment"]
    return request.url.path + "?" + urlencode([*params, ("fragment", "1")])


def csrf_binding(request: Request) -> str:
    """What a CSRF token is bound to: the session, or before sign-in the visitor cookie."""
    return _cookie(request, SESSION_COOKIE) or request.state.visitor


async def _signed_in_user(request: Request, session: SessionDep) -> SignedInUser | None:
    token = _cookie(request, SESSION_COOKIE)
    if not token:
        return None
    runtime: WebRuntime = request.app.state.runtime
    user = await runtime.accounts(session).signed_in_user(token)
    request.state.user = user  # for error pages, rendered outside the route
    return user


UserDep = Annotated[SignedInUser | None, Depends(_signed_in_user)]


async def _current_user(user: UserDep) -> SignedInUser:
    if user is None:
        raise SignInRequired
    return user


CurrentUser = Annotated[SignedInUser, Depends(_current_user)]


async def _pages(request: Request, user: UserDep) -> Pages:
    return Pages(request, user)


PagesDep = Annotated[Pages, Depends(_pages)]


def require_role(user: SignedInUser, *roles: Role) -> None:
    if user.role not in roles:
        raise PermissionDenied("this page is not for your role")


class CheckedForm:
    """A submitted form whose CSRF token has been checked."""

    def __init__(self, data: FormData) -> None:
        self._data = data

    def text(self, name: str) -> str:
        value = self._data.get(name)
        return value if isinstance(value, str) else ""

    def list(self, name: str) -> list[str]:
        return [value for value in self._data.getlist(name) if isinstance(value, str)]


async def _checked_form(request: Request) -> CheckedForm:
    data = await request.form(max_files=0, max_fields=1000)
    runtime: WebRuntime = request.app.state.runtime
    assert runtime.csrf is not None
    token = data.get(CSRF_FIELD)
    if not runtime.csrf.is_valid(csrf_binding(request), token if isinstance(token, str) else None):
        raise CsrfRejected
    return CheckedForm(data)


Form = Annotated[CheckedForm, Depends(_checked_form)]


def flash_redirect(
    pages: Pages,
    location: str,
    message: str,
    *,
    kind: str,
    target: str | None = None,
    refusals: dict[str, str] | None = None,
) -> Response:
    """Go back to a page, which then shows `message` next to `target` (or above the list), and
    each of `refusals` next to its item."""
    assert pages.runtime.flash is not None
    response = RedirectResponse(location, status_code=303)
    flash = Flash(message, kind, target, refusals or {})
    pages.set_cookie(response, FLASH_COOKIE, pages.runtime.flash.encode(flash))
    return response


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


def install_page_errors(app: FastAPI) -> None:
    """Errors as pages: a sign-in prompt, a plain message, or a banner when a service is down."""

    def page(request: Request, status: int, title: str, message: str, *, banner: bool = False) -> Response:
        runtime: WebRuntime = request.app.state.runtime
        user = getattr(request.state, "user", None)
        if request.query_params.get("fragment"):
            return HTMLResponse(f'<p class="notice notice-error">{escape(message)}</p>', status_code=status)
        return TEMPLATES.TemplateResponse(
            request,
            "error.html",
            {
                "user": user,
                "csrf_token": runtime.csrf.token_for(csrf_binding(request)) if runtime.csrf else "",
                "flash": None,
                "path": request.url.path,
                "Role": Role,
                "title": title,
                "message": message,
                "banner": banner,
            },
            status_code=status,
        )

    async def on_sign_in_required(request: Request, _: Exception) -> Response:
        if request.query_params.get("fragment"):
            return HTMLResponse("", status_code=401, headers={"X-Sign-In": "/login"})
        if request.method != "GET":  # a form's address is no page to come back to after signing in
            return RedirectResponse("/login", status_code=303)
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(back, safe='/')}", status_code=303)

    async def on_csrf(request: Request, _: Exception) -> Response:
        return page(
            request, 403, "Form expired", "The form was out of date. Go back, reload the page and try again."
        )

    async def on_domain_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, DomainError)
        status = 403 if isinstance(error, PermissionDenied) else 400
        return page(
            request,
            status,
            "Not allowed" if status == 403 else "Not possible",
            error.detail.capitalize() + ".",
        )

    async def on_api_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, ApiError)
        if error.status == 401:
            response = RedirectResponse("/login", status_code=303)
            # Else /login sends the still signed-in browser straight back here, in an endless loop.
            forget_cookie(response, SESSION_COOKIE, secure=request.app.state.runtime.settings.cookie_secure)
            return response
        return page(
            request, error.status, "Not found" if error.status == 404 else "Not possible", error.message
        )

    async def on_service_down(request: Request, error: Exception) -> Response:
        assert isinstance(error, ServiceDown)
        return page(
            request,
            503,
            "Temporarily unavailable",
            f"The {error.service} service is not answering right now. Your data is safe; "
            "try again in a moment.",
            banner=True,
        )

    async def on_http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        title = "Not found" if error.status_code == 404 else "Not possible"
        return page(
            request,
            error.status_code,
            title,
            "There is no such page." if error.status_code == 404 else str(error.detail),
        )

    async def on_invalid_request(request: Request, error: Exception) -> Response:
        return page(request, 422, "Not understood", "The address or the form was not valid.")

    async def on_unexpected(request: Request, error: Exception) -> Response:
        if classify(error).verdict is Verdict.OUTAGE:
            return page(
                request,
                503,
                "Temporarily unavailable",
                "The console cannot reach its database right now; try again in a moment.",
                banner=True,
            )
        return page(request, 500, "Something went wrong", "An unexpected error occurred; it has been logged.")

    app.add_exception_handler(SignInRequired, on_sign_in_required)
    app.add_exception_handler(CsrfRejected, on_csrf)
    app.add_exception_handler(DomainError, on_domain_error)
    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(ServiceDown, on_service_down)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_invalid_request)
    for expected in (sa_exc.SQLAlchemyError, OSError, TimeoutError):
        app.add_exception_handler(expected, on_unexpected)
    app.add_exception_handler(Exception, on_unexpected)
