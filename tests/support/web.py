"""The web console in-process as the tests drive it: browsers, stand-ins for the two APIs it calls, and
what a person reads on its pages."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from html.parser import HTMLParser
from http.cookies import Morsel, SimpleCookie
from typing import Any, Protocol

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from deliveryhub_kit.db import Database, utcnow
from deliveryhub_kit.errors import Unauthenticated
from deliveryhub_kit.identity import Principal, Role
from deliveryhub_kit.tokens import TokenIssuer, TokenVerifier
from deliveryhub_web.clients import Backends, DeliveryApi, OrdersApi
from deliveryhub_web.cookies import SESSION_COOKIE, cookie_name
from deliveryhub_web.models import User, WebSession
from deliveryhub_web.repository import SqlAccountRepository
from deliveryhub_web.settings import WebSettings

ORDERS_URL = "http://orders.test"
DELIVERY_URL = "http://delivery.test"
CONSOLE_URL = "https://testserver"  # https, so that the browser keeps and sends Secure cookies
SESSION_SECRET = "a-session-secret-of-the-tests-long-enough"  # noqa: S105 (made up for the tests)
PASSWORD = "a-password-of-a-test-account"  # noqa: S105
SIGN_IN_ATTEMPTS = 3
# The session cookie's name as the console sets it here: Secure, so `__Host-` prefixed.
SESSION_COOKIE_NAME = cookie_name(SESSION_COOKIE, secure=True)

LAPTEV = uuid.UUID("85db966c-67f1-411e-95c0-f02edfa5464a")
ZUEV = uuid.UUID("31babbb3-5541-4a2a-8201-537cdff25fed")
KUDZH = uuid.UUID("45309954-8e3c-4635-8066-b342f634252c")
COURIERS = [
    {"id": str(LAPTEV), "name": "Лаптев Иван Алексаендрович", "open_deliveries": 0},
    {"id": str(ZUEV), "name": "Зуев Андрей Сергеевич", "open_deliveries": 0},
    {"id": str(KUDZH), "name": "Кудж Станислав Алексеевич", "open_deliveries": 0},
]


@dataclass(frozen=True)
class Call:
    """A request that reached a stand-in API, and who the console said was asking."""

    method: str
    path: str
    principal: Principal
    body: Any
    headers: Mapping[str, str]


Answer = Callable[[httpx.Request], httpx.Response]


def json_answer(status: int, body: object) -> Answer:
    """The body as JSON; a list says how many it holds, as the APIs' lists do (`X-Total-Count`)."""
    headers = {"X-Total-Count": str(len(body))} if isinstance(body, list) else {}
    return lambda _: httpx.Response(status, json=body, headers=headers)


class FakeApi:
    """An API as the console sees it: answers by method and path, checks the token, keeps every call."""

    def __init__(self, name: str, verifier: TokenVerifier) -> None:
        self.name = name
        self.calls: list[Call] = []
        self._verifier = verifier
        self._answers: dict[tuple[str, str], Answer] = {}

    def answer(self, method: str, path: str, status: int = 200, body: object = None) -> None:
        self._answers[(method, path)] = json_answer(status, body)

    def answer_with(self, method: str, path: str, answer: Answer) -> None:
        self._answers[(method, path)] = answer

    @property
    def writes(self) -> list[Call]:
        return [call for call in self.calls if call.method != "GET"]

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        try:
            principal = self._verifier.verify(
                request.headers.get("Authorization", "").removeprefix("Bearer ")
            )
        except Unauthenticated as error:
            return httpx.Response(401, json={"error": "unauthenticated", "detail": error.detail})
        body = json.loads(request.content) if request.content else None
        headers = {name.lower(): value for name, value in request.headers.items()}
        self.calls.append(Call(request.method, request.url.path, principal, body, headers))
        answer = self._answers.get((request.method, request.url.path))
        if answer is not None:
            return answer(request)
        if request.method == "GET":
            return httpx.Response(
                404, json={"error": "not_found", "detail": f"there is no {request.url.path}"}
            )
        # A write the test did not script is accepted, answering with the object it was about.
        ids = [part for part in request.url.path.split("/") if _is_uuid(part)]
        return httpx.Response(200, json={"id": ids[0] if ids else str(uuid.uuid4())})


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


class InProcessBackends(Backends):
    """The console's API clients, with the stand-ins' addresses answered in-process."""

    def __init__(
        self,
        *,
        orders_url: str,
        delivery_url: str,
        issuer: TokenIssuer,
        mounts: Mapping[str, httpx.AsyncBaseTransport],
    ) -> None:
        # Any other address (one where nothing listens, say) is called over the network as usual.
        self._client = httpx.AsyncClient(mounts=dict(mounts), timeout=httpx.Timeout(5.0, connect=2.0))
        self.orders = OrdersApi(orders_url, self._client, issuer)
        self.delivery = DeliveryApi(delivery_url, self._client, issuer)


