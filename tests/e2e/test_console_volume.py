"""The console at a shop's volume, in a real browser: 100,000 deliveries, 3,104 of them waiting for
a courier. The manager works the queue; the board's server time and what an idle page costs on the
wire are measured and printed."""

from __future__ import annotations

import asyncio
import re
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import insert

from deliveryhub_delivery.models import Delivery
from deliveryhub_kit.db import Database
from deliveryhub_kit.identity import Role
from deliveryhub_kit.settings import DEFAULT_POSTGRES, async_database_url
from deliveryhub_orders.models import Order
from tests.support.console import DEMO_PASSWORD, Console
from tests.support.ports import free_port
from tests.support.running_system import LAPTEV, System, port_of, run_async, system_on_servers

pytestmark = [pytest.mark.e2e, pytest.mark.alone]

TOTAL = 100_000
WAITING = 3_104
CREATED = 2_000
APPOINTED = 500
CANCELED = 4_396
STREETS = ("Тверская улица", "Арбат", "Невский проспект", "Садовая улица", "Литейный проспект")


@dataclass(frozen=True)
class Busy:
    system: System
    # the waiting deliveries, the oldest first
    waiting: list[uuid.UUID]
    done: list[uuid.UUID]


def _rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[uuid.UUID], list[uuid.UUID]]:
    """The deliveries, one a minute back from now; the orders of the waiting ones (so that their
    appointments apply on both sides); the waiting ids oldest first, and the done ones."""
    now = datetime.now(UTC)
    statuses = (
        ["activated"] * WAITING + ["created"] * CREATED + ["appointed"] * APPOINTED + ["canceled"] * CANCELED
    )
    statuses += ["done"] * (TOTAL - len(statuses))
    # Spread every kind over the whole time: the waiting ones are not simply the oldest.
    order = sorted(range(TOTAL), key=lambda index: (index * 7919) % TOTAL)
    deliveries, orders, waiting, done = [], [], [], []
    for position, index in enumerate(order):
        kind = statuses[index]
        made = now - timedelta(minutes=TOTAL - position)
        delivery_id = uuid.uuid4()
        status = "activated" if kind == "appointed" else kind
        deliveries.append(
            {
                "id": delivery_id,
                "customer_id": uuid.uuid4(),
                "address": f"Москва, {STREETS[position % len(STREETS)]}, {position % 300 + 1}",
                "date": made + timedelta(days=1),
                "status": status,
                "deliveryman_id": LAPTEV if kind in ("appointed", "done") else None,
                "order_version": 2,
                "version": 1,
                "created_at": made,
                "updated_at": made,
            }
        )
        if kind == "activated":
            waiting.append(delivery_id)
            orders.append(
                {
                    "id": delivery_id,
                    "customer_id": deliveries[-1]["customer_id"],
                    "address": deliveries[-1]["address"],
                    "date": deliveries[-1]["date"],
                    "items": [{"name": "Книга", "quantity": 1, "price": "990.00"}],
                    "total": Decimal("990.00"),
                    "status": "paid",
                    "version": 2,
                    "courier_version": 0,
                    "created_at": made,
                    "updated_at": made,
                    "paid_at": made,
                }
            )
        elif kind == "done":
            done.append(delivery_id)
    return deliveries, orders, waiting, done


async def _seed(system: System) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    deliveries, orders, waiting, done = _rows()
    for service, model, rows in (("delivery", Delivery, deliveries), ("orders", Order, orders)):
        database = Database(async_database_url(f"{DEFAULT_POSTGRES}/{system.database_prefix}{service}"))
        async with database.transaction() as session:
            for start in range(0, len(rows), 5_000):
                await session.execute(insert(model), rows[start : start + 5_000])
        await database.dispose()
    return waiting, done


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Busy]:
    for system in system_on_servers(tmp_path_factory):
        waiting, done = run_async(_seed(system))
        yield Busy(system, waiting, done)


