"""The one statement writing a transaction's rows: its shape and the arguments it takes."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, Uuid
from sqlalchemy.ext.asyncio import create_async_engine

from deliveryhub_kit.one_statement import OneStatement, Rows
from deliveryhub_kit.unit_of_work import RowChange

# The services' dialect; the engine connects lazily and these tests never reach a database.
POSTGRESQL = create_async_engine("postgresql+asyncpg://unused@127.0.0.1:1/unused").dialect
EVENT_ID = uuid.uuid4()
metadata = MetaData()
PARCELS = Table(
    "parcel",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("label", String(10)),
    Column("attempts", Integer, default=3),
    Column("note", String(10)),
)
EVENTS = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", Uuid, default=lambda: EVENT_ID),
    Column("routing_key", String(100)),
)


def test_one_table_is_one_insert_whose_missing_columns_take_their_python_defaults() -> None:
    statement, arguments = OneStatement(POSTGRESQL)({PARCELS: [{"label": "a"}, {"label": "b"}]})

    # The key left to the database; `note` has no default: NULL, as SQLAlchemy's INSERT gives it.
    assert statement == "INSERT INTO parcel (label, attempts) VALUES ($1, $2), ($3, $4)"
    assert arguments == ["a", 3, "b", 3]


def test_several_tables_and_row_shapes_are_written_in_order_by_one_statement() -> None:
    rows: Rows = {
        PARCELS: [{"label": "a"}, {"label": "b", "note": "x"}],
        EVENTS: [{"routing_key": "order.created"}],
    }
    statement, arguments = OneStatement(POSTGRESQL)(rows)

    assert statement == (
        "WITH w0 AS (INSERT INTO parcel (label, attempts) VALUES ($1, $2)),"
        " w1 AS (INSERT INTO parcel (label, attempts, note) VALUES ($3, $4, $5))"
        " INSERT INTO outbox (event_id, routing_key) VALUES ($6, $7)"
    )
    assert arguments == ["a", 3, "b", 3, "x", EVENT_ID, "order.created"]


def test_a_column_the_table_does_not_have_is_refused() -> None:
    with pytest.raises(KeyError, match="parcel has no column colour"):
        OneStatement(POSTGRESQL)({PARCELS: [{"label": "a", "colour": "red"}]})


def test_changes_are_updates_by_primary_key_ahead_of_the_inserts() -> None:
    changes = [
        RowChange(PARCELS, {"id": 7}, {"label": "paid", "attempts": 2}),
        RowChange(PARCELS, {"id": 8}, {"note": None}),
    ]
    statement, arguments = OneStatement(POSTGRESQL)({EVENTS: [{"routing_key": "order.paid"}]}, changes)

    assert statement == (
        "WITH w0 AS (UPDATE parcel SET label = $1, attempts = $2 WHERE id = $3),"
        " w1 AS (UPDATE parcel SET note = $4 WHERE id = $5)"
        " INSERT INTO outbox (event_id, routing_key) VALUES ($6, $7)"
    )
    assert arguments == ["paid", 2, 7, None, 8, EVENT_ID, "order.paid"]


def test_a_change_alone_is_its_update() -> None:
    statement, arguments = OneStatement(POSTGRESQL)({}, [RowChange(PARCELS, {"id": 7}, {"note": "x"})])

    assert statement == "UPDATE parcel SET note = $1 WHERE id = $2"
    assert arguments == ["x", 7]


def test_a_change_of_a_column_the_table_does_not_have_is_refused() -> None:
    with pytest.raises(KeyError, match="parcel has no column colour"):
        OneStatement(POSTGRESQL)({}, [RowChange(PARCELS, {"id": 7}, {"colour": "red"})])
