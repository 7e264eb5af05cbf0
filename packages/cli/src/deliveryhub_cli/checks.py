"""Whether PostgreSQL and RabbitMQ answer, said in one clear line when they do not."""

from __future__ import annotations

import logging

import aio_pika
import asyncpg
from sqlalchemy.engine import make_url

from deliveryhub_kit.migrations import server_connection
from deliveryhub_kit.settings import async_database_url


class NotReachable(Exception):
    """A server the system needs does not answer; the message says how to start it."""


async def check_postgres(postgres_url: str) -> None:
    url = make_url(async_database_url(postgres_url))
    try:
        async with server_connection(postgres_url, connect_timeout=3):
            pass
    except (TimeoutError, OSError, asyncpg.PostgresError) as error:
        where = f"{url.host or '127.0.0.1'}:{url.port or 5432}"
        raise NotReachable(
            f"PostgreSQL does not answer at {where} ({type(error).__name__}: {error}); start it "
            "(e.g. `pg_ctlcluster <version> main start`) or pass --postgres URL"
        ) from error


async def check_rabbitmq(amqp_url: str) -> None:
    # The client logs each failed attempt itself; the one line below says it better.
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    logging.getLogger("aio_pika").setLevel(logging.CRITICAL)
    try:
        connection = await aio_pika.connect(amqp_url, timeout=3)
    except (TimeoutError, OSError, aio_pika.exceptions.AMQPException) as error:
        where = make_url(amqp_url.replace("amqp://", "postgresql://", 1))
        raise NotReachable(
            f"RabbitMQ does not answer at {where.host}:{where.port or 5672} ({type(error).__name__}: "
            f"{error}); start it (e.g. `rabbitmq-server -detached`) or pass --amqp URL"
        ) from error
    await connection.close()
