"""Entry point of the `deliveryhub` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from deliveryhub_cli.bench import BenchOptions, compare, run_bench
from deliveryhub_cli.check import CheckOptions, check_command
from deliveryhub_cli.checks import NotReachable, check_postgres
from deliveryhub_cli.dead_letters import run_dead_letters
from deliveryhub_cli.demo import run_demo
from deliveryhub_cli.embedded import EmbeddedData
from deliveryhub_cli.services import SERVICES, database_url, migrate, prepare_database
from deliveryhub_cli.tokens import make_token
from deliveryhub_cli.up import UpOptions, run_up
from deliveryhub_kit.identity import Role
from deliveryhub_kit.settings import DEFAULT_AMQP_URL, DEFAULT_POSTGRES

DEFAULT_DATA_DIR = Path(".deliveryhub")
DEFAULT_LEGACY_PREFIX = "laptev_"


# A token cannot be taken back before it expires: the longest one this command signs is a week's.
MAX_TOKEN_HOURS = 7 * 24.0


def token_hours(text: str) -> float:
    """A token's lifetime in hours, as argparse reads it: refused outside (0, MAX_TOKEN_HOURS]."""
    try:
        hours = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of hours") from None
    if not 0 < hours <= MAX_TOKEN_HOURS:
        raise argparse.ArgumentTypeError(f"{text} is not more than 0 and at most {MAX_TOKEN_HOURS:g} hours")
    return hours


