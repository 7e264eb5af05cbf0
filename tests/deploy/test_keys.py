"""The key material of the containers: made once by the keys job, read from files by the services."""

from __future__ import annotations

import os
import re
import stat
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from deliveryhub_kit.identity import Principal, Role
from deliveryhub_kit.keys import main as make_keys
from deliveryhub_kit.passwords import DEVELOPMENT_PASSWORDS
from deliveryhub_kit.settings import ServiceSettings
from deliveryhub_kit.tokens import TokenIssuer, TokenVerifier
from deliveryhub_orders.settings import OrdersSettings
from deliveryhub_web.settings import WebSettings
from tests.support.artifacts import environment_names


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only what a test sets is seen: no inherited variables and no `.env` in the working directory."""
    for variable in environment_names(WebSettings):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)


def contents(directory: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in directory.iterdir() if not path.name.startswith(".")}


def me() -> str:
    """The owner to hand files to here: a process that is not root can give them to itself only."""
    return f"{os.getuid()}:{os.getgid()}"


# Production's database login, as compose gives it: the role in the URL, its password in a file.
DATABASE_URL = "postgresql://orders@postgres:5432/orders"


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
    passwords, readers = tmp_path / "passwords", tmp_path / "secrets"
    make_keys(
        [
            *(str(private), str(public), "--passwords", str(passwords)),
            *("--give", str(readers), me(), "postgres-orders-password"),
        ],
        {},
    )
    web = WebSettings(
        environment="production",
        database_url=DATABASE_URL,
        database_password_file=readers / "postgres-orders-password",
        jwt_private_key_file=private / "jwt-private.pem",
        session_secret_file=private / "session-secret",
    )
    orders = OrdersSettings(
        environment="production",
        database_url=DATABASE_URL,
        database_password_file=readers / "postgres-orders-password",
        jwt_public_key_file=public / "jwt-public.pem",
    )
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
    monkeypatch.setenv("DATABASE_URL", "postgresql://web:a-password-of-its-own@postgres:5432/web")
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
    monkeypatch.setenv("DATABASE_URL", "postgresql://web:a-password-of-its-own@postgres:5432/web")
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


def hand_out(root: Path, environment: dict[str, str] | None = None) -> None:
    """The keys job with passwords for three readers, as compose runs it (every owner mine here)."""
    make_keys(
        [
            *(str(root / "keys"), str(root / "public-keys"), "--passwords", str(root / "passwords")),
            *("--give", str(root / "postgres"), me(), "postgres-password,postgres-orders-password"),
            *("--give", str(root / "orders"), me(), "postgres-orders-password,rabbitmq-orders-password"),
            *("--rabbitmq-administrator", str(root / "rabbitmq" / "administrator.conf"), me()),
            *("deliveryhub", "rabbitmq-password"),
        ],
        environment or {},
    )


def test_the_keys_job_makes_each_password_once_and_gives_each_reader_only_its_own(tmp_path: Path) -> None:
    hand_out(tmp_path)
    store = contents(tmp_path / "passwords")
    hand_out(tmp_path)

    assert contents(tmp_path / "passwords") == store, "a later start must keep the passwords the roles have"
    assert set(store) == {
        "postgres-password",
        "postgres-orders-password",
        "rabbitmq-orders-password",
        "rabbitmq-password",
    }
    assert len(set(store.values())) == len(store)
    for password in store.values():
        assert len(password) >= 32
        assert password not in DEVELOPMENT_PASSWORDS
    assert contents(tmp_path / "postgres") == {
        name: store[name] for name in ("postgres-password", "postgres-orders-password")
    }
    assert contents(tmp_path / "orders") == {
        name: store[name] for name in ("postgres-orders-password", "rabbitmq-orders-password")
    }
    assert contents(tmp_path / "rabbitmq") == {
        "administrator.conf": f"default_user = deliveryhub\ndefault_pass = {store['rabbitmq-password']}\n"
    }
    for folder in ("passwords", "postgres", "orders", "rabbitmq"):
        assert stat.S_IMODE((tmp_path / folder).stat().st_mode) == 0o700, folder
        for path in (tmp_path / folder).iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_password_in_the_environment_wins_and_stays_when_it_is_unset_again(tmp_path: Path) -> None:
    chosen = "the-operators-own.1"
    hand_out(tmp_path)
    hand_out(tmp_path, {"POSTGRES_ORDERS_PASSWORD": chosen})

    assert (tmp_path / "orders" / "postgres-orders-password").read_text() == chosen
    assert (tmp_path / "postgres" / "postgres-orders-password").read_text() == chosen
    hand_out(tmp_path)
    assert (tmp_path / "orders" / "postgres-orders-password").read_text() == chosen


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("deliveryhub", "RABBITMQ_PASSWORD is a development value"),
        ("guest", "RABBITMQ_PASSWORD is a development value"),
        ("with space", "RABBITMQ_PASSWORD may hold letters, digits and -._~ only"),
        ("with#hash", "RABBITMQ_PASSWORD may hold letters, digits and -._~ only"),
    ],
)
def test_an_operators_password_the_job_cannot_use_is_refused_by_name(
    value: str, says: str, tmp_path: Path
) -> None:
    with pytest.raises(SystemExit, match=re.escape(says)):
        hand_out(tmp_path, {"RABBITMQ_PASSWORD": value})
    assert not (tmp_path / "rabbitmq").exists(), "nothing is handed out before every password is settled"


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["--give", "/secrets", "10001:10001", "a-password"], "need --passwords"),
        (["--passwords", "/p", "--give", "/secrets", "deliveryhub", "a-password"], "UID:GID in numbers"),
        (["--passwords", "/p", "--give", "/secrets", "1:1", "A_Password"], "lowercase words joined by -"),
        (["--passwords", "/p", "--give", "/secrets", "1:1"], "expected 3 arguments"),
        (
            ["--passwords", "/p", "--rabbitmq-administrator", "/r/a.conf", "1:1", "admin user", "a-password"],
            "letters, digits and ._- only",
        ),
    ],
)
def test_a_command_line_the_job_cannot_read_is_refused_with_the_usage(
    arguments: list[str], says: str
) -> None:
    with pytest.raises(SystemExit, match=f"(?s)usage: python -m deliveryhub_kit.keys PRIVATE_DIR.*{says}"):
        make_keys(["/keys", *arguments], {})
