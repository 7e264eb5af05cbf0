"""Requests per address and per caller are bounded on each service's own port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import httpx
import pytest

from deliveryhub_kit.keys import KeyPair
from deliveryhub_orders.app import create_app
from deliveryhub_orders.settings import OrdersSettings
from tests.support.broker import AMQP_URL, BrokerNamespace
from tests.support.databases import Databases
from tests.support.tokens import Tokens

pytestmark = pytest.mark.integration

# A burst of ten, then one request every ten seconds: far slower than any test's requests, however
# loaded the machine, so what is refused does not depend on how fast the requests came.
RATE, BURST_SECONDS = 0.1, 100.0
BURST = round(RATE * BURST_SECONDS)

Client = Callable[[str], httpx.AsyncClient]
StartOrders = Callable[..., Awaitable[Client]]


@pytest.fixture
async def start_orders(
    databases: Databases, broker_namespace: BrokerNamespace, key_pair: KeyPair
) -> AsyncIterator[StartOrders]:
    """Start the orders service with the limits given; clients call it from an address of their own."""
    async with AsyncExitStack() as stack:

        async def start(*, per_address: float = RATE, per_subject: float = RATE) -> Client:
            url = await databases.create_migrated("orders")
            stack.push_async_callback(databases.drop, url)
            settings = OrdersSettings(
                environment="test",
                database_url=url,
                amqp_url=AMQP_URL,
                broker_prefix=broker_namespace.prefix,
                jwt_public_key=key_pair.public_pem,
                rate_limit_per_address=per_address,
                rate_limit_per_subject=per_subject,
                rate_limit_burst_seconds=BURST_SECONDS,
            )
            app = create_app(settings)
            await stack.enter_async_context(app.router.lifespan_context(app))

            def client(address: str) -> httpx.AsyncClient:
                transport = httpx.ASGITransport(app=app, client=(address, 40000))
                return httpx.AsyncClient(transport=transport, base_url="http://orders.test")

            return client

        yield start


def refused(response: httpx.Response) -> bool:
    if response.status_code != 429:
        return False
    assert response.json()["error"] == "too_many_requests", response.text
    assert set(response.json()) == {"error", "detail"}
    assert int(response.headers["Retry-After"]) >= 1
    return True


async def test_an_address_past_its_rate_is_refused_and_others_are_not(start_orders: StartOrders) -> None:
    client = await start_orders()
    async with client("203.0.113.5") as flooding, client("198.51.100.20") as other:
        answers = [await flooding.get("/api/orders") for _ in range(BURST + 5)]
        elsewhere = await other.get("/api/orders")

    assert [refused(answer) for answer in answers].count(True) >= 5
    assert not any(refused(answer) for answer in answers[:BURST])
    assert elsewhere.status_code == 401  # counted on its own: it reaches the route (and has no token)


async def test_a_caller_past_its_rate_is_refused_from_whatever_address(
    start_orders: StartOrders, tokens: Tokens
) -> None:
    client = await start_orders()
    customer = tokens.customer()
    answers = []
    for number in range(BURST + 5):
        async with client(f"10.9.0.{number}") as caller:
            answers.append(await caller.get("/api/orders", headers=customer))
    async with client("10.9.1.1") as someone_else:
        other = await someone_else.get("/api/orders", headers=tokens.customer())

    assert all(answer.status_code == 200 for answer in answers[:BURST])
    assert all(refused(answer) for answer in answers[BURST + 1 :])
    assert other.status_code == 200


async def test_health_and_metrics_are_never_limited(start_orders: StartOrders) -> None:
    client = await start_orders()
    async with client("192.0.2.1") as orchestrator:
        answers = [await orchestrator.get(path) for path in ["/health/live", "/metrics"] * (BURST * 2)]

    assert {answer.status_code for answer in answers} == {200}


async def test_a_limit_of_zero_is_no_limit(start_orders: StartOrders, tokens: Tokens) -> None:
    client = await start_orders(per_address=0, per_subject=0)
    manager = tokens.manager()
    async with client("203.0.113.9") as bench:
        answers = [await bench.get("/api/orders", headers=manager) for _ in range(BURST * 5)]

    assert {answer.status_code for answer in answers} == {200}