def seconds(text: str) -> float:
    """A number of seconds, as argparse reads it: finite and not negative."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds of 0 or more")
    return value


def at_least(minimum: int) -> Callable[[str], int]:
    """A whole number of `minimum` or more, as argparse reads it."""

    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} is less than {minimum}")
        return value

    return whole_number


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deliveryhub", description="Delivery Hub: orders and deliveries.")
    commands = parser.add_subparsers(dest="command", required=True)

    def server_options(command: argparse.ArgumentParser) -> None:
        # Left None when not given: `up` falls back to the embedded system only then.
        command.add_argument(
            "--postgres",
            help="PostgreSQL server URL, without a database (default: $POSTGRES_SERVER_URL, "
            f"else {DEFAULT_POSTGRES})",
        )
        command.add_argument("--amqp", help=f"RabbitMQ URL (default: $AMQP_URL, else {DEFAULT_AMQP_URL})")
        command.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="local keys and data")
        command.add_argument(
            "--database-prefix",
            default=os.environ.get("DATABASE_PREFIX", ""),
            help="prefix of the services' database names, to run several systems on one server",
        )

    up = commands.add_parser("up", help="start the whole system and wait until Ctrl-C")
    server_options(up)
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--orders-port", type=int, default=8001)
    up.add_argument("--delivery-port", type=int, default=8002)
    up.add_argument("--web-port", type=int, default=8000)
    up.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes per service on PostgreSQL and RabbitMQ (default: %(default)s); "
        "each keeps its own /metrics, so scrape replicas rather than workers",
    )
    up.add_argument("--broker-prefix", default=os.environ.get("BROKER_PREFIX", ""))
    up.add_argument(
        "--embedded",
        action="store_true",
        help="run in this one process on SQLite files and an in-process broker, in --data-dir "
        "(what `up` does by itself when neither server answers and no URL was given)",
    )
    up.add_argument(
        "--reset",
        action="store_true",
        help="with the embedded system: delete its databases and messages first",
    )
    up.add_argument(
        "--legacy-queue-prefix",
        default=os.environ.get("LEGACY_QUEUE_PREFIX", DEFAULT_LEGACY_PREFIX),
        help="also consume the teaching design's queues with this prefix ('' to turn off)",
    )

    migrate_command = commands.add_parser("migrate", help="create and migrate the services' databases")
    server_options(migrate_command)
    migrate_command.add_argument("--service", choices=[s.name for s in SERVICES] + ["all"], default="all")

    token = commands.add_parser("token", help="print a token the running services accept")
    token.add_argument("--role", choices=[role.value for role in Role], required=True)
    token.add_argument("--subject", type=uuid.UUID)
    token.add_argument("--deliveryman-id", type=uuid.UUID)
    token.add_argument(
        "--hours",
        type=token_hours,
        default=12.0,
        help=f"lifetime, more than 0 and at most {MAX_TOKEN_HOURS:g} (default: %(default)s)",
    )
    token.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)

    dead = commands.add_parser("dead-letters", help="list, replay or purge dead letters")
    dead_actions = dead.add_subparsers(dest="action", required=True)
    for action, text in (
        ("list", "show dead letters (type, subject, reason, age) without consuming them"),
        ("replay", "put dead letters back on their queue for another try"),
        ("purge", "delete dead letters, after confirmation"),
    ):
        command = dead_actions.add_parser(action, help=text)
        command.add_argument("--amqp", default=os.environ.get("AMQP_URL", DEFAULT_AMQP_URL))
        command.add_argument("--broker-prefix", default=os.environ.get("BROKER_PREFIX", ""))
        command.add_argument(
            "--legacy-queue-prefix", default=os.environ.get("LEGACY_QUEUE_PREFIX", DEFAULT_LEGACY_PREFIX)
        )
        command.add_argument("--queue", help="one dead-letter queue (default: all of the system's)")
        if action == "replay":
            which = command.add_mutually_exclusive_group()
            which.add_argument("--id", dest="message_id", help="the message id of one dead letter")
            which.add_argument("--all", dest="everything", action="store_true", help="every dead letter")
        if action == "purge":
            command.add_argument("--yes", dest="assume_yes", action="store_true", help="do not ask")

    check = commands.add_parser(
        "check", help="compare the orders and delivery databases, read-only: do the two services agree?"
    )
    check.add_argument(
        "--postgres",
        metavar="URL",
        help="PostgreSQL server URL, without a database (default: $POSTGRES_SERVER_URL, "
        f"else {DEFAULT_POSTGRES})",
    )
    check.add_argument(
        "--database-prefix",
        default=os.environ.get("DATABASE_PREFIX", ""),
        help="prefix of the services' database names on that server",
    )
    check.add_argument("--orders-database", metavar="URL", help="the orders database's URL itself")
    check.add_argument("--delivery-database", metavar="URL", help="the delivery database's URL itself")
    check.add_argument(
        "--embedded", action="store_true", help="check the embedded system's SQLite files in --data-dir"
    )
    check.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="with --embedded")
    check.add_argument(
        "--page-size",
        type=at_least(1),
        default=5000,
        metavar="N",
        help="rows read per query (default: %(default)s)",
    )
    check.add_argument(
        "--grace",
        type=seconds,
        metavar="SECONDS",
        default=60.0,
        help="a record changed this recently is in flight, not a disagreement (default: %(default)s)",
    )
    check.add_argument(
        "--stuck-after",
        type=seconds,
        metavar="SECONDS",
        default=300.0,
        help="an order canceling for longer is stuck (default: %(default)s)",
    )
    check.add_argument(
        "--limit", type=at_least(0), metavar="N", help="print at most N findings (the counts stay exact)"
    )
    check.add_argument("--json", dest="json_output", action="store_true", help="print one JSON document")
    check.add_argument(
        "--timeout",
        type=seconds,
        metavar="SECONDS",
        default=10.0,
        help="longest wait to connect and for each query (default: %(default)s)",
    )

    demo = commands.add_parser("demo", help="run the whole story against the running system")
    demo.add_argument("--orders-url", default="http://127.0.0.1:8001")
    demo.add_argument("--delivery-url", default="http://127.0.0.1:8002")
    demo.add_argument("--amqp", default=os.environ.get("AMQP_URL", DEFAULT_AMQP_URL))
    demo.add_argument(
        "--legacy-queue-prefix", default=os.environ.get("LEGACY_QUEUE_PREFIX", DEFAULT_LEGACY_PREFIX)
    )
    demo.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for each step")
    demo.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)

    bench = commands.add_parser(
        "bench", help="measure the running system against this machine's raw limits (or --compare A B)"
    )
    server_options(bench)
    bench.add_argument("--orders-url", default="http://127.0.0.1:8001")
    bench.add_argument("--delivery-url", default="http://127.0.0.1:8002")
    bench.add_argument("--broker-prefix", default=os.environ.get("BROKER_PREFIX", ""))
    bench.add_argument("--host", default="127.0.0.1", help="where --start binds its services")
    bench.add_argument(
        "--start", action="store_true", help="start a system of its own (own databases, names, ports)"
    )
    bench.add_argument("--workers", type=int, default=1, help="with --start: processes per service")
    bench.add_argument("--connections", type=int, default=64, help="HTTP connections (default: %(default)s)")
    bench.add_argument("--duration", type=float, default=10.0, help="seconds of each HTTP phase")
    bench.add_argument("--raw-seconds", type=float, default=3.0, help="seconds of each raw-limit phase")
    bench.add_argument("--orders", type=int, default=3000, help="orders of the end-to-end phase")
    bench.add_argument("--paced-rate", type=float, default=250.0, help="orders/s offered for the lag")
    bench.add_argument("--paced-seconds", type=float, default=10.0, help="seconds of the paced phase")
    bench.add_argument("--offered-rate", type=float, default=500.0, help="orders/s offered for the rate")
    bench.add_argument("--offered-seconds", type=float, default=60.0, help="seconds of that phase")
    bench.add_argument("--events", type=int, default=5000, help="events of the consumer drain")
    bench.add_argument("--outbox", type=int, default=5000, help="rows of the outbox drain")
    bench.add_argument("--timeout", type=float, default=120.0, help="longest wait of any phase")
    bench.add_argument("--results-dir", type=Path, default=Path("bench/results"))
    bench.add_argument("--json", dest="json_output", action="store_true", help="print the run as JSON")
    bench.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="two runs side by side")
    return parser


def _postgres(arguments: argparse.Namespace) -> str:
    given: str | None = arguments.postgres
    return given or os.environ.get("POSTGRES_SERVER_URL", DEFAULT_POSTGRES)


def _amqp(arguments: argparse.Namespace) -> str:
    given: str | None = arguments.amqp
    return given or os.environ.get("AMQP_URL", DEFAULT_AMQP_URL)


def _migrate(arguments: argparse.Namespace) -> int:
    postgres = _postgres(arguments)
    try:
        asyncio.run(check_postgres(postgres))
    except NotReachable as error:
        print(f"deliveryhub migrate: {error}", file=sys.stderr)
        return 2
    for service in SERVICES:
        if arguments.service in ("all", service.name):
            url = asyncio.run(prepare_database(postgres, service, arguments.database_prefix))
            migrate(url, service)
            print(f"{service.name}: migrated to the newest revision")
    return 0


def _check(arguments: argparse.Namespace) -> int:
    if arguments.embedded:
        if arguments.postgres or arguments.orders_database or arguments.delivery_database:
            _parser().error("--embedded reads --data-dir: leave out --postgres and the database URLs")
        data = EmbeddedData(arguments.data_dir)
        urls = {service: data.database_url(service) for service in ("orders", "delivery")}
    else:
        databases = {service.name: arguments.database_prefix + service.database for service in SERVICES}
        urls = {
            service: given or database_url(_postgres(arguments), databases[service])
            for service, given in (
                ("orders", arguments.orders_database),
                ("delivery", arguments.delivery_database),
            )
        }
    if arguments.timeout <= 0:
        _parser().error("--timeout must be more than 0 seconds")
    return check_command(
        CheckOptions(
            orders_database_url=urls["orders"],
            delivery_database_url=urls["delivery"],
            page_size=arguments.page_size,
            grace=timedelta(seconds=arguments.grace),
            stuck_after=timedelta(seconds=arguments.stuck_after),
            limit=arguments.limit,
            json_output=arguments.json_output,
            timeout_seconds=arguments.timeout,
        )
    )


def _bench(arguments: argparse.Namespace) -> int:
    if arguments.compare:
        first, second = arguments.compare
        return compare(first, second)
    return run_bench(
        BenchOptions(
            orders_url=arguments.orders_url,
            delivery_url=arguments.delivery_url,
            postgres=_postgres(arguments),
            database_prefix=arguments.database_prefix,
            amqp=_amqp(arguments),
            broker_prefix=arguments.broker_prefix,
            data_dir=arguments.data_dir,
            results_dir=arguments.results_dir,
            connections=arguments.connections,
            duration=arguments.duration,
            raw_seconds=arguments.raw_seconds,
            orders=arguments.orders,
            paced_rate=arguments.paced_rate,
            paced_seconds=arguments.paced_seconds,
            offered_rate=arguments.offered_rate,
            offered_seconds=arguments.offered_seconds,
            events=arguments.events,
            outbox_rows=arguments.outbox,
            timeout=arguments.timeout,
            start=arguments.start,
            workers=arguments.workers,
            host=arguments.host,
            json_output=arguments.json_output,
        )
    )


def main(argv: list[str] | None = None) -> None:
    arguments = _parser().parse_args(argv)
    if arguments.command == "up":
        servers_given = arguments.postgres is not None or arguments.amqp is not None
        if arguments.embedded and servers_given:
            _parser().error("--embedded runs without servers: leave out --postgres and --amqp")
        code = run_up(
            UpOptions(
                postgres=_postgres(arguments),
                amqp=_amqp(arguments),
                host=arguments.host,
                data_dir=arguments.data_dir,
                broker_prefix=arguments.broker_prefix,
                database_prefix=arguments.database_prefix,
                legacy_queue_prefix=arguments.legacy_queue_prefix,
                ports={
                    "orders": arguments.orders_port,
                    "delivery": arguments.delivery_port,
                    "web": arguments.web_port,
                },
                embedded=arguments.embedded,
                reset=arguments.reset,
                servers_given=servers_given,
                workers=arguments.workers,
            )
        )
    elif arguments.command == "migrate":
        code = _migrate(arguments)
    elif arguments.command == "token":
        try:
            print(
                make_token(
                    arguments.data_dir / "keys",
                    Role(arguments.role),
                    subject=arguments.subject,
                    deliveryman_id=arguments.deliveryman_id,
                    lifetime=timedelta(hours=arguments.hours),
                )
            )
            code = 0
        except ValueError as error:
            print(f"deliveryhub token: {error}", file=sys.stderr)
            code = 2
    elif arguments.command == "dead-letters":
        code = run_dead_letters(
            action=arguments.action,
            amqp_url=arguments.amqp,
            broker_prefix=arguments.broker_prefix,
            legacy_prefix=arguments.legacy_queue_prefix,
            queue=arguments.queue,
            message_id=getattr(arguments, "message_id", None),
            everything=getattr(arguments, "everything", False),
            assume_yes=getattr(arguments, "assume_yes", False),
        )
    elif arguments.command == "bench":
        code = _bench(arguments)
    elif arguments.command == "check":
        code = _check(arguments)
    else:
        code = run_demo(
            orders_url=arguments.orders_url,
            delivery_url=arguments.delivery_url,
            keys_dir=arguments.data_dir / "keys",
            amqp_url=arguments.amqp,
            legacy_prefix=arguments.legacy_queue_prefix,
            timeout=arguments.timeout,
        )
    sys.exit(code)
