"""`deliveryhub up`: databases, migrations, the services as processes, until Ctrl-C; or, with
neither server around, the embedded system in this process."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from deliveryhub_cli.banner import print_welcome
from deliveryhub_cli.checks import NotReachable, check_postgres, check_rabbitmq, unreachable, where
from deliveryhub_cli.embedded import run_embedded
from deliveryhub_cli.environment import console_upstreams, service_environment, service_urls
from deliveryhub_cli.services import SERVICES, ServiceSpec, migrate, prepare_database
from deliveryhub_kit.keys import ensure_development_keys


@dataclass(frozen=True)
class UpOptions:
    postgres: str
    amqp: str
    host: str
    data_dir: Path
    broker_prefix: str
    database_prefix: str
    legacy_queue_prefix: str
    ports: dict[str, int]
    ready_timeout: float = 60.0
    # Worker processes per service (uvicorn's --workers): more cores for one service on one host.
    workers: int = 1
    # Run in this process on SQLite and the in-process broker, without asking for the servers.
    embedded: bool = False
    # Delete the embedded system's databases and messages first.
    reset: bool = False
    # A server URL was given on the command line: use the servers or fail, never fall back.
    servers_given: bool = False


class Stack:
    """The running service processes."""

    def __init__(self) -> None:
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self,
        service: ServiceSpec,
        env: dict[str, str],
        host: str,
        port: int,
        log: Path | None = None,
        workers: int = 1,
    ) -> None:
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            service.app_factory,
            "--host",
            host,
            "--port",
            str(port),
            "--timeout-graceful-shutdown",
            "10",
        ]
        if workers > 1:
            command += ["--workers", str(workers)]
        # A session of its own: Ctrl-C reaches only this command, which stops the services in order.
        output = None if log is None else log.open("ab")
        self.processes[service.name] = subprocess.Popen(
            command, env=env, start_new_session=True, stdout=output, stderr=output
        )
        if output is not None:
            output.close()

    def exited(self) -> dict[str, int]:
        return {
            name: code for name, process in self.processes.items() if (code := process.poll()) is not None
        }

    def stop(self, timeout: float = 20.0) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def prepare(options: UpOptions) -> dict[str, str]:
    """Check the servers, create and migrate the databases; each service's database URL."""
    asyncio.run(check_postgres(options.postgres))
    asyncio.run(check_rabbitmq(options.amqp))
    urls: dict[str, str] = {}
    for service in SERVICES:
        urls[service.name] = asyncio.run(prepare_database(options.postgres, service, options.database_prefix))
        migrate(urls[service.name], service)
        print(f"  {service.name:9} database migrated")
    return urls


def wait_until_ready(stack: Stack, urls: dict[str, str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    waiting = dict(urls)
    with httpx.Client(timeout=2.0) as client:
        while waiting:
            if exited := stack.exited():
                raise RuntimeError(f"a service stopped while starting: {exited}")
            for name, base in list(waiting.items()):
                try:
                    if client.get(f"{base}/health/ready").status_code == 200:
                        del waiting[name]
                except httpx.HTTPError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {timeout:.0f}s: {', '.join(waiting)}")
            time.sleep(0.2)


def run_up(options: UpOptions) -> int:
    if options.embedded:
        return run_embedded(options)
    if not options.servers_given:
        missing = asyncio.run(unreachable(options.postgres, options.amqp))
        if len(missing) == 2:
            print(
                f"Neither PostgreSQL ({where(options.postgres)}) nor RabbitMQ ({where(options.amqp)}) "
                "answers: starting the embedded system (SQLite files and an in-process broker, "
                f"in {options.data_dir}/) instead",
                flush=True,
            )
            return run_embedded(options)
    if options.reset:
        print("deliveryhub up: --reset clears the embedded system's data; add --embedded", file=sys.stderr)
        return 2
    print("Delivery Hub: preparing")
    try:
        database_urls = prepare(options)
    except NotReachable as error:
        print(f"deliveryhub up: {error}", file=sys.stderr)
        return 2
    keys_dir = (options.data_dir / "keys").resolve()
    ensure_development_keys(keys_dir)

    stack = Stack()
    bases = service_urls(options.host, options.ports)
    for service in SERVICES:
        extras: dict[str, str] = {}
        if service.name == "delivery" and options.legacy_queue_prefix:
            extras["LEGACY_QUEUE_PREFIX"] = options.legacy_queue_prefix
        if service.name == "web":
            extras.update(console_upstreams(bases))
        env = service_environment(
            database_url=database_urls[service.name],
            amqp_url=options.amqp,
            broker_prefix=options.broker_prefix,
            keys_dir=keys_dir,
            overrides=extras,
        )
        stack.start(service, env, options.host, options.ports[service.name], workers=options.workers)

    stopping = False

    def on_signal(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        wait_until_ready(stack, bases, options.ready_timeout)
    except RuntimeError as error:
        print(f"deliveryhub up: {error}", file=sys.stderr)
        stack.stop()
        return 1

    print_welcome(bases, legacy_prefix=options.legacy_queue_prefix)

    while not stopping:
        if exited := stack.exited():
            print(f"deliveryhub up: a service stopped: {exited}", file=sys.stderr)
            stack.stop()
            return 1
        time.sleep(0.2)
    print("\nstopping…")
    stack.stop()
    print("stopped")
    return 0
