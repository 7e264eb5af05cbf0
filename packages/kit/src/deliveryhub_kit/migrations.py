"""Alembic for every service: the shared env.py body, upgrade/downgrade, creating the database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from alembic import command, context
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, pool, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from deliveryhub_kit.settings import async_database_url


def alembic_config(script_location: Path, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    # ConfigParser interpolation would read a % in a password as a reference.
    config.set_main_option("sqlalchemy.url", async_database_url(database_url).replace("%", "%%"))
    return config


def upgrade(script_location: Path, database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(script_location, database_url), revision)


def downgrade(script_location: Path, database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(script_location, database_url), revision)


def head_revision(script_location: Path) -> str:
    """The newest revision of a service's migrations."""
    head = ScriptDirectory.from_config(
        alembic_config(script_location, "postgresql://unused")
    ).get_current_head()
    assert head is not None, f"no migrations in {script_location}"
    return head


async def current_revision(connection: AsyncConnection) -> str | None:
    """The revision the database is at, or None if it was never migrated."""
    try:
        result = await connection.execute(text("SELECT version_num FROM alembic_version"))
    except sa_exc.ProgrammingError:
        return None
    except sa_exc.OperationalError:
        # SQLite says "no such table" this way; on PostgreSQL it means the server is away.
        if connection.dialect.name == "sqlite":
            return None
        raise
    return result.scalar_one_or_none()


def run_env(target_metadata: MetaData) -> None:
    """The body of a service's `env.py`: migrate the configured database online, or print SQL."""
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is not configured"
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return

    def migrate(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(migrate)
        finally:
            await engine.dispose()

    connection = context.config.attributes.get("connection")
    if connection is not None:
        migrate(connection)
    else:
        asyncio.run(run())


@asynccontextmanager
async def server_connection(
    database_url: str, *, connect_timeout: float = 10
) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the server's `postgres` database, for work on databases themselves."""
    url = make_url(async_database_url(database_url))
    connection = await asyncpg.connect(
        user=url.username,
        password=url.password,
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        database="postgres",
        timeout=connect_timeout,
    )
    try:
        yield connection
    finally:
        await connection.close()


def _quoted_database(database_url: str) -> tuple[str, str]:
    name = make_url(async_database_url(database_url)).database
    assert name, "the database URL names no database"
    return name, '"' + name.replace('"', '""') + '"'


async def create_database_if_missing(database_url: str) -> bool:
    """Create the database the URL names, unless it exists; True if it was created."""
    name, quoted = _quoted_database(database_url)
    async with server_connection(database_url) as connection:
        if await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        await connection.execute(f"CREATE DATABASE {quoted}")
        return True


async def drop_database(database_url: str) -> None:
    """Drop the database the URL names, ending its sessions first."""
    _, quoted = _quoted_database(database_url)
    async with server_connection(database_url) as connection:
        await connection.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
