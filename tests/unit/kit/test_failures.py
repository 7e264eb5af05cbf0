"""The verdict on each kind of failure: by the database's own code, class first, then by the exception."""

from __future__ import annotations

import sqlite3

import pytest
from pydantic import BaseModel, ValidationError
from sqlalchemy import exc as sa_exc

from deliveryhub_contracts.events import MalformedEvent
from deliveryhub_kit.db import DatabaseReadOnly
from deliveryhub_kit.errors import Conflict
from deliveryhub_kit.failures import RetryLater, Verdict, classify


class DriverError(Exception):
    """What a PostgreSQL driver raises: an error with its SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"server said {sqlstate}")
        self.sqlstate = sqlstate


def wrapped(sqlstate: str) -> sa_exc.DBAPIError:
    """As SQLAlchemy hands it over: the driver's error inside a DBAPIError."""
    return sa_exc.DBAPIError("INSERT ...", {}, DriverError(sqlstate))


@pytest.mark.parametrize(
    ("sqlstate", "verdict"),
    [
        # The server answers "not now": the database is away, not the message wrong.
        ("08006", Verdict.OUTAGE),  # connection failure
        ("08003", Verdict.OUTAGE),  # connection does not exist
        ("57P01", Verdict.OUTAGE),  # admin shutdown
        ("57P02", Verdict.OUTAGE),  # crash shutdown
        ("57P03", Verdict.OUTAGE),  # cannot connect now (starting up)
        ("53300", Verdict.OUTAGE),  # too many connections
        ("53100", Verdict.OUTAGE),  # disk full
        ("53200", Verdict.OUTAGE),  # out of memory
        ("55000", Verdict.OUTAGE),  # not accepting connections
        ("25006", Verdict.OUTAGE),  # read-only transaction (a standby after a failover)
        ("58030", Verdict.OUTAGE),  # I/O error
        # This message may succeed if tried again later.
        ("40001", Verdict.RETRY),  # serialization failure
        ("40P01", Verdict.RETRY),  # deadlock
        ("55P03", Verdict.RETRY),  # lock not available
        ("57014", Verdict.RETRY),  # statement timeout
        ("23505", Verdict.RETRY),  # unique violation: a concurrent insert came first
        ("XX000", Verdict.RETRY),  # internal error
        ("99999", Verdict.RETRY),  # a code of no known class
        # It would fail the same way again.
        ("22003", Verdict.POISON),  # numeric value out of range
        ("22021", Verdict.POISON),  # NUL in text
        ("22000", Verdict.POISON),  # the driver could not encode a value
        ("22007", Verdict.POISON),  # invalid datetime format
        ("23502", Verdict.POISON),  # not null violation
        ("23503", Verdict.POISON),  # foreign key violation
        ("23514", Verdict.POISON),  # check violation
        ("42703", Verdict.POISON),  # undefined column
        ("54000", Verdict.POISON),  # program limit exceeded
    ],
)
def test_a_database_error_is_judged_by_its_sqlstate(sqlstate: str, verdict: Verdict) -> None:
    failure = classify(wrapped(sqlstate))

    assert failure.verdict is verdict
    assert failure.code == sqlstate
    assert sqlstate in failure.cause


@pytest.mark.parametrize(
    ("name", "verdict"),
    [
        ("SQLITE_BUSY", Verdict.OUTAGE),
        ("SQLITE_BUSY_TIMEOUT", Verdict.OUTAGE),
        ("SQLITE_IOERR_WRITE", Verdict.OUTAGE),
        ("SQLITE_FULL", Verdict.OUTAGE),
        ("SQLITE_READONLY_DBMOVED", Verdict.OUTAGE),
        ("SQLITE_CONSTRAINT_UNIQUE", Verdict.RETRY),
        ("SQLITE_CONSTRAINT_PRIMARYKEY", Verdict.RETRY),
        ("SQLITE_CONSTRAINT_NOTNULL", Verdict.POISON),
        ("SQLITE_TOOBIG", Verdict.POISON),
        ("SQLITE_ERROR", Verdict.POISON),
    ],
)
def test_an_sqlite_error_is_judged_by_its_result_code(name: str, verdict: Verdict) -> None:
    error = sqlite3.OperationalError("from SQLite")
    error.sqlite_errorname = name

    assert classify(sa_exc.OperationalError("INSERT ...", {}, error)).verdict is verdict


def test_a_lost_connection_is_an_outage_whatever_the_driver_said() -> None:
    error = sa_exc.DBAPIError("SELECT 1", {}, DriverError("22000"), connection_invalidated=True)

    assert classify(error).verdict is Verdict.OUTAGE


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError("connection refused"),
        TimeoutError(),
        OSError("network is unreachable"),
        sa_exc.TimeoutError("QueuePool limit reached"),
        sa_exc.OperationalError("SELECT 1", {}, Exception("no code")),
        sa_exc.InterfaceError("SELECT 1", {}, Exception("connection is closed")),
        DatabaseReadOnly("the database takes no writes"),
    ],
)
def test_a_database_out_of_reach_is_an_outage(error: Exception) -> None:
    assert classify(error).verdict is Verdict.OUTAGE


def validation_error() -> ValidationError:
    class Model(BaseModel):
        number: int

    with pytest.raises(ValidationError) as raised:
        Model.model_validate({"number": "x"})
    return raised.value


@pytest.mark.parametrize(
    "error",
    [
        MalformedEvent("not JSON"),
        Conflict("the delivery is done"),
        ValueError("Exceeds the limit (4300 digits)"),
        OverflowError("date value out of range"),
        UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
        KeyError("order_id"),
        TypeError("unsupported operand"),
        validation_error(),
        # SQLAlchemy's wrapping of an error raised before the driver saw the statement.
        sa_exc.StatementError("bind failed", "INSERT ...", {}, OverflowError("year 0 is out of range")),
    ],
)
def test_what_fails_the_same_way_again_is_poison(error: Exception) -> None:
    assert classify(error).verdict is Verdict.POISON


def test_not_yet_is_retried() -> None:
    failure = classify(RetryLater("the order is not here yet"))

    assert failure.verdict is Verdict.RETRY
    assert failure.cause == "the order is not here yet"
    assert not failure.from_database
