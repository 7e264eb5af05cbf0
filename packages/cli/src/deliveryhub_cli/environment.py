"""The environment a service process starts with and the addresses it answers on, built once for
`deliveryhub up`, the bench and the tests."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def service_environment(
    *,
    database_url: str,
    amqp_url: str,
    broker_prefix: str,
    keys_dir: Path | None = None,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """This process's environment with a service's database, broker, broker names and keys; the
    caller's overrides last."""
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "AMQP_URL": amqp_url,
        "BROKER_PREFIX": broker_prefix,
    }
    if keys_dir is not None:
        environment["KEYS_DIR"] = str(keys_dir)
    return {**environment, **(overrides or {})}


def console_upstreams(urls: Mapping[str, str]) -> dict[str, str]:
    """The variables that tell the web console where the orders and delivery APIs answer."""
    return {"ORDERS_URL": urls["orders"], "DELIVERY_URL": urls["delivery"]}


def service_urls(host: str, ports: Mapping[str, int]) -> dict[str, str]:
    """Each service's base URL on `host`, by name."""
    return {name: f"http://{host}:{port}" for name, port in ports.items()}
