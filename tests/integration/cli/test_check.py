"""`deliveryhub check` on two migrated databases: it finds what was planted behind the services'
backs, pages without changing the answer, leaves what is in flight alone, and only reads."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import random
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from sqlalchemy import delete, insert, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from deliveryhub_cli.agreement import STATUS_PAIRS
from deliveryhub_cli.check import CheckOptions, read_only_engine, run_check
from deliveryhub_cli.main import main
from deliveryhub_delivery.models import Delivery
from deliveryhub_kit.migrations import upgrade
from deliveryhub_kit.settings import async_database_url
from deliveryhub_orders.models import Order
from tests.support.databases import migrations_of
from tests.support.ports import unused_url

if TYPE_CHECKING:
    from tests.support.databases import Databases

pytestmark = pytest.mark.integration

DELIVERYHUB = str(Path(sys.executable).parent / "deliveryhub")
LAPTEV = uuid.UUID("85db966c-67f1-411e-95c0-f02edfa5464a")
ZUEV = uuid.UUID("31babbb3-5541-4a2a-8201-537cdff25fed")
KINDS = ("missing_delivery", "orphan_delivery", "status_mismatch", "courier_mismatch", "stuck")


def minutes_ago(minutes: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)


@dataclass(frozen=True)
class Pair:
    """An order and its delivery as the two services would hold them; None for a side not there."""

    order_status: str | None
    delivery_status: str | None
    courier: uuid.UUID | None = None
    changed_at: datetime = field(default_factory=lambda: minutes_ago(60))
    cancel_requested_at: datetime | None = None
    placeholder: bool = False
    id: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass
class Shop:
    """Both services' databases, written to directly: what a test plants, no service would."""

    orders_url: str
    delivery_url: str
    orders: AsyncEngine
    delivery: AsyncEngine

    async def add(self, *pairs: Pair) -> list[uuid.UUID]:
        orders = [self._order_row(pair) for pair in pairs if pair.order_status is not None]
        deliveries = [self._delivery_row(pair) for pair in pairs if pair.delivery_status is not None]
        if orders:
            async with self.orders.begin() as connection:
                await connection.execute(insert(Order), orders)
        if deliveries:
            async with self.delivery.begin() as connection:
                await connection.execute(insert(Delivery), deliveries)
        return [pair.id for pair in pairs]

    async def change_delivery(self, order_id: uuid.UUID, **values: Any) -> None:
        """Change a delivery as a stray UPDATE would: its `updated_at` stays as it was."""
        values.setdefault("updated_at", Delivery.updated_at)
        async with self.delivery.begin() as connection:
            await connection.execute(update(Delivery).where(Delivery.id == order_id).values(**values))

    async def delete_delivery(self, order_id: uuid.UUID) -> None:
        async with self.delivery.begin() as connection:
            await connection.execute(delete(Delivery).where(Delivery.id == order_id))

    @staticmethod
    def _order_row(pair: Pair) -> dict[str, Any]:
        canceling = pair.order_status == "canceling"
        return {
            "id": pair.id,
            "customer_id": uuid.uuid5(pair.id, "customer"),
            "address": "Москва, Тверская улица, 7",
            "date": datetime(2030, 5, 17, 14, 30, tzinfo=UTC),
            "items": [{"name": "Чай", "quantity": 1, "price": "150.00"}],
            "total": Decimal("150.00"),
            "status": pair.order_status,
            "version": 3,
            "deliveryman_id": pair.courier,
            "deliveryman_name": "Курьер" if pair.courier else None,
            "cancel_requested_at": (pair.cancel_requested_at or pair.changed_at) if canceling else None,
            "created_at": pair.changed_at - timedelta(minutes=5),
            "updated_at": pair.changed_at,
        }

    @staticmethod
    def _delivery_row(pair: Pair) -> dict[str, Any]:
        return {
            "id": pair.id,
            # The teaching design's producers send no customer, and neither does a cancel seen first.
            "customer_id": None
            if pair.order_status is None or pair.placeholder
            else uuid.uuid5(pair.id, "customer"),
            "address": None if pair.placeholder else "Москва, Тверская улица, 7",
            "date": None if pair.placeholder else datetime(2030, 5, 17, 14, 30, tzinfo=UTC),
            "status": pair.delivery_status,
            "deliveryman_id": pair.courier if pair.delivery_status != "created" else None,
            "order_version": 3,
            "version": 2,
            "created_at": pair.changed_at - timedelta(minutes=5),
            "updated_at": pair.changed_at,
        }


