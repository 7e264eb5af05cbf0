"""Tokens: Ed25519-signed JWTs naming the caller, their role and a courier's deliveryman id."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import jwt

from deliveryhub_kit.db import utcnow
from deliveryhub_kit.errors import Unauthenticated
from deliveryhub_kit.identity import Principal, Role

ALGORITHM = "EdDSA"
# The issuer's clock and ours may differ a little.
CLOCK_SKEW_SECONDS = 30


class TokenVerifier:
    """Checks signature, expiry, issuer and audience with the public key only."""

    def __init__(self, public_key_pem: str, *, issuer: str, audience: str) -> None:
        self._key = public_key_pem
        self._issuer = issuer
        self._audience = audience

    def verify(self, token: str) -> Principal:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                audience=self._audience,
                options={"require": ["exp", "sub", "iss", "aud"]},
                leeway=CLOCK_SKEW_SECONDS,
            )
        except jwt.ExpiredSignatureError as error:
            raise Unauthenticated("the token has expired") from error
        except jwt.InvalidTokenError as error:
            raise Unauthenticated(f"the token is not valid: {error}") from error
        try:
            role = Role(str(claims.get("role")))
            subject = uuid.UUID(str(claims["sub"]))
            deliveryman = claims.get("deliveryman_id")
            deliveryman_id = uuid.UUID(str(deliveryman)) if deliveryman else None
        except (ValueError, KeyError) as error:
            raise Unauthenticated("the token's claims are not valid") from error
        if role is Role.COURIER and deliveryman_id is None:
            raise Unauthenticated("a courier's token must name the deliveryman_id")
        return Principal(subject=subject, role=role, deliveryman_id=deliveryman_id)


class TokenIssuer:
    """Signs tokens with the private key; only the issuer (the CLI, the web console) holds it."""

    def __init__(self, private_key_pem: str, *, issuer: str, audience: str) -> None:
        self._key = private_key_pem
        self._issuer = issuer
        self._audience = audience

    def issue(self, principal: Principal, *, lifetime: timedelta = timedelta(hours=12)) -> str:
        now = utcnow()
        claims: dict[str, Any] = {
            "sub": str(principal.subject),
            "role": principal.role.value,
            "iss": self._issuer,
            "aud": self._audience,
            "iat": now,
            "exp": now + lifetime,
        }
        if principal.deliveryman_id is not None:
            claims["deliveryman_id"] = str(principal.deliveryman_id)
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)
