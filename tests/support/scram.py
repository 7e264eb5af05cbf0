"""PostgreSQL's stored SCRAM-SHA-256 verifiers, checked against a password without signing in."""

from __future__ import annotations

import base64
import hashlib
import hmac


def scram_verifies(verifier: str, password: str) -> bool:
    """Whether PostgreSQL's SCRAM-SHA-256 verifier (RFC 5802's stored key) was made from `password`."""
    method, _, rest = verifier.partition("$")
    assert method == "SCRAM-SHA-256", verifier
    iterations_and_salt, _, keys = rest.partition("$")
    iterations, _, salt = iterations_and_salt.partition(":")
    stored_key = keys.partition(":")[0]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), base64.b64decode(stored_key))
