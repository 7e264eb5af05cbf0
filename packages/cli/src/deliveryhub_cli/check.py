"""`deliveryhub check`: do the orders and the delivery service agree about every order?

Both databases are read read-only, in pages ordered by id (keyset pagination), and the two streams
are merged by id, so memory stays bounded however many rows there are; each page is a short
transaction of its own, so the check holds no snapshot open on a live system. Findings are printed
as they are found. The tables are read with plain SQL: the check depends on the schema the
migrations make, not on the services' code.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TextIO, TypeVar

import asyncpg
from sqlalchemy import Boolean, Select, String, Uuid, column, event, select, table, type_coerce
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Row, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, NullPool

from deliveryhub_cli.agreement import (
    DeliveryRecord,
    Finding,
    FindingKind,
    OrderRecord,
    Outcome,
    Rules,
    paired_by_id,
)
from deliveryhub_kit.db import UtcDateTime, is_sqlite
from deliveryhub_kit.settings import async_database_url

orders_table = table(
    "orders",
    column("id", Uuid()),
    column("status", String()),
    column("deliveryman_id", Uuid()),
    column("cancel_requested_at", UtcDateTime()),
    column("updated_at", UtcDateTime()),
)
deliveries_table = table(
    "deliveries",
    column("id", Uuid()),
    column("status", String()),
    column("deliveryman_id", Uuid()),
    column("customer_id", Uuid()),
    column("address", String()),
    column("updated_at", UtcDateTime()),
)


class CheckFailed(Exception):
    """A database could not be read; the message says which and why."""


# What reading a database may raise when the database, not the check, is at fault.
DATABASE_ERRORS = (sa_exc.SQLAlchemyError, asyncpg.PostgresError, OSError, TimeoutError)


@dataclass(frozen=True)
class CheckOptions:
    orders_database_url: str
    delivery_database_url: str
    page_size: int = 5000
    grace: timedelta = timedelta(seconds=60)
    stuck_after: timedelta = timedelta(seconds=300)
    # Findings printed at most; None prints all. The counts are exact either way.
    limit: int | None = None
    json_output: bool = False
    # Connecting, and each page's statement, may take this long at most.
    timeout_seconds: float = 10.0


def read_only_engine(url: str, timeout_seconds: float) -> AsyncEngine:
    """An engine whose every transaction is read-only and whose every statement is short."""
    url = async_database_url(url)
    if is_sqlite(url):
        path = make_url(url).database or ""
        if not Path(path).is_file():
            raise FileNotFoundError(f"there is no database file {path}")
        # `mode=ro`: SQLite itself refuses writes, and does not create a missing file.
        engine = create_async_engine(
            f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true",
            poolclass=NullPool,
            connect_args={"timeout": timeout_seconds},
        )

        def query_only(connection: DBAPIConnection, _: ConnectionPoolEntry) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA query_only = ON")
            cursor.close()

        event.listen(engine.sync_engine, "connect", query_only)
        return engine
    milliseconds = str(int(timeout_seconds * 1000))
    return create_async_engine(
        url,
        poolclass=NullPool,
        connect_args={
            "timeout": timeout_seconds,
            "command_timeout": timeout_seconds * 2,
            "server_settings": {
                "application_name": "deliveryhub check",
                "default_transaction_read_only": "on",
                "statement_timeout": milliseconds,
                "lock_timeout": milliseconds,
                "idle_in_transaction_session_timeout": milliseconds,
            },
        },
    )


def _order_page(after: uuid.UUID | None, size: int) -> Select[Any]:
    # The columns of OrderRecord, in its order.
    query = select(
        orders_table.c.id,
        orders_table.c.status,
        orders_table.c.deliveryman_id,
        orders_table.c.cancel_requested_at,
        orders_table.c.updated_at,
    )
    if after is not None:
        query = query.where(orders_table.c.id > after)
    return query.order_by(orders_table.c.id).limit(size)


def _delivery_page(after: uuid.UUID | None, size: int) -> Select[Any]:
    # The columns of DeliveryRecord, in its order; SQLite's 0 and 1 read back as booleans.
    query = select(
        deliveries_table.c.id,
        deliveries_table.c.status,
        deliveries_table.c.deliveryman_id,
        type_coerce(deliveries_table.c.customer_id.is_not(None), Boolean()),
        type_coerce(deliveries_table.c.address.is_(None), Boolean()),
        deliveries_table.c.updated_at,
    )
    if after is not None:
        query = query.where(deliveries_table.c.id > after)
    return query.order_by(deliveries_table.c.id).limit(size)


RecordT = TypeVar("RecordT", OrderRecord, DeliveryRecord)


@dataclass
class PagedTable(Generic[RecordT]):
    """One table read in id order, a page per short transaction, the next page asked for while
    the current one is being compared."""

    service: str
    url: str
    connection: AsyncConnection
    page: Callable[[uuid.UUID | None, int], Select[Any]]
    record: Callable[[Iterable[Any]], RecordT]
    page_size: int
    pages_read: int = 0
    rows_read: int = 0

    async def records(self) -> AsyncIterator[RecordT]:
        pending: asyncio.Task[list[Row[Any]]] | None = asyncio.create_task(self._read(None))
        try:
            while pending is not None:
                rows = await pending
                pending = None
                if len(rows) == self.page_size:
                    pending = asyncio.create_task(self._read(rows[-1].id))
                for row in rows:
                    yield self.record(row)
        finally:
            if pending is not None:
                pending.cancel()

    async def _read(self, after: uuid.UUID | None) -> list[Row[Any]]:
        try:
            async with self.connection.begin():
                rows = list((await self.connection.execute(self.page(after, self.page_size))).all())
        except DATABASE_ERRORS as error:
            raise _failure(self.service, self.url, error) from error
        self.pages_read += 1
        self.rows_read += len(rows)
        return rows


@dataclass
class Tally:
    """What the check counted; exact whatever was printed."""

    kinds: Counter[FindingKind] = field(default_factory=Counter)
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    findings_shown: int = 0
    orders_read: int = 0
    deliveries_read: int = 0
    pages_read: int = 0
    duration_seconds: float = 0.0

    @property
    def agree(self) -> bool:
        return not self.kinds


async def compare(
    orders: PagedTable[OrderRecord],
    deliveries: PagedTable[DeliveryRecord],
    rules: Rules,
    found: Callable[[Finding], None],
) -> Tally:
    """Judge every order and every delivery; `found` is told each finding as it comes."""
    tally = Tally()
    started = time.perf_counter()
    async for order, delivery in paired_by_id(orders.records(), deliveries.records()):
        verdict = rules.judge(order, delivery)
        tally.outcomes[verdict.outcome] += 1
        for finding in verdict.findings:
            tally.kinds[finding.kind] += 1
            found(finding)
    tally.duration_seconds = time.perf_counter() - started
    tally.orders_read, tally.deliveries_read = orders.rows_read, deliveries.rows_read
    tally.pages_read = orders.pages_read + deliveries.pages_read
    return tally


def _where(url: str) -> str:
    """Which database a URL names, as the operator may see it: no driver, no password."""
    parsed = make_url(async_database_url(url))
    if parsed.get_backend_name() == "sqlite":
        return str(parsed.database)
    return f"{parsed.database} at {parsed.host or '127.0.0.1'}:{parsed.port or 5432}"


def _failure(service: str, url: str, error: BaseException) -> CheckFailed:
    cause = error.orig if isinstance(error, sa_exc.DBAPIError) and error.orig is not None else error
    # The driver adapter's error wraps the database's own, whose name says more.
    cause = cause.__cause__ if isinstance(cause.__cause__, asyncpg.PostgresError) else cause
    text = next(iter(str(cause).strip().splitlines()), "")
    hint = ""
    if isinstance(cause, asyncpg.UndefinedTableError | asyncpg.UndefinedColumnError) or "no such" in text:
        hint = f"; is it the {service} database, migrated to the newest revision (`deliveryhub migrate`)?"
    return CheckFailed(
        f"the {service} database ({_where(url)}) could not be read: {type(cause).__name__}: {text}{hint}"
    )


async def _connect(stack: AsyncExitStack, service: str, url: str, timeout_seconds: float) -> AsyncConnection:
    try:
        engine = read_only_engine(url, timeout_seconds)
        stack.push_async_callback(engine.dispose)
        connection = await engine.connect()
    except DATABASE_ERRORS as error:
        raise _failure(service, url, error) from error
    stack.push_async_callback(connection.close)
    return connection


async def run_check(options: CheckOptions, output: TextIO) -> Tally:
    """Check the two databases, printing findings and the counts to `output`."""
    rules = Rules(now=datetime.now(UTC), grace=options.grace, stuck_after=options.stuck_after)
    printer: FindingPrinter = (JsonPrinter if options.json_output else TablePrinter)(output, options.limit)
    async with AsyncExitStack() as stack:
        orders = PagedTable(
            "orders",
            options.orders_database_url,
            await _connect(stack, "orders", options.orders_database_url, options.timeout_seconds),
            _order_page,
            OrderRecord._make,
            options.page_size,
        )
        deliveries = PagedTable(
            "delivery",
            options.delivery_database_url,
            await _connect(stack, "delivery", options.delivery_database_url, options.timeout_seconds),
            _delivery_page,
            DeliveryRecord._make,
            options.page_size,
        )
        printer.start()
        tally = await compare(orders, deliveries, rules, printer.finding)
    tally.findings_shown = printer.shown
    printer.finish(tally, rules, options)
    return tally


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return "now"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{days}d" * bool(days), f"{hours}h" * bool(hours), f"{minutes}m" * bool(minutes)]
    shown = [part for part in parts if part][:2]
    return " ".join(shown) if shown else f"{seconds}s"


def _side(record: OrderRecord | DeliveryRecord | None) -> str:
    """A side's status and the start of its deliveryman's id, in a table cell."""
    if record is None:
        return "(none)"
    deliveryman = str(record.deliveryman_id)[:8] if record.deliveryman_id else "-"
    placeholder = " (placeholder)" if isinstance(record, DeliveryRecord) and record.is_placeholder else ""
    return f"{record.status} {deliveryman}{placeholder}"


class FindingPrinter(ABC):
    """Prints findings as they come, at most `limit` of them, then the counts."""

    def __init__(self, output: TextIO, limit: int | None) -> None:
        self.output = output
        self.limit = limit
        self.shown = 0

    @abstractmethod
    def start(self) -> None:
        """Print what comes before the findings."""

    def finding(self, finding: Finding) -> None:
        if self.limit is not None and self.shown >= self.limit:
            return
        self.shown += 1
        self.print_finding(finding)

    @abstractmethod
    def print_finding(self, finding: Finding) -> None: ...

    @abstractmethod
    def finish(self, tally: Tally, rules: Rules, options: CheckOptions) -> None: ...


COLUMNS = (("ORDER", 36), ("KIND", 16), ("ORDERS", 19), ("DELIVERY", 33), ("AGE", 0))


class TablePrinter(FindingPrinter):
    def start(self) -> None:
        """Nothing: the header comes with the first finding, if there is one."""

    def _row(self, *cells: str) -> None:
        line = "  ".join(cell.ljust(width) for cell, (_, width) in zip(cells, COLUMNS, strict=True))
        print(line.rstrip(), file=self.output)

    def print_finding(self, finding: Finding) -> None:
        if self.shown == 1:
            self._row(*(title for title, _ in COLUMNS))
        self._row(
            str(finding.order_id),
            finding.kind.value,
            _side(finding.order),
            _side(finding.delivery),
            _duration(finding.age),
        )

    def finish(self, tally: Tally, rules: Rules, options: CheckOptions) -> None:
        out = self.output
        found = sum(tally.kinds.values())
        if found > self.shown:
            print(f"... {found - self.shown} more (--limit {self.limit})", file=out)
        if self.shown:
            print(file=out)
        for kind in FindingKind:
            print(f"{kind.value:<18}{tally.kinds[kind]:>10}", file=out)
        grace = int(rules.grace.total_seconds())
        print(
            f"{'in flight':<18}{tally.outcomes[Outcome.IN_FLIGHT]:>10}  (changed in the last {grace}s, "
            "or a cancel on its way)",
            file=out,
        )
        print(f"{'agree':<18}{tally.outcomes[Outcome.AGREE]:>10}", file=out)
        if tally.outcomes[Outcome.NOT_AN_ORDER]:
            print(
                f"{'without an order':<18}{tally.outcomes[Outcome.NOT_AN_ORDER]:>10}  (deliveries of the "
                "teaching design's producers, skipped)",
                file=out,
            )
        print(
            f"read {tally.orders_read} orders and {tally.deliveries_read} deliveries in "
            f"{tally.pages_read} pages, {tally.duration_seconds:.2f}s",
            file=out,
        )
        verdict = "the services agree" if tally.agree else f"the services disagree: {found} findings"
        print(verdict, file=out)


def _record_json(record: OrderRecord | DeliveryRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    document: dict[str, Any] = {
        "status": record.status,
        "deliveryman_id": str(record.deliveryman_id) if record.deliveryman_id else None,
        "updated_at": record.updated_at.isoformat(),
    }
    if isinstance(record, OrderRecord):
        requested = record.cancel_requested_at
        document["cancel_requested_at"] = requested.isoformat() if requested else None
    else:
        document["placeholder"] = record.is_placeholder
    return document


class JsonPrinter(FindingPrinter):
    """One JSON document, its findings written as they come so that none is held in memory."""

    def start(self) -> None:
        self.output.write('{"findings": [')

    def print_finding(self, finding: Finding) -> None:
        document = {
            "order_id": str(finding.order_id),
            "kind": finding.kind.value,
            "order": _record_json(finding.order),
            "delivery": _record_json(finding.delivery),
            "age_seconds": round(finding.age.total_seconds(), 3),
        }
        self.output.write(("\n  " if self.shown == 1 else ",\n  ") + json.dumps(document))

    def finish(self, tally: Tally, rules: Rules, options: CheckOptions) -> None:
        rest = {
            "agree": tally.agree,
            "counts": {kind.value: tally.kinds[kind] for kind in FindingKind},
            "findings_total": sum(tally.kinds.values()),
            "findings_shown": self.shown,
            "in_flight": tally.outcomes[Outcome.IN_FLIGHT],
            "agreeing": tally.outcomes[Outcome.AGREE],
            "deliveries_without_order_skipped": tally.outcomes[Outcome.NOT_AN_ORDER],
            "orders_read": tally.orders_read,
            "deliveries_read": tally.deliveries_read,
            "rows_read": tally.orders_read + tally.deliveries_read,
            "pages_read": tally.pages_read,
            "page_size": options.page_size,
            "grace_seconds": rules.grace.total_seconds(),
            "stuck_after_seconds": rules.stuck_after.total_seconds(),
            "checked_at": rules.now.isoformat(),
            "duration_seconds": round(tally.duration_seconds, 3),
        }
        # The rest of the document after the findings: its opening brace is already written.
        self.output.write(("\n" if self.shown else "") + "]," + json.dumps(rest, indent=1)[1:] + "\n")


def check_command(options: CheckOptions) -> int:
    """Run the check; 0 when the services agree, 1 when anything disagrees or is stuck, 2 when a
    database could not be read."""
    try:
        tally = asyncio.run(run_check(options, sys.stdout))
    except CheckFailed as error:
        sys.stdout.flush()
        print(f"deliveryhub check: {error}", file=sys.stderr)
        return 2
    return 0 if tally.agree else 1