async def shop_on(orders_url: str, delivery_url: str) -> AsyncIterator[Shop]:
    orders = create_async_engine(async_database_url(orders_url))
    delivery = create_async_engine(async_database_url(delivery_url))
    yield Shop(orders_url, delivery_url, orders, delivery)
    await orders.dispose()
    await delivery.dispose()


@pytest.fixture
async def shop(databases: Databases) -> AsyncIterator[Shop]:
    """A migrated orders database and a migrated delivery database, nothing in them."""
    orders_url = await databases.create_migrated("orders")
    delivery_url = await databases.create_migrated("delivery")
    async for opened in shop_on(orders_url, delivery_url):
        yield opened
    await databases.drop(orders_url)
    await databases.drop(delivery_url)


def agreeing_pairs() -> list[Pair]:
    """One order of every agreeing pair of statuses; a cancel on its way was asked for lately."""
    pairs = []
    for order_status, delivery_status in STATUS_PAIRS:
        courier = LAPTEV if delivery_status in ("activated", "done") else None
        changed_at = minutes_ago(2 if order_status == "canceling" else 60)
        pairs.append(Pair(order_status, delivery_status, courier=courier, changed_at=changed_at))
    return pairs


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    def document(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.stdout)
        return parsed

    def found(self) -> dict[str, set[str]]:
        """The kinds found for each order id."""
        kinds: dict[str, set[str]] = {}
        for finding in self.document()["findings"]:
            kinds.setdefault(finding["order_id"], set()).add(finding["kind"])
        return kinds


async def deliveryhub_check(shop: Shop, *options: str, process: bool = False) -> Run:
    """The command as an operator runs it: its own process when `process`, else its entry point
    called in a thread of this one (the same arguments, output and exit code, without the seconds a
    new process takes to import every service)."""
    arguments = [
        "check",
        "--orders-database",
        shop.orders_url,
        "--delivery-database",
        shop.delivery_url,
        *options,
    ]
    if process:
        done = await asyncio.to_thread(
            subprocess.run, [DELIVERYHUB, *arguments], capture_output=True, text=True, timeout=60
        )
        return Run(done.returncode, done.stdout, done.stderr)
    return await asyncio.to_thread(_entry_point, arguments)


def _entry_point(arguments: list[str]) -> Run:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            main(arguments)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 2
    return Run(code, stdout.getvalue(), stderr.getvalue())


async def check_in_process(shop: Shop, **options: Any) -> dict[str, Any]:
    output = io.StringIO()
    await run_check(
        CheckOptions(
            orders_database_url=shop.orders_url,
            delivery_database_url=shop.delivery_url,
            json_output=True,
            **options,
        ),
        output,
    )
    document: dict[str, Any] = json.loads(output.getvalue())
    return document


async def test_agreeing_records_of_every_agreeing_pair_report_nothing(shop: Shop) -> None:
    pairs = agreeing_pairs()
    await shop.add(*pairs, Pair(None, "activated"))  # a legacy producer's delivery: no order here

    run = await deliveryhub_check(shop, process=True)
    as_json = await deliveryhub_check(shop, "--json")

    assert run.code == 0, run.stdout + run.stderr
    assert "the services agree" in run.stdout
    document = as_json.document()
    assert as_json.code == 0
    assert document["agree"] is True
    assert document["counts"] == dict.fromkeys(KINDS, 0)
    assert document["findings"] == []
    canceling = sum(1 for pair in pairs if pair.order_status == "canceling")
    assert document["in_flight"] == canceling
    assert document["agreeing"] == len(pairs) - canceling
    assert document["deliveries_without_order_skipped"] == 1
    assert document["orders_read"] == len(pairs)
    assert document["rows_read"] == 2 * len(pairs) + 1


