"""The in-process broker's persistence: what a hub writes so that a start on the same file finds
it again."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from deliveryhub_kit.broker import HeaderValue
from deliveryhub_kit.memory_broker.queues import QueuedMessage


class Store:
    """A hub's exchanges, queues, bindings and messages in an SQLite file.

    Each call is one short local transaction, made in line: the file then changes in the very
    order the hub does, and a publish returns only once its message is written.
    """

    SCHEMA = """
        CREATE TABLE IF NOT EXISTS exchanges (name TEXT PRIMARY KEY, type TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS queues (name TEXT PRIMARY KEY, arguments TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS bindings (
            exchange TEXT NOT NULL, binding_key TEXT NOT NULL, queue TEXT NOT NULL,
            PRIMARY KEY (exchange, binding_key, queue)
        );
        CREATE TABLE IF NOT EXISTS messages (
            id INTEGER PRIMARY KEY, queue TEXT NOT NULL, body BLOB NOT NULL, properties TEXT NOT NULL,
            exchange TEXT NOT NULL, routing_key TEXT NOT NULL, delivered INTEGER NOT NULL,
            expires_at REAL
        );
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        # A write survives the process at once (not the machine: this is a development mode).
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(self.SCHEMA)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def load(
        self,
    ) -> tuple[
        list[tuple[str, str]],
        list[tuple[str, dict[str, HeaderValue]]],
        list[tuple[str, str, str]],
        list[QueuedMessage],
    ]:
        """Everything stored: exchanges, queues, bindings, and the messages in the order published."""
        db = self._db
        exchanges = [(str(name), str(kind)) for name, kind in db.execute("SELECT name, type FROM exchanges")]
        queues = [
            (str(name), json.loads(arguments)) for name, arguments in db.execute("SELECT * FROM queues")
        ]
        bindings = [
            (str(exchange), str(key), str(queue))
            for exchange, key, queue in db.execute("SELECT exchange, binding_key, queue FROM bindings")
        ]
        messages = [
            QueuedMessage(
                id=row[0],
                queue=row[1],
                body=bytes(row[2]),
                message_id=properties.get("message_id"),
                content_type=properties.get("content_type"),
                type=properties.get("type"),
                headers=properties.get("headers") or {},
                exchange=row[4],
                routing_key=row[5],
                delivered=bool(row[6]),
                expires_at=row[7],
                returns=int(properties.get("returns") or 0),
            )
            for row in db.execute(
                "SELECT id, queue, body, properties, exchange, routing_key, delivered, expires_at "
                "FROM messages ORDER BY id"
            )
            for properties in (json.loads(row[3]),)
        ]
        return exchanges, queues, bindings, messages

    def last_id(self) -> int:
        """The highest message id stored (0 for none), which new ids follow."""
        row = self._db.execute("SELECT max(id) FROM messages").fetchone()
        return int(row[0] or 0)

    def save_exchange(self, name: str, kind: str) -> None:
        """Store an exchange, replacing one of the same name."""
        self._db.execute("INSERT OR REPLACE INTO exchanges VALUES (?, ?)", (name, kind))

    def save_queue(self, name: str, arguments: Mapping[str, HeaderValue]) -> None:
        """Store a queue and its arguments, replacing one of the same name."""
        self._db.execute("INSERT OR REPLACE INTO queues VALUES (?, ?)", (name, json.dumps(dict(arguments))))

    def save_binding(self, exchange: str, key: str, queue: str) -> None:
        """Store a binding, unless it is stored already."""
        self._db.execute("INSERT OR IGNORE INTO bindings VALUES (?, ?, ?)", (exchange, key, queue))

    def write(self, added: Sequence[QueuedMessage], deleted: Sequence[int]) -> None:
        """Add and delete messages in one transaction: a move between queues is all or nothing."""
        with self._transaction() as db:
            db.executemany("DELETE FROM messages WHERE id = ?", [(message_id,) for message_id in deleted])
            db.executemany(
                "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        message.id,
                        message.queue,
                        message.body,
                        _properties(message),
                        message.exchange,
                        message.routing_key,
                        int(message.delivered),
                        message.expires_at,
                    )
                    for message in added
                ],
            )

    def mark_delivered(self, message_id: int) -> None:
        """Note that a message was handed out: after a restart it comes as a redelivery."""
        self._db.execute("UPDATE messages SET delivered = 1 WHERE id = ?", (message_id,))

    def mark_returned(self, message: QueuedMessage) -> None:
        """Store a returned message's count of returns."""
        self._db.execute(
            "UPDATE messages SET properties = ? WHERE id = ?", (_properties(message), message.id)
        )

    def close(self) -> None:
        """Close the file; what is stored stays for the next start."""
        self._db.close()


def _properties(message: QueuedMessage) -> str:
    return json.dumps(
        {
            "message_id": message.message_id,
            "content_type": message.content_type,
            "type": message.type,
            "headers": message.headers,
            "returns": message.returns,
        }
    )
