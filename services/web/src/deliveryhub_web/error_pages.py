"""Errors as pages: a sign-in prompt, a plain message, or a banner when a service is down."""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from deliveryhub_kit.errors import DomainError, PermissionDenied
from deliveryhub_kit.failures import Verdict, classify
from deliveryhub_kit.identity import Role
from deliveryhub_web.clients import ApiError, ServiceDown
from deliveryhub_web.cookies import SESSION_COOKIE, csrf_binding, forget_cookie
from deliveryhub_web.forms import CsrfRejected
from deliveryhub_web.pages import SignInRequired
from deliveryhub_web.runtime import WebRuntime
from deliveryhub_web.templating import TEMPLATES


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
