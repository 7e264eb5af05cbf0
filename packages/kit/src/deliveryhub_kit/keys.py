"""The Ed25519 key pair that signs and verifies tokens in development, kept outside git."""

from __future__ import annotations

import fcntl
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PRIVATE_KEY_FILE = "jwt-private.pem"
PUBLIC_KEY_FILE = "jwt-public.pem"


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
