"""The key material of the containers: made once by the keys job, read from files by the services."""

from __future__ import annotations

import re
import stat
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from deliveryhub_kit.identity import Principal, Role
from deliveryhub_kit.keys import main as make_keys
from deliveryhub_kit.settings import ServiceSettings
from deliveryhub_kit.tokens import TokenIssuer, TokenVerifier
from deliveryhub_orders.settings import OrdersSettings
from deliveryhub_web.settings import WebSettings

from .artifacts import environment_names


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only what a test sets is seen: no inherited variables and no `.env` in the working directory."""
    for variable in environment_names(WebSettings):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)


def contents(directory: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in directory.iterdir() if not path.name.startswith(".")}


def test_the_keys_job_makes_the_pair_and_the_session_secret_once(tmp_path: Path) -> None:
    private, public = tmp_path / "keys", tmp_path / "public-keys"

    make_keys([str(private), str(public)])
    first = contents(private)
    make_keys([str(private), str(public)])

    assert contents(private) == first, "a second start must keep the keys the tokens were signed with"
    assert set(first) == {"jwt-private.pem", "jwt-public.pem", "session-secret"}
    assert contents(public) == {"jwt-public.pem": first["jwt-public.pem"]}, "only the public key is shared"
    for secret in ("jwt-private.pem", "session-secret"):
        assert stat.S_IMODE((private / secret).stat().st_mode) == 0o600
    assert len(first["session-secret"]) >= 32


def test_the_services_verify_what_the_console_signs_with_the_files_of_the_job(tmp_path: Path) -> None:
    private, public = tmp_path / "keys", tmp_path / "public-keys"
    make_keys([str(private), str(public)])
    web = WebSettings(
        environment="production",
        jwt_private_key_file=private / "jwt-private.pem",
        session_secret_file=private / "session-secret",
    )
    orders = OrdersSettings(environment="production", jwt_public_key_file=public / "jwt-public.pem")
    principal = Principal(subject=uuid.uuid4(), role=Role.CUSTOMER)

    token = TokenIssuer(web.private_key_pem(), issuer=web.jwt_issuer, audience=web.jwt_audience).issue(
        principal
    )

    verifier = TokenVerifier(orders.public_key_pem(), issuer=orders.jwt_issuer, audience=orders.jwt_audience)
    assert verifier.verify(token) == principal
    assert web.session_secret_value() == (private / "session-secret").read_text()


def test_the_keys_job_says_how_to_call_it() -> None:
    with pytest.raises(SystemExit, match=re.escape("usage: python -m deliveryhub_kit.keys PRIVATE_DIR")):
        make_keys([])


def test_production_takes_the_session_secret_from_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    make_keys([str(tmp_path / "keys")])
    secret_file = tmp_path / "keys" / "session-secret"
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("JWT_PRIVATE_KEY_FILE", str(tmp_path / "keys" / "jwt-private.pem"))
    monkeypatch.setenv("SESSION_SECRET_FILE", str(secret_file))

    assert WebSettings().session_secret_value() == secret_file.read_text().strip()


def test_a_session_secret_file_too_short_is_refused_when_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    make_keys([str(tmp_path / "keys")])
    short = tmp_path / "short"
    short.write_text("s" * 31 + "\n")
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("JWT_PRIVATE_KEY_FILE", str(tmp_path / "keys" / "jwt-private.pem"))
    monkeypatch.setenv("SESSION_SECRET_FILE", str(short))

    with pytest.raises(ValueError, match="fewer than 32 characters"):
        WebSettings().session_secret_value()


def test_production_without_any_session_secret_names_both_ways(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    make_keys([str(tmp_path / "keys")])
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("JWT_PRIVATE_KEY_FILE", str(tmp_path / "keys" / "jwt-private.pem"))

    with pytest.raises(
        ValidationError, match=re.escape("SESSION_SECRET of at least 32 characters (or SESSION_SECRET_FILE)")
    ):
        WebSettings()
    assert "SESSION_SECRET_FILE" in environment_names(WebSettings)
    assert "SESSION_SECRET_FILE" not in environment_names(ServiceSettings), "only the console signs sessions"
