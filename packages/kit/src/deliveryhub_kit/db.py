"""The database of one service: engine, one unit of work per transaction, commit listeners."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, MetaData, Numeric, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, ExceptionContext, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator, TypeEngine

from deliveryhub_kit.one_statement import OneStatement
from deliveryhub_kit.search import SQLITE_FOLD, fold
from deliveryhub_kit.unit_of_work import (
    ReadingWork,
    UnitOfWork,
    track_connections,
    write_pending_before_commit,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

CommitListener = Callable[[UnitOfWork], None]


class DatabaseReadOnly(Exception):
    """The database answers but takes no writes."""

    sqlstate = "25006"  # read_only_sql_transaction: what a write would have met


def make_metadata() -> MetaData:
    """Metadata whose constraints get stable names, so that migrations can refer to them."""
    return MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A moment in time, read back aware on both databases.

    PostgreSQL keeps `timestamptz`; SQLite keeps text without a zone, so the moment is written in
    UTC (text of one zone sorts and compares as time does) and read back as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and dialect.name == "sqlite" and value.tzinfo is not None:
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class ExactDecimal(TypeDecorator[Decimal]):
    """A decimal of fixed scale: PostgreSQL's `numeric`; SQLite has no exact decimal and keeps a
    float, read back rounded to the scale (exact up to 15 digits)."""

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int, scale: int) -> None:
        super().__init__(precision=precision, scale=scale)
        self._precision = precision
        self._scale = scale

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            # Floats both ways, and the rounding below, instead of SQLAlchemy's lossy-decimal warning.
            return dialect.type_descriptor(Numeric(self._precision, self._scale, asdecimal=False))
        return dialect.type_descriptor(self.impl_instance)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None or isinstance(value, Decimal):
            return value
        # The shortest repr of a float of at most 15 significant digits is the decimal it was.
        return Decimal(str(value)).quantize(Decimal(1).scaleb(-self._scale))


def dialect_name(session: AsyncSession) -> str:
    """The dialect of the session's database (PostgreSQL's when it has no bind)."""
    return session.bind.dialect.name if session.bind is not None else "postgresql"


def dialect_insert(session: AsyncSession, table: Any) -> postgresql.Insert | sqlite.Insert:
    """An INSERT in the dialect of the session's database, so that `on_conflict_do_nothing`
    works on PostgreSQL and SQLite alike."""
    return sqlite.insert(table) if dialect_name(session) == "sqlite" else postgresql.insert(table)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


class Database:
    """Owns a service's engine; hands out one transaction per request or message."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 20,
        max_overflow: int = 0,
        timeout_seconds: float = 5.0,
        echo: bool = False,
    ) -> None:
        pool = {
            "pool_size": pool_size,
            "max_overflow": max_overflow,
            "pool_timeout": timeout_seconds,
            "echo": echo,
        }
        if is_sqlite(url):
            # SQLite's busy timeout: how long a transaction waits for the write lock.
            self.engine: AsyncEngine = _sqlite_engine(
                url, connect_args={"timeout": timeout_seconds * 6}, **pool
            )
        else:
            self.engine = create_async_engine(
                url, connect_args={"timeout": timeout_seconds, "command_timeout": timeout_seconds * 6}, **pool
            )
            event.listen(self.engine.sync_engine, "handle_error", _drop_stale_connections)
            # Instead of SQLAlchemy's pre-ping (three round trips a checkout): a connection the
            # server has closed is known to the driver already, without asking.
            event.listen(self.engine.sync_engine, "checkout", _refuse_closed_connection)
        # This database's own sessions: the listeners writing rows at commit go on these alone,
        # once a row is inserted that way.
        self._sync_sessions: sessionmaker[Session] = sessionmaker()
        track_connections(self._sync_sessions)
        self._writes_pending = False
        self.sessionmaker = async_sessionmaker(
            self.engine,
            class_=UnitOfWork,
            sync_session_class=self._sync_sessions,
            expire_on_commit=False,
            start_writing=self._start_writing_pending,
        )
        # The rows a transaction inserts at commit are written in one statement (PostgreSQL).
        self._one_statement = None if is_sqlite(url) else OneStatement(self.engine.dialect)
        self._commit_listeners: list[CommitListener] = []
        # Reads on PostgreSQL run each statement on its own: no BEGIN and COMMIT around them.
        self._read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._reads = (
            None
            if is_sqlite(url)
            else async_sessionmaker(
                class_=ReadingWork,
                sync_session_class=self._sync_sessions,
                expire_on_commit=False,
                start_writing=_no_writes_while_reading,
            )
        )

    def on_commit(self, listener: CommitListener) -> None:
        """Call `listener(work)` after each transaction of this database commits."""
        self._commit_listeners.append(listener)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[UnitOfWork]:
        """One unit of work: commits when the block ends, rolls back if it raises."""
        async with self.sessionmaker() as work:
            async with work.begin():
                yield work
                if work.pending and self._one_statement is not None:
                    await self._write_pending(work)
            for listener in self._commit_listeners:
                listener(work)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[UnitOfWork]:
        """A unit of work that only reads. On PostgreSQL its statements run without a transaction
        around them, which saves two round trips; at READ COMMITTED each statement of a
        transaction sees a snapshot of its own anyway. It holds one connection from the start
        (`ReadingWork`). SQLite reads in a transaction as usual."""
        if self._reads is None:
            async with self.transaction() as work:
                yield work
            return
        async with self._read_engine.connect() as connection, self._reads(bind=connection) as work:
            yield work

    async def _write_pending(self, work: UnitOfWork) -> None:
        """Write the rows changed and inserted at commit with one statement on the driver's connection
        (`deliveryhub_kit.one_statement`): inside the transaction when it ran statements, which
        then commits; otherwise with no transaction around it."""
        assert self._one_statement is not None
        changes, rows = work.pending.take_changes(), work.pending.take()
        if not changes and not rows:
            return  # rows read to change, and left as they were
        statement, arguments = self._one_statement(rows, changes)
        if work.connected:
            # A failure rolls the whole transaction back as the block leaves.
            await (await driver_of(await work.connection())).execute(statement, *arguments)
            return
        async with self.engine.connect() as connection:
            try:
                await (await driver_of(connection)).execute(statement, *arguments)
            except BaseException as error:
                await invalidate_if_stale(connection, error)  # no transaction is open
                raise

    def _start_writing_pending(self) -> None:
        """The first row inserted at commit on this database: from now on its transactions write
        theirs."""
        if not self._writes_pending:
            write_pending_before_commit(self._sync_sessions)
            self._writes_pending = True

    async def probe(self) -> None:
        """Return only if the database takes a write transaction now: reachable, accepting
        connections, and not read-only (a standby after a failover answers reads alone)."""
        async with self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                setting = await connection.scalar(text("SELECT current_setting('transaction_read_only')"))
                if setting == "on":
                    # A session keeps the read-only default it began with: this one is spent.
                    await connection.invalidate()
                    raise DatabaseReadOnly("the database takes no writes (a read-only transaction)")
            else:  # SQLite's BEGIN IMMEDIATE has taken the write lock already
                await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


