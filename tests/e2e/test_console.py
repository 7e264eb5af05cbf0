"""The web console in a real browser, against all three services running as processes."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from deliveryhub_kit.identity import Role
from tests.support.console import Console
from tests.support.running_system import LAPTEV, ZUEV, System
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


def place_order_by_api(system: System, customer: dict[str, str], *, pay: bool) -> str:
    body = {
        "address": "Невский проспект, 28",
        "date": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        "items": [{"name": "Книга", "quantity": 1, "price": "990.00"}],
    }
    response = system.orders.post("/api/orders", json=body, headers=customer)
    assert response.status_code == 201, response.text
    order_id: str = response.json()["id"]
    if pay:
        assert system.orders.post(f"/api/orders/{order_id}/pay", headers=customer).status_code == 200
    manager = system.auth(Role.MANAGER)
    eventually(
        lambda: (
            True
            if system.delivery.get(f"/api/delivery/{order_id}", headers=manager).status_code == 200
            else None
        ),
        what=f"the delivery of {order_id}",
    )
    return order_id


def test_the_whole_story_in_the_browser(console: Console, system: System) -> None:
    email = f"buyer-{uuid.uuid4().hex[:8]}@example.com"

    customer = console.open()
    customer.goto("/register")
    customer.get_by_label("Your name").fill("Ольга Новикова")
    customer.get_by_label("E-mail").fill(email)
    customer.get_by_label("Password", exact=True).fill("a-long-password")
    customer.get_by_label("Password again").fill("a-long-password")
    customer.get_by_role("button", name="Create account").click()
    expect(customer.get_by_role("heading", name="My orders")).to_be_visible()

    customer.get_by_role("link", name="New order").first.click()
    customer.get_by_label("Delivery address").fill("Садовая улица, 5, кв. 12")
    rows = customer.locator("[data-item]")
    rows.nth(0).get_by_label("Item name").fill("Кофе")
    rows.nth(0).get_by_label("Quantity").fill("2")
    rows.nth(0).get_by_label("Price").fill("350.50")
    customer.get_by_role("button", name="Add an item").click()
    rows.nth(1).get_by_label("Item name").fill("Печенье")
    rows.nth(1).get_by_label("Price").fill("99.90")
    expect(customer.locator("[data-total]")).to_have_text(re.compile(r"800[.,]90"))
    customer.get_by_role("button", name="Place order").click()

    card = customer.locator("li.order").first
    expect(card.locator(".status")).to_have_text("created")
    order_id = (card.get_attribute("data-order-id") or "").strip()
    assert order_id
    card.get_by_role("button", name=re.compile("^Pay")).click()
    card = customer.locator(f"#order-{order_id}")
    expect(card.locator(".status")).to_have_text("paid")
    # From here on the customer's page is not reloaded: a mark set now must survive to the end.
    customer.evaluate("window.stillTheSamePage = true")

    manager = console.sign_in("manager@deliveryhub.example")
    manager.get_by_role("link", name="Activated").click()
    delivery = manager.locator(f"#delivery-{order_id}")
    expect(delivery.locator(".status")).to_have_text("activated")
    delivery.get_by_label("Courier").select_option(value=str(LAPTEV))
    delivery.get_by_role("button", name="Appoint").click()
    delivery = manager.locator(f"#delivery-{order_id}")
    expect(delivery.locator(".courier")).to_have_text("Лаптев Иван Алексаендрович")
    expect(delivery.get_by_role("status")).to_have_text("Courier appointed.")
    console.save(manager, "role-manager")

    expect(card.locator(".courier")).to_have_text("Лаптев Иван Алексаендрович", timeout=20_000)

    courier = console.sign_in("laptev@deliveryhub.example", phone=True)
    expect(courier.get_by_role("heading", name="My deliveries")).to_be_visible()
    job = courier.locator(f"#delivery-{order_id}")
    expect(job).to_contain_text("Садовая улица, 5, кв. 12")
    console.save(courier, "role-courier")
    job.get_by_role("button", name="Mark delivered").click()
    expect(courier.locator(f"#delivery-{order_id} .status")).to_have_text("done")

    expect(card.locator(".status")).to_have_text("delivered", timeout=20_000)
    assert customer.evaluate("window.stillTheSamePage") is True
    console.save(customer, "role-customer")


def test_a_courier_cannot_see_another_couriers_delivery(console: Console, system: System) -> None:
    customer = system.auth(Role.CUSTOMER)
    order_id = place_order_by_api(system, customer, pay=True)
    manager = system.auth(Role.MANAGER)

    def activated() -> bool | None:
        response = system.delivery.get(f"/api/delivery/{order_id}", headers=manager)
        return True if response.json()["status"] == "activated" else None

    eventually(activated, what="the delivery to be activated")
    appointed = system.delivery.post(
        f"/api/delivery/{order_id}/appoint",
        json={"deliveryman_id": str(LAPTEV)},
        headers=manager,
    )
    assert appointed.status_code == 200

    zuev = console.sign_in("zuev@deliveryhub.example")
    expect(zuev.locator(f"#delivery-{order_id}")).to_have_count(0)
    response = zuev.goto(f"/deliveries/{order_id}")
    assert response is not None
    assert response.status == 404
    expect(zuev.get_by_role("heading", name="Not found")).to_be_visible()
    expect(zuev.locator("body")).not_to_contain_text("Невский проспект")


def test_a_customer_cannot_open_another_customers_order(console: Console, system: System) -> None:
    order_id = place_order_by_api(system, system.auth(Role.CUSTOMER), pay=False)

    stranger = console.sign_in("customer@deliveryhub.example")
    response = stranger.goto(f"/orders/{order_id}")
    assert response is not None
    assert response.status == 404
    expect(stranger.get_by_role("alert")).to_have_text("That does not exist, or it is not yours to see.")
    expect(stranger.locator("body")).not_to_contain_text("Невский проспект")


def test_a_forbidden_action_shows_why_next_to_it(console: Console, system: System) -> None:
    customer = system.auth(Role.CUSTOMER)
    order_id = place_order_by_api(system, customer, pay=True)
    manager_token = system.auth(Role.MANAGER)

    def delivery_is(status: str) -> bool | None:
        response = system.delivery.get(f"/api/delivery/{order_id}", headers=manager_token)
        return True if response.json()["status"] == status else None

    eventually(lambda: delivery_is("activated"), what="the delivery to be activated")

    manager = console.sign_in("manager@deliveryhub.example")
    manager.goto("/board?status=activated")
    delivery = manager.locator(f"#delivery-{order_id}")
    # While the manager is choosing a courier, the customer cancels the order.
    delivery.get_by_label("Courier").select_option(value=str(ZUEV))
    # The order is paid: its cancel is asked of the delivery service (202), which cancels it.
    assert system.orders.post(f"/api/orders/{order_id}/cancel", headers=customer).status_code == 202
    eventually(lambda: delivery_is("canceled"), what="the delivery to be canceled")
    delivery.get_by_role("button", name="Appoint").click()

    # The board of activated deliveries no longer holds it, so the message names it at the top.
    expect(manager.get_by_role("alert")).to_have_text(
        f"Delivery {order_id[:8]}: Not possible now: a courier can be appointed only to an activated "
        "delivery; this one is canceled."
    )
    expect(manager.locator(f"#delivery-{order_id}")).to_have_count(0)


def test_a_customer_sees_a_paid_orders_cancel_requested_and_then_its_outcome(
    console: Console, system: System
) -> None:
    # The demo customer's own order, paid, with its delivery activated.
    demo_customer = uuid.uuid5(uuid.NAMESPACE_URL, "customer@deliveryhub.example")
    order_id = place_order_by_api(system, system.auth(Role.CUSTOMER, subject=demo_customer), pay=True)

    customer = console.sign_in("customer@deliveryhub.example")
    customer.goto(f"/orders#order-{order_id}")
    card = customer.locator(f"#order-{order_id}")
    expect(card.locator(".status")).to_have_text("paid")
    card.get_by_role("button", name="Cancel order").click()

    card = customer.locator(f"#order-{order_id}")
    expect(card.get_by_role("status")).to_have_text(
        "Cancel requested: the order is canceled unless the parcel has been handed over already."
    )
    # The delivery service answers; the page, not reloaded, follows.
    expect(card.locator(".status")).to_have_text("canceled", timeout=20_000)


def test_a_wrong_password_is_refused_in_plain_words(console: Console) -> None:
    page = console.open()
    page.goto("/login")
    page.get_by_label("E-mail").fill("manager@deliveryhub.example")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("The e-mail or the password is not right.")
