"""The pages each role works with, as the APIs' answers make them, and the forms that change them."""

from __future__ import annotations

import uuid

import httpx
import pytest

from deliveryhub_kit.identity import Principal, Role
from tests.support.ports import unused_url
from tests.support.web import LAPTEV, Browser, RunningWeb, StartWeb, text_of

pytestmark = pytest.mark.integration

ORDER_ID = uuid.UUID("0b7c2f52-3f0e-4a39-9d0e-6f1d2a4b5c6d")
ADDRESS = "Москва, Тверская улица, 7"


def an_order(order_id: uuid.UUID = ORDER_ID, status: str = "created") -> dict[str, object]:
    """An order as the orders API shows it."""
    return {
        "id": str(order_id),
        "customer_id": str(uuid.uuid4()),
        "address": ADDRESS,
        "date": "2030-05-17T14:30:00Z",
        "items": [
            {"name": "Чай", "quantity": 2, "price": 150.5},
            {"name": "Сахар", "quantity": 1, "price": 80},
        ],
        "total": 381.0,
        "status": status,
        "deliveryman": None,
        "created_at": "2030-05-10T09:00:00Z",
        "updated_at": "2030-05-10T09:00:00Z",
    }


def a_delivery(delivery_id: uuid.UUID = ORDER_ID, status: str = "activated") -> dict[str, object]:
    """A delivery as the delivery API shows it, appointed to Лаптев."""
    return {
        "id": str(delivery_id),
        "address": ADDRESS,
        "date": "2030-05-17T14:30:00Z",
        "status": status,
        "deliveryman": {"id": str(LAPTEV), "name": "Лаптев Иван Алексаендрович"},
    }


async def place_order(browser: Browser, **fields: str | list[str]) -> httpx.Response:
    form: dict[str, str | list[str]] = {
        "csrf_token": await browser.csrf_token("/orders/new"),
        "idempotency_key": "5a1d0c2e-7d53-4c44-9f39-3f1e3ad9e0a1",
        "address": ADDRESS,
        "date": "2030-05-17T14:30",
        "timezone_offset": "-180",
        "item_name": ["Чай", "Сахар"],
        "item_quantity": ["2", "1"],
        "item_price": ["150,50", "80"],
    }
    return await browser.submit("/orders", {**form, **fields})


async def test_a_customer_sees_their_orders_with_total_and_a_pay_button(web: RunningWeb) -> None:
    web.orders.answer("GET", "/api/orders", body=[an_order()])
    browser, customer = await web.signed_in(Role.CUSTOMER)

    page = await browser.get("/orders")

    assert page.status_code == 200
    card = text_of(page.text, f"order-{ORDER_ID}")
    assert ADDRESS in card
    assert "381.00" in card
    assert "2 × Чай, 1 × Сахар" in card
    assert "Pay 381.00" in card
    [call] = web.orders.calls
    assert call.principal == Principal(subject=customer.id, role=Role.CUSTOMER)


async def test_an_order_page_shows_its_lines_and_total(web: RunningWeb) -> None:
    web.orders.answer("GET", f"/api/orders/{ORDER_ID}", body=an_order(status="paid"))
    browser, _ = await web.signed_in(Role.CUSTOMER)

    page = await browser.get(f"/orders/{ORDER_ID}")

    assert page.status_code == 200
    card = text_of(page.text, f"order-{ORDER_ID}")
    assert "Чай 2 150.50 301.00" in card
    assert "Total 381.00" in card
    assert "not appointed yet" in card
    assert "Pay" not in card


async def test_placing_an_order_sends_it_with_the_browsers_time_zone_and_says_it_is_placed(
    web: RunningWeb,
) -> None:
    new_id = uuid.uuid4()
    web.orders.answer("POST", "/api/orders", 201, an_order(new_id))
    web.orders.answer("GET", "/api/orders", body=[an_order(new_id)])
    browser, _ = await web.signed_in(Role.CUSTOMER)

    response = await place_order(browser)

    assert response.status_code == 303
    assert response.headers["location"] == f"/orders#order-{new_id}"
    [call] = web.orders.writes
    assert call.body == {
        "address": ADDRESS,
        "date": "2030-05-17T14:30:00+03:00",
        "items": [
            {"name": "Чай", "quantity": 2, "price": "150.50"},
            {"name": "Сахар", "quantity": 1, "price": "80"},
        ],
    }
    assert call.headers["idempotency-key"] == "5a1d0c2e-7d53-4c44-9f39-3f1e3ad9e0a1"
    page = await browser.get(response.headers["location"])
    assert "Order placed." in text_of(page.text, f"order-{new_id}")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"item_quantity": ["two", "1"]}, "the quantity of Чай must be a whole number"),
        ({"date": "tomorrow"}, "choose a delivery date and time"),
        ({"timezone_offset": "9999"}, "the time zone is not valid"),
    ],
    ids=["quantity", "date", "time zone"],
)
async def test_a_new_order_that_cannot_be_read_is_shown_again_and_sent_nowhere(
    web: RunningWeb, fields: dict[str, str | list[str]], message: str
) -> None:
    browser, _ = await web.signed_in(Role.CUSTOMER)

    response = await place_order(browser, **fields)

    assert response.status_code == 422
    assert f"Please check what you entered: {message}." in text_of(response.text)
    assert ADDRESS in response.text
    assert web.orders.writes == []


