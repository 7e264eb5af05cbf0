"""Databases of the tests' own on the shared PostgreSQL: each kind built once as a template, then copied.

Every database a test run makes is named after the run and dropped at its end, so the suite can run
twice in a row, in parallel workers, and beside a running system on the same server.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from sqlalchemy import MetaData, pool
from sqlalchemy.ext.asyncio import create_async_engine

from deliveryhub_kit.db import Database
from deliveryhub_kit.migrations import create_database_if_missing, drop_database, upgrade
from deliveryhub_kit.settings import DEFAULT_POSTGRES, async_database_url

POSTGRES_SERVER_URL = os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES).rstrip("/")

# The package holding each service's `migrations/`; a new service is one more line here.
MIGRATIONS: dict[str, str] = {
    "delivery": "deliveryhub_delivery",
    "orders": "deliveryhub_orders",
    "web": "deliveryhub_web",
}


def migrations_of(service: str) -> Path:
    """The alembic script location of a service."""
    spec = importlib.util.find_spec(MIGRATIONS[service])
    assert spec is not None, f"{MIGRATIONS[service]} is not installed"
    assert spec.origin is not None
    return Path(spec.origin).parent / "migrations"


class Databases:
    """Creates fresh databases for one test run; each kind is built once as a template and copied."""

    def __init__(self, run_id: str) -> None:
        self._run_id = run_id
        self._numbers = itertools.count(1)
        self._templates: dict[str, str] = {}
        self._live: set[str] = set()
        self._lock = asyncio.Lock()

    def url(self, name: str) -> str:
        """The URL of database `name` on the test server."""
        return f"{POSTGRES_SERVER_URL}/{name}"

    async def create_empty(self, label: str) -> str:
        """A new database with nothing in it."""
        url = self.url(self._new_name(label))
        await create_database_if_missing(url)
        self._live.add(url)
        return url

    async def create_migrated(self, service: str) -> str:
        """A new database of `service`, migrated to its newest revision."""

        async def migrate(url: str) -> None:
            # Alembic runs its own event loop, so it gets a thread of its own.
            await asyncio.to_thread(upgrade, migrations_of(service), url)

        return await self._copy_of(f"{service}_head", migrate)

    async def create_with_tables(self, label: str, metadata: MetaData) -> str:
        """A new database holding the tables of `metadata`."""

        async def create_tables(url: str) -> None:
            engine = create_async_engine(async_database_url(url), poolclass=pool.NullPool)
            try:
                async with engine.begin() as connection:
                    await connection.run_sync(metadata.create_all)
            finally:
                await engine.dispose()

        return await self._copy_of(label, create_tables)

    @asynccontextmanager
    async def with_tables(
        self, label: str, metadata: MetaData, *, pool_size: int, max_overflow: int
    ) -> AsyncIterator[Database]:
        """A `Database` on a new database holding the tables of `metadata`; dropped afterwards."""
        url = await self.create_with_tables(label, metadata)
        database = Database(async_database_url(url), pool_size=pool_size, max_overflow=max_overflow)
        try:
            yield database
        finally:
            await database.dispose()
            await self.drop(url)

    async def drop(self, url: str) -> None:
        """Drop one database this factory made."""
        await drop_database(url)
        self._live.discard(url)

    async def drop_all(self) -> None:
        """Drop every database and template this factory made."""
        for url in [*self._live, *self._templates.values()]:
            await drop_database(url)
        self._live.clear()
        self._templates.clear()

    def _new_name(self, label: str) -> str:
        return f"dh_test_{self._run_id}_{label}_{next(self._numbers)}"

    async def _copy_of(self, kind: str, build: Callable[[str], Awaitable[None]]) -> str:
        async with self._lock:
            template = self._templates.get(kind)
            if template is None:
                template = self.url(self._new_name(f"{kind}_template"))
                await create_database_if_missing(template)
                self._templates[kind] = template
                await build(template)
        url = self.url(self._new_name(kind))
        connection = await asyncpg.connect(self.url("postgres"), timeout=10)
        try:
            await connection.execute(
                f'CREATE DATABASE "{_database_name(url)}" TEMPLATE "{_database_name(template)}"'
            )
        finally:
            await connection.close()
        self._live.add(url)
        return url


def _database_name(url: str) -> str:
    return url.rsplit("/", 1)[1]
