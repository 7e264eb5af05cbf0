"""The services `deliveryhub up` runs, and how each one's database is named and migrated."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

import deliveryhub_delivery
import deliveryhub_orders
import deliveryhub_web
from deliveryhub_kit.migrations import create_database_if_missing, upgrade
from deliveryhub_kit.settings import async_database_url


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    app_factory: str
    port: int
    database: str
    migrations: Path


SERVICES = (
    ServiceSpec(
        "orders",
        "deliveryhub_orders.app:create_app",
        8001,
        "orders",
        Path(deliveryhub_orders.__file__).parent / "migrations",
    ),
    ServiceSpec(
        "delivery",
        "deliveryhub_delivery.app:create_app",
        8002,
        "delivery",
        Path(deliveryhub_delivery.__file__).parent / "migrations",
    ),
    ServiceSpec(
        "web",
        "deliveryhub_web.app:create_app",
        8000,
        "web",
        Path(deliveryhub_web.__file__).parent / "migrations",
    ),
)


def database_url(postgres_url: str, database: str) -> str:
    """The URL of one service's database on the given server."""
    return (
        make_url(async_database_url(postgres_url))
        .set(database=database)
        .render_as_string(hide_password=False)
    )


async def prepare_database(postgres_url: str, service: ServiceSpec, database_prefix: str = "") -> str:
    """Create the service's database if missing; its URL."""
    url = database_url(postgres_url, database_prefix + service.database)
    await create_database_if_missing(url)
    return url


def migrate(url: str, service: ServiceSpec) -> None:
    upgrade(service.migrations, url)
