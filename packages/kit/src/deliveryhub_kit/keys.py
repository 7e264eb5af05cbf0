"""The Ed25519 key pair that signs and verifies tokens, and the secrets made beside it.

In development it lives in `.deliveryhub/keys`, outside git. In containers a one-shot job makes it
into volumes on first start: `python -m deliveryhub_kit.keys PRIVATE_DIR [PUBLIC_DIR]`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PRIVATE_KEY_FILE = "jwt-private.pem"
PUBLIC_KEY_FILE = "jwt-public.pem"
SESSION_SECRET_FILE = "session-secret"  # noqa: S105 (a file name)


@dataclass(frozen=True)
class KeyPair:
    private_pem: str
    public_pem: str


def generate_key_pair() -> KeyPair:
    """A fresh Ed25519 key pair in PEM."""
    private_key = Ed25519PrivateKey.generate()
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return KeyPair(private_pem=private_pem, public_pem=public_pem)


def private_directory(directory: Path) -> Path:
    """`directory`, made if missing, readable by its owner alone (0700)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):  # a volume's mount point may belong to someone else
        directory.chmod(0o700)
    return directory


def ensure_development_keys(directory: Path) -> KeyPair:
    """Load the key pair from `directory`, creating it once if it is not there."""
    private_path = directory / PRIVATE_KEY_FILE
    public_path = directory / PUBLIC_KEY_FILE
    private_directory(directory)
    # A lock file, so that services starting together agree on one key pair.
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (private_path.exists() and public_path.exists()):
            pair = generate_key_pair()
            write_whole(private_path, pair.private_pem, 0o600)
            write_whole(public_path, pair.public_pem, 0o644)
        return KeyPair(private_path.read_text(), public_path.read_text())


def write_whole(path: Path, text: str, mode: int) -> None:
    """Write through a new temporary file, so that a reader never sees half a key; the file has
    `mode` from its first byte (created so, not changed afterwards)."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def ensure_secret_file(path: Path) -> None:
    """Write a random secret to `path` once (owner-only, in an owner-only folder); an existing one
    is kept."""
    private_directory(path.parent)
    if not path.exists():
        write_whole(path, secrets.token_urlsafe(48), 0o600)


def ensure_keys(private_dir: Path, public_dir: Path | None = None) -> None:
    """Make the key pair and the session secret in `private_dir` once; copy the public key to `public_dir`."""
    pair = ensure_development_keys(private_dir)
    ensure_secret_file(private_dir / SESSION_SECRET_FILE)
    if public_dir is not None:
        public_dir.mkdir(parents=True, exist_ok=True)
        write_whole(public_dir / PUBLIC_KEY_FILE, pair.public_pem, 0o644)


def main(arguments: Sequence[str] | None = None) -> None:
    """`python -m deliveryhub_kit.keys PRIVATE_DIR [PUBLIC_DIR]`, idempotent: later runs keep the keys."""
    given = list(sys.argv[1:] if arguments is None else arguments)
    if not 1 <= len(given) <= 2 or given[0].startswith("-"):
        sys.exit("usage: python -m deliveryhub_kit.keys PRIVATE_DIR [PUBLIC_DIR]")
    private_dir = Path(given[0])
    public_dir = Path(given[1]) if len(given) == 2 else None
    ensure_keys(private_dir, public_dir)
    print(f"token keys ready in {private_dir}" + (f", public key in {public_dir}" if public_dir else ""))


if __name__ == "__main__":
    main()
