"""Tokens: who a request comes from, and every way a token is refused."""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from datetime import timedelta
from typing import Any

import jwt
import pytest

from deliveryhub_kit.db import utcnow
from deliveryhub_kit.errors import PermissionDenied, Unauthenticated
from deliveryhub_kit.identity import Principal, Role, require_role
from deliveryhub_kit.keys import KeyPair, generate_key_pair
from deliveryhub_kit.tokens import CLOCK_SKEW_SECONDS, TokenIssuer, TokenVerifier

ISSUER = "deliveryhub"
AUDIENCE = "deliveryhub-api"

MANAGER = Principal(subject=uuid.uuid4(), role=Role.MANAGER)
CUSTOMER = Principal(subject=uuid.uuid4(), role=Role.CUSTOMER)
COURIER = Principal(
    subject=uuid.uuid4(), role=Role.COURIER, deliveryman_id=uuid.UUID("85db966c-67f1-411e-95c0-f02edfa5464a")
)


@pytest.fixture(scope="module")
def keys() -> KeyPair:
    return generate_key_pair()


@pytest.fixture(scope="module")
def issuer(keys: KeyPair) -> TokenIssuer:
    return TokenIssuer(keys.private_pem, issuer=ISSUER, audience=AUDIENCE)


@pytest.fixture(scope="module")
def verifier(keys: KeyPair) -> TokenVerifier:
    return TokenVerifier(keys.public_pem, issuer=ISSUER, audience=AUDIENCE)


def signed(keys: KeyPair, **claims: Any) -> str:
    """A token signed with the right key but with claims chosen by the test."""
    now = utcnow()
    defaults: dict[str, Any] = {
        "sub": str(uuid.uuid4()),
        "role": "manager",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + timedelta(minutes=5),
    }
    defaults.update(claims)
    return jwt.encode(
        {name: value for name, value in defaults.items() if value is not None}, keys.private_pem, "EdDSA"
    )


@pytest.mark.parametrize(
    "principal", [MANAGER, CUSTOMER, COURIER], ids=lambda principal: principal.role.value
)
def test_an_issued_token_names_its_principal(
    issuer: TokenIssuer, verifier: TokenVerifier, principal: Principal
) -> None:
    assert verifier.verify(issuer.issue(principal)) == principal


