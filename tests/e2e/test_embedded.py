"""The embedded system stopped in the middle of a flow, by Ctrl-C or by a kill, and started again:
every flow completes, nothing is lost and nothing happens twice."""

from __future__ import annotations

import sqlite3
import subprocess
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from deliveryhub_kit.identity import Role
from tests.support.ports import free_port
from tests.support.running_system import (
    DELIVERYHUB,
    LAPTEV,
    System,
    new_embedded_system,
    start_embedded,
    stop,
)
from tests.support.story import ok, ok_list, order_body
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

ORDERS = 24


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[System]:
    """A data folder and ports for `deliveryhub up --embedded`, started by the test itself."""
    system = new_embedded_system(tmp_path)
    yield system
    for client in (system.orders, system.delivery):
        client.close()


def rows(database: Path, query: str) -> list[tuple[object, ...]]:
    """What a stopped system left in one of its SQLite files."""
    with closing(sqlite3.connect(database)) as connection:
        return connection.execute(query).fetchall()


def event_ids(database: Path, table: str, where: str = "") -> list[str]:
    return [str(row[0]) for row in rows(database, f"SELECT event_id FROM {table} {where}")]  # noqa: S608


def test_a_flow_stopped_midway_completes_after_a_restart_with_nothing_lost_or_twice(
    embedded: System,
) -> None:
    process = start_embedded(embedded, "--embedded")
    customer = embedded.auth(Role.CUSTOMER)
    manager = embedded.auth(Role.MANAGER)
    courier = embedded.auth(Role.COURIER, deliveryman_id=LAPTEV)
    keys = [str(uuid.uuid4()) for _ in range(ORDERS)]
    placed: dict[str, str] = {}
    lock = threading.Lock()

    def place(key: str) -> str | None:
        headers = {**customer, "Idempotency-Key": key}
        try:
            response = embedded.orders.post("/api/orders", json=order_body(), headers=headers)
        except httpx.HTTPError:
            return None  # the process was killed under this request: the customer tries again
        order_id: str = ok(response, 201)["id"]
        with lock:
            placed[key] = order_id
            if len(placed) == ORDERS // 3:
                process.kill()
        return order_id

    # 1. Killed (SIGKILL, no goodbye) while orders are being placed and their events relayed.
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(place, keys))
    process.wait()
    assert ORDERS // 3 <= len(placed) < ORDERS

    # 2. Started again, the customer repeats what got no answer: each order exists once.
    process = start_embedded(embedded, "--embedded")
    for key in keys:
        if key not in placed:
            assert place(key) is not None
    order_ids = set(placed.values())
    assert len(order_ids) == ORDERS
    listed = ok_list(embedded.orders.get("/api/orders", headers=customer))
    assert {order["id"] for order in listed} == order_ids

    # 3. Stopped with Ctrl-C right after the customer paid every order.
    for order_id in order_ids:
        assert ok(embedded.orders.post(f"/api/orders/{order_id}/pay", headers=customer))["status"] == "paid"
    stop(process, embedded.log)

    # 4. Started again: every delivery is activated, one per order.
    process = start_embedded(embedded, "--embedded")

    def all_activated() -> list[dict[str, object]] | None:
        deliveries = ok_list(embedded.delivery.get("/api/delivery/?limit=1000", headers=manager))
        statuses = {delivery["status"] for delivery in deliveries}
        return deliveries if statuses == {"activated"} and len(deliveries) == ORDERS else None

    deliveries = eventually(all_activated, what="every delivery to be activated")
    assert {str(d["id"]) for d in deliveries} == order_ids

    # 5. The other way round: killed right after a courier finished; the orders still hear of it.
    finished = sorted(order_ids)[:3]
    for order_id in finished:
        appoint = {"deliveryman_id": str(LAPTEV)}
        ok(embedded.delivery.post(f"/api/delivery/{order_id}/appoint", json=appoint, headers=manager))
        ok(embedded.delivery.post(f"/api/delivery/{order_id}/finish", headers=courier))
    process.kill()
    process.wait()
    process = start_embedded(embedded, "--embedded")

    def delivered() -> bool | None:
        orders = ok_list(embedded.orders.get("/api/orders?limit=1000", headers=customer))
        statuses = {str(order["id"]): order["status"] for order in orders}
        return True if all(statuses[order_id] == "delivered" for order_id in finished) else None

    eventually(delivered, what="the finished deliveries' orders to be delivered")
    stop(process, embedded.log)

    # Every event was applied exactly once: each consumer's inbox holds exactly the other
    # service's outbox, and the broker holds nothing more, not even a dead letter.
    orders, delivery = embedded.data_dir / "orders.sqlite3", embedded.data_dir / "delivery.sqlite3"
    assert sorted(event_ids(delivery, "inbox")) == sorted(event_ids(orders, "outbox"))
    assert sorted(event_ids(orders, "inbox")) == sorted(event_ids(delivery, "outbox"))
    assert len(event_ids(orders, "outbox")) == 2 * ORDERS
    assert len(event_ids(delivery, "outbox")) == 2 * len(finished)
    for database in (orders, delivery):
        assert rows(database, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == [(0,)]
    waiting = "SELECT queue, count(*) FROM messages GROUP BY queue"
    assert rows(embedded.data_dir / "broker.sqlite3", waiting) == []
    versions = "SELECT count(*), min(order_version), max(order_version) FROM deliveries"
    assert rows(delivery, versions) == [(ORDERS, 2, 2)]


def test_one_data_folder_serves_one_process_and_reset_empties_it(embedded: System) -> None:
    process = start_embedded(embedded, "--embedded")
    customer = embedded.auth(Role.CUSTOMER)
    ok(embedded.orders.post("/api/orders", json=order_body(), headers=customer), 201)
    # Two in-process brokers on one file would each hand out the same messages.
    second = subprocess.run(
        [
            DELIVERYHUB,
            "up",
            "--embedded",
            "--data-dir",
            str(embedded.data_dir),
            *("--orders-port", str(free_port()), "--delivery-port", str(free_port())),
            *("--web-port", str(free_port())),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 2
    assert "another `deliveryhub up --embedded` is running" in second.stderr
    stop(process, embedded.log)

    process = start_embedded(embedded, "--embedded", "--reset")
    try:
        assert ok_list(embedded.orders.get("/api/orders", headers=customer)) == []
        assert ok_list(embedded.delivery.get("/api/delivery/", headers=embedded.auth(Role.MANAGER))) == []
    finally:
        stop(process, embedded.log)
