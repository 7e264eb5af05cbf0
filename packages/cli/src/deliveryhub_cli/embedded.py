"""`deliveryhub up --embedded`: the three services in this one process, for a machine with neither
PostgreSQL nor RabbitMQ.

Each service runs unchanged on its own SQLite file, and the two that talk over the broker share the
in-process one (`memory://`), whose messages are kept in a file beside them. Everything lives in
one data folder, kept between runs: stopping the process, even killing it, loses no event (the
outboxes keep what was not yet confirmed, the broker's file what was not yet acked).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import structlog
import uvicorn
from fastapi import FastAPI

from deliveryhub_cli.banner import print_welcome
from deliveryhub_cli.environment import service_urls
from deliveryhub_cli.services import SERVICES, migrate
from deliveryhub_delivery.app import create_app as create_delivery_app
from deliveryhub_delivery.settings import DeliverySettings
from deliveryhub_kit.keys import ensure_development_keys
from deliveryhub_kit.logs import configure_logging
from deliveryhub_orders.app import create_app as create_orders_app
from deliveryhub_orders.settings import OrdersSettings
from deliveryhub_web.app import create_app as create_web_app
from deliveryhub_web.settings import WebSettings

if TYPE_CHECKING:
    from deliveryhub_cli.up import UpOptions

SQLITE_FILE_SUFFIXES = ("", "-wal", "-shm")


class DataFolderInUse(Exception):
    """Another embedded system runs on the same data folder."""


@dataclass(frozen=True)
class EmbeddedData:
    """Where the embedded system keeps its state: one folder, kept between runs."""

    folder: Path

    def database(self, service: str) -> Path:
        return self.folder / f"{service}.sqlite3"

    def database_url(self, service: str) -> str:
        return f"sqlite+aiosqlite:///{self.database(service).resolve()}"

    @property
    def broker(self) -> Path:
        return self.folder / "broker.sqlite3"

    @property
    def broker_url(self) -> str:
        return f"memory://{self.broker.resolve()}"

    @property
    def keys(self) -> Path:
        return self.folder / "keys"

    def files(self) -> list[Path]:
        """The databases and the broker's messages, with SQLite's journal files."""
        stores = [self.database(service.name) for service in SERVICES] + [self.broker]
        return [store.with_name(store.name + suffix) for store in stores for suffix in SQLITE_FILE_SUFFIXES]

    def reset(self) -> None:
        """Delete the databases and the queued messages; the token keys stay."""
        for path in self.files():
            path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder for this process: two brokers on one file would hand out a message twice."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / "embedded.lock").open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as error:
                raise DataFolderInUse(
                    f"another `deliveryhub up --embedded` is running on {self.folder}"
                ) from error
            yield


def run_embedded(options: UpOptions) -> int:
    """Migrate the SQLite files and serve the three services in this process until Ctrl-C."""
    data = EmbeddedData(options.data_dir)
    try:
        with data.lock():
            taken = [port for port in options.ports.values() if not _can_listen(options.host, port)]
            if taken:
                print(
                    f"deliveryhub up: port {taken[0]} on {options.host} is taken (another system "
                    "running?); stop it or choose --orders-port, --delivery-port, --web-port",
                    file=sys.stderr,
                )
                return 2
            if options.reset:
                data.reset()
            print(f"Delivery Hub: preparing the embedded system in {data.folder}/")
            for service in SERVICES:
                migrate(data.database_url(service.name), service)
                print(f"  {service.name:9} database migrated ({data.database(service.name)})")
            ensure_development_keys(data.keys.resolve())
            return asyncio.run(serve(build_apps(options, data), options, data))
    except DataFolderInUse as error:
        print(f"deliveryhub up: {error}", file=sys.stderr)
        return 2


def _can_listen(host: str, port: int) -> bool:
    with socket.socket() as probe:
        # As uvicorn binds: connections of an earlier run that linger in TIME_WAIT do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def build_apps(options: UpOptions, data: EmbeddedData) -> dict[str, FastAPI]:
    """The three apps as their factories build them, on the embedded adapters."""
    keys = data.keys.resolve()
    ports = options.ports
    urls = service_urls(options.host, ports)
    orders = OrdersSettings(
        database_url=data.database_url("orders"),
        amqp_url=data.broker_url,
        broker_prefix=options.broker_prefix,
        keys_dir=keys,
        host=options.host,
        port=ports["orders"],
    )
    delivery = DeliverySettings(
        database_url=data.database_url("delivery"),
        amqp_url=data.broker_url,
        broker_prefix=options.broker_prefix,
        keys_dir=keys,
        host=options.host,
        port=ports["delivery"],
        # No producer outside this process can reach the in-process broker's queues.
        legacy_queue_prefix=None,
    )
    web = WebSettings(
        database_url=data.database_url("web"),
        keys_dir=keys,
        host=options.host,
        port=ports["web"],
        orders_url=urls["orders"],
        delivery_url=urls["delivery"],
    )
    # One process, one log: each line still names its service (see `_serve_as`).
    configure_logging("deliveryhub", level=orders.log_level, json_lines=orders.log_json)
    return {
        "orders": create_orders_app(orders),
        "delivery": create_delivery_app(delivery),
        "web": create_web_app(web),
    }


class _Server(uvicorn.Server):
    """One of the process's servers: the process, not each server, answers Ctrl-C."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve_as(service: str, server: _Server) -> None:
    # Requests, consumers and the relay all start from here, so their log lines name the service.
    structlog.contextvars.bind_contextvars(service=service)
    try:
        await server.serve()
    except SystemExit as error:  # uvicorn's way to give up starting; the other servers stop in order
        raise RuntimeError(f"{service} could not start") from error


