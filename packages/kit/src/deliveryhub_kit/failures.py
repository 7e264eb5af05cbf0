"""What a failure means for the work that met it: the one table a reader looks for.

Every exception a consumer meets between a message's bytes and its commit gets one verdict:

- `OUTAGE`: the database is away or refuses work for now (no line, a restart, the connection
  limit, read-only after a failover, out of memory or disk, no free connection in the pool). The
  message is kept, not acked: the consumer takes no more messages and applies what it holds once
  a probe says the database takes writes again (what it holds goes back to the queue once, if the
  outage lasts).
- `RETRY`: this message may succeed later (not yet: `RetryLater`; a deadlock, a serialization
  failure, a lock or statement timeout, a concurrent insert of the same key). It waits in the
  delay queues, longer each time, then goes to the dead-letter queue.
- `POISON`: it fails the same way every time (bytes that are no event, a value no column takes, a
  broken constraint, a domain refusal, a bug). It goes to the dead-letter queue at once, with its
  error class and reason.

Database errors are judged by their SQLSTATE (PostgreSQL) or extended result code (SQLite), class
first and the exceptions that differ from their class named before it, so that a code no test
has met still lands where its class belongs. The HTTP answers use the same reading: an outage or
a passing cause is a 503, a value the database refuses a 422, a conflict a 409.
"""

from __future__ import annotations

import enum
import sqlite3
from dataclasses import dataclass
from typing import Final

from sqlalchemy import exc as sa_exc


class Verdict(enum.StrEnum):
    OUTAGE = "outage"
    RETRY = "retry"
    POISON = "poison"


class RetryLater(Exception):
    """A handler cannot apply the event yet, for a reason that will pass."""


@dataclass(frozen=True)
class Failure:
    """The verdict on one exception, and what it was in a few words (for logs and readiness)."""

    verdict: Verdict
    cause: str
    # The database's own code for it, when the database said something.
    code: str | None = None

    @property
    def from_database(self) -> bool:
        return self.code is not None


# SQLSTATE prefixes, longest first wins; a code of no listed class is RETRY (it may pass, and it is
# dead-lettered after the retries if it does not).
SQLSTATE_VERDICTS: Final[dict[str, tuple[Verdict, str]]] = {
    "08": (Verdict.OUTAGE, "connection exception"),
    "53": (Verdict.OUTAGE, "insufficient resources"),
    "57": (Verdict.OUTAGE, "operator intervention (shutdown, restart)"),
    "57014": (Verdict.RETRY, "statement canceled or timed out"),
    "58": (Verdict.OUTAGE, "system error"),
    "XX": (Verdict.RETRY, "internal error"),
    "25006": (Verdict.OUTAGE, "read-only transaction"),
    "25P03": (Verdict.RETRY, "idle-in-transaction timeout"),
    "55000": (Verdict.OUTAGE, "database not accepting connections"),
    "55006": (Verdict.RETRY, "object in use"),
    "55P03": (Verdict.RETRY, "lock not available"),
    "40": (Verdict.RETRY, "transaction rollback (deadlock, serialization)"),
    "23": (Verdict.POISON, "integrity constraint violation"),
    "23505": (Verdict.RETRY, "unique violation: a concurrent writer came first"),
    "22": (Verdict.POISON, "data exception"),
    "42": (Verdict.POISON, "syntax error or access rule violation"),
    "0A": (Verdict.POISON, "feature not supported"),
    "54": (Verdict.POISON, "program limit exceeded"),
    "P0": (Verdict.POISON, "raised by a database function"),
}

# SQLite's extended result code names, by prefix in the same way; others are RETRY.
SQLITE_VERDICTS: Final[dict[str, tuple[Verdict, str]]] = {
    "SQLITE_BUSY": (Verdict.OUTAGE, "database file busy"),
    "SQLITE_LOCKED": (Verdict.OUTAGE, "database file locked"),
    "SQLITE_IOERR": (Verdict.OUTAGE, "disk I/O error"),
    "SQLITE_FULL": (Verdict.OUTAGE, "disk full"),
    "SQLITE_NOMEM": (Verdict.OUTAGE, "out of memory"),
    "SQLITE_CANTOPEN": (Verdict.OUTAGE, "cannot open the database file"),
    "SQLITE_READONLY": (Verdict.OUTAGE, "read-only database"),
    "SQLITE_CONSTRAINT": (Verdict.POISON, "constraint violation"),
    "SQLITE_CONSTRAINT_UNIQUE": (Verdict.RETRY, "unique violation: a concurrent writer came first"),
    "SQLITE_CONSTRAINT_PRIMARYKEY": (Verdict.RETRY, "unique violation: a concurrent writer came first"),
    "SQLITE_MISMATCH": (Verdict.POISON, "datatype mismatch"),
    "SQLITE_TOOBIG": (Verdict.POISON, "value too big"),
    "SQLITE_RANGE": (Verdict.POISON, "parameter out of range"),
    "SQLITE_ERROR": (Verdict.POISON, "SQL error"),
}

# Failures below the database's words: the line, the pool, the clock.
_UNREACHABLE = (OSError, TimeoutError, sa_exc.TimeoutError, sa_exc.DisconnectionError)


def classify(error: BaseException) -> Failure:
    """The verdict on an exception met while applying a message (or serving a request)."""
    if isinstance(error, RetryLater):
        return Failure(Verdict.RETRY, str(error) or "not yet")
    lost = isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated
    driver_error = error.orig if isinstance(error, sa_exc.StatementError) and error.orig else error
    sqlstate = getattr(driver_error, "sqlstate", None) or getattr(driver_error, "pgcode", None)
    if isinstance(sqlstate, str) and sqlstate:
        verdict, meaning = _by_prefix(SQLSTATE_VERDICTS, sqlstate.upper(), (Verdict.RETRY, "database error"))
        if lost and verdict is not Verdict.OUTAGE:
            return Failure(Verdict.OUTAGE, f"the connection to the database was lost ({sqlstate})", sqlstate)
        return Failure(verdict, f"{meaning} ({sqlstate})", code=sqlstate)
    if lost:
        return Failure(Verdict.OUTAGE, "the connection to the database was lost")
    if isinstance(driver_error, sqlite3.Error):
        name = getattr(driver_error, "sqlite_errorname", None) or "SQLITE_UNKNOWN"
        verdict, meaning = _by_prefix(SQLITE_VERDICTS, name, (Verdict.RETRY, "database error"))
        return Failure(verdict, f"{meaning} ({name})", code=name)
    if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError):
        # A driver that names no code: it could not talk to the database.
        return Failure(Verdict.OUTAGE, f"the database did not answer ({type(driver_error).__name__})")
    if isinstance(driver_error, _UNREACHABLE) or isinstance(error, _UNREACHABLE):
        return Failure(Verdict.OUTAGE, f"the database is not reachable ({type(driver_error).__name__})")
    return Failure(Verdict.POISON, type(driver_error).__name__)


def _by_prefix(
    table: dict[str, tuple[Verdict, str]], code: str, otherwise: tuple[Verdict, str]
) -> tuple[Verdict, str]:
    for length in range(len(code), 0, -1):
        found = table.get(code[:length])
        if found is not None:
            return found
    return otherwise
