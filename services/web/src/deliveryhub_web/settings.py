"""Settings of the web console."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import AliasChoices, Field, model_validator

from deliveryhub_kit.keys import SESSION_SECRET_FILE, ensure_development_keys, ensure_secret_file
from deliveryhub_kit.settings import DEFAULT_POSTGRES, ServiceSettings

MINIMUM_SECRET_LENGTH = 32


def _cores_but_one() -> int:
    return max(1, (os.cpu_count() or 2) - 1)


class WebSettings(ServiceSettings):
    service_name: str = "web"
    port: int = 8000
    database_url: str = Field(
        default=f"{DEFAULT_POSTGRES}/web",
        validation_alias=AliasChoices("DATABASE_URL", "POSTGRES_URL"),
    )
    orders_url: str = "http://127.0.0.1:8001"
    delivery_url: str = "http://127.0.0.1:8002"
    api_timeout_seconds: float = Field(default=5.0, gt=0)

    # Live pages: how often the console asks the APIs for their latest changes while a page is open,
    # how often an idle stream says it is still there, and how long one lasts before the browser
    # connects again (and its session is checked again).
    live_interval_seconds: float = Field(default=0.5, gt=0, le=60)
    live_heartbeat_seconds: float = Field(default=15.0, gt=0, le=300)
    live_stream_seconds: float = Field(default=900.0, gt=0, le=86_400)

    jwt_private_key: str | None = None
    jwt_private_key_file: Path | None = None
    session_secret: str | None = None
    # A file holding the secret, e.g. one a start-up job made in a volume.
    session_secret_file: Path | None = None
    session_hours: float = Field(default=12.0, gt=0)
    # Browsers keep Secure cookies on http://localhost too; turn off only behind plain HTTP elsewhere.
    cookie_secure: bool = True

    # Failed sign-ins to one account from one address (every attempt from one address counts 4×
    # as many), per window; and, slower, failures to one account from anywhere.
    sign_in_attempts: int = Field(default=5, ge=1, le=1000)
    sign_in_window_seconds: float = Field(default=60.0, gt=0, le=86_400)
    sign_in_account_attempts: int = Field(default=150, ge=1, le=100_000)
    sign_in_account_window_seconds: float = Field(default=900.0, gt=0, le=7 * 86_400)
    # Passwords hashed or checked at once (each in a worker thread): the rest wait their turn. One
    # core is left to the event loop, so that a flood of sign-ins does not slow every page.
    password_hash_concurrency: int = Field(default_factory=_cores_but_one, ge=1, le=64)
    demo_accounts: bool | None = None
    # The demo accounts are for trying the console; their password is public on purpose.
    demo_password: str = "delivery-hub-demo"  # noqa: S105

    @model_validator(mode="after")
    def _no_single_address_reaches_the_account_backstop(self) -> WebSettings:
        # Else one address guessing at an account, within its own limit, locks the owner out everywhere.
        windows = self.sign_in_account_window_seconds / self.sign_in_window_seconds
        if self.sign_in_account_attempts <= self.sign_in_attempts * windows:
            raise ValueError(
                "SIGN_IN_ACCOUNT_ATTEMPTS must be more than one address may fail in "
                "SIGN_IN_ACCOUNT_WINDOW_SECONDS (SIGN_IN_ATTEMPTS per SIGN_IN_WINDOW_SECONDS)"
            )
        return self

    @model_validator(mode="after")
    def _secrets_are_given_outside_development(self) -> WebSettings:
        if self.environment == "production" and self.demo_accounts:
            raise ValueError(
                "DEMO_ACCOUNTS cannot be on in production: their password is public. Create the "
                "first manager with `python -m deliveryhub_web create-manager EMAIL` instead"
            )
        if self.environment == "production":
            if not (self.jwt_private_key or self.jwt_private_key_file):
                raise ValueError("JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE is required in production")
            too_short = self.session_secret is not None and len(self.session_secret) < MINIMUM_SECRET_LENGTH
            if too_short or not (self.session_secret or self.session_secret_file):
                raise ValueError(
                    "SESSION_SECRET of at least 32 characters (or SESSION_SECRET_FILE) "
                    "is required in production"
                )
        return self

    @property
    def seeds_demo_accounts(self) -> bool:
        return self.demo_accounts if self.demo_accounts is not None else self.environment != "production"

    def private_key_pem(self) -> str:
        """The key that signs the tokens the APIs accept (in development, the local key pair's)."""
        if self.jwt_private_key:
            return self.jwt_private_key
        if self.jwt_private_key_file:
            return self.jwt_private_key_file.read_text()
        return ensure_development_keys(self.keys_dir).private_pem

    def public_key_pem(self) -> str:
        private_key = serialization.load_pem_private_key(self.private_key_pem().encode(), password=None)
        assert isinstance(private_key, Ed25519PrivateKey), "the token key must be Ed25519"
        return (
            private_key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def session_secret_value(self) -> str:
        """The secret that signs CSRF tokens and flash messages (in development, made once)."""
        if self.session_secret:
            return self.session_secret
        if self.session_secret_file:
            secret = self.session_secret_file.read_text().strip()
            if len(secret) < MINIMUM_SECRET_LENGTH:
                raise ValueError(f"{self.session_secret_file} holds fewer than 32 characters")
            return secret
        path = self.keys_dir / SESSION_SECRET_FILE
        if not path.exists():
            ensure_development_keys(self.keys_dir)
            ensure_secret_file(path)
        return path.read_text().strip()
