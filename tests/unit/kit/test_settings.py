"""Settings as an operator gives them: environment, the teaching design's names, production rules."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError
from sqlalchemy.engine import make_url
from yarl import URL

from deliveryhub_delivery.settings import DeliverySettings
from deliveryhub_kit.keys import generate_key_pair
from deliveryhub_kit.passwords import DEVELOPMENT_PASSWORDS
from deliveryhub_kit.settings import ServiceSettings, async_database_url

SETTINGS_VARIABLES = [
    "DATABASE_URL",
    "DATABASE_PASSWORD_FILE",
    "POSTGRES_URL",
    "ENVIRONMENT",
    "JWT_PUBLIC_KEY",
    "JWT_PUBLIC_KEY_FILE",
    "KEYS_DIR",
    "AMQP_URL",
    "AMQP_PASSWORD_FILE",
    "BROKER_URL",
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


# What production needs besides the key: the database's login, a password of its own included.
PRODUCTION_DATABASE_URL = "postgresql://delivery:a-password-of-its-own@db:5432/delivery"


def test_production_with_a_public_key_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    public_pem = generate_key_pair().public_pem
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("DATABASE_URL", PRODUCTION_DATABASE_URL)
    monkeypatch.setenv("JWT_PUBLIC_KEY", public_pem)

    assert DeliverySettings().public_key_pem() == public_pem


def test_production_with_a_public_key_file_starts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    public_pem = generate_key_pair().public_pem
    key_file = tmp_path / "jwt-public.pem"
    key_file.write_text(public_pem)
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("DATABASE_URL", PRODUCTION_DATABASE_URL)
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


# Every character a URL's user part must quote, and a line end as an editor leaves it.
AWKWARD_CHARACTERS = "p@ss:w/rd?#%+ é"


def password_file(folder: Path, password: str) -> Path:
    path = folder / "password"
    path.write_text(password + "\n")
    return path


def test_a_database_password_file_replaces_the_password_of_the_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://delivery:in-the-url@db:5432/delivery")
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(password_file(tmp_path, AWKWARD_CHARACTERS)))

    settings = DeliverySettings()

    # As the database driver reads it, behind SQLAlchemy.
    url = make_url(settings.async_database_url)
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "delivery",
        AWKWARD_CHARACTERS,
        "db",
        5432,
        "delivery",
    )


def test_an_amqp_password_file_replaces_the_password_of_the_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AMQP_URL", "amqp://delivery@rabbitmq:5672/shop")
    monkeypatch.setenv("AMQP_PASSWORD_FILE", str(password_file(tmp_path, AWKWARD_CHARACTERS)))

    # As the broker client reads it (aio-pika's URLs are yarl's).
    url = URL(DeliverySettings().amqp_url)
    assert (url.user, url.password, url.host, url.port, url.path) == (
        "delivery",
        AWKWARD_CHARACTERS,
        "rabbitmq",
        5672,
        "/shop",
    )


@pytest.mark.parametrize(
    ("url", "contents", "says"),
    [
        ("postgresql://db:5432/delivery", "secret", "names no user"),
        ("postgresql://delivery@db:5432/delivery", None, "cannot read"),
        ("postgresql://delivery@db:5432/delivery", "\n", "is empty"),
    ],
)
def test_a_password_file_that_gives_no_password_is_refused_by_name(
    url: str, contents: str | None, says: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "password"
    if contents is not None:
        path.write_text(contents)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(path))

    with pytest.raises(ValidationError, match=f"DATABASE_PASSWORD_FILE for DATABASE_URL: .*{says}"):
        DeliverySettings()


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("JWT_PUBLIC_KEY", generate_key_pair().public_pem)


@pytest.mark.usefixtures("production")
@pytest.mark.parametrize("password", sorted(DEVELOPMENT_PASSWORDS))
@pytest.mark.parametrize("variable", ["DATABASE_URL", "AMQP_URL"])
def test_production_refuses_a_development_password_by_the_variable(
    variable: str, password: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", PRODUCTION_DATABASE_URL)
    given = {
        "DATABASE_URL": f"postgresql://delivery:{password}@db/delivery",
        "AMQP_URL": f"amqp://delivery:{password}@mq/",
    }
    monkeypatch.setenv(variable, given[variable])

    with pytest.raises(ValidationError, match=f"{variable}'s password is the development value '{password}'"):
        DeliverySettings()


@pytest.mark.usefixtures("production")
def test_production_refuses_a_development_password_that_came_from_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", PRODUCTION_DATABASE_URL)
    monkeypatch.setenv("AMQP_URL", "amqp://delivery:a-password-of-its-own@mq/")
    monkeypatch.setenv("AMQP_PASSWORD_FILE", str(password_file(tmp_path, "guest")))

    with pytest.raises(ValidationError, match="AMQP_URL's password is the development value 'guest'"):
        DeliverySettings()


@pytest.mark.usefixtures("production")
@pytest.mark.parametrize(
    ("variable", "url"),
    [
        # The default: the local superuser, no password.
        ("DATABASE_URL", None),
        ("DATABASE_URL", "postgresql://delivery@db:5432/delivery"),
        ("AMQP_URL", "amqp://delivery@mq:5672/"),
        ("AMQP_URL", "amqp://delivery:@mq:5672/"),
    ],
)
def test_production_refuses_a_url_without_a_password_and_names_its_file_variable(
    variable: str, url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if variable != "DATABASE_URL":
        monkeypatch.setenv("DATABASE_URL", PRODUCTION_DATABASE_URL)
    if url is not None:
        monkeypatch.setenv(variable, url)
    file_variable = variable.replace("_URL", "_PASSWORD_FILE")

    with pytest.raises(ValidationError, match=f"{variable} has no password: .*{file_variable}"):
        DeliverySettings()


@pytest.mark.usefixtures("production")
def test_production_starts_with_the_passwords_of_its_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    made = {"database": "made-by-the-keys-job", "broker": "made-by-it-too"}
    for folder, contents in made.items():
        (tmp_path / folder).mkdir()
        password_file(tmp_path / folder, contents)
    monkeypatch.setenv("DATABASE_URL", "postgresql://delivery@db:5432/delivery")
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(tmp_path / "database" / "password"))
    monkeypatch.setenv("AMQP_URL", "amqp://delivery@mq:5672/")
    monkeypatch.setenv("AMQP_PASSWORD_FILE", str(tmp_path / "broker" / "password"))

    settings = DeliverySettings()

    assert make_url(settings.database_url).password == made["database"]
    assert URL(settings.amqp_url).password == made["broker"]


@pytest.mark.usefixtures("production")
def test_production_leaves_an_amqp_url_nobody_gave_to_the_services_that_connect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The console connects to no broker and sets no AMQP_URL; the default's guest is not its."""
    monkeypatch.setenv("DATABASE_URL", PRODUCTION_DATABASE_URL)

    assert DeliverySettings().amqp_url == "amqp://guest:guest@127.0.0.1:5672/"


def test_development_keeps_its_development_passwords() -> None:
    """`deliveryhub up` and the demo override run in development, on the servers' own defaults."""
    url = "postgresql://orders:orders@db/orders"
    settings = DeliverySettings(database_url=url, amqp_url="amqp://guest:guest@mq/")

    assert settings.environment == "development"
    assert settings.database_url == url


@pytest.mark.parametrize("package", ["deliveryhub_orders", "deliveryhub_delivery", "deliveryhub_web"])
def test_each_migration_job_connects_with_the_password_of_its_file(
    package: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`python -m deliveryhub_<service> migrate` builds its settings from the environment: the file too."""
    entry = importlib.import_module(f"{package}.__main__")
    migrated: list[str] = []
    monkeypatch.setattr(entry, "upgrade", lambda _, database_url: migrated.append(database_url))
    monkeypatch.setattr(sys, "argv", [f"python -m {package}", "migrate"])
    monkeypatch.setenv("DATABASE_URL", "postgresql://role@db:5432/database")
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(password_file(tmp_path, AWKWARD_CHARACTERS)))

    entry.main()

    (url,) = migrated
    assert make_url(url).password == AWKWARD_CHARACTERS
