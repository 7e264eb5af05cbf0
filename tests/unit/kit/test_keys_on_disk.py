"""Key material is never readable by others on disk, not even for a moment."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from deliveryhub_kit.keys import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, SESSION_SECRET_FILE, ensure_keys
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
