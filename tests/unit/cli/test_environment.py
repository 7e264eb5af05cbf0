"""The environment a service process is started with is what the service's settings read."""

from __future__ import annotations

from pathlib import Path

import pytest

from deliveryhub_cli.environment import console_upstreams, service_environment, service_urls
from deliveryhub_delivery.settings import DeliverySettings
from deliveryhub_web.settings import WebSettings


def started_with(monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)


def test_a_service_reads_its_database_broker_names_keys_and_the_overrides(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    started_with(
        monkeypatch,
        service_environment(
            database_url="postgresql+asyncpg://postgres@db:5432/run_delivery",
            amqp_url="amqp://guest:guest@broker:5672/",
            broker_prefix="run.",
            keys_dir=tmp_path / "keys",
            overrides={"LEGACY_QUEUE_PREFIX": "shop_", "LOG_LEVEL": "WARNING"},
        ),
    )

    settings = DeliverySettings()

    assert settings.async_database_url == "postgresql+asyncpg://postgres@db:5432/run_delivery"
    assert settings.amqp_url == "amqp://guest:guest@broker:5672/"
    assert settings.broker_prefix == "run."
    assert settings.keys_dir == tmp_path / "keys"
    assert settings.legacy_queue_prefix == "shop_"
    assert settings.log_level == "WARNING"


def test_without_keys_the_process_keeps_the_keys_folder_it_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYS_DIR", "keys-of-the-caller")

    environment = service_environment(database_url="sqlite:///x", amqp_url="memory://", broker_prefix="")

    assert environment["KEYS_DIR"] == "keys-of-the-caller"


def test_the_console_is_told_where_the_apis_answer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    urls = service_urls("127.0.0.1", {"orders": 9001, "delivery": 9002, "web": 9000})
    started_with(monkeypatch, console_upstreams(urls))

    settings = WebSettings()

    assert (settings.orders_url, settings.delivery_url) == ("http://127.0.0.1:9001", "http://127.0.0.1:9002")
    assert urls["web"] == "http://127.0.0.1:9000"
