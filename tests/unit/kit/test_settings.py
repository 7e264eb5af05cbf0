"""Settings as an operator gives them: environment, the teaching design's names, production rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from deliveryhub_delivery.settings import DeliverySettings
from deliveryhub_kit.keys import generate_key_pair
from deliveryhub_kit.settings import ServiceSettings, async_database_url

SETTINGS_VARIABLES = [
    "DATABASE_URL",
    "POSTGRES_URL",
    "ENVIRONMENT",
    "JWT_PUBLIC_KEY",
    "JWT_PUBLIC_KEY_FILE",
    "KEYS_DIR",
    "AMQP_URL",
    "LEGACY_QUEUE_PREFIX",
    "RETRY_DELAYS_SECONDS",
    "INBOX_RETENTION_SECONDS",
    "CONSUMER_OUTAGE_HOLD_SECONDS",
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only what a test sets is seen: no inherited variables and no `.env` in the working directory."""
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_database_url_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://app:secret@db:5432/delivery")

    assert DeliverySettings().async_database_url == "postgresql+asyncpg://app:secret@db:5432/delivery"


def test_the_teaching_designs_postgres_url_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_URL", "postgresql://app:secret@db:5432/delivery")

    assert DeliverySettings().async_database_url == "postgresql+asyncpg://app:secret@db:5432/delivery"


def test_database_url_wins_over_postgres_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://db-new/delivery")
    monkeypatch.setenv("POSTGRES_URL", "postgresql://db-old/delivery")

    assert ServiceSettings().async_database_url == "postgresql+asyncpg://db-new/delivery"


def test_the_database_url_can_come_from_a_dotenv_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("POSTGRES_URL=postgresql://from-dotenv/delivery\n")

    assert DeliverySettings().async_database_url == "postgresql+asyncpg://from-dotenv/delivery"


def test_each_service_defaults_to_its_own_database() -> None:
    settings = DeliverySettings()

    assert settings.async_database_url == "postgresql+asyncpg://postgres@127.0.0.1:5432/delivery"
    assert settings.port == 8002


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://u:p@h:5432/d", "postgresql+asyncpg://u:p@h:5432/d"),
        ("postgres://u:p@h/d", "postgresql+asyncpg://u:p@h/d"),
        ("postgresql+psycopg://h/d", "postgresql+asyncpg://h/d"),
        ("postgresql+psycopg2://h/d", "postgresql+asyncpg://h/d"),
        ("postgresql+asyncpg://h/d", "postgresql+asyncpg://h/d"),
        ("sqlite+aiosqlite:///delivery.db", "sqlite+aiosqlite:///delivery.db"),
        ("sqlite:////var/lib/delivery.sqlite3", "sqlite+aiosqlite:////var/lib/delivery.sqlite3"),
    ],
)
def test_postgres_urls_use_the_asyncio_driver(given: str, used: str) -> None:
    assert async_database_url(given) == used


def test_amqp_url_has_the_documented_default() -> None:
    assert ServiceSettings().amqp_url == "amqp://guest:guest@127.0.0.1:5672/"


def test_the_broker_url_may_also_be_given_as_broker_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_URL", "memory:///tmp/broker.sqlite3")

    assert ServiceSettings().amqp_url == "memory:///tmp/broker.sqlite3"


def test_production_without_a_public_key_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")

    with pytest.raises(ValidationError, match="JWT_PUBLIC_KEY or JWT_PUBLIC_KEY_FILE is required"):
        DeliverySettings()


def test_production_with_a_public_key_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    public_pem = generate_key_pair().public_pem
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("JWT_PUBLIC_KEY", public_pem)

    assert DeliverySettings().public_key_pem() == public_pem


def test_production_with_a_public_key_file_starts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    public_pem = generate_key_pair().public_pem
    key_file = tmp_path / "jwt-public.pem"
    key_file.write_text(public_pem)
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("JWT_PUBLIC_KEY_FILE", str(key_file))

    assert DeliverySettings().public_key_pem() == public_pem


def test_an_unknown_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "prod")

    with pytest.raises(ValidationError, match="environment"):
        ServiceSettings()


def test_development_makes_its_own_key_pair_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KEYS_DIR", str(tmp_path / "keys"))

    first = ServiceSettings().public_key_pem()
    second = ServiceSettings().public_key_pem()

    assert first.startswith("-----BEGIN PUBLIC KEY-----")
    assert first == second
    assert (tmp_path / "keys" / "jwt-private.pem").stat().st_mode & 0o077 == 0


def test_the_legacy_queue_prefix_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    assert DeliverySettings().legacy_queue_prefix is None

    monkeypatch.setenv("LEGACY_QUEUE_PREFIX", "laptev_")

    assert DeliverySettings().legacy_queue_prefix == "laptev_"


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("RETRY_DELAYS_SECONDS", "[-1]", "greater than 0"),
        ("RETRY_DELAYS_SECONDS", "[0]", "greater than 0"),
        ("RETRY_DELAYS_SECONDS", "[100000]", "less than or equal to 86400"),
        ("RETRY_DELAYS_SECONDS", "[" + ", ".join(["1"] * 11) + "]", "at most 10"),
        ("INBOX_RETENTION_SECONDS", "60", "greater than or equal to 3600"),
        ("CONSUMER_OUTAGE_HOLD_SECONDS", "-1", "greater than or equal to 0"),
        ("CONSUMER_OUTAGE_HOLD_SECONDS", "3600", "less than or equal to 600"),
    ],
)
def test_consumer_settings_out_of_bounds_are_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ValidationError, match=says) as refused:
        ServiceSettings()
    assert variable.lower() in str(refused.value)


def test_retry_delays_that_are_not_a_list_are_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETRY_DELAYS_SECONDS", "not a list")

    with pytest.raises(SettingsError, match='"retry_delays_seconds"'):
        ServiceSettings()


def test_the_inbox_must_outlive_every_retry_of_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETRY_DELAYS_SECONDS", "[3000, 3000]")
    monkeypatch.setenv("INBOX_RETENTION_SECONDS", "5000")

    with pytest.raises(ValidationError, match="INBOX_RETENTION_SECONDS must be longer than all RETRY_DELAYS"):
        ServiceSettings()