class _TextOf(HTMLParser):
    """Collects the visible text of the whole page, or of the element with an id."""

    VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"})

    def __init__(self, element_id: str | None) -> None:
        super().__init__()
        self.element_id = element_id
        self.depth = 0 if element_id is None else -1
        self.found = element_id is None
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            return
        if self.depth < 0 and dict(attrs).get("id") == self.element_id:
            self.depth, self.found = 0, True
        if self.depth >= 0:
            self.depth += 1
        if tag in ("script", "style", "title"):
            self._hidden += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if tag in ("script", "style", "title"):
            self._hidden -= 1
        if self.depth > 0:
            self.depth -= 1
            if self.depth == 0 and self.element_id is not None:
                self.depth = -2  # the element has ended; nothing after it belongs to it

    def handle_data(self, data: str) -> None:
        if self.depth > 0 and not self._hidden:
            self.parts.append(data)


def text_of(html: str, element_id: str | None = None) -> str:
    """What a person reads on the page, or inside one element of it, with the whitespace collapsed."""
    parser = _TextOf(element_id)
    parser.feed(html)
    assert parser.found, f"the page has no element with id {element_id!r}"
    return " ".join(" ".join(parser.parts).split())


def csrf_token_in(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def cookie_set_by(response: httpx.Response, name: str) -> Morsel[str] | None:
    """The Set-Cookie of `name` in a response, with its attributes."""
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        if name in jar:
            return jar[name]
    return None


class Browser:
    """One browser on the console: its cookies, and the forms it sends as a person would."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def get(self, path: str) -> httpx.Response:
        return await self.client.get(path)

    async def visit(self, path: str) -> httpx.Response:
        """Open a page, following redirects to where the browser ends up."""
        return await self.client.get(path, follow_redirects=True)

    async def csrf_token(self, page: str = "/login") -> str:
        """The token of the forms on `page`, as the browser has it after loading the page."""
        response = await self.get(page)
        assert response.status_code == 200, response.text
        return csrf_token_in(response.text)

    async def submit(self, path: str, fields: Mapping[str, str | list[str]]) -> httpx.Response:
        """Post a form as is: with whatever CSRF token `fields` holds, or none."""
        return await self.client.post(path, data=dict(fields))

    async def sign_in(self, email: str, password: str = PASSWORD, *, next_page: str = "/") -> httpx.Response:
        token = await self.csrf_token("/login")
        return await self.submit(
            "/login", {"csrf_token": token, "email": email, "password": password, "next": next_page}
        )

    async def where_home_is(self) -> str:
        """Where the console's start page sends this browser: a role's page, or the sign-in."""
        response = await self.get("/")
        assert response.status_code == 303, response.text
        return response.headers["location"]

    @property
    def session_cookie(self) -> str | None:
        return self.client.cookies.get(SESSION_COOKIE_NAME)


@dataclass
class RunningWeb:
    """The console, started by its own lifespan, with stand-ins for the APIs and the test's view of its DB."""

    app: FastAPI
    settings: WebSettings
    orders: FakeApi
    delivery: FakeApi
    database: Database
    password_hash: str
    stack: AsyncExitStack

    async def browser(self, address: str = "127.0.0.1") -> Browser:
        """A browser on the console, connecting from `address`."""
        transport = httpx.ASGITransport(app=self.app, client=(address, 52000))
        client = httpx.AsyncClient(transport=transport, base_url=CONSOLE_URL)
        return Browser(await self.stack.enter_async_context(client))

    async def add_user(
        self,
        role: Role,
        *,
        email: str | None = None,
        name: str | None = None,
        deliveryman_id: uuid.UUID | None = None,
    ) -> User:
        """An account with PASSWORD; a courier is Лаптев unless told otherwise."""
        if role is Role.COURIER and deliveryman_id is None:
            deliveryman_id = LAPTEV
        user = User(
            id=uuid.uuid4(),
            email=email or f"{role.value}-{uuid.uuid4().hex[:8]}@example.com",
            name=name or f"Test {role.value}",
            password_hash=self.password_hash,
            role=role.value,
            deliveryman_id=deliveryman_id,
            created_at=utcnow(),
        )
        async with self.database.transaction() as session:
            assert await SqlAccountRepository(session).add_user(user)
        return user

    async def signed_in(self, role: Role, **account: Any) -> tuple[Browser, User]:
        """A browser signed in as a new account of `role`."""
        user = await self.add_user(role, **account)
        browser = await self.browser()
        response = await browser.sign_in(user.email)
        assert response.status_code == 303, response.text
        return browser, user

    async def user(self, email: str) -> User | None:
        async with self.database.transaction() as session:
            return (await session.scalars(select(User).where(User.email == email))).one_or_none()

    async def emails(self) -> list[str]:
        async with self.database.transaction() as session:
            return sorted(await session.scalars(select(User.email)))

    async def session_count(self) -> int:
        async with self.database.transaction() as session:
            return int(await session.scalar(select(func.count()).select_from(WebSession)) or 0)


class StartWeb(Protocol):
    async def __call__(
        self,
        *,
        delivery_url: str = ...,
        database_url: str | None = ...,
        delivery_transport: httpx.AsyncBaseTransport | None = ...,
        demo_accounts: bool = ...,
        cookie_secure: bool = ...,
    ) -> RunningWeb: ...
