"""The Ed25519 key pair that signs and verifies tokens, and the secrets made beside it.

In development it lives in `.deliveryhub/keys`, outside git. In containers a one-shot job makes it
into volumes on first start: `python -m deliveryhub_kit.keys PRIVATE_DIR [PUBLIC_DIR]`.
"""

from __future__ import annotations

import fcntl
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


def ensure_development_keys(directory: Path) -> KeyPair:
    """Load the key pair from `directory`, creating it once if it is not there."""
    private_path = directory / PRIVATE_KEY_FILE
    public_path = directory / PUBLIC_KEY_FILE
    directory.mkdir(parents=True, exist_ok=True)
    # A lock file, so that services starting together agree on one key pair.
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (private_path.exists() and public_path.exists()):
            pair = generate_key_pair()
            private_path.write_text(pair.private_pem)
            private_path.chmod(0o600)
            public_path.write_text(pair.public_pem)
        return KeyPair(private_path.read_text(), public_path.read_text())


def _write_whole(path: Path, text: str, mode: int) -> None:
    """Write through a temporary file, so that a reader never sees half a key."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.chmod(mode)
    temporary.replace(path)


def ensure_secret_file(path: Path) -> None:
    """Write a random secret to `path` once; an existing one is kept."""
    if not path.exists():
        _write_whole(path, secrets.token_urlsafe(48), 0o600)


def ensure_keys(private_dir: Path, public_dir: Path | None = None) -> None:
    """Make the key pair and the session secret in `private_dir` once; copy the public key to `public_dir`."""
    pair = ensure_development_keys(private_dir)
    ensure_secret_file(private_dir / SESSION_SECRET_FILE)
    if public_dir is not None:
        public_dir.mkdir(parents=True, exist_ok=True)
        _write_whole(public_dir / PUBLIC_KEY_FILE, pair.public_pem, 0o644)


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
