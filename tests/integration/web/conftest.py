"""The web console running in-process on a real, migrated database, with browsers in front of it.

The console's own database is real. The two APIs it calls are stand-ins that answer as the real ones
do and keep every call, unless a test puts a real service (or nothing at all) behind an address.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from argon2 import PasswordHasher

from deliveryhub_kit.db import Database
from deliveryhub_kit.keys import KeyPair
from deliveryhub_kit.settings import async_database_url
from deliveryhub_kit.tokens import TokenIssuer, TokenVerifier
from deliveryhub_web import runtime as web_runtime
from deliveryhub_web.app import create_app
from deliveryhub_web.clients import Backends
from deliveryhub_web.settings import WebSettings
from tests.support.web import (
    COURIERS,
    DELIVERY_URL,
    ORDERS_URL,
    PASSWORD,
    SESSION_SECRET,
    SIGN_IN_ATTEMPTS,
    FakeApi,
    InProcessBackends,
    RunningWeb,
    StartWeb,
)

if TYPE_CHECKING:
    from tests.support.databases import Databases


@pytest.fixture
async def web_database_url(databases: Databases) -> AsyncIterator[str]:
    """A fresh web console database at the newest revision."""
    url = await databases.create_migrated("web")
    yield url
    await databases.drop(url)


@pytest.fixture(scope="session")
def password_hash() -> str:
    """The hash of PASSWORD, made once: argon2 takes its time on purpose, and it fits every account."""
    return PasswordHasher().hash(PASSWORD)


@pytest.fixture
async def start_web(
    web_database_url: str,
    key_pair: KeyPair,
    password_hash: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[StartWeb]:
    """Start the console on the test's database; stopped at the end."""
    stacks: list[AsyncExitStack] = []

    async def start(
        *,
        delivery_url: str = DELIVERY_URL,
        database_url: str | None = None,
        delivery_transport: httpx.AsyncBaseTransport | None = None,
        demo_accounts: bool = False,
        cookie_secure: bool = True,
    ) -> RunningWeb:
        settings = WebSettings(
            environment="test",
            database_url=database_url or web_database_url,
            orders_url=ORDERS_URL,
            delivery_url=delivery_url,
            jwt_private_key=key_pair.private_pem,
            session_secret=SESSION_SECRET,
            keys_dir=tmp_path / "keys",
            demo_accounts=demo_accounts,
            cookie_secure=cookie_secure,
            sign_in_attempts=SIGN_IN_ATTEMPTS,
            # The slowest backstop these settings allow, to be reached in a test's time.
            sign_in_account_attempts=SIGN_IN_ATTEMPTS * 3 + 1,
            sign_in_account_window_seconds=180,
            database_pool_size=5,
            database_timeout_seconds=2.0,
        )
        verifier = TokenVerifier(
            key_pair.public_pem, issuer=settings.jwt_issuer, audience=settings.jwt_audience
        )
        orders, delivery = FakeApi("orders", verifier), FakeApi("delivery", verifier)
        delivery.answer("GET", "/api/delivery/", body=[])
        delivery.answer("GET", "/api/deliverymen", body=COURIERS)
        orders.answer("GET", "/api/orders", body=[])
        mounts = {ORDERS_URL: orders.transport, DELIVERY_URL: delivery_transport or delivery.transport}

        def backends(
            *, orders_url: str, delivery_url: str, timeout_seconds: float, issuer: TokenIssuer
        ) -> Backends:
            return InProcessBackends(
                orders_url=orders_url, delivery_url=delivery_url, issuer=issuer, mounts=mounts
            )

        monkeypatch.setattr(web_runtime, "Backends", backends)
        app = create_app(settings)
        stack = AsyncExitStack()
        stacks.append(stack)
        await stack.enter_async_context(app.router.lifespan_context(app))
        database = Database(async_database_url(settings.database_url), pool_size=2, max_overflow=2)
        stack.push_async_callback(database.dispose)
        return RunningWeb(
            app=app,
            settings=settings,
            orders=orders,
            delivery=delivery,
            database=database,
            password_hash=password_hash,
            stack=stack,
        )

    yield start
    for stack in reversed(stacks):
        await stack.aclose()


@pytest.fixture
async def web(start_web: StartWeb) -> RunningWeb:
    """The console, with stand-ins for the orders and delivery APIs."""
    return await start_web()
