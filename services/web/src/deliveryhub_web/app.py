"""The web console's app factory: `uvicorn --factory deliveryhub_web.app:create_app`."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from deliveryhub_kit.app import build_app
from deliveryhub_web import api
from deliveryhub_web.error_pages import install_page_errors
from deliveryhub_web.middleware import VisitorCookie
from deliveryhub_web.runtime import WebRuntime
from deliveryhub_web.settings import WebSettings


def create_app(settings: WebSettings | None = None) -> FastAPI:
    """Build the console; nothing connects until the app starts."""
    settings = settings or WebSettings()
    app = build_app(
        title="Delivery Hub: console",
        description="The shop's web console for customers, managers and couriers.",
        runtime=WebRuntime(settings),
        routers=[api.router],
    )
    install_page_errors(app)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    app.add_middleware(VisitorCookie, secure=settings.cookie_secure)
    return app