@pytest.fixture
def console(busy: Busy, browser: Browser, request: pytest.FixtureRequest) -> Iterator[Console]:
    opened = Console(system=busy.system, browser=browser, name=request.node.name)
    yield opened
    for page in opened.pages:
        if not page.is_closed():
            page.context.close()


def cards(page: Page) -> Any:
    return page.locator("[data-items=deliveries] > li")


def waiting_tab(page: Page) -> Any:
    return page.get_by_role("link", name=re.compile("^Waiting for a courier"))


def waiting_count(page: Page) -> int:
    return int((waiting_tab(page).locator(".count").text_content() or "").replace(",", "").strip())


def laptev_load(page: Page) -> int:
    option = page.locator(f"#bulk-courier option[value='{LAPTEV}']")
    match = re.search(r"(\d+) open", option.text_content() or "")
    assert match, option.text_content()
    return int(match.group(1))


def test_the_manager_works_the_queue_from_the_oldest_and_appoints_several_at_once(
    console: Console, busy: Busy
) -> None:
    manager = console.sign_in("manager@deliveryhub.example")
    expect(manager.get_by_role("heading", name="Deliveries")).to_be_visible()

    # The first screen is the queue, the oldest waiting delivery first.
    expect(manager.get_by_role("link", name=re.compile("^Waiting for a courier"))).to_have_attribute(
        "aria-current", "true"
    )
    expect(cards(manager).first).to_have_id(f"delivery-{busy.waiting[0]}")
    expect(manager.locator(".pager-summary").first).to_have_text(f"1–20 of {WAITING:,}")
    assert waiting_count(manager) == WAITING
    console.save(manager, "board-queue", full_page=False)

    # To the last page and back.
    manager.get_by_role("link", name="Next ›").first.click()
    expect(manager.locator(".pager-summary").first).to_have_text(f"21–40 of {WAITING:,}")
    manager.get_by_role("link", name="Last »").first.click()
    last = (WAITING - 1) // 20 * 20
    expect(manager.locator(".pager-summary").first).to_have_text(f"{last + 1:,}–{WAITING:,} of {WAITING:,}")
    expect(cards(manager).last).to_have_id(f"delivery-{busy.waiting[-1]}")
    manager.get_by_role("link", name="« First").first.click()
    expect(cards(manager).first).to_have_id(f"delivery-{busy.waiting[0]}")

    # A delivery found by the first 8 characters of its id, whatever its status.
    wanted = busy.done[len(busy.done) // 2]
    manager.get_by_role("searchbox").fill(str(wanted)[:8])
    manager.get_by_role("button", name="Search").click()
    expect(manager.locator(f"#delivery-{wanted}")).to_be_visible()
    expect(manager.locator(f"#delivery-{wanted} .status")).to_have_text("done")
    all_tab = manager.locator(".tabs").get_by_role("link", name=re.compile(r"^All \d"))
    expect(all_tab).to_have_attribute("aria-current", "true")
    console.save(manager, "board-search", full_page=False)

    # Three selected deliveries appointed to one courier in one action.
    manager.goto("/board")
    before, load = waiting_count(manager), laptev_load(manager)
    chosen = busy.waiting[:3]
    for delivery_id in chosen:
        manager.locator(f"#delivery-{delivery_id}").get_by_label(re.compile("^Select delivery")).check()
    manager.locator("#bulk-courier").select_option(value=str(LAPTEV))
    manager.get_by_role("button", name="Appoint selected").click()
    expect(manager.get_by_role("status").filter(has_text="3 of 3 appointed.")).to_be_visible()
    for delivery_id in chosen:
        expect(manager.locator(f"#delivery-{delivery_id}")).to_have_count(0)
    assert waiting_count(manager) == before - 3
    assert laptev_load(manager) == load + 3
    expect(cards(manager).first).to_have_id(f"delivery-{busy.waiting[3]}")
    manager_api = busy.system.auth(Role.MANAGER)
    for delivery_id in chosen:
        answer = busy.system.delivery.get(f"/api/delivery/{delivery_id}", headers=manager_api).json()
        assert answer["deliveryman"]["id"] == str(LAPTEV)

    # A change made through the API reaches the open page without a reload, within a second.
    manager.evaluate("window.stillTheSamePage = true")
    changed = busy.waiting[3]
    appointed = busy.system.delivery.post(
        f"/api/delivery/{changed}/appoint", json={"deliveryman_id": str(LAPTEV)}, headers=manager_api
    )
    assert appointed.status_code == 200, appointed.text
    sent = time.monotonic()
    expect(manager.locator(f"#delivery-{changed}")).to_have_count(0, timeout=5_000)
    arrived = time.monotonic() - sent
    expect(cards(manager).first).to_have_id(f"delivery-{busy.waiting[4]}")
    # The count follows (a rebuild begun before the change may count it a moment later).
    expect(waiting_tab(manager).locator(".count")).to_have_text(f"{before - 4:,}", timeout=5_000)
    assert manager.evaluate("window.stillTheSamePage") is True
    print(f"\nan API change reached the open board in {arrived * 1000:.0f} ms")
    assert arrived < 1.0, f"the change took {arrived:.2f} s to reach the page"


class CountingProxy:
    """A TCP relay in front of the console that counts the bytes passing each way."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.received = 0  # server → browser
        self.sent = 0  # browser → server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        started.result(10)
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def reset(self) -> None:
        self.received = self.sent = 0

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _close(self) -> None:
        """Every connection ended and let go of before the loop stops."""
        if self._server is not None:
            self._server.close()
        for pipe in self._pipes:
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        pipes = [
            asyncio.ensure_future(self._pipe(reader, upstream_writer, down=False)),
            asyncio.ensure_future(self._pipe(upstream_reader, writer, down=True)),
        ]
        self._pipes.update(pipes)
        try:
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._pipes.difference_update(pipes)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, down: bool) -> None:
        try:
            while data := await source.read(65536):
                if down:
                    self.received += len(data)
                else:
                    self.sent += len(data)
                sink.write(data)
                await sink.drain()
        except ConnectionError:
            pass
        finally:
            sink.close()


IDLE_SECONDS = 30


def test_the_board_answers_quickly_at_volume_and_an_idle_page_costs_almost_nothing(
    browser: Browser, busy: Busy
) -> None:
    with CountingProxy(port_of(busy.system.web_url)) as proxy:
        context = browser.new_context(base_url=f"http://127.0.0.1:{proxy.port}")
        context.set_default_timeout(15_000)
        page = context.new_page()
        page.goto("/login")
        page.get_by_label("E-mail").fill("manager@deliveryhub.example")
        page.get_by_label("Password").fill(DEMO_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/login" not in url)

        # The board's server time: from the request sent to the first byte of the answer.
        times = []
        for _ in range(15):
            page.goto("/board")
            times.append(
                page.evaluate(
                    "() => { const n = performance.getEntriesByType('navigation')[0];"
                    " return n.responseStart - n.requestStart; }"
                )
            )
        page_bytes = len(page.content().encode())
        page.wait_for_selector("[data-live-state=open]")
        proxy.reset()
        started = time.monotonic()
        page.wait_for_timeout(IDLE_SECONDS * 1000)
        idle = time.monotonic() - started
        per_minute = (proxy.received + proxy.sent) * 60 / idle
        context.close()
    median, worst = statistics.median(times), max(times)
    print(
        f"\nboard with {TOTAL:,} deliveries ({WAITING:,} waiting): server time median {median:.0f} ms, "
        f"max {worst:.0f} ms over {len(times)} loads; page {page_bytes / 1024:.1f} KB\n"
        f"idle page for {idle:.0f} s: {proxy.received} B received, {proxy.sent} B sent, "
        f"{per_minute / 1024:.2f} KB a minute"
    )
    assert per_minute < 10 * 1024
