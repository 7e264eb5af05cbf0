"""Tokens the running services accept, signed with the development key pair (or a given key)."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from pathlib import Path

from deliveryhub_kit.identity import Principal, Role
from deliveryhub_kit.keys import ensure_development_keys
from deliveryhub_kit.tokens import TokenIssuer

ISSUER = "deliveryhub"
AUDIENCE = "deliveryhub-api"


def issuer(keys_dir: Path) -> TokenIssuer:
    """The issuer from `JWT_PRIVATE_KEY_FILE` if set, else the development key pair."""
    private_key_file = os.environ.get("JWT_PRIVATE_KEY_FILE")
    private_pem = (
        Path(private_key_file).read_text()
        if private_key_file
        else ensure_development_keys(keys_dir).private_pem
    )
    return TokenIssuer(
        private_pem,
        issuer=os.environ.get("JWT_ISSUER", ISSUER),
        audience=os.environ.get("JWT_AUDIENCE", AUDIENCE),
    )


def make_token(
    keys_dir: Path,
    role: Role,
    *,
    subject: uuid.UUID | None = None,
    deliveryman_id: uuid.UUID | None = None,
    lifetime: timedelta = timedelta(hours=12),
) -> str:
    if role is Role.COURIER and deliveryman_id is None:
        raise ValueError("a courier's token needs --deliveryman-id")
    principal = Principal(
        subject=subject or deliveryman_id or uuid.uuid4(), role=role, deliveryman_id=deliveryman_id
    )
    return issuer(keys_dir).issue(principal, lifetime=lifetime)
