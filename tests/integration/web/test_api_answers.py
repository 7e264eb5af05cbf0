"""What the console shows when an API refuses an action, or does not answer at all."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import select

from deliveryhub_contracts.events import OrderCanceled
from deliveryhub_delivery.models import OutboxMessage
from deliveryhub_delivery.service import delivery_service
from deliveryhub_kit.identity import Role
from tests.support.delivery import RunningDelivery, StartDelivery
from tests.support.events import OrderEvents
from tests.support.ports import unused_url
from tests.support.web import LAPTEV, Browser, RunningWeb, StartWeb, csrf_token_in, text_of

pytestmark = pytest.mark.integration

ORDER_ID = uuid.UUID("0b7c2f52-3f0e-4a39-9d0e-6f1d2a4b5c6d")
DELIVERY_DOWN = "The delivery service is not answering right now. Your data is safe; try again in a moment."


def order(order_id: uuid.UUID, status: str = "created") -> dict[str, object]:
    """An order as the orders API shows it."""
    return {
        "id": str(order_id),
        "customer_id": str(uuid.uuid4()),
        "address": "Москва, Тверская улица, 7",
        "date": "2030-05-17T14:30:00Z",
        "items": [{"name": "Чай", "quantity": 2, "price": 150.5}],
        "total": 301.0,
        "status": status,
        "deliveryman": None,
        "created_at": "2030-05-10T09:00:00Z",
        "updated_at": "2030-05-10T09:00:00Z",
    }


async def act(browser: Browser, path: str, page: str, **fields: str) -> httpx.Response:
    """Press a button of `page` that posts to `path`."""
    return await browser.submit(path, {"csrf_token": await browser.csrf_token(page), "next": page, **fields})


async def test_a_page_whose_api_is_down_shows_a_banner_with_503(start_web: StartWeb) -> None:
    web = await start_web(delivery_url=unused_url("http"))
    browser, _ = await web.signed_in(Role.MANAGER)

    response = await browser.get("/board")

    assert response.status_code == 503
    page = text_of(response.text)
    assert "Temporarily unavailable" in page
    assert DELIVERY_DOWN in page
    assert "Traceback" not in response.text


async def test_an_action_whose_api_is_down_shows_the_banner_and_the_rest_keeps_working(
    start_web: StartWeb,
) -> None:
    web = await start_web(delivery_url=unused_url("http"))
    browser, _ = await web.signed_in(Role.MANAGER)
    token = await browser.csrf_token("/orders")

    response = await browser.submit(
        f"/board/{ORDER_ID}/appoint", {"csrf_token": token, "deliveryman_id": str(LAPTEV)}
    )

    assert response.status_code == 503
    assert DELIVERY_DOWN in text_of(response.text)
    assert (await browser.get("/orders")).status_code == 200


async def test_a_live_refresh_while_the_api_is_down_gets_a_short_notice(start_web: StartWeb) -> None:
    web = await start_web(delivery_url=unused_url("http"))
    browser, _ = await web.signed_in(Role.COURIER)

    response = await browser.get("/deliveries?fragment=1")

    assert response.status_code == 503
    assert text_of(response.text) == DELIVERY_DOWN
    assert "<html" not in response.text


async def test_signing_in_while_the_consoles_database_is_down_shows_a_banner_with_503(
    start_web: StartWeb,
) -> None:
    web = await start_web(database_url=unused_url("postgresql"))
    browser = await web.browser()

    response = await browser.sign_in("anna@example.com")

    assert response.status_code == 503
    assert "The console cannot reach its database right now; try again in a moment." in text_of(response.text)
    assert "Traceback" not in response.text


async def seed_paid_orders(delivery: RunningDelivery, *order_ids: uuid.UUID) -> None:
    """Deliveries as the order events make them: created, then activated by the payment."""
    events = OrderEvents()
    async with delivery.runtime.database.transaction() as session:
        service = delivery_service(session)
        for order_id in order_ids:
            await service.on_order_created(events.created_payload(order_id, address=f"Адрес {order_id}"))
            await service.on_order_paid(events.paid_payload(order_id, address=f"Адрес {order_id}"))


@pytest.fixture
async def delivery(start_delivery: StartDelivery) -> RunningDelivery:
    return await start_delivery()


async def test_appointing_to_a_delivery_canceled_meanwhile_shows_why_next_to_it(
    start_web: StartWeb, delivery: RunningDelivery
) -> None:
    canceled_meanwhile, other = uuid.uuid4(), uuid.uuid4()
    await seed_paid_orders(delivery, canceled_meanwhile, other)
    web = await start_web(delivery_transport=httpx.ASGITransport(app=delivery.app))
    browser, _ = await web.signed_in(Role.MANAGER)
    board = await browser.get("/board?status=all")
    assert board.status_code == 200
    assert "Appoint" in text_of(board.text, f"delivery-{canceled_meanwhile}")
    async with delivery.runtime.database.transaction() as session:  # the customer cancels the order
        await delivery_service(session).on_order_canceled(
            OrderCanceled(order_id=canceled_meanwhile, version=3, reason="changed my mind")
        )

    response = await browser.submit(
        f"/board/{canceled_meanwhile}/appoint",
        {"csrf_token": csrf_token_in(board.text), "deliveryman_id": str(LAPTEV), "next": "/board?status=all"},
    )

    assert response.status_code == 303
    next_page = await browser.get(response.headers["location"])
    assert next_page.status_code == 200
    assert (
        "Not possible now: a courier can be appointed only to an activated delivery; this one is canceled."
        in text_of(next_page.text, f"delivery-{canceled_meanwhile}")
    )
    assert "Not possible now" not in text_of(next_page.text, f"delivery-{other}")
    assert "Not possible now" not in text_of((await browser.get("/board?status=all")).text)  # said once


async def test_appointing_a_courier_shows_the_courier_on_the_board(
    start_web: StartWeb, delivery: RunningDelivery
) -> None:
    order_id = uuid.uuid4()
    await seed_paid_orders(delivery, order_id)
    web = await start_web(delivery_transport=httpx.ASGITransport(app=delivery.app))
    browser, _ = await web.signed_in(Role.MANAGER)

    response = await act(
        browser, f"/board/{order_id}/appoint", "/board?status=activated", deliveryman_id=str(LAPTEV)
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/board?status=activated"
    card = text_of((await browser.get(response.headers["location"])).text, f"delivery-{order_id}")
    assert "Courier appointed." in card
    assert "Лаптев Иван Алексаендрович" in card


async def test_appointing_several_at_once_calls_the_api_for_each_and_explains_each_refusal(
    start_web: StartWeb, delivery: RunningDelivery
) -> None:
    first, second, canceled_meanwhile = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await seed_paid_orders(delivery, first, second, canceled_meanwhile)
    web = await start_web(delivery_transport=httpx.ASGITransport(app=delivery.app))
    browser, _ = await web.signed_in(Role.MANAGER)
    board = await browser.get("/board")
    for delivery_id in (first, second, canceled_meanwhile):
        assert "Select delivery" in board.text.split(f'id="delivery-{delivery_id}"')[1].split("</li>")[0]
    async with delivery.runtime.database.transaction() as session:
        await delivery_service(session).on_order_canceled(
            OrderCanceled(order_id=canceled_meanwhile, version=3, reason="changed my mind")
        )

    response = await browser.submit(
        "/board/appoint",
        {
            "csrf_token": csrf_token_in(board.text),
            "deliveryman_id": str(LAPTEV),
            "next": "/board?status=all",
            "delivery_id": [str(first), str(canceled_meanwhile), str(second), str(first)],
        },
    )

    assert response.status_code == 303
    page = await browser.get(response.headers["location"])
    assert "2 of 3 appointed. 1 refused: see why next to it." in text_of(page.text)
    assert "this one is canceled" in text_of(page.text, f"delivery-{canceled_meanwhile}")
    for appointed in (first, second):
        assert "Лаптев Иван Алексаендрович" in text_of(page.text, f"delivery-{appointed}")
        assert "Not possible" not in text_of(page.text, f"delivery-{appointed}")
    appointments = [call for call in web.delivery.calls if call.path.endswith("/appoint")]
    assert appointments == []  # the real API took them, not the stand-in
    async with delivery.runtime.database.transaction() as session:
        keys = (await session.scalars(select(OutboxMessage.routing_key))).all()
    assert keys.count("delivery.appointed") == 2  # one event for each appointment


@pytest.mark.parametrize(
    "fields",
    [{}, {"delivery_id": ["not-a-delivery" * 20]}, {"delivery_id": [str(uuid.uuid4()) for _ in range(101)]}],
    ids=["none-selected", "not-an-id", "too-many"],
)
async def test_a_bulk_appointment_of_nothing_sensible_is_refused_in_plain_words(
    web: RunningWeb, fields: dict[str, list[str]]
) -> None:
    browser, _ = await web.signed_in(Role.MANAGER)
    response = await act(browser, "/board/appoint", "/board", deliveryman_id=str(LAPTEV), **fields)  # type: ignore[arg-type]
    assert response.status_code == 303
    page = text_of((await browser.get(response.headers["location"])).text)
    assert "Select" in page or "not a delivery" in page
    assert [call for call in web.delivery.writes if call.path.endswith("/appoint")] == []


async def test_paying_an_order_that_cannot_be_paid_shows_why_next_to_it(web: RunningWeb) -> None:
    detail = "only a created order can be paid; this one is canceled"
    web.orders.answer("GET", "/api/orders", body=[order(ORDER_ID, "canceled")])
    web.orders.answer(
        "POST", f"/api/orders/{ORDER_ID}/pay", 409, {"error": "invalid_transition", "detail": detail}
    )
    browser, _ = await web.signed_in(Role.CUSTOMER)

    response = await act(browser, f"/orders/{ORDER_ID}/pay", "/orders")

    assert response.status_code == 303
    card = text_of((await browser.get(response.headers["location"])).text, f"order-{ORDER_ID}")
    assert f"Not possible now: {detail}." in card


async def test_an_order_the_api_does_not_show_is_a_404_page(web: RunningWeb) -> None:
    browser, _ = await web.signed_in(Role.CUSTOMER)

    response = await browser.get(f"/orders/{ORDER_ID}")

    assert response.status_code == 404
    assert "That does not exist, or it is not yours to see." in text_of(response.text)


async def test_a_refused_new_order_is_shown_again_with_what_to_check(web: RunningWeb) -> None:
    detail = "items.0.price: Input should be greater than or equal to 0"
    web.orders.answer("POST", "/api/orders", 422, {"error": "validation_error", "detail": detail})
    browser, _ = await web.signed_in(Role.CUSTOMER)

    response = await act(
        browser,
        "/orders",
        "/orders/new",
        address="Москва, Тверская улица, 7",
        date="2030-05-17T14:30",
        timezone_offset="-180",
        item_name="Чай",
        item_quantity="2",
        item_price="-1",
    )

    assert response.status_code == 422
    assert f"Please check what you entered: {detail}." in text_of(response.text)
    assert "Москва, Тверская улица, 7" in response.text  # what was typed is kept


async def test_when_an_api_no_longer_accepts_the_user_the_console_asks_to_sign_in_again(
    web: RunningWeb,
) -> None:
    web.orders.answer(
        "GET", "/api/orders", 401, {"error": "unauthenticated", "detail": "the token has expired"}
    )
    browser, _ = await web.signed_in(Role.CUSTOMER)

    page = await browser.visit("/orders")

    assert page.status_code == 200
    assert page.url.path == "/login"
    assert "Sign in" in text_of(page.text)
    assert await browser.where_home_is() == "/login"
