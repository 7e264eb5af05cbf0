"""Who may open which page: signing in first, and each role to its own pages."""

from __future__ import annotations

import uuid

import pytest

from deliveryhub_kit.identity import Role
from tests.support.web import LAPTEV, RunningWeb, text_of

pytestmark = pytest.mark.integration

ORDER_ID = uuid.UUID("0b7c2f52-3f0e-4a39-9d0e-6f1d2a4b5c6d")
NOT_YOUR_ROLE = "This page is not for your role."


@pytest.mark.parametrize(
    "path",
    ["/orders", "/orders/new", f"/orders/{ORDER_ID}", "/board", "/deliveries", f"/deliveries/{ORDER_ID}"],
)
async def test_a_page_asks_a_visitor_to_sign_in_first(web: RunningWeb, path: str) -> None:
    browser = await web.browser()

    response = await browser.get(path)

    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next={path.split('?')[0]}"
    assert web.orders.calls == web.delivery.calls == []


@pytest.mark.parametrize(
    "path",
    [f"/orders/{ORDER_ID}/pay", f"/orders/{ORDER_ID}/cancel", f"/board/{ORDER_ID}/appoint", "/orders"],
)
async def test_an_action_asks_a_visitor_to_sign_in_first(web: RunningWeb, path: str) -> None:
    browser = await web.browser()
    token = await browser.csrf_token("/login")

    response = await browser.submit(path, {"csrf_token": token, "deliveryman_id": str(LAPTEV)})

    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")
    assert web.orders.calls == web.delivery.calls == []


async def test_the_start_page_sends_a_visitor_to_sign_in(web: RunningWeb) -> None:
    page = await (await web.browser()).visit("/")

    assert page.status_code == 200
    assert page.url.path == "/login"
    assert "Sign in" in text_of(page.text)


@pytest.mark.parametrize(
    ("role", "path"),
    [
        (Role.CUSTOMER, "/board"),
        (Role.CUSTOMER, "/deliveries"),
        (Role.CUSTOMER, f"/deliveries/{ORDER_ID}"),
        (Role.MANAGER, "/deliveries"),
        (Role.MANAGER, "/orders/new"),
        (Role.COURIER, "/orders"),
        (Role.COURIER, "/orders/new"),
        (Role.COURIER, f"/orders/{ORDER_ID}"),
        (Role.COURIER, "/board"),
    ],
)
async def test_a_page_of_another_role_is_refused_with_403(web: RunningWeb, role: Role, path: str) -> None:
    browser, _ = await web.signed_in(role)

    response = await browser.get(path)

    assert response.status_code == 403
    assert NOT_YOUR_ROLE in text_of(response.text)
    assert web.orders.calls == web.delivery.calls == []


@pytest.mark.parametrize(
    ("role", "path", "page"),
    [
        (Role.CUSTOMER, f"/board/{ORDER_ID}/appoint", "/orders"),
        (Role.CUSTOMER, f"/board/{ORDER_ID}/cancel", "/orders"),
        (Role.CUSTOMER, f"/deliveries/{ORDER_ID}/finish", "/orders"),
        (Role.MANAGER, f"/orders/{ORDER_ID}/pay", "/board"),
        (Role.MANAGER, "/orders", "/board"),
        (Role.COURIER, f"/orders/{ORDER_ID}/cancel", "/deliveries"),
        (Role.COURIER, f"/board/{ORDER_ID}/appoint", "/deliveries"),
    ],
)
async def test_an_action_of_another_role_is_refused_with_403_and_reaches_no_api(
    web: RunningWeb, role: Role, path: str, page: str
) -> None:
    browser, _ = await web.signed_in(role)
    token = await browser.csrf_token(page)

    response = await browser.submit(path, {"csrf_token": token, "deliveryman_id": str(LAPTEV)})

    assert response.status_code == 403
    assert NOT_YOUR_ROLE in text_of(response.text)
    assert web.orders.writes == web.delivery.writes == []


@pytest.mark.parametrize(
    ("role", "path", "heading"),
    [
        (Role.CUSTOMER, "/orders", "My orders"),
        (Role.CUSTOMER, "/orders/new", "New order"),
        (Role.MANAGER, "/orders", "All orders"),
        (Role.MANAGER, "/board", "Deliveries"),
        (Role.COURIER, "/deliveries", "To deliver"),
    ],
)
async def test_each_role_opens_its_own_pages(web: RunningWeb, role: Role, path: str, heading: str) -> None:
    browser, _ = await web.signed_in(role)

    response = await browser.get(path)

    assert response.status_code == 200
    assert heading in text_of(response.text)
