"""Tokens: Ed25519-signed JWTs naming the caller, their role and a courier's deliveryman id."""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from deliveryhub_kit.db import utcnow
from deliveryhub_kit.errors import Unauthenticated
from deliveryhub_kit.identity import Principal, Role

logger = logging.getLogger(__name__)

ALGORITHM = "EdDSA"
# The issuer's clock and ours may differ a little.
CLOCK_SKEW_SECONDS = 30


class TokenVerifier:
    """Checks signature, expiry, issuer and audience with the public key only.

    A token that passed is remembered until it expires: a client sends the same token with each
    request, and checking its signature again would be most of the cost of a small request.
    """

    def __init__(
        self,
        public_key_pem: str,
        *,
        issuer: str,
        audience: str,
        remember: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Parsed once: PyJWT would parse a PEM again for every token.
        key = serialization.load_pem_public_key(public_key_pem.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"tokens are verified with an Ed25519 public key, not {type(key).__name__}")
        self._key = key
        self._issuer = issuer
        self._audience = audience
        self._remember = remember
        self._clock = clock
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def verify(self, token: str) -> Principal:
        known = self._verified.get(token)
        if known is not None:
            principal, usable_until = known
            if self._clock() < usable_until:
                self._verified.move_to_end(token)
                return principal
            del self._verified[token]
        principal, expires_at = self._check(token)
        self._verified[token] = (principal, expires_at + CLOCK_SKEW_SECONDS)
        if len(self._verified) > self._remember:
            self._verified.popitem(last=False)
        return principal

    def _check(self, token: str) -> tuple[Principal, float]:
        """The principal a token names and when it expires, or `Unauthenticated`."""
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
            # The library's own words say what a forger got wrong: they stay in the log.
            logger.info("a token was refused: %s: %s", type(error).__name__, error)
            raise Unauthenticated("the token is not valid") from error
        try:
            role = Role(str(claims.get("role")))
            subject = uuid.UUID(str(claims["sub"]))
            deliveryman = claims.get("deliveryman_id")
            deliveryman_id = uuid.UUID(str(deliveryman)) if deliveryman else None
        except (ValueError, KeyError) as error:
            raise Unauthenticated("the token's claims are not valid") from error
        if role is Role.COURIER and deliveryman_id is None:
            raise Unauthenticated("a courier's token must name the deliveryman_id")
        return Principal(subject=subject, role=role, deliveryman_id=deliveryman_id), float(claims["exp"])


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
