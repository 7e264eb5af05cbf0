"""The delivery HTTP API in-process, on a real migrated database and the real broker."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from deliveryhub_delivery.service import delivery_service
from deliveryhub_kit.identity import Principal, Role
from deliveryhub_kit.keys import generate_key_pair
from deliveryhub_kit.tokens import TokenIssuer
from tests.support.broker import Amqp
from tests.support.delivery import DeliveryRecords, RunningDelivery, StartDelivery
from tests.support.events import ADDRESS, OrderEvents
from tests.support.ports import unused_url
from tests.support.tokens import Tokens

pytestmark = pytest.mark.integration

LAPTEV = uuid.UUID("85db966c-67f1-411e-95c0-f02edfa5464a")
ZUEV = uuid.UUID("31babbb3-5541-4a2a-8201-537cdff25fed")
KUDZH = uuid.UUID("45309954-8e3c-4635-8066-b342f634252c")
SOME_ORDER = uuid.UUID("0b7c2f52-3f0e-4a39-9d0e-6f1d2a4b5c6d")


async def seed_order(
    records: DeliveryRecords,
    order_events: OrderEvents,
    *,
    paid: bool = False,
    address: str = ADDRESS,
) -> uuid.UUID:
    """A delivery as the order events would have made it, applied through the service layer."""
    order_id = uuid.uuid4()
    created = order_events.created_payload(order_id, address=address)
    async with records.database.transaction() as session:
        service = delivery_service(session)
        await service.on_order_created(created)
        if paid:
            paid_payload = order_events.paid_payload(order_id, address=address)
            await service.on_order_paid(paid_payload)
    return order_id


async def appoint(client: httpx.AsyncClient, tokens: Tokens, order_id: uuid.UUID, courier: uuid.UUID) -> None:
    response = await client.post(
        f"/api/delivery/{order_id}/appoint", json={"deliveryman_id": str(courier)}, headers=tokens.manager()
    )
    assert response.status_code == 200, response.text


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == code
    assert body["detail"]


async def test_a_manager_lists_every_delivery_newest_first_with_filters_and_pages(
    delivery: RunningDelivery,
    delivery_records: DeliveryRecords,
    order_events: OrderEvents,
    tokens: Tokens,
) -> None:
    created = [await seed_order(delivery_records, order_events) for _ in range(3)]
    activated = [await seed_order(delivery_records, order_events, paid=True) for _ in range(2)]
    await appoint(delivery.client, tokens, activated[0], LAPTEV)
    newest_first = [str(order_id) for order_id in reversed(created + activated)]
    manager = tokens.manager()

    async def listed(**params: str | int) -> list[str]:
        response = await delivery.client.get("/api/delivery/", params=params, headers=manager)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()]

    assert await listed() == newest_first
    assert await listed(status="created") == [str(order_id) for order_id in reversed(created)]
    assert await listed(status="activated") == [str(order_id) for order_id in reversed(activated)]
    assert await listed(status="done") == []
    assert await listed(deliveryman_id=str(LAPTEV)) == [str(activated[0])]
    assert await listed(deliveryman_id=str(LAPTEV), status="created") == []
    assert await listed(limit=2) == newest_first[:2]
    assert await listed(limit=2, offset=2) == newest_first[2:4]
    assert await listed(limit=2, offset=4) == newest_first[4:]
    assert await listed(offset=10) == []

    response = await delivery.client.get(f"/api/delivery/{activated[0]}", headers=manager)
    assert response.status_code == 200
    body = response.json()
    assert {"id", "address", "date", "status", "deliveryman"} <= set(body)
    assert body["id"] == str(activated[0])
    assert body["address"] == ADDRESS
    assert datetime.fromisoformat(body["date"]) == datetime(2030, 5, 17, 14, 30, tzinfo=UTC)
    assert body["status"] == "activated"
    assert body["deliveryman"] == {"id": str(LAPTEV), "name": "Лаптев Иван Алексаендрович"}


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 1001},
        {"offset": -1},
        {"offset": 2**63},
        {"status": "lost"},
        {"deliveryman_id": "nobody"},
    ],
    ids=["limit-0", "limit-1001", "negative-offset", "offset-past-int64", "unknown-status", "not-a-uuid"],
)
async def test_list_parameters_out_of_bounds_are_refused(
    delivery: RunningDelivery, tokens: Tokens, params: dict[str, str | int]
) -> None:
    response = await delivery.client.get("/api/delivery/", params=params, headers=tokens.manager())

    assert_error(response, 422, "validation_error")


async def test_an_unknown_delivery_is_404(delivery: RunningDelivery, tokens: Tokens) -> None:
    manager = tokens.manager()
    unknown = uuid.uuid4()

    assert_error(
        await delivery.client.get(f"/api/delivery/{unknown}", headers=manager), 404, "delivery_not_found"
    )
    for action in ("finish", "cancel"):
        response = await delivery.client.post(f"/api/delivery/{unknown}/{action}", headers=manager)
        assert_error(response, 404, "delivery_not_found")
    response = await delivery.client.post(
        f"/api/delivery/{unknown}/appoint", json={"deliveryman_id": str(ZUEV)}, headers=manager
    )
    assert_error(response, 404, "delivery_not_found")
    assert_error(
        await delivery.client.get("/api/delivery/not-a-uuid", headers=manager), 422, "validation_error"
    )


async def test_appointing_a_courier_to_an_activated_delivery_announces_it(
    delivery: RunningDelivery,
    delivery_records: DeliveryRecords,
    order_events: OrderEvents,
    tokens: Tokens,
    amqp: Amqp,
) -> None:
    tap = await amqp.tap("delivery.*")
    order_id = await seed_order(delivery_records, order_events, paid=True)

    response = await delivery.client.post(
        f"/api/delivery/{order_id}/appoint", json={"deliveryman_id": str(ZUEV)}, headers=tokens.manager()
    )

    assert response.status_code == 200, response.text
    assert response.json()["deliveryman"] == {"id": str(ZUEV), "name": "Зуев Андрей Сергеевич"}
    assert response.json()["status"] == "activated"
    [message] = await tap.take(1)
    event = json.loads(message.body)
    assert message.routing_key == "delivery.appointed"
    assert event["type"] == "deliveryhub.delivery.appointed"
    assert event["source"] == "/delivery"
    assert event["subject"] == str(order_id)
    assert event["data"] == {
        "order_id": str(order_id),
        "deliveryman": {"id": str(ZUEV), "name": "Зуев Андрей Сергеевич"},
        "version": 3,  # created, activated, appointed
    }

    # Another courier can be appointed instead while the delivery is still on its way; the event
    # of the re-appointment carries the later version.
    await appoint(delivery.client, tokens, order_id, KUDZH)
    shown = await delivery.client.get(f"/api/delivery/{order_id}", headers=tokens.manager())
    assert shown.json()["deliveryman"]["id"] == str(KUDZH)
    [again] = await tap.take(1)
    assert json.loads(again.body)["data"]["version"] == 4


async def test_appointing_to_a_delivery_that_is_not_activated_is_a_conflict(
    delivery: RunningDelivery, delivery_records: DeliveryRecords, order_events: OrderEvents, tokens: Tokens
) -> None:
    order_id = await seed_order(delivery_records, order_events)  # created, not paid

    response = await delivery.client.post(
        f"/api/delivery/{order_id}/appoint", json={"deliveryman_id": str(ZUEV)}, headers=tokens.manager()
    )

    assert_error(response, 409, "invalid_transition")
    unchanged = await delivery_records.get(order_id)
    assert unchanged is not None
    assert unchanged.deliveryman_id is None
    assert await delivery_records.outbox() == []  # a refused write emits nothing


async def test_appointing_an_unknown_courier_is_422(
    delivery: RunningDelivery, delivery_records: DeliveryRecords, order_events: OrderEvents, tokens: Tokens
) -> None:
    order_id = await seed_order(delivery_records, order_events, paid=True)

    response = await delivery.client.post(
        f"/api/delivery/{order_id}/appoint",
        json={"deliveryman_id": str(uuid.uuid4())},
        headers=tokens.manager(),
    )

    assert_error(response, 422, "unknown_deliveryman")


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        json.dumps({"deliveryman_id": "Зуев"}).encode(),
        json.dumps({"deliveryman_id": str(ZUEV), "note": "be quick"}).encode(),
        b'{"deliveryman_id": ',
        b"[]",
    ],
    ids=["missing", "not-a-uuid", "unknown-field", "not-json", "not-an-object"],
)
async def test_an_invalid_appoint_body_is_422(
    delivery: RunningDelivery,
    delivery_records: DeliveryRecords,
    order_events: OrderEvents,
    tokens: Tokens,
    body: bytes,
) -> None:
    order_id = await seed_order(delivery_records, order_events, paid=True)

    response = await delivery.client.post(
        f"/api/delivery/{order_id}/appoint",
        content=body,
        headers={**tokens.manager(), "Content-Type": "application/json"},
    )

    assert_error(response, 422, "validation_error")


async def test_a_body_over_the_limit_is_413(
    delivery: RunningDelivery, delivery_records: DeliveryRecords, order_events: OrderEvents, tokens: Tokens
) -> None:
    order_id = await seed_order(delivery_records, order_events, paid=True)
    padding = "x" * (delivery.settings.max_body_bytes + 1)

    response = await delivery.client.post(
        f"/api/delivery/{order_id}/appoint",
        json={"deliveryman_id": str(ZUEV), "padding": padding},
        headers=tokens.manager(),
    )

    assert_error(response, 413, "payload_too_large")
    unchanged = await delivery_records.get(order_id)
    assert unchanged is not None
    assert unchanged.deliveryman_id is None


async def test_finishing_without_a_courier_is_a_conflict(
    delivery: RunningDelivery, delivery_records: DeliveryRecords, order_events: OrderEvents, tokens: Tokens
) -> None:
    order_id = await seed_order(delivery_records, order_events, paid=True)

    response = await delivery.client.post(f"/api/delivery/{order_id}/finish", headers=tokens.manager())

    assert_error(response, 409, "invalid_transition")


async def test_the_appointed_courier_finishes_the_delivery(
    delivery: RunningDelivery,
    delivery_records: DeliveryRecords,
    order_events: OrderEvents,
    tokens: Tokens,
    amqp: Amqp,
) -> None:
    order_id = await seed_order(delivery_records, order_events, paid=True)
    await appoint(delivery.client, tokens, order_id, LAPTEV)
    tap = await amqp.tap("delivery.finished")

    response = await delivery.client.post(f"/api/delivery/{order_id}/finish", headers=tokens.courier(LAPTEV))

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "done"
    [message] = await tap.take(1)
    data = json.loads(message.body)["data"]
    assert data["order_id"] == str(order_id)
    assert data["deliveryman_id"] == str(LAPTEV)
    assert datetime.fromisoformat(data["finished_at"]).tzinfo is not None
    again = await delivery.client.post(f"/api/delivery/{order_id}/finish", headers=tokens.courier(LAPTEV))
    assert_error(again, 409, "invalid_transition")


async def test_a_manager_can_finish_on_behalf_of_the_courier(
    delivery: RunningDelivery, delivery_records: DeliveryRecords, order_events: OrderEvents, tokens: Tokens
) -> None:
    order_id = await seed_order(delivery_records, order_events, paid=True)
    await appoint(delivery.client, tokens, order_id, KUDZH)

    response = await delivery.client.post(f"/api/delivery/{order_id}/finish", headers=tokens.manager())

    assert response.status_code == 200
    assert response.json()["status"] == "done"


async def test_a_manager_cancels_a_delivery_but_not_a_finished_one(
    delivery: RunningDelivery,
    delivery_records: DeliveryRecords,
    order_events: OrderEvents,
    tokens: Tokens,
    amqp: Amqp,
) -> None:
    tap = await amqp.tap("delivery.canceled")
    to_cancel = await seed_order(delivery_records, order_events, paid=True)
    finished = await seed_order(delivery_records, order_events, paid=True)
    await appoint(delivery.client, tokens, finished, ZUEV)
    assert (
        await delivery.client.post(f"/api/delivery/{finished}/finish", headers=tokens.manager())
    ).is_success

    canceled = await delivery.client.post(f"/api/delivery/{to_cancel}/cancel", headers=tokens.manager())

    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    [message] = await tap.take(1)
    assert json.loads(message.body)["data"]["order_id"] == str(to_cancel)
    refused = await delivery.client.post(f"/api/delivery/{finished}/cancel", headers=tokens.manager())
    assert_error(refused, 409, "invalid_transition")
    twice = await delivery.client.post(f"/api/delivery/{to_cancel}/cancel", headers=tokens.manager())
    assert_error(twice, 409, "invalid_transition")
    still_done = await delivery_records.get(finished)
    assert still_done is not None
    assert still_done.status == "done"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/delivery/"),
        ("GET", f"/api/delivery/{SOME_ORDER}"),
        ("POST", f"/api/delivery/{SOME_ORDER}/finish"),
        ("POST", f"/api/delivery/{SOME_ORDER}/cancel"),
        ("GET", "/api/deliverymen"),
    ],
)
async def test_a_caller_without_a_valid_token_is_401(
    delivery: RunningDelivery, tokens: Tokens, method: str, path: str
) -> None:
    manager = Principal(subject=uuid.uuid4(), role=Role.MANAGER)
    stranger = TokenIssuer(generate_key_pair().private_pem, issuer="deliveryhub", audience="deliveryhub-api")
    forged = stranger.issue(manager)
    expired = tokens.issuer.issue(manager, lifetime=timedelta(seconds=-30))

    for headers in (
        {},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": f"Bearer {forged}"},
        {"Authorization": f"Bearer {expired}"},
        {"Authorization": f"Basic {expired}"},
    ):
        response = await delivery.client.request(method, path, headers=headers)
        assert_error(response, 401, "unauthenticated")
        assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_a_customer_is_forbidden_everywhere(
    delivery: RunningDelivery, delivery_records: DeliveryRecords, order_events: OrderEvents, tokens: Tokens
) -> None:
    order_id = await seed_order(delivery_records, order_events, paid=True)
    customer = tokens.customer()

    for method, path, body in [
        ("GET", "/api/delivery/", None),
        ("GET", f"/api/delivery/{order_id}", None),
        ("POST", f"/api/delivery/{order_id}/appoint", {"deliveryman_id": str(ZUEV)}),
        ("POST", f"/api/delivery/{order_id}/finish", None),
        ("POST", f"/api/delivery/{order_id}/cancel", None),
        ("GET", "/api/deliverymen", None),
    ]:
        response = await delivery.client.request(method, path, json=body, headers=customer)
        assert_error(response, 403, "forbidden")


async def test_a_courier_sees_and_finishes_only_their_own_deliveries(
    delivery: RunningDelivery, delivery_records: DeliveryRecords, order_events: OrderEvents, tokens: Tokens
) -> None:
    own = await seed_order(delivery_records, order_events, paid=True)
    anothers = await seed_order(delivery_records, order_events, paid=True)
    unappointed = await seed_order(delivery_records, order_events, paid=True)
    await appoint(delivery.client, tokens, own, LAPTEV)
    await appoint(delivery.client, tokens, anothers, ZUEV)
    laptev = tokens.courier(LAPTEV)

    listed = await delivery.client.get("/api/delivery/", headers=laptev)
    assert [item["id"] for item in listed.json()] == [str(own)]
    asked_for_zuev = await delivery.client.get(
        "/api/delivery/", params={"deliveryman_id": str(ZUEV)}, headers=laptev
    )
    assert asked_for_zuev.json() == []
    assert (await delivery.client.get(f"/api/delivery/{own}", headers=laptev)).status_code == 200
    for other in (anothers, unappointed):
        assert_error(
            await delivery.client.get(f"/api/delivery/{other}", headers=laptev), 404, "delivery_not_found"
        )
        finish = await delivery.client.post(f"/api/delivery/{other}/finish", headers=laptev)
        assert_error(finish, 404, "delivery_not_found")
    for action, body in (("appoint", {"deliveryman_id": str(LAPTEV)}), ("cancel", None)):
        response = await delivery.client.post(f"/api/delivery/{own}/{action}", json=body, headers=laptev)
        assert_error(response, 403, "forbidden")
    assert_error(await delivery.client.get("/api/deliverymen", headers=laptev), 403, "forbidden")

    finished = await delivery.client.post(f"/api/delivery/{own}/finish", headers=laptev)
    assert finished.status_code == 200
    still = await delivery_records.get(anothers)
    assert still is not None
    assert still.status == "activated"


async def test_a_manager_sees_the_three_couriers(delivery: RunningDelivery, tokens: Tokens) -> None:
    response = await delivery.client.get("/api/deliverymen", headers=tokens.manager())

    assert response.status_code == 200
    assert sorted(response.json(), key=lambda man: man["id"]) == sorted(
        [
            {"id": str(LAPTEV), "name": "Лаптев Иван Алексаендрович", "open_deliveries": 0},
            {"id": str(ZUEV), "name": "Зуев Андрей Сергеевич", "open_deliveries": 0},
            {"id": str(KUDZH), "name": "Кудж Станислав Алексеевич", "open_deliveries": 0},
        ],
        key=lambda man: str(man["id"]),
    )


async def test_the_running_service_is_ready(delivery: RunningDelivery) -> None:
    live = await delivery.client.get("/health/live")
    ready = await delivery.client.get("/health/ready")

    assert live.status_code == 200
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["database"]["status"] == "ok"
    assert ready.json()["checks"]["broker"]["status"] == "ok"


async def test_with_the_database_down_the_api_answers_503_fast(
    start_delivery: StartDelivery, tokens: Tokens
) -> None:
    down = await start_delivery(database_url=unused_url("postgresql"))
    started = time.perf_counter()

    response = await down.client.get("/api/delivery/", headers=tokens.manager())

    assert_error(response, 503, "unavailable")
    assert response.headers["Retry-After"] == "1"
    assert time.perf_counter() - started < 3
    ready = await down.client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"]["status"] == "failing"


async def test_with_the_broker_down_a_write_succeeds_and_its_event_waits_in_the_outbox(
    start_delivery: StartDelivery,
    delivery_records: DeliveryRecords,
    order_events: OrderEvents,
    tokens: Tokens,
) -> None:
    order_id = await seed_order(delivery_records, order_events, paid=True)
    away = await start_delivery(amqp_url=unused_url("amqp"))

    response = await away.client.post(
        f"/api/delivery/{order_id}/appoint", json={"deliveryman_id": str(ZUEV)}, headers=tokens.manager()
    )

    assert response.status_code == 200, response.text
    [waiting] = await delivery_records.outbox()
    assert waiting.routing_key == "delivery.appointed"
    assert waiting.published_at is None
    assert waiting.attempts == 0  # the broker's absence is not counted against the event
    ready = await away.client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["broker"]["status"] == "failing"
