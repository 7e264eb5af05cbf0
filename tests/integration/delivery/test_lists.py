"""The deliveries' list at work: filters, both orders, the search, the total and the couriers' loads,
on PostgreSQL and on SQLite alike."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from deliveryhub_delivery.models import Delivery
from deliveryhub_kit.db import Database, utcnow
from deliveryhub_kit.migrations import upgrade
from deliveryhub_kit.settings import async_database_url
from tests.support.databases import migrations_of
from tests.support.delivery import RunningDelivery, StartDelivery
from tests.support.events import DELIVERY_DATE
from tests.support.tokens import Tokens

pytestmark = pytest.mark.integration

LAPTEV = uuid.UUID("85db966c-67f1-411e-95c0-f02edfa5464a")
ZUEV = uuid.UUID("31babbb3-5541-4a2a-8201-537cdff25fed")
STREETS = ("Тверская улица", "Арбат", "Невский проспект")


@dataclass(frozen=True)
class Seeded:
    id: uuid.UUID
    address: str
    status: str
    courier: uuid.UUID | None
    age: int  # minutes before now it was made


def seeds() -> list[Seeded]:
    """24 deliveries of every status, on three streets, a minute apart, some with a courier."""
    made = []
    for index in range(24):
        status = ("created", "activated", "activated", "done", "canceled", "activated")[index % 6]
        courier = None
        if status in ("done", "canceled") or (status == "activated" and index % 4 == 1):
            courier = (LAPTEV, ZUEV)[index % 2]
        address = f"Москва, {STREETS[index % 3]}, {index + 1}"
        made.append(Seeded(uuid.uuid4(), address, status, courier, age=24 - index))
    return made


@pytest.fixture(params=["postgresql", "sqlite"])
async def listed(
    request: pytest.FixtureRequest, start_delivery: StartDelivery, delivery_database_url: str, tmp_path: Path
) -> tuple[RunningDelivery, list[Seeded]]:
    """The delivery service on one of the two databases, holding `seeds()` and one placeholder."""
    url = delivery_database_url
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'delivery.sqlite3'}"
        await asyncio.to_thread(upgrade, migrations_of("delivery"), url)
    made = seeds()
    database = Database(async_database_url(url), pool_size=1, max_overflow=1)
    now = utcnow()
    async with database.transaction() as session:
        for seed in made:
            session.add(
                Delivery(
                    id=seed.id,
                    address=seed.address,
                    date=DELIVERY_DATE,
                    status=seed.status,
                    deliveryman_id=seed.courier,
                    created_at=now - timedelta(minutes=seed.age),
                )
            )
        # Waiting for its order's snapshot: never listed, never counted.
        session.add(Delivery(id=uuid.uuid4(), status="activated", created_at=now))
    await database.dispose()
    return await start_delivery(database_url=url), made


def ids(response: httpx.Response) -> list[uuid.UUID]:
    assert response.status_code == 200, response.text
    return [uuid.UUID(item["id"]) for item in response.json()]


def newest_first(seeded: list[Seeded]) -> list[uuid.UUID]:
    return [seed.id for seed in sorted(seeded, key=lambda seed: seed.age)]


async def test_each_filter_in_both_orders_pages_and_counts_all_its_matches(
    listed: tuple[RunningDelivery, list[Seeded]], tokens: Tokens
) -> None:
    delivery, made = listed
    manager = tokens.manager()
    choices: list[tuple[dict[str, str], list[Seeded]]] = [
        ({}, made),
        ({"status": "activated"}, [seed for seed in made if seed.status == "activated"]),
        ({"unassigned": "true"}, [seed for seed in made if seed.courier is None]),
        (
            {"status": "activated", "unassigned": "true"},
            [seed for seed in made if seed.status == "activated" and seed.courier is None],
        ),
        ({"deliveryman_id": str(ZUEV)}, [seed for seed in made if seed.courier == ZUEV]),
        ({"deliveryman_id": str(ZUEV), "unassigned": "true"}, []),
    ]
    for params, wanted in choices:
        expected = newest_first(wanted)
        for sort, order in (("newest", expected), ("oldest", expected[::-1])):
            pages: list[uuid.UUID] = []
            for offset in range(0, len(order) + 5, 5):
                response = await delivery.client.get(
                    "/api/delivery/",
                    params={**params, "sort": sort, "limit": 5, "offset": offset},
                    headers=manager,
                )
                assert response.headers["X-Total-Count"] == str(len(wanted)), (params, sort, offset)
                pages += ids(response)
            assert pages == order, (params, sort)
    # Newest first unless told otherwise, as the list always was.
    default = await delivery.client.get("/api/delivery/", headers=manager)
    assert ids(default) == newest_first(made)


async def test_the_latest_changed_come_first_when_sorted_by_update(
    listed: tuple[RunningDelivery, list[Seeded]], tokens: Tokens
) -> None:
    delivery, made = listed
    manager = tokens.manager()
    waiting = [seed for seed in made if seed.status == "activated" and seed.courier is None]
    first, second = waiting[-1], waiting[0]  # the newest made changes first, the oldest last
    for seed in (first, second):
        appointed = await delivery.client.post(
            f"/api/delivery/{seed.id}/appoint", json={"deliveryman_id": str(LAPTEV)}, headers=manager
        )
        assert appointed.status_code == 200, appointed.text
    response = await delivery.client.get(
        "/api/delivery/", params={"sort": "updated", "limit": 3}, headers=manager
    )
    assert ids(response)[:2] == [second.id, first.id]
    assert response.headers["X-Total-Count"] == str(len(made))
    assert response.json()[0]["updated_at"] >= response.json()[1]["updated_at"]


async def test_the_search_finds_by_the_first_characters_of_an_id_or_by_words_of_the_address(
    listed: tuple[RunningDelivery, list[Seeded]], tokens: Tokens
) -> None:
    delivery, made = listed
    manager = tokens.manager()
    target = made[7]

    async def found(q: str, **params: str) -> list[uuid.UUID]:
        response = await delivery.client.get("/api/delivery/", params={"q": q, **params}, headers=manager)
        assert response.headers["X-Total-Count"] == str(len(response.json())), q
        return ids(response)

    by_prefix = [seed for seed in made if str(seed.id).startswith(str(target.id)[:8])]
    assert await found(str(target.id)[:8]) == newest_first(by_prefix)
    assert await found(str(target.id)[:13].upper()) == [target.id]  # with its hyphen, in capitals
    assert await found(str(target.id)) == [target.id]
    assert await found(target.id.hex) == [target.id]

    arbat = [seed for seed in made if "Арбат" in seed.address]
    assert await found("арбат") == newest_first(arbat)
    assert await found("АРБАТ") == newest_first(arbat)
    assert await found("арб") == newest_first(arbat)  # the beginning of a word
    assert await found("Невский, проспект") == newest_first([s for s in made if "Невский" in s.address])
    assert await found(f"арбат {target.address.rsplit(' ', 1)[1]}") == (
        [target.id] if "Арбат" in target.address else []
    )
    assert await found("Арбат Невский") == []  # every word must be there
    assert await found("Лиговский") == []
    activated_on_arbat = [seed for seed in arbat if seed.status == "activated"]
    assert await found("Арбат", status="activated") == newest_first(activated_on_arbat)


@pytest.mark.parametrize(
    "q",
    [
        "%",
        "_",
        "'",
        '"',
        "\\",
        ":*",
        "& | ! ( )",
        "'; DROP TABLE deliveries; --",
        "a\x00b",
        "\U0001f4e6",
        "-",
        "   ",
        "ꙮ" * 50,
        "Москва " * 28,
    ],
    ids=[
        "percent",
        "underscore",
        "quote",
        "double-quote",
        "backslash",
        "tsquery-prefix",
        "tsquery-operators",
        "sql",
        "nul",
        "emoji",
        "hyphen",
        "blank",
        "long-word",
        "many-words",
    ],
)
async def test_no_search_text_breaks_the_list(
    listed: tuple[RunningDelivery, list[Seeded]], tokens: Tokens, q: str
) -> None:
    delivery, made = listed
    response = await delivery.client.get("/api/delivery/", params={"q": q}, headers=tokens.manager())
    assert response.status_code == 200, response.text
    listed_ids = ids(response)
    assert int(response.headers["X-Total-Count"]) >= len(listed_ids)
    assert set(listed_ids) <= {seed.id for seed in made}


@pytest.mark.parametrize(
    "params",
    [{"q": "x" * 201}, {"sort": "sideways"}, {"unassigned": "perhaps"}],
    ids=["q-too-long", "unknown-sort", "not-a-boolean"],
)
async def test_list_parameters_that_mean_nothing_are_refused(
    listed: tuple[RunningDelivery, list[Seeded]], tokens: Tokens, params: dict[str, str]
) -> None:
    delivery, _ = listed
    response = await delivery.client.get("/api/delivery/", params=params, headers=tokens.manager())
    assert response.status_code == 422, response.text
    assert set(response.json()) == {"error", "detail"}


async def test_a_courier_searches_their_own_deliveries_alone(
    listed: tuple[RunningDelivery, list[Seeded]], tokens: Tokens
) -> None:
    delivery, made = listed
    response = await delivery.client.get(
        "/api/delivery/", params={"q": "Москва"}, headers=tokens.courier(LAPTEV)
    )
    assert ids(response) == newest_first([seed for seed in made if seed.courier == LAPTEV])
    assert response.headers["X-Total-Count"] == str(sum(seed.courier == LAPTEV for seed in made))


async def test_each_courier_is_listed_with_the_deliveries_open_in_their_hands(
    listed: tuple[RunningDelivery, list[Seeded]], tokens: Tokens
) -> None:
    delivery, made = listed
    response = await delivery.client.get("/api/deliverymen", headers=tokens.manager())
    assert response.status_code == 200, response.text
    loads = {uuid.UUID(man["id"]): man["open_deliveries"] for man in response.json()}
    for courier in (LAPTEV, ZUEV):
        assert loads[courier] == sum(seed.courier == courier and seed.status == "activated" for seed in made)
    assert len(loads) == 3
    assert min(loads.values()) == 0  # Кудж has none