def test_an_expired_token_is_refused(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    token = issuer.issue(MANAGER, lifetime=timedelta(seconds=-(CLOCK_SKEW_SECONDS + 1)))

    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify(token)


def test_a_token_for_another_audience_is_refused_and_why_is_only_logged(
    keys: KeyPair, issuer: TokenIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    verifier = TokenVerifier(keys.public_pem, issuer=ISSUER, audience="another-api")

    with caplog.at_level(logging.INFO), pytest.raises(Unauthenticated, match=r"^the token is not valid$"):
        verifier.verify(issuer.issue(MANAGER))
    assert "InvalidAudienceError" in caplog.text


def test_a_token_from_another_issuer_is_refused(keys: KeyPair, verifier: TokenVerifier) -> None:
    foreign = TokenIssuer(keys.private_pem, issuer="someone-else", audience=AUDIENCE)

    with pytest.raises(Unauthenticated, match=r"^the token is not valid$"):
        verifier.verify(foreign.issue(MANAGER))


def test_a_token_signed_with_another_key_is_refused(verifier: TokenVerifier) -> None:
    forger = TokenIssuer(generate_key_pair().private_pem, issuer=ISSUER, audience=AUDIENCE)

    with pytest.raises(Unauthenticated, match="not valid"):
        verifier.verify(forger.issue(MANAGER))


def test_a_token_whose_claims_were_changed_is_refused(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    header, payload, signature = issuer.issue(CUSTOMER).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "manager"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()

    with pytest.raises(Unauthenticated, match="not valid"):
        verifier.verify(f"{header}.{forged_payload}.{signature}")


def test_an_unsigned_token_is_refused(verifier: TokenVerifier) -> None:
    now = utcnow()
    unsigned = jwt.encode(
        {
            "sub": str(uuid.uuid4()),
            "role": "manager",
            "iss": ISSUER,
            "aud": AUDIENCE,
            "exp": now + timedelta(hours=1),
        },
        key="",
        algorithm="none",
    )

    with pytest.raises(Unauthenticated):
        verifier.verify(unsigned)


@pytest.mark.parametrize("token", ["", "not-a-token", "a.b.c"])
def test_garbage_is_refused(verifier: TokenVerifier, token: str) -> None:
    with pytest.raises(Unauthenticated):
        verifier.verify(token)


def test_a_courier_token_without_a_deliveryman_id_is_refused(
    issuer: TokenIssuer, verifier: TokenVerifier
) -> None:
    token = issuer.issue(Principal(subject=uuid.uuid4(), role=Role.COURIER))

    with pytest.raises(Unauthenticated, match="deliveryman_id"):
        verifier.verify(token)


@pytest.mark.parametrize("missing", ["exp", "sub", "iss", "aud"])
def test_a_token_missing_a_required_claim_is_refused(
    keys: KeyPair, verifier: TokenVerifier, missing: str
) -> None:
    with pytest.raises(Unauthenticated, match=r"^the token is not valid$"):
        verifier.verify(signed(keys, **{missing: None}))


@pytest.mark.parametrize(
    "claims",
    [{"role": "admin"}, {"role": None}, {"sub": "customer-42"}, {"role": "courier", "deliveryman_id": "bob"}],
    ids=["unknown role", "no role", "subject not a uuid", "deliveryman_id not a uuid"],
)
def test_a_token_with_invalid_claims_is_refused(
    keys: KeyPair, verifier: TokenVerifier, claims: dict[str, Any]
) -> None:
    with pytest.raises(Unauthenticated, match="claims are not valid"):
        verifier.verify(signed(keys, **claims))


def test_the_required_role_passes() -> None:
    require_role(COURIER, Role.MANAGER, Role.COURIER)


def test_another_role_is_denied_with_what_was_needed() -> None:
    with pytest.raises(PermissionDenied, match="this action is for: manager, courier; you are customer"):
        require_role(CUSTOMER, Role.MANAGER, Role.COURIER)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def counted_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens whose signature is checked from now on, in order."""
    decoded: list[str] = []
    decode = jwt.decode

    def counting_decode(token: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    return decoded


def test_a_verified_token_is_remembered_and_not_checked_again(
    keys: KeyPair, issuer: TokenIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = TokenVerifier(keys.public_pem, issuer=ISSUER, audience=AUDIENCE)
    token = issuer.issue(CUSTOMER)
    decoded = counted_decodes(monkeypatch)
    assert [verifier.verify(token) for _ in range(3)] == [CUSTOMER] * 3
    assert decoded == [token]


def test_a_remembered_token_is_checked_again_once_it_has_expired(
    keys: KeyPair, issuer: TokenIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    verifier = TokenVerifier(keys.public_pem, issuer=ISSUER, audience=AUDIENCE, clock=clock)
    token = issuer.issue(CUSTOMER, lifetime=timedelta(minutes=5))
    decoded = counted_decodes(monkeypatch)
    verifier.verify(token)
    clock.now += 5 * 60 + CLOCK_SKEW_SECONDS - 5
    verifier.verify(token)
    assert decoded == [token]
    clock.now += 10
    verifier.verify(token)
    assert decoded == [token, token]


def test_a_refused_token_is_not_remembered(keys: KeyPair, monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = TokenVerifier(keys.public_pem, issuer=ISSUER, audience=AUDIENCE)
    expired = signed(keys, exp=utcnow() - timedelta(seconds=CLOCK_SKEW_SECONDS + 1))
    decoded = counted_decodes(monkeypatch)
    for _ in range(2):
        with pytest.raises(Unauthenticated, match="expired"):
            verifier.verify(expired)
    assert decoded == [expired, expired]


def test_only_the_most_recently_used_tokens_are_remembered(keys: KeyPair, issuer: TokenIssuer) -> None:
    verifier = TokenVerifier(keys.public_pem, issuer=ISSUER, audience=AUDIENCE, remember=2)
    first, second, third = (issuer.issue(principal) for principal in (CUSTOMER, MANAGER, COURIER))
    for token in (first, second, first, third):
        verifier.verify(token)
    assert list(verifier._verified) == [first, third]


def test_a_token_key_that_is_not_ed25519_is_refused_at_start() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(ValueError, match="Ed25519"):
        TokenVerifier(pem, issuer=ISSUER, audience=AUDIENCE)
