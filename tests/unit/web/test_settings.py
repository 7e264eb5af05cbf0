"""The console's settings: the secrets production refuses to run without, and the keys it derives."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from deliveryhub_kit.identity import Principal, Role
from deliveryhub_kit.keys import KeyPair, generate_key_pair
from deliveryhub_kit.tokens import TokenIssuer, TokenVerifier
from deliveryhub_web.settings import WebSettings

SETTINGS_VARIABLES = [
    "ENVIRONMENT",
    "DATABASE_URL",
    "POSTGRES_URL",
    "JWT_PUBLIC_KEY",
    "JWT_PUBLIC_KEY_FILE",
    "JWT_PRIVATE_KEY",
    "JWT_PRIVATE_KEY_FILE",
    "SESSION_SECRET",
    "KEYS_DIR",
    "DEMO_ACCOUNTS",
    "COOKIE_SECURE",
]
LONG_SECRET = "s" * 32
# Production refuses a database URL without a password of its own.
PRODUCTION_DATABASE_URL = "postgresql://web:a-password-of-its-own@db:5432/web"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only what a test sets is seen: no inherited variables and no `.env` in the working directory."""
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_production_without_a_private_key_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("SESSION_SECRET", LONG_SECRET)

    with pytest.raises(ValidationError, match="JWT_PRIVATE_KEY"):
        WebSettings()


@pytest.mark.parametrize("secret", [None, "", "s" * 31])
def test_production_without_a_long_session_secret_refuses_to_start(
    secret: str | None, monkeypatch: pytest.MonkeyPatch, key_pair: KeyPair
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("JWT_PRIVATE_KEY", key_pair.private_pem)
    if secret is not None:
        monkeypatch.setenv("SESSION_SECRET", secret)

    with pytest.raises(ValidationError, match="SESSION_SECRET of at least 32 characters"):
        WebSettings()


def test_production_starts_with_a_private_key_and_a_long_secret(
    monkeypatch: pytest.MonkeyPatch, key_pair: KeyPair
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("DATABASE_URL", PRODUCTION_DATABASE_URL)
    monkeypatch.setenv("JWT_PRIVATE_KEY", key_pair.private_pem)
    monkeypatch.setenv("SESSION_SECRET", LONG_SECRET)

    settings = WebSettings()

    assert settings.session_secret_value() == LONG_SECRET
    assert settings.private_key_pem() == key_pair.private_pem


def test_production_takes_the_private_key_from_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, key_pair: KeyPair
) -> None:
    key_file = tmp_path / "jwt-private.pem"
    key_file.write_text(key_pair.private_pem)
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("DATABASE_URL", PRODUCTION_DATABASE_URL)
    monkeypatch.setenv("JWT_PRIVATE_KEY_FILE", str(key_file))
    monkeypatch.setenv("SESSION_SECRET", LONG_SECRET)

    assert WebSettings().public_key_pem() == key_pair.public_pem


def test_production_needs_no_public_key_of_its_own(
    monkeypatch: pytest.MonkeyPatch, key_pair: KeyPair
) -> None:
    """The console derives the public key, so the other services' rule does not apply to it."""
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("DATABASE_URL", PRODUCTION_DATABASE_URL)
    monkeypatch.setenv("JWT_PRIVATE_KEY", key_pair.private_pem)
    monkeypatch.setenv("SESSION_SECRET", LONG_SECRET)

    assert WebSettings().jwt_public_key is None


def test_the_public_key_is_derived_from_the_private_key(key_pair: KeyPair) -> None:
    settings = WebSettings(jwt_private_key=key_pair.private_pem)

    assert settings.public_key_pem() == key_pair.public_pem


def test_a_token_signed_with_the_private_key_verifies_with_the_derived_public_key() -> None:
    settings = WebSettings(jwt_private_key=generate_key_pair().private_pem)
    principal = Principal(subject=uuid.uuid4(), role=Role.MANAGER)
    token = TokenIssuer(
        settings.private_key_pem(), issuer=settings.jwt_issuer, audience=settings.jwt_audience
    ).issue(principal)

    verifier = TokenVerifier(
        settings.public_key_pem(), issuer=settings.jwt_issuer, audience=settings.jwt_audience
    )

    assert verifier.verify(token) == principal


def test_a_key_that_is_not_ed25519_is_refused() -> None:
    other_key = ec.generate_private_key(ec.SECP256R1())
    pem = other_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()

    with pytest.raises(AssertionError, match="Ed25519"):
        WebSettings(jwt_private_key=pem).public_key_pem()


def test_development_makes_its_key_pair_and_session_secret_once(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    first = WebSettings(keys_dir=keys_dir)
    second = WebSettings(keys_dir=keys_dir)

    assert first.session_secret_value() == second.session_secret_value()
    assert len(first.session_secret_value()) >= 32
    assert first.private_key_pem() == second.private_key_pem()
    assert first.public_key_pem() == second.public_key_pem()


def test_development_seeds_the_demo_accounts_and_production_does_not(
    monkeypatch: pytest.MonkeyPatch, key_pair: KeyPair
) -> None:
    assert WebSettings().seeds_demo_accounts
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("DATABASE_URL", PRODUCTION_DATABASE_URL)
    monkeypatch.setenv("JWT_PRIVATE_KEY", key_pair.private_pem)
    monkeypatch.setenv("SESSION_SECRET", LONG_SECRET)
    assert not WebSettings().seeds_demo_accounts


def test_production_refuses_to_start_with_the_demo_accounts_on(
    monkeypatch: pytest.MonkeyPatch, key_pair: KeyPair
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("JWT_PRIVATE_KEY", key_pair.private_pem)
    monkeypatch.setenv("SESSION_SECRET", LONG_SECRET)
    monkeypatch.setenv("DEMO_ACCOUNTS", "true")

    with pytest.raises(ValidationError, match=r"DEMO_ACCOUNTS cannot be on in production.*create-manager"):
        WebSettings()


def test_the_console_defaults_to_its_own_database_port_and_the_apis_on_localhost() -> None:
    settings = WebSettings()

    assert settings.async_database_url == "postgresql+asyncpg://postgres@127.0.0.1:5432/web"
    assert settings.port == 8000
    assert settings.orders_url == "http://127.0.0.1:8001"
    assert settings.delivery_url == "http://127.0.0.1:8002"
    assert settings.cookie_secure
