"""The orders' list: its total and its search, on PostgreSQL and on SQLite alike."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest

from deliveryhub_kit.migrations import upgrade
from tests.support.databases import migrations_of
from tests.support.orders import NewCustomer, RunningOrders
from tests.support.tokens import Tokens

pytestmark = pytest.mark.integration


@pytest.fixture(params=["postgresql", "sqlite"])
async def orders_database_url(
    request: pytest.FixtureRequest, orders_database_url: str, tmp_path: Path
) -> str:
    if request.param == "postgresql":
        return orders_database_url
    url = f"sqlite+aiosqlite:///{tmp_path / 'orders.sqlite3'}"
    await asyncio.to_thread(upgrade, migrations_of("orders"), url)
    return url


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()]


async def test_the_list_counts_its_matches_and_finds_by_id_or_address_words(
    orders: RunningOrders, new_customer: NewCustomer, tokens: Tokens
) -> None:
    alice, boris = new_customer(), new_customer()
    placed = []
    for index, street in enumerate(
        ["Тверская улица", "Арбат", "Тверская улица", "Невский проспект", "Арбат"]
    ):
        customer = alice if index % 2 == 0 else boris
        placed.append(await customer.place_order(address=f"Москва, {street}, {index + 1}"))
    manager = tokens.manager()

    async def listed(headers: dict[str, str], **params: str | int) -> tuple[list[str], int]:
        response = await orders.client.get("/api/orders", params=params, headers=headers)
        return ids(response), int(response.headers["X-Total-Count"])

    newest_first = [order["id"] for order in reversed(placed)]
    assert await listed(manager) == (newest_first, 5)
    assert await listed(manager, limit=2, offset=2) == (newest_first[2:4], 5)
    alices = [order["id"] for order in reversed(placed[::2])]
    assert await listed(alice.headers) == (alices, 3)
    assert await listed(alice.headers, status="paid") == ([], 0)

    tverskaya = [order["id"] for order in reversed(placed) if "Тверская" in order["address"]]
    assert await listed(manager, q="тверская") == (tverskaya, 2)
    assert await listed(manager, q="ТВЕР") == (tverskaya, 2)
    assert await listed(manager, q="арбат 5") == ([placed[4]["id"]], 1)
    assert await listed(boris.headers, q="Тверская") == ([], 0)  # only his own
    target = placed[3]["id"]
    assert await listed(manager, q=target[:8]) == (
        [order["id"] for order in reversed(placed) if order["id"].startswith(target[:8])],
        sum(order["id"].startswith(target[:8]) for order in placed),
    )
    assert await listed(manager, q=target.upper()) == ([target], 1)
    assert await listed(manager, q=uuid.UUID(target).hex) == ([target], 1)


async def test_the_list_sorts_by_creation_either_way_or_by_the_latest_change(
    orders: RunningOrders, new_customer: NewCustomer, tokens: Tokens
) -> None:
    customer = new_customer()
    placed = [(await customer.place_order(address=f"Москва, Арбат, {n}"))["id"] for n in range(3)]
    paid = await orders.client.post(f"/api/orders/{placed[0]}/pay", headers=customer.headers)
    assert paid.status_code == 200, paid.text

    async def listed(sort: str) -> list[str]:
        response = await orders.client.get("/api/orders", params={"sort": sort}, headers=customer.headers)
        assert response.headers["X-Total-Count"] == "3"
        return ids(response)

    assert await listed("newest") == placed[::-1]
    assert await listed("oldest") == placed
    assert await listed("updated") == [placed[0], placed[2], placed[1]]
    refused = await orders.client.get("/api/orders", params={"sort": "sideways"}, headers=customer.headers)
    assert refused.status_code == 422
    assert refused.json()["error"] == "validation_error"


@pytest.mark.parametrize("q", ["%", "_", "'", "\\", ":* & !", "a\x00b", "   ", "Москва " * 28])
async def test_no_search_text_breaks_the_list(
    orders: RunningOrders, new_customer: NewCustomer, tokens: Tokens, q: str
) -> None:
    await new_customer().place_order()
    response = await orders.client.get("/api/orders", params={"q": q}, headers=tokens.manager())
    assert response.status_code == 200, response.text
    assert int(response.headers["X-Total-Count"]) == len(response.json())


async def test_a_search_text_over_the_limit_is_refused(orders: RunningOrders, tokens: Tokens) -> None:
    response = await orders.client.get("/api/orders", params={"q": "x" * 201}, headers=tokens.manager())
    assert response.status_code == 422, response.text
    assert set(response.json()) == {"error", "detail"}
