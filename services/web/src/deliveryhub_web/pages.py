"""What every page shares: the renderer (with the signed-in user, the CSRF token and a pending
flash message), the user dependencies, the redirect with a message."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from deliveryhub_kit.dependencies import SessionDep
from deliveryhub_kit.errors import PermissionDenied
from deliveryhub_kit.identity import Role
from deliveryhub_web.clients import Backends
from deliveryhub_web.cookies import (
    FLASH_COOKIE,
    SESSION_COOKIE,
    cookie_name,
    csrf_binding,
    forget_cookie,
    read_cookie,
)
from deliveryhub_web.live import ChangeFeed, Interest, LiveView, Rendered, Stream, render
from deliveryhub_web.runtime import WebRuntime
from deliveryhub_web.security import Flash
from deliveryhub_web.service import SignedInUser
from deliveryhub_web.templating import TEMPLATES


class SignInRequired(Exception):
    """The page needs a signed-in user."""


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
        context: Mapping[str, Any],
        *,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
    ) -> HTMLResponse:
        assert self.runtime.flash is not None
        flash = self.runtime.flash.decode(read_cookie(self.request, FLASH_COOKIE))
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

        async def check() -> bool:
            async with self.runtime.database.transaction() as session:
                return await self.runtime.accounts(session).signed_in_user(token) is not None

        async def still_signed_in() -> bool:
            # A stream is cancelled whenever its page goes away, and cancelled again at each await
            # of its cleanup: the check runs as a task of its own, so that its transaction always
            # ends (else it would hold its connection, on SQLite the write lock, for good).
            return await asyncio.shield(check())

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
        return read_cookie(self.request, name)


def _with_fragment(request: Request) -> str:
    params = [(key, value) for key, value in request.query_params.multi_items() if key != "fragment"]
    return request.url.path + "?" + urlencode([*params, ("fragment", "1")])


async def _signed_in_user(request: Request, session: SessionDep) -> SignedInUser | None:
    token = read_cookie(request, SESSION_COOKIE)
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