async def driver_of(connection: AsyncConnection) -> Any:
    """The asyncpg connection under a SQLAlchemy one."""
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None
    return driver


async def invalidate_if_stale(connection: AsyncConnection, error: BaseException) -> None:
    """After a statement on the driver failed outside a transaction: a value the server refused
    leaves the connection as it was; after anything else (a lost line, a server going away, a
    cancel or a timeout mid-statement) it is not handed out again, and the pool opens a fresh one."""
    code = getattr(error, "sqlstate", None)
    if not isinstance(code, str) or code.startswith(_STALE_CONNECTION_CODES):
        await connection.invalidate()


def _no_writes_while_reading() -> None:
    raise RuntimeError("a reading unit of work commits nothing: emit events and insert rows in a transaction")


# SQLSTATEs after which no pooled connection is worth keeping: the connection is gone (08), the
# server is shutting down or restarting (57P01-57P03), or it takes no writes any more (25006, a
# standby after a failover; a session keeps the read-only default it began with).
_STALE_CONNECTION_CODES = ("08", "57P01", "57P02", "57P03", "25006")


def _drop_stale_connections(context: ExceptionContext) -> None:
    """Count such an error as a disconnect: SQLAlchemy then empties the pool, and the next
    transaction opens a fresh connection instead of meeting the same answer again."""
    code = getattr(context.original_exception, "sqlstate", None)
    if isinstance(code, str) and code.startswith(_STALE_CONNECTION_CODES):
        context.is_disconnect = True


def _refuse_closed_connection(dbapi_connection: Any, _record: object, _proxy: object) -> None:
    """A pooled connection whose socket the server closed (a restart, a terminated backend) is
    replaced before it is handed out; the pool then opens a fresh one."""
    driver = getattr(dbapi_connection, "driver_connection", None)
    if driver is not None and driver.is_closed():
        raise DisconnectionError("the server closed this connection while it was in the pool")


def _sqlite_engine(url: str, **options: Any) -> AsyncEngine:
    """An engine on an SQLite file that serves one process's concurrent transactions safely.

    Every transaction takes the write lock when it begins (`BEGIN IMMEDIATE`): a transaction that
    read first and wrote later would otherwise fail at once when another wrote in between, where
    PostgreSQL would have waited on a row lock. Waiting for the lock is SQLite's busy timeout.
    """
    engine = create_async_engine(url, **options)

    @event.listens_for(engine.sync_engine, "connect")
    def _configure(connection: Any, _: object) -> None:
        connection.isolation_level = None  # the driver's own BEGIN is replaced by the one below
        cursor = connection.cursor()
        # Readers do not block the writer; a commit survives the process (not the machine) at once.
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()
        # SQLite's lower() knows ASCII alone; the lists' search folds every script's case.
        connection.create_function(SQLITE_FOLD, 1, fold, deterministic=True)

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
