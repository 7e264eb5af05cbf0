"""Signing in and out, registering, and the sign-in rate limit, on the console's real database."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from sqlalchemy import update

from deliveryhub_kit.db import utcnow
from deliveryhub_kit.identity import Principal, Role
from deliveryhub_web.models import WebSession
from tests.support.web import (
    LAPTEV,
    PASSWORD,
    SESSION_COOKIE_NAME,
    SIGN_IN_ATTEMPTS,
    Browser,
    RunningWeb,
    StartWeb,
    cookie_set_by,
    text_of,
)

pytestmark = pytest.mark.integration

# Made-up passwords of test accounts.
WRONG_PASSWORD = "not-the-password"  # noqa: S105
OTHER_PASSWORD = "another-password"  # noqa: S105
WRONG_CREDENTIALS = "The e-mail or the password is not right."


async def register(
    browser: Browser,
    *,
    email: str = "anna@example.com",
    name: str = "Анна Новикова",
    password: str = PASSWORD,
    password_again: str | None = None,
) -> httpx.Response:
    """Fill in and send the registration form."""
    token = await browser.csrf_token("/register")
    form = {
        "csrf_token": token,
        "name": name,
        "email": email,
        "password": password,
        "password_again": password if password_again is None else password_again,
    }
    return await browser.submit("/register", form)


@pytest.mark.parametrize(
    ("role", "home"),
    [(Role.CUSTOMER, "/orders"), (Role.MANAGER, "/board"), (Role.COURIER, "/deliveries")],
)
async def test_signing_in_keeps_the_session_in_a_guarded_cookie_and_opens_the_roles_page(
    web: RunningWeb, role: Role, home: str
) -> None:
    user = await web.add_user(role, name="Мария Управляева")
    browser = await web.browser()

    response = await browser.sign_in(user.email)

    assert response.status_code == 303
    cookie = cookie_set_by(response, SESSION_COOKIE_NAME)
    assert cookie is not None
    assert cookie.value
    assert cookie["httponly"]
    assert cookie["secure"]
    assert cookie["samesite"].lower() == "lax"
    assert cookie["path"] == "/"
    assert int(cookie["max-age"]) == 12 * 3600
    page = await browser.visit(response.headers["location"])
    assert page.status_code == 200
    assert page.url.path == home
    assert "Мария Управляева" in text_of(page.text)


async def test_the_e_mail_is_found_whatever_its_case_and_spaces(web: RunningWeb) -> None:
    await web.add_user(Role.MANAGER, email="maria@example.com")
    browser = await web.browser()

    response = await browser.sign_in("  Maria@EXAMPLE.com ")

    assert response.status_code == 303
    assert await browser.where_home_is() == "/board"


async def test_a_wrong_password_is_refused_with_401_and_a_plain_message(web: RunningWeb) -> None:
    user = await web.add_user(Role.CUSTOMER)
    browser = await web.browser()

    response = await browser.sign_in(user.email, WRONG_PASSWORD)

    assert response.status_code == 401
    assert WRONG_CREDENTIALS in text_of(response.text)
    assert f'value="{user.email}"' in response.text  # the e-mail stays filled in
    assert cookie_set_by(response, SESSION_COOKIE_NAME) is None
    assert await browser.where_home_is() == "/login"
    assert await web.session_count() == 0


async def test_an_unknown_e_mail_gets_the_same_answer_as_a_wrong_password(web: RunningWeb) -> None:
    browser = await web.browser()

    response = await browser.sign_in("nobody@example.com")

    assert response.status_code == 401
    assert WRONG_CREDENTIALS in text_of(response.text)
    assert await browser.where_home_is() == "/login"


async def test_after_a_burst_of_attempts_the_next_is_refused_with_429_and_when_to_retry(
    web: RunningWeb,
) -> None:
    user = await web.add_user(Role.CUSTOMER)
    browser = await web.browser()
    for _ in range(SIGN_IN_ATTEMPTS):
        assert (await browser.sign_in(user.email, WRONG_PASSWORD)).status_code == 401

    response = await browser.sign_in(user.email)  # the right password, too late

    assert response.status_code == 429
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= web.settings.sign_in_window_seconds + 1
    assert f"Too many sign-in attempts. Try again in {retry_after} seconds." in text_of(response.text)
    assert cookie_set_by(response, SESSION_COOKIE_NAME) is None
    assert await browser.where_home_is() == "/login"


async def test_a_burst_against_one_account_does_not_lock_out_another(web: RunningWeb) -> None:
    attacked = await web.add_user(Role.MANAGER)
    other = await web.add_user(Role.CUSTOMER)
    browser = await web.browser()
    for _ in range(SIGN_IN_ATTEMPTS + 1):
        await browser.sign_in(attacked.email, WRONG_PASSWORD)

    response = await browser.sign_in(other.email)

    assert response.status_code == 303
    assert await browser.where_home_is() == "/orders"


async def test_a_burst_across_many_e_mails_from_one_address_is_cut_off_too(web: RunningWeb) -> None:
    browser = await web.browser()
    per_address = SIGN_IN_ATTEMPTS * 4
    for number in range(per_address):
        assert (await browser.sign_in(f"guess-{number}@example.com")).status_code == 401

    response = await browser.sign_in("one-more-guess@example.com")

    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1


async def test_registering_creates_a_customer_who_is_signed_in_at_once(web: RunningWeb) -> None:
    browser = await web.browser()

    response = await register(browser, email=" Anna.Novikova@Example.com ")

    assert response.status_code == 303
    assert response.headers["location"] == "/orders"
    assert cookie_set_by(response, SESSION_COOKIE_NAME) is not None
    page = await browser.visit("/orders")
    assert page.status_code == 200
    assert "Анна Новикова" in text_of(page.text)
    user = await web.user("anna.novikova@example.com")
    assert user is not None
    assert user.role == Role.CUSTOMER
    assert web.orders.calls[-1].principal == Principal(subject=user.id, role=Role.CUSTOMER)


async def test_registering_an_e_mail_again_says_the_account_exists(web: RunningWeb) -> None:
    assert (await register(await web.browser(), name="Анна")).status_code == 303
    browser = await web.browser()

    response = await register(browser, email="ANNA@example.com", name="Самозванка", password=OTHER_PASSWORD)

    assert response.status_code == 409
    assert "An account with this e-mail exists already; sign in instead." in text_of(response.text)
    assert cookie_set_by(response, SESSION_COOKIE_NAME) is None
    assert await web.emails() == ["anna@example.com"]
    user = await web.user("anna@example.com")
    assert user is not None
    assert user.name == "Анна"
    assert (await browser.sign_in("anna@example.com")).status_code == 303


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"password_again": OTHER_PASSWORD}, "The two passwords differ."),
        ({"password": "short"}, "Choose a password of at least 8 characters."),
        ({"email": "not-an-e-mail"}, "Enter an e-mail address such as name@example.com."),
        ({"name": "   "}, "Enter your name (at most 200 characters)."),
    ],
    ids=["passwords differ", "short password", "no e-mail", "no name"],
)
async def test_a_registration_that_is_not_right_says_what_to_fix_and_creates_nobody(
    web: RunningWeb, fields: dict[str, str], message: str
) -> None:
    browser = await web.browser()

    response = await register(browser, **fields)

    assert response.status_code == 422
    assert message in text_of(response.text)
    assert await web.emails() == []
    assert await browser.where_home_is() == "/login"


async def test_a_nul_character_is_refused_in_words_and_not_with_an_error(web: RunningWeb) -> None:
    browser = await web.browser()

    signing_in = await browser.sign_in("anna\x00@example.com")
    registering = await register(browser, email="anna@example.com", name="Анна\x00")

    assert signing_in.status_code == 401
    assert WRONG_CREDENTIALS in text_of(signing_in.text)
    assert registering.status_code == 422
    assert "Remove the NUL character from the e-mail address and the name." in text_of(registering.text)
    assert await web.emails() == []


async def test_signing_out_ends_the_session_even_for_a_copy_of_the_cookie(web: RunningWeb) -> None:
    browser, _ = await web.signed_in(Role.CUSTOMER)
    old_cookie = browser.session_cookie
    assert old_cookie is not None

    response = await browser.submit("/logout", {"csrf_token": await browser.csrf_token("/orders")})

    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert await browser.where_home_is() == "/login"
    copy = await web.browser()
    copy.client.cookies.set(SESSION_COOKIE_NAME, old_cookie)
    page = await copy.get("/orders")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=/orders"
    assert await web.session_count() == 0


async def test_signing_out_on_one_browser_keeps_the_others_signed_in(web: RunningWeb) -> None:
    user = await web.add_user(Role.MANAGER)
    laptop, phone = await web.browser(), await web.browser()
    await laptop.sign_in(user.email)
    await phone.sign_in(user.email)

    await laptop.submit("/logout", {"csrf_token": await laptop.csrf_token("/board")})

    assert await laptop.where_home_is() == "/login"
    assert await phone.where_home_is() == "/board"


async def test_an_expired_session_sends_the_browser_to_sign_in_again(web: RunningWeb) -> None:
    browser, _ = await web.signed_in(Role.MANAGER)
    async with web.database.transaction() as session:
        await session.execute(update(WebSession).values(expires_at=utcnow()))

    page = await browser.get("/board")

    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=/board"


async def test_the_page_asked_for_before_signing_in_opens_after_it(web: RunningWeb) -> None:
    user = await web.add_user(Role.MANAGER)
    browser = await web.browser()

    login_page = await browser.visit("/board")
    assert login_page.url.path == "/login"
    assert 'name="next" value="/board"' in login_page.text
    response = await browser.sign_in(user.email, next_page="/board")

    assert response.status_code == 303
    assert response.headers["location"] == "/board"
    assert (await browser.get("/board")).status_code == 200


async def test_an_action_after_the_session_ended_leads_through_sign_in_to_a_page(web: RunningWeb) -> None:
    browser, customer = await web.signed_in(Role.CUSTOMER)
    token = await browser.csrf_token("/orders")
    async with web.database.transaction() as session:
        await session.execute(update(WebSession).values(expires_at=utcnow()))

    response = await browser.submit(f"/orders/{uuid.uuid4()}/pay", {"csrf_token": token, "next": "/orders"})

    assert response.status_code == 303
    login_page = await browser.visit(response.headers["location"])
    assert login_page.url.path == "/login"
    assert web.orders.writes == []
    next_page = re.search(r'name="next" value="([^"]*)"', login_page.text)
    assert next_page is not None
    signed_in = await browser.sign_in(customer.email, next_page=next_page.group(1))
    page = await browser.visit(signed_in.headers["location"])
    assert page.status_code == 200
    assert page.url.path == "/orders"


@pytest.mark.parametrize(
    "next_page", ["//evil.example/steal", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"]
)
async def test_signing_in_never_leads_to_another_site(web: RunningWeb, next_page: str) -> None:
    user = await web.add_user(Role.CUSTOMER)
    browser = await web.browser()

    response = await browser.sign_in(user.email, next_page=next_page)

    assert response.status_code == 303
    assert response.headers["location"] == "/"


async def test_a_signed_in_user_who_opens_the_sign_in_page_lands_on_their_own(web: RunningWeb) -> None:
    browser, _ = await web.signed_in(Role.COURIER)

    response = await browser.get("/login")

    assert response.status_code == 303
    assert response.headers["location"] == "/deliveries"


async def test_the_demo_accounts_exist_from_the_start_and_a_demo_courier_is_laptev(
    start_web: StartWeb,
) -> None:
    web = await start_web(demo_accounts=True)
    browser = await web.browser()
    login_page = await browser.get("/login")
    assert "laptev@deliveryhub.example" in text_of(login_page.text)

    response = await browser.sign_in("laptev@deliveryhub.example", web.settings.demo_password)
    page = await browser.visit(response.headers["location"])

    assert page.status_code == 200
    assert page.url.path == "/deliveries"
    assert "Лаптев Иван Алексаендрович" in text_of(page.text)
    assert web.delivery.calls  # what to deliver, and what is done
    for call in web.delivery.calls:
        assert call.principal.role is Role.COURIER
        assert call.principal.deliveryman_id == LAPTEV
