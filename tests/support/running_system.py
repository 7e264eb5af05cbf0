"""The whole system started by `deliveryhub up` on names of its own: on the real PostgreSQL and RabbitMQ,
or as the embedded system it falls back to when neither answers; and the tests' HTTP view of it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import httpx
import pytest

from deliveryhub_cli.tokens import make_token
from deliveryhub_contracts.topology import DELIVERY_ORDER_EVENTS, ORDERS_DELIVERY_EVENTS, Names, legacy_queues
from deliveryhub_kit.identity import Role
from deliveryhub_kit.migrations import drop_database
from deliveryhub_kit.settings import DEFAULT_AMQP_URL, DEFAULT_POSTGRES, ServiceSettings
from tests.support.ports import free_port
from tests.support.waiting import eventually

T = TypeVar("T")

DELIVERYHUB = str(Path(sys.executable).parent / "deliveryhub")
# The systems the suite starts side by side on one PostgreSQL share its 100 connections: each
# process keeps a few, and opens a few more at busy moments, instead of keeping up to 20.
SHARED_SERVER_POOL = {"DATABASE_POOL_SIZE": "4", "DATABASE_MAX_OVERFLOW": "4"}
# A test's connection left idle is not reused once the server may be closing it (uvicorn closes
# one idle for 5 s): a request sent on it at that moment fails with no answer.
CLIENT_LIMITS = httpx.Limits(keepalive_expiry=2.0)
LAPTEV = uuid.UUID("85db966c-67f1-411e-95c0-f02edfa5464a")
ZUEV = uuid.UUID("31babbb3-5541-4a2a-8201-537cdff25fed")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end on a thread of its own (the browser holds this thread's loop)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@dataclass
class System:
    orders_url: str
    delivery_url: str
    web_url: str
    data_dir: Path
    legacy_prefix: str
    broker_prefix: str
    log: Path
    # "servers" (PostgreSQL and RabbitMQ) or "embedded" (one process, SQLite, in-process broker)
    mode: str = "servers"
    # On the servers: the prefix of the services' database names.
    database_prefix: str = ""
    orders: httpx.Client = field(init=False)
    delivery: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.orders = httpx.Client(base_url=self.orders_url, timeout=10, limits=CLIENT_LIMITS)
        self.delivery = httpx.Client(base_url=self.delivery_url, timeout=10, limits=CLIENT_LIMITS)

    def auth(
        self, role: Role, *, subject: uuid.UUID | None = None, deliveryman_id: uuid.UUID | None = None
    ) -> dict[str, str]:
        token = make_token(self.data_dir / "keys", role, subject=subject, deliveryman_id=deliveryman_id)
        return {"Authorization": f"Bearer {token}"}


async def _delete_broker_names(names: list[str], exchange: str) -> None:
    connection = await aio_pika.connect(DEFAULT_AMQP_URL)
    async with connection:
        channel = await connection.channel()
        for name in names:
            await channel.queue_delete(name)
        await channel.exchange_delete(exchange)


def system_on_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    run = uuid.uuid4().hex[:8]
    database_prefix = f"e2e_{run}_"
    broker_prefix = f"e2e-{run}."
    legacy_prefix = f"e2e_{run}_"
    data_dir = tmp_path_factory.mktemp("deliveryhub")
    orders_port, delivery_port, web_port = free_port(), free_port(), free_port()
    log = data_dir / "up.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                DELIVERYHUB,
                "up",
                "--data-dir",
                str(data_dir),
                "--database-prefix",
                database_prefix,
                "--broker-prefix",
                broker_prefix,
                "--legacy-queue-prefix",
                legacy_prefix,
                "--orders-port",
                str(orders_port),
                "--delivery-port",
                str(delivery_port),
                "--web-port",
                str(web_port),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **SHARED_SERVER_POOL},
        )
    started = System(
        orders_url=f"http://127.0.0.1:{orders_port}",
        delivery_url=f"http://127.0.0.1:{delivery_port}",
        web_url=f"http://127.0.0.1:{web_port}",
        data_dir=data_dir,
        legacy_prefix=legacy_prefix,
        broker_prefix=broker_prefix,
        log=log,
        database_prefix=database_prefix,
    )
    try:
        eventually(
            lambda: True if "Delivery Hub is up" in log.read_text() or process.poll() is not None else None,
            what="`deliveryhub up` to report the system up",
            timeout=90,
        )
        assert process.poll() is None, f"`deliveryhub up` exited:\n{log.read_text()}"
        yield started
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            code = -1
        names = Names(broker_prefix)
        queues = [
            names.queue(DELIVERY_ORDER_EVENTS),
            names.queue(ORDERS_DELIVERY_EVENTS),
            *legacy_queues(legacy_prefix),
        ]
        delays = ServiceSettings.model_fields["retry_delays_seconds"].default
        parked = [names.dead_letter_queue(q) for q in queues]
        waiting = [names.retry_queue(q, delay) for q in queues for delay in delays]
        run_async(_delete_broker_names([*queues, *parked, *waiting], names.exchange))
        for database in ("orders", "delivery", "web"):
            run_async(drop_database(f"{DEFAULT_POSTGRES}/{database_prefix}{database}"))
    assert code == 0, f"`deliveryhub up` did not stop cleanly on Ctrl-C ({code}):\n{log.read_text()}"


def closed_server_environment() -> tuple[dict[str, str], int, int]:
    """The environment of a machine whose PostgreSQL and RabbitMQ do not answer: both point at
    local ports where nothing listens; and those two ports."""
    postgres_port, amqp_port = free_port(), free_port()
    environment = {
        **os.environ,
        "POSTGRES_SERVER_URL": f"postgresql://postgres@127.0.0.1:{postgres_port}",
        "AMQP_URL": f"amqp://guest:guest@127.0.0.1:{amqp_port}/",
    }
    return environment, postgres_port, amqp_port


def start_embedded(
    system: System, *extra: str, environment: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`deliveryhub up` on the system's data folder and ports, its output appended to the log,
    once it reports the system up."""
    with system.log.open("ab") as output:
        process = subprocess.Popen(
            [
                DELIVERYHUB,
                "up",
                *extra,
                "--data-dir",
                str(system.data_dir),
                "--broker-prefix",
                system.broker_prefix,
                "--orders-port",
                str(port_of(system.orders_url)),
                "--delivery-port",
                str(port_of(system.delivery_url)),
                "--web-port",
                str(port_of(system.web_url)),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
        )
    starts = system.log.read_text().count("Delivery Hub is up")
    eventually(
        lambda: (
            True
            if system.log.read_text().count("Delivery Hub is up") > starts or process.poll() is not None
            else None
        ),
        what="`deliveryhub up` to report the system up",
        timeout=90,
    )
    assert process.poll() is None, f"`deliveryhub up` exited:\n{system.log.read_text()}"
    return process


def stop(process: subprocess.Popen[bytes], log: Path) -> None:
    """Ctrl-C, and a clean exit within the grace period."""
    process.send_signal(signal.SIGINT)
    try:
        code = process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        code = -1
    assert code == 0, f"`deliveryhub up` did not stop cleanly on Ctrl-C ({code}):\n{log.read_text()}"


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def new_embedded_system(folder: Path) -> System:
    return System(
        orders_url=f"http://127.0.0.1:{free_port()}",
        delivery_url=f"http://127.0.0.1:{free_port()}",
        web_url=f"http://127.0.0.1:{free_port()}",
        data_dir=folder / "data",
        # The in-process broker cannot be reached from another process: no teaching-design queues.
        legacy_prefix="",
        broker_prefix="",
        log=folder / "up.log",
        mode="embedded",
    )


def embedded_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """`deliveryhub up` alone on a machine where neither server answers: the embedded system."""
    started = new_embedded_system(tmp_path_factory.mktemp("deliveryhub-embedded"))
    environment, postgres_port, amqp_port = closed_server_environment()
    process = start_embedded(started, environment=environment)
    try:
        said = [line for line in started.log.read_text().splitlines() if "embedded" in line.lower()]
        assert said, started.log.read_text()
        assert f"PostgreSQL (127.0.0.1:{postgres_port})" in said[0]
        assert f"RabbitMQ (127.0.0.1:{amqp_port})" in said[0]
        yield started
    finally:
        stop(process, started.log)
