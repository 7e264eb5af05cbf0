"""Key material and passwords are never readable by others on disk, not even for a moment."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deliveryhub_kit.keys import (
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    SESSION_SECRET_FILE,
    KeysJob,
    ensure_keys,
)
from deliveryhub_kit.keys import main as keys_main
from deliveryhub_web.settings import WebSettings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissions_never_changed_afterwards(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A file keeps the mode it was created with: changing it afterwards leaves a moment in which
    another user could have read it."""

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("a mode was changed after the file was written")

    monkeypatch.setattr(Path, "chmod", lambda self, mode, **_: None if self.is_dir() else refuse())
    monkeypatch.setattr(os, "chmod", lambda path, mode, **_: None if Path(path).is_dir() else refuse())
    previous = os.umask(0o022)  # what most shells leave: files readable by everyone unless asked
    yield
    os.umask(previous)


def test_the_key_pair_and_the_session_secret_are_the_owners_alone_from_the_first_byte(
    tmp_path: Path, permissions_never_changed_afterwards: None
) -> None:
    private, public = tmp_path / "keys", tmp_path / "public-keys"

    ensure_keys(private, public)

    assert mode(private) == 0o700
    assert mode(private / PRIVATE_KEY_FILE) == 0o600
    assert mode(private / SESSION_SECRET_FILE) == 0o600
    assert mode(public / PUBLIC_KEY_FILE) == 0o644
    assert not [path.name for path in private.iterdir() if path.name.endswith(".tmp")]


def test_the_consoles_development_secret_is_the_owners_alone_too(
    tmp_path: Path, permissions_never_changed_afterwards: None
) -> None:
    keys_dir = tmp_path / "dev-keys"

    secret = WebSettings(environment="development", keys_dir=keys_dir).session_secret_value()

    assert len(secret) >= 32
    assert mode(keys_dir) == 0o700
    assert mode(keys_dir / SESSION_SECRET_FILE) == 0o600
    assert mode(keys_dir / PRIVATE_KEY_FILE) == 0o600


@dataclass(frozen=True)
class Given:
    """A file or folder handed to a user: to whom, and how many bytes it held then."""

    path: str
    owner: tuple[int, int]
    size: int


@pytest.fixture
def handed_out(monkeypatch: pytest.MonkeyPatch) -> list[Given]:
    """Every chown and fchown, recorded instead of done (only root may give a file to another user)."""
    given: list[Given] = []

    def fchown(descriptor: int, uid: int, gid: int) -> None:
        path = os.readlink(f"/proc/self/fd/{descriptor}")
        given.append(Given(path, (uid, gid), os.fstat(descriptor).st_size))

    def chown(path: str | Path, uid: int, gid: int) -> None:
        given.append(Given(str(path), (uid, gid), 0))

    monkeypatch.setattr(os, "fchown", fchown)
    monkeypatch.setattr(os, "chown", chown)
    return given


def test_each_password_belongs_to_its_reader_from_the_first_byte(
    tmp_path: Path, handed_out: list[Given], permissions_never_changed_afterwards: None
) -> None:
    """Postgres's copy is uid 70's before a byte is written; the job's own store stays its own."""
    job = KeysJob.from_arguments(
        [
            *(str(tmp_path / "keys"), "--owner", "10001:10001", "--passwords", str(tmp_path / "store")),
            *("--give", str(tmp_path / "postgres"), "70:70", "postgres-password"),
            *("--rabbitmq-administrator", str(tmp_path / "rabbitmq" / "administrator.conf"), "100:101"),
            *("deliveryhub", "rabbitmq-password"),
        ]
    )

    job.run({})

    # A file is given away while it is still its temporary self, .NAME.RANDOM.tmp.
    owners = {
        re.sub(r"^\.(.+)\.[0-9a-f]{8}\.tmp$", r"\1", Path(given.path).name): given.owner
        for given in handed_out
    }
    assert owners["postgres"] == owners["postgres-password"] == (70, 70)
    assert owners["rabbitmq"] == owners["administrator.conf"] == (100, 101)
    assert owners["keys"] == owners[PRIVATE_KEY_FILE] == owners[SESSION_SECRET_FILE] == (10001, 10001)
    assert not [given for given in handed_out if given.size], "a file was given away after it was written"
    assert not [given for given in handed_out if Path(given.path).is_relative_to(tmp_path / "store")]
    assert mode(tmp_path / "postgres" / "postgres-password") == 0o600
    assert mode(tmp_path / "postgres") == 0o700


def test_a_job_that_may_not_hand_files_out_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*_: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chown", refused)
    arguments = [str(tmp_path / "keys"), "--passwords", str(tmp_path / "store")]
    arguments += ["--give", str(tmp_path / "postgres"), "70:70", "postgres-password"]

    with pytest.raises(SystemExit, match=r"cannot give .*postgres to 70:70: only root may hand a file"):
        keys_main(arguments, {})
