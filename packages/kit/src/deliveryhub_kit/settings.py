"""Settings every service reads from the environment and `.env`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from deliveryhub_kit.passwords import (
    DEVELOPMENT_PASSWORDS,
    names_a_server,
    password_in,
    read_password_file,
    with_password,
)

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_KEYS_DIR = Path(".deliveryhub/keys")


def async_database_url(url: str) -> str:
    """Accept the usual `postgresql://` and `sqlite:///` spellings and use the asyncio drivers."""
    for plain in (
        "postgresql://",
        "postgres://",
        "postgresql+psycopg://",
        "postgresql+psycopg2://",
    ):
        if url.startswith(plain):
            return "postgresql+asyncpg://" + url.removeprefix(plain)
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.removeprefix("sqlite://")
    return url


class ServiceSettings(BaseSettings):
    """Settings shared by the services; each service sets its own defaults for name and port."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    environment: Literal["development", "test", "production"] = "development"
    service_name: str = "service"
    host: str = "127.0.0.1"
    port: int = 8000

    database_url: str = Field(
        default=f"{DEFAULT_POSTGRES}/postgres",
        validation_alias=AliasChoices("DATABASE_URL", "POSTGRES_URL"),
    )
    # A file whose contents replace DATABASE_URL's password (and AMQP_URL's below): the URL names
    # the server and the user, and the password stays out of the environment.
    database_password_file: Path | None = None
    # Connections kept open once opened, and opened beyond them at busy moments (closed again as
    # soon as one comes back while the kept ones are idle). The servers' connections are shared by
    # every service and worker; an overflow connection under steady load is a PostgreSQL backend
    # started and ended every few requests, so none by default.
    database_pool_size: int = Field(default=20, ge=1, le=200)
    database_max_overflow: int = Field(default=0, ge=0, le=200)
    database_timeout_seconds: float = Field(default=5.0, gt=0)

    # RabbitMQ; or `memory://FILE`, the in-process broker of the embedded mode (see memory_broker/).
    amqp_url: str = Field(default=DEFAULT_AMQP_URL, validation_alias=AliasChoices("AMQP_URL", "BROKER_URL"))
    amqp_password_file: Path | None = None
    broker_prefix: str = ""
    publish_timeout_seconds: float = Field(default=10.0, gt=0)
    # Two batches' worth: the next batch arrives while one is applied (at one batch's worth the
    # broker sends nothing until the acks of the last go out). Each held message is in memory.
    consumer_prefetch: int = Field(default=128, ge=1, le=10_000)
    # Messages applied in one transaction (each still acked, retried or dead-lettered on its own).
    consumer_batch_size: int = Field(default=64, ge=1, le=10_000)
    # Batches a consumer applies side by side (events about one order always share a lane). On this
    # machine's local database one lane keeps up; more pay when each batch waits on a far database.
    consumer_lanes: int = Field(default=1, ge=1, le=64)
    # A message that fails for a passing cause waits each of these in turn, then is dead-lettered.
    retry_delays_seconds: tuple[Annotated[float, Field(gt=0, le=86_400)], ...] = Field(
        default=(1.0, 5.0, 30.0, 120.0), max_length=10
    )
    # Through a database outage a consumer holds the messages in hand this long (applying them as
    # soon as the database answers), then gives them back to the queue once, for other replicas.
    consumer_outage_hold_seconds: float = Field(default=10.0, ge=0, le=600)

    # How long a consumer remembers an event it applied, so that a late copy changes nothing.
    inbox_retention_seconds: float = Field(default=7 * 24 * 3600, ge=3600)

    outbox_batch_size: int = Field(default=200, ge=1, le=10_000)
    outbox_poll_seconds: float = Field(default=1.0, gt=0)
    outbox_retention_seconds: float = Field(default=7 * 24 * 3600, ge=0)

    jwt_public_key: str | None = None
    jwt_public_key_file: Path | None = None
    jwt_issuer: str = "deliveryhub"
    jwt_audience: str = "deliveryhub-api"
    keys_dir: Path = DEFAULT_KEYS_DIR

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # Requests a second per address and per token subject, with bursts of RATE_LIMIT_BURST_SECONDS
    # of them; 0 turns a limit off (the bench does, to measure the services themselves).
    rate_limit_per_address: float = Field(default=200.0, ge=0, le=1_000_000)
    rate_limit_per_subject: float = Field(default=50.0, ge=0, le=1_000_000)
    rate_limit_burst_seconds: float = Field(default=2.0, gt=0, le=3600)
    # A larger message is dead-lettered unread: no event of this system comes near it.
    max_message_bytes: int = Field(default=1_048_576, ge=1024)

    log_level: str = "INFO"
    # JSON lines unless the output is a terminal; set to force either.
    log_json: bool | None = None
    # Unset: configure logging unless the process already did (a test runner, an embedding app).
    configure_logging: bool | None = None

    @model_validator(mode="after")
    def _inbox_outlives_the_retries(self) -> ServiceSettings:
        # A message waits out every retry delay before its last try: its id must be kept longer.
        if self.inbox_retention_seconds <= sum(self.retry_delays_seconds):
            raise ValueError("INBOX_RETENTION_SECONDS must be longer than all RETRY_DELAYS_SECONDS together")
        return self

    @model_validator(mode="after")
    def _passwords_from_files(self) -> ServiceSettings:
        if self.database_password_file is not None:
            self.database_url = _url_with_password_from(
                self.database_url, self.database_password_file, "DATABASE_URL", "DATABASE_PASSWORD_FILE"
            )
        if self.amqp_password_file is not None:
            self.amqp_url = _url_with_password_from(
                self.amqp_url, self.amqp_password_file, "AMQP_URL", "AMQP_PASSWORD_FILE"
            )
        return self

    @model_validator(mode="after")
    def _secrets_are_given_outside_development(self) -> ServiceSettings:
        if self.environment == "production" and not (self.jwt_public_key or self.jwt_public_key_file):
            raise ValueError("JWT_PUBLIC_KEY or JWT_PUBLIC_KEY_FILE is required in production")
        return self

    @model_validator(mode="after")
    def _no_development_password_in_production(self) -> ServiceSettings:
        if self.environment != "production":
            return self
        checked = [("DATABASE_URL", self.database_url, "DATABASE_PASSWORD_FILE")]
        # The console connects to no broker: AMQP_URL is checked where it is given (or its file is).
        if "amqp_url" in self.model_fields_set:
            checked.append(("AMQP_URL", self.amqp_url, "AMQP_PASSWORD_FILE"))
        for variable, url, file_variable in checked:
            if not names_a_server(url):
                continue
            password = password_in(url)
            if not password:
                raise ValueError(
                    f"{variable} has no password: production needs one, in the URL or in {file_variable}"
                )
            if password in DEVELOPMENT_PASSWORDS:
                raise ValueError(
                    f"{variable}'s password is the development value {password!r}, which anyone can read "
                    f"in the repository: production needs one of its own, e.g. in {file_variable}"
                )
        return self

    @property
    def async_database_url(self) -> str:
        return async_database_url(self.database_url)

    def public_key_pem(self) -> str:
        """The PEM of the key that verifies tokens (in development, the local key pair's)."""
        if self.jwt_public_key:
            return self.jwt_public_key
        if self.jwt_public_key_file:
            return self.jwt_public_key_file.read_text()
        from deliveryhub_kit.keys import ensure_development_keys

        return ensure_development_keys(self.keys_dir).public_pem


def _url_with_password_from(url: str, password_file: Path, url_variable: str, file_variable: str) -> str:
    try:
        return with_password(url, read_password_file(password_file))
    except ValueError as error:
        raise ValueError(f"{file_variable} for {url_variable}: {error}") from None
