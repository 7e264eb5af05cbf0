"""Browser windows on the running system's console, one per person, driven by Playwright."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Browser, Page

from deliveryhub_web.settings import WebSettings
from tests.support.running_system import System

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-results" / "screenshots"
DEMO_PASSWORD: str = WebSettings.model_fields["demo_password"].default


@dataclass
class Console:
    """Browser windows on the console, one per person; the last page of each is saved at the end."""

    system: System
    browser: Browser
    name: str
    pages: list[Page] = field(default_factory=list)

    def open(self, *, phone: bool = False) -> Page:
        viewport = {"width": 390, "height": 844} if phone else {"width": 1280, "height": 860}
        context = self.browser.new_context(base_url=self.system.web_url, viewport=viewport)  # type: ignore[arg-type]
        context.set_default_timeout(15_000)
        page = context.new_page()
        self.pages.append(page)
        return page

    def sign_in(self, email: str, password: str = DEMO_PASSWORD, *, phone: bool = False) -> Page:
        page = self.open(phone=phone)
        page.goto("/login")
        page.get_by_label("E-mail").fill(email)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/login" not in url)
        return page

    def save(self, page: Page, name: str, *, full_page: bool = True) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path