async def test_a_courier_sees_what_to_deliver_and_what_is_done(web: RunningWeb) -> None:
    done = uuid.uuid4()
    by_status = {"activated": [a_delivery()], "done": [a_delivery(done, "done")]}

    def deliveries(request: httpx.Request) -> httpx.Response:
        found = by_status.get(request.url.params.get("status", ""), [])
        return httpx.Response(200, json=found, headers={"X-Total-Count": str(len(found))})

    web.delivery.answer_with("GET", "/api/delivery/", deliveries)
    browser, courier = await web.signed_in(Role.COURIER)

    page = await browser.get("/deliveries")

    assert page.status_code == 200
    assert "Mark delivered" in text_of(page.text, f"delivery-{ORDER_ID}")
    assert "Mark delivered" not in text_of(page.text, f"delivery-{done}")
    assert "1 to deliver" in text_of(page.text)
    assert len(web.delivery.calls) == 2  # what to deliver, and what is done
    for call in web.delivery.calls:
        assert call.principal == Principal(subject=courier.id, role=Role.COURIER, deliveryman_id=LAPTEV)


async def test_a_courier_opens_one_delivery_and_marks_it_delivered(web: RunningWeb) -> None:
    web.delivery.answer("GET", f"/api/delivery/{ORDER_ID}", body=a_delivery())
    browser, _ = await web.signed_in(Role.COURIER)

    page = await browser.get(f"/deliveries/{ORDER_ID}")
    assert page.status_code == 200
    assert "Лаптев Иван Алексаендрович" in text_of(page.text, f"delivery-{ORDER_ID}")
    response = await browser.submit(
        f"/deliveries/{ORDER_ID}/finish",
        {
            "csrf_token": await browser.csrf_token(f"/deliveries/{ORDER_ID}"),
            "next": f"/deliveries/{ORDER_ID}",
        },
    )

    assert response.status_code == 303
    assert [call.path for call in web.delivery.writes] == [f"/api/delivery/{ORDER_ID}/finish"]
    page = await browser.get(response.headers["location"])
    assert "Marked delivered." in text_of(page.text, f"delivery-{ORDER_ID}")


async def test_a_live_refresh_after_the_session_ended_asks_the_page_to_sign_in(web: RunningWeb) -> None:
    browser = await web.browser()

    response = await browser.get("/orders?fragment=1")

    assert response.status_code == 401
    assert response.headers["X-Sign-In"] == "/login"


async def test_an_address_that_names_no_order_is_a_422_page(web: RunningWeb) -> None:
    browser, _ = await web.signed_in(Role.CUSTOMER)

    response = await browser.get("/orders/not-an-order-id")

    assert response.status_code == 422
    assert "The address or the form was not valid." in text_of(response.text)
    assert web.orders.calls == []


async def test_an_unknown_page_is_a_404_page(web: RunningWeb) -> None:
    response = await (await web.browser()).get("/no-such-page")

    assert response.status_code == 404
    assert "There is no such page." in text_of(response.text)


async def test_the_console_starts_while_its_database_is_down_and_is_not_ready(start_web: StartWeb) -> None:
    web = await start_web(database_url=unused_url("postgresql"), demo_accounts=True)
    browser = await web.browser()

    assert (await browser.get("/health/live")).status_code == 200
    ready = await browser.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"]["status"] == "failing"
    assert (await browser.get("/login")).status_code == 200


async def test_the_console_is_ready_on_its_migrated_database(web: RunningWeb) -> None:
    ready = await (await web.browser()).get("/health/ready")

    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ok"


async def test_a_paid_orders_cancel_says_it_is_requested_and_the_card_shows_it(web: RunningWeb) -> None:
    requested = {**an_order(status="canceling"), "cancel_requested_at": "2030-05-11T10:00:00Z"}
    web.orders.answer("POST", f"/api/orders/{ORDER_ID}/cancel", 202, requested)
    web.orders.answer("GET", "/api/orders", body=[requested])
    browser, _ = await web.signed_in(Role.CUSTOMER)

    response = await browser.submit(
        f"/orders/{ORDER_ID}/cancel", {"csrf_token": await browser.csrf_token("/orders"), "next": "/orders"}
    )

    assert response.status_code == 303
    card = text_of((await browser.get(response.headers["location"])).text, f"order-{ORDER_ID}")
    assert "Cancel requested: the order is canceled unless the parcel has been handed over already." in card
    assert "cancel requested" in card
    assert "Cancel order" not in card


async def test_an_unpaid_orders_cancel_says_it_is_canceled(web: RunningWeb) -> None:
    web.orders.answer("POST", f"/api/orders/{ORDER_ID}/cancel", 200, an_order(status="canceled"))
    web.orders.answer("GET", "/api/orders", body=[an_order(status="canceled")])
    browser, _ = await web.signed_in(Role.CUSTOMER)

    response = await browser.submit(
        f"/orders/{ORDER_ID}/cancel", {"csrf_token": await browser.csrf_token("/orders"), "next": "/orders"}
    )

    card = text_of((await browser.get(response.headers["location"])).text, f"order-{ORDER_ID}")
    assert "Order canceled." in card


@pytest.mark.parametrize("page", ["/orders", f"/orders/{ORDER_ID}"])
async def test_a_cancel_that_came_too_late_is_shown_with_the_delivery(web: RunningWeb, page: str) -> None:
    delivered = {
        **an_order(status="delivered"),
        "cancel_requested_at": "2030-05-11T10:00:00Z",
        "cancel_refused": "too late: delivered at 2030-05-11 09:58 UTC",
    }
    web.orders.answer("GET", "/api/orders", body=[delivered])
    web.orders.answer("GET", f"/api/orders/{ORDER_ID}", body=delivered)
    browser, _ = await web.signed_in(Role.CUSTOMER)

    card = text_of((await browser.get(page)).text, f"order-{ORDER_ID}")

    assert "Cancel refused, too late: delivered at 2030-05-11 09:58 UTC." in card
    assert "delivered" in card