async def test_each_planted_disagreement_is_found_with_its_kind(shop: Shop) -> None:
    await shop.add(*agreeing_pairs())
    deleted, changed, recouriered, stuck = await shop.add(
        Pair("paid", "activated", courier=LAPTEV),
        Pair("paid", "activated"),
        Pair("delivered", "done", courier=LAPTEV),
        Pair("canceling", "activated", courier=LAPTEV, cancel_requested_at=minutes_ago(30)),
    )
    (placeholder,) = await shop.add(Pair("paid", "canceled", placeholder=True))
    (orphan,) = await shop.add(Pair("paid", "activated"))
    await shop.delete_delivery(deleted)
    await shop.change_delivery(changed, status="done")
    await shop.change_delivery(recouriered, deliveryman_id=ZUEV)
    async with shop.orders.begin() as connection:
        await connection.execute(delete(Order).where(Order.id == orphan))

    run = await deliveryhub_check(shop, "--json")

    assert run.code == 1, run.stdout + run.stderr
    assert run.found() == {
        str(deleted): {"missing_delivery"},
        str(placeholder): {"missing_delivery"},
        str(changed): {"status_mismatch"},
        str(recouriered): {"courier_mismatch"},
        str(stuck): {"stuck"},
        str(orphan): {"orphan_delivery"},
    }
    document = run.document()
    assert document["agree"] is False
    assert document["counts"] == {
        "missing_delivery": 2,
        "orphan_delivery": 1,
        "status_mismatch": 1,
        "courier_mismatch": 1,
        "stuck": 1,
    }
    (mismatch,) = [f for f in document["findings"] if f["order_id"] == str(changed)]
    assert (mismatch["order"]["status"], mismatch["delivery"]["status"]) == ("paid", "done")
    assert 3500 < mismatch["age_seconds"] < 3700
    (courier,) = [f for f in document["findings"] if f["order_id"] == str(recouriered)]
    assert (courier["order"]["deliveryman_id"], courier["delivery"]["deliveryman_id"]) == (
        str(LAPTEV),
        str(ZUEV),
    )
    (waiting,) = [f for f in document["findings"] if f["order_id"] == str(stuck)]
    assert 1750 < waiting["age_seconds"] < 1850  # since the cancel was requested

    table = await deliveryhub_check(shop)
    assert table.code == 1
    lines = table.stdout.splitlines()
    for order_id, kind in [(deleted, "missing_delivery"), (changed, "status_mismatch"), (stuck, "stuck")]:
        (line,) = [line for line in lines if line.startswith(str(order_id))]
        assert kind in line
    assert "paid -" in next(line for line in lines if line.startswith(str(changed)))
    assert "the services disagree: 6 findings" in table.stdout


async def test_limit_caps_the_findings_printed_and_not_the_counts(shop: Shop) -> None:
    await shop.add(*(Pair("paid", None) for _ in range(5)))

    limited = await deliveryhub_check(shop, "--json", "--limit", "2")
    counts_only = await deliveryhub_check(shop, "--limit", "0")

    assert limited.code == 1
    document = limited.document()
    assert len(document["findings"]) == document["findings_shown"] == 2
    assert document["counts"]["missing_delivery"] == document["findings_total"] == 5
    assert counts_only.code == 1
    assert "... 5 more (--limit 0)" in counts_only.stdout
    assert not any(line.startswith("ORDER") for line in counts_only.stdout.splitlines())


async def test_pages_of_seven_give_the_answer_of_one_big_page(shop: Shop) -> None:
    randomly = random.Random(7)
    shapes = [
        *agreeing_pairs(),
        Pair("paid", None),
        Pair(None, "done"),
        Pair("paid", "done"),
        Pair("created", "activated", courier=LAPTEV),
        Pair("delivered", "done"),
    ]
    pairs = [
        Pair(shape.order_status, shape.delivery_status, courier=shape.courier, changed_at=shape.changed_at)
        for shape in randomly.choices(shapes, k=300)
    ]
    await shop.add(*pairs)
    async with shop.delivery.begin() as connection:
        # The orphans name a customer: deliveries of an order this orders database lost.
        await connection.execute(text("UPDATE deliveries SET customer_id = id WHERE customer_id IS NULL"))

    small = await check_in_process(shop, page_size=7)
    big = await check_in_process(shop, page_size=10_000)

    def without_age(document: dict[str, Any]) -> list[dict[str, Any]]:
        return [{k: v for k, v in finding.items() if k != "age_seconds"} for finding in document["findings"]]

    assert without_age(small) == without_age(big)
    assert small["counts"] == big["counts"]
    assert sum(small["counts"].values()) > 50
    assert (small["orders_read"], small["deliveries_read"]) == (big["orders_read"], big["deliveries_read"])
    orders = sum(1 for pair in pairs if pair.order_status is not None)
    deliveries = sum(1 for pair in pairs if pair.delivery_status is not None)
    assert small["pages_read"] == orders // 7 + 1 + deliveries // 7 + 1
    assert big["pages_read"] == 2
    assert [f["order_id"] for f in small["findings"]] == sorted(
        (f["order_id"] for f in small["findings"]), key=uuid.UUID
    )