async def serve(apps: dict[str, FastAPI], options: UpOptions, data: EmbeddedData) -> int:
    """Run the servers on one event loop; Ctrl-C stops them together, a second one at once."""
    servers = {
        name: _Server(
            uvicorn.Config(
                app,
                host=options.host,
                port=options.ports[name],
                log_config=None,
                timeout_graceful_shutdown=10,
            )
        )
        for name, app in apps.items()
    }
    stopping = asyncio.Event()

    def stop() -> None:
        for server in servers.values():
            server.should_exit = True
        stopping.set()

    def on_signal() -> None:
        if stopping.is_set():  # a second Ctrl-C: stop without waiting for what is in flight
            for server in servers.values():
                server.force_exit = True
        stop()

    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, on_signal)
    tasks = [
        asyncio.create_task(_serve_as(name, server), name=f"serve-{name}") for name, server in servers.items()
    ]
    bases = service_urls(options.host, options.ports)
    waiting = dict(bases)
    code = 0
    try:
        async with asyncio.timeout(options.ready_timeout):
            await _wait_until_ready(waiting, tasks, stopping)
    except TimeoutError:
        late = ", ".join(waiting)
        print(f"deliveryhub up: not ready after {options.ready_timeout:.0f}s: {late}", file=sys.stderr)
        code = 1
    except RuntimeError as error:
        print(f"deliveryhub up: {error}", file=sys.stderr)
        code = 1
    else:
        if not stopping.is_set():
            print_welcome(bases, legacy_prefix="", embedded_in=data.folder)
            stopped = asyncio.create_task(stopping.wait())
            await asyncio.wait([*tasks, stopped], return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not stopping.is_set():
                print("deliveryhub up: a service stopped by itself", file=sys.stderr)
                code = 1
    print("\nstopping…", flush=True)
    stop()
    await asyncio.gather(*tasks, return_exceptions=True)
    print("stopped", flush=True)
    return code


async def _wait_until_ready(
    waiting: dict[str, str], tasks: list[asyncio.Task[None]], stopping: asyncio.Event
) -> None:
    """Poll each service's readiness, crossing off from `waiting` those that answer."""
    async with httpx.AsyncClient(timeout=2.0) as client:
        while waiting and not stopping.is_set():
            if any(task.done() for task in tasks):
                raise RuntimeError("a service stopped while starting")
            for name, base in list(waiting.items()):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{base}/health/ready")).status_code == 200:
                        del waiting[name]
            await asyncio.sleep(0.1)
