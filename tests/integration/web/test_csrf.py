"""Every form of the console refuses a post without this browser's CSRF token, and nothing changes."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import pytest

from deliveryhub_kit.identity import Principal, Role
from tests.support.web import LAPTEV, PASSWORD, Browser, RunningWeb, text_of

pytestmark = pytest.mark.integration

ORDER_ID = uuid.UUID("0b7c2f52-3f0e-4a39-9d0e-6f1d2a4b5c6d")
DELIVERY_ID = ORDER_ID
ACCOUNT_EMAIL = "anna@example.com"
HOME_OF = {Role.CUSTOMER: "/orders", Role.MANAGER: "/board", Role.COURIER: "/deliveries"}


@dataclass(frozen=True)
class Form:
    """A form of the console: where it posts, who can send it, what a person fills in."""

    path: str
    sender: Role | None
    fields: Mapping[str, str | list[str]]
    page: str = "/login"


FORMS = {
    "sign in": Form("/login", None, {"email": ACCOUNT_EMAIL, "password": PASSWORD, "next": "/"}),
    "register": Form(
        "/register",
        None,
        {"email": "new@example.com", "name": "Новый", "password": PASSWORD, "password_again": PASSWORD},
        page="/register",
    ),
    "sign out": Form("/logout", Role.CUSTOMER, {}, page="/orders"),
    "place an order": Form(
        "/orders",
        Role.CUSTOMER,
        {
            "address": "Москва, Тверская улица, 7",
            "date": "2030-05-17T14:30",
            "timezone_offset": "-180",
            "idempotency_key": str(uuid.uuid4()),
            "item_name": ["Чай", "Сахар"],
            "item_quantity": ["2", "1"],
            "item_price": ["150.50", "80"],
        },
        page="/orders/new",
    ),
    "pay an order": Form(f"/orders/{ORDER_ID}/pay", Role.CUSTOMER, {"next": "/orders"}, page="/orders"),
    "cancel an order": Form(f"/orders/{ORDER_ID}/cancel", Role.CUSTOMER, {"next": "/orders"}, page="/orders"),
    "appoint a courier": Form(
        f"/board/{DELIVERY_ID}/appoint", Role.MANAGER, {"deliveryman_id": str(LAPTEV)}, page="/board"
    ),
    "cancel a delivery": Form(f"/board/{DELIVERY_ID}/cancel", Role.MANAGER, {}, page="/board"),
    "mark delivered": Form(f"/deliveries/{DELIVERY_ID}/finish", Role.COURIER, {}, page="/deliveries"),
}


@dataclass(frozen=True)
class Visible:
    """What a user, or the other services, could notice of a form's effect."""

    accounts: list[str]
    sessions: int
    api_writes: int
    home: str


async def visible(web: RunningWeb, browser: Browser) -> Visible:
    return Visible(
        accounts=await web.emails(),
        sessions=await web.session_count(),
        api_writes=len(web.orders.writes) + len(web.delivery.writes),
        home=await browser.where_home_is(),
    )


def altered(token: str) -> str:
    return token[:-1] + ("A" if token[-1] != "A" else "B")


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
async def test_a_form_without_this_browsers_token_is_refused_and_changes_nothing(
    web: RunningWeb, form: Form
) -> None:
    await web.add_user(Role.CUSTOMER, email=ACCOUNT_EMAIL)
    browser = await web.browser()
    if form.sender is not None:
        sender = await web.add_user(form.sender)
        assert (await browser.sign_in(sender.email)).status_code == 303
    own_token = await browser.csrf_token(form.page)
    another_browsers_token = await (await web.browser()).csrf_token("/login")
    before = await visible(web, browser)

    refused_tokens: dict[str, str | None] = {
        "no token": None,
        "an empty token": "",
        "another browser's token": another_browsers_token,
        "an altered token": altered(own_token),
        "a forged token": "подделанный-токен",
    }
    for what, token in refused_tokens.items():
        fields = dict(form.fields) if token is None else {**form.fields, "csrf_token": token}
        response = await browser.submit(form.path, fields)

        assert response.status_code == 403, f"{form.path} with {what}: {response.status_code}"
        assert "The form was out of date. Go back, reload the page and try again." in text_of(response.text)
        assert await visible(web, browser) == before, f"{form.path} with {what} changed something"

    # The same form with the browser's own token goes through: the refusals were the token's doing.
    response = await browser.submit(form.path, {**form.fields, "csrf_token": own_token})
    assert response.status_code == 303, response.text
    assert await visible(web, browser) != before


async def test_a_token_from_before_signing_in_is_refused_after_it(web: RunningWeb) -> None:
    customer = await web.add_user(Role.CUSTOMER)
    browser = await web.browser()
    token_before = await browser.csrf_token("/login")
    await browser.sign_in(customer.email)

    response = await browser.submit(f"/orders/{ORDER_ID}/pay", {"csrf_token": token_before})

    assert response.status_code == 403
    assert web.orders.writes == []


async def test_a_signed_in_form_with_its_token_reaches_the_api_as_the_signed_in_user(web: RunningWeb) -> None:
    browser = await web.browser()
    manager = await web.add_user(Role.MANAGER)
    await browser.sign_in(manager.email)

    response = await browser.submit(
        f"/board/{DELIVERY_ID}/appoint",
        {"csrf_token": await browser.csrf_token("/board"), "deliveryman_id": str(LAPTEV), "next": "/board"},
    )

    assert response.status_code == 303
    [call] = web.delivery.writes
    assert call.path == f"/api/delivery/{DELIVERY_ID}/appoint"
    assert call.body == {"deliveryman_id": str(LAPTEV)}
    assert call.principal == Principal(subject=manager.id, role=Role.MANAGER)
