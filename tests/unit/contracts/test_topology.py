"""Broker names, with and without a prefix shared by one system."""

from __future__ import annotations

from deliveryhub_contracts.topology import (
    DELIVERY_ORDER_EVENTS,
    ORDERS_DELIVERY_EVENTS,
    Names,
    legacy_queues,
)


def test_names_without_a_prefix_are_the_contracts() -> None:
    names = Names()

    assert names.exchange == "deliveryhub.events"
    assert names.queue(DELIVERY_ORDER_EVENTS) == "delivery.order-events"
    assert names.queue(ORDERS_DELIVERY_EVENTS) == "orders.delivery-events"
    assert names.dead_letter_queue(names.queue(DELIVERY_ORDER_EVENTS)) == "delivery.order-events.dead-letter"


def test_a_prefix_applies_to_every_name() -> None:
    names = Names("staging.")

    assert names.exchange == "staging.deliveryhub.events"
    assert names.queue(DELIVERY_ORDER_EVENTS) == "staging.delivery.order-events"
    assert names.dead_letter_queue(names.queue(ORDERS_DELIVERY_EVENTS)) == (
        "staging.orders.delivery-events.dead-letter"
    )


def test_each_service_binds_the_other_services_events() -> None:
    assert DELIVERY_ORDER_EVENTS.bindings == ("order.*",)
    assert ORDERS_DELIVERY_EVENTS.bindings == ("delivery.*",)


def test_legacy_queues_take_the_teaching_designs_names() -> None:
    assert legacy_queues("laptev_") == ("laptev_order_created_queue", "laptev_order_paid_queue")