async def test_what_changed_within_the_grace_period_is_in_flight(shop: Shop) -> None:
    just_now = minutes_ago(0.1)
    await shop.add(
        Pair("paid", "done", changed_at=just_now),
        Pair("paid", None, changed_at=just_now),
        Pair(None, "activated", changed_at=just_now),
    )
    async with shop.delivery.begin() as connection:
        await connection.execute(text("UPDATE deliveries SET customer_id = id"))

    within = await deliveryhub_check(shop, "--json")
    judged_now = await deliveryhub_check(shop, "--json", "--grace", "0")

    assert within.code == 0, within.stdout
    assert within.document()["in_flight"] == 3
    assert judged_now.code == 1
    assert judged_now.document()["counts"] == {
        "missing_delivery": 1,
        "orphan_delivery": 1,
        "status_mismatch": 1,
        "courier_mismatch": 0,
        "stuck": 0,
    }


async def test_stuck_after_sets_the_threshold(shop: Shop) -> None:
    (order_id,) = await shop.add(Pair("canceling", "done", courier=LAPTEV, changed_at=minutes_ago(3)))

    default = await deliveryhub_check(shop, "--json")
    sooner = await deliveryhub_check(shop, "--json", "--stuck-after", "120")

    assert default.code == 0
    assert sooner.code == 1
    assert sooner.found() == {str(order_id): {"stuck"}}


@pytest.fixture
async def refusing_database_url(databases: Databases) -> AsyncIterator[str]:
    """A database the server does not let anyone connect to."""
    url = await databases.create_empty("refusing")
    name = url.rsplit("/", 1)[1]
    connection = await asyncpg.connect(databases.url("postgres"), timeout=10)
    try:
        await connection.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        yield url
        await connection.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    finally:
        await connection.close()


async def test_a_database_that_refuses_connections_is_a_clear_exit_2(
    shop: Shop, refusing_database_url: str
) -> None:
    closed = unused_url("postgresql")

    for url, expected in [
        (closed, "ConnectionRefusedError"),
        (refusing_database_url, "not currently accepting"),
    ]:
        run = await deliveryhub_check(shop, "--orders-database", url, process=True)

        assert run.code == 2, run.stdout + run.stderr
        (line,) = run.stderr.strip().splitlines()
        assert line.startswith("deliveryhub check: the orders database (")
        assert expected in line
        assert "Traceback" not in run.stderr
        assert run.stdout == ""


async def test_a_database_without_the_tables_says_so(shop: Shop, databases: Databases) -> None:
    empty = await databases.create_empty("not_migrated")

    run = await deliveryhub_check(shop, "--delivery-database", empty)

    assert run.code == 2
    assert "the delivery database" in run.stderr
    assert "deliveryhub migrate" in run.stderr


async def test_the_check_cannot_write_and_its_statements_are_short(shop: Shop) -> None:
    engine = read_only_engine(shop.orders_url, timeout_seconds=3)
    try:
        async with engine.connect() as connection:
            assert await connection.scalar(text("SHOW transaction_read_only")) == "on"
            assert await connection.scalar(text("SHOW statement_timeout")) == "3s"
            await connection.rollback()
            with pytest.raises(DBAPIError, match="read-only transaction"):
                await connection.execute(text("DELETE FROM orders"))
    finally:
        await engine.dispose()


async def test_the_embedded_systems_files_are_checked_read_only(tmp_path: Path) -> None:
    urls = {
        service: f"sqlite+aiosqlite:///{tmp_path / f'{service}.sqlite3'}"
        for service in ("orders", "delivery")
    }
    for service, url in urls.items():
        await asyncio.to_thread(upgrade, migrations_of(service), url)
    async for shop in shop_on(urls["orders"], urls["delivery"]):
        agreeing = [Pair("paid", "activated", courier=LAPTEV) for _ in range(20)]
        await shop.add(*agreeing)
        (changed,) = await shop.add(Pair("paid", "activated"))
        await shop.change_delivery(changed, status="canceled")
        engine = read_only_engine(urls["orders"], timeout_seconds=3)
        try:
            async with engine.connect() as connection:
                with pytest.raises(DBAPIError, match="readonly"):
                    await connection.execute(text("DELETE FROM orders"))
        finally:
            await engine.dispose()

    done = await asyncio.to_thread(
        subprocess.run,
        [DELIVERYHUB, "check", "--embedded", "--data-dir", str(tmp_path), "--json", "--page-size", "7"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    run = Run(done.returncode, done.stdout, done.stderr)
    assert run.code == 1, run.stdout + run.stderr
    assert run.found() == {str(changed): {"status_mismatch"}}
    assert run.document()["agreeing"] == 20
