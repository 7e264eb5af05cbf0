"""Whether PostgreSQL and RabbitMQ answer, said in one clear line when they do not."""

from __future__ import annotations

import asyncio
import logging

import aio_pika
import asyncpg
from sqlalchemy.engine import make_url

from deliveryhub_kit.migrations import server_connection
from deliveryhub_kit.settings import async_database_url


class NotReachable(Exception):
    """A server the system needs does not answer; the message says how to start it."""


def where(server_url: str) -> str:
    """The `host:port` of a PostgreSQL or RabbitMQ URL."""
    if server_url.startswith(("amqp://", "amqps://")):
        url = make_url("postgresql://" + server_url.split("://", 1)[1])
        return f"{url.host or '127.0.0.1'}:{url.port or 5672}"
    url = make_url(async_database_url(server_url))
    return f"{url.host or '127.0.0.1'}:{url.port or 5432}"


async def unreachable(postgres_url: str, amqp_url: str) -> list[NotReachable]:
    """Which of the two servers does not answer, checked together."""
    outcomes = await asyncio.gather(
        check_postgres(postgres_url), check_rabbitmq(amqp_url), return_exceptions=True
    )
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, NotReachable):
            raise outcome
    return [outcome for outcome in outcomes if isinstance(outcome, NotReachable)]


async def check_postgres(postgres_url: str) -> None:
    try:
        async with server_connection(postgres_url, connect_timeout=3):
            pass
    except (TimeoutError, OSError, asyncpg.PostgresError) as error:
        raise NotReachable(
            f"PostgreSQL does not answer at {where(postgres_url)} ({type(error).__name__}: {error}); "
            "start it (e.g. `pg_ctlcluster <version> main start`), pass --postgres URL, or use --embedded"
        ) from error


async def check_rabbitmq(amqp_url: str) -> None:
    # The client logs each failed attempt itself; the one line below says it better.
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    logging.getLogger("aio_pika").setLevel(logging.CRITICAL)
    try:
        connection = await aio_pika.connect(amqp_url, timeout=3)
    except (TimeoutError, OSError, aio_pika.exceptions.AMQPException) as error:
        raise NotReachable(
            f"RabbitMQ does not answer at {where(amqp_url)} ({type(error).__name__}: "
            f"{error}); start it (e.g. `rabbitmq-server -detached`), pass --amqp URL, or use --embedded"
        ) from error
    await connection.close()
