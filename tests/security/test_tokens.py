"""Every kind of bad token is a 401 on both APIs; the same call with a good token is answered.

Each token below is a good manager's (or courier's) token with one thing wrong, so the 401 is that
thing's doing: the control case, the same claims signed properly, gets a 200.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import jwt
import pytest

from deliveryhub_kit.db import utcnow
from deliveryhub_kit.keys import KeyPair, generate_key_pair
from deliveryhub_kit.settings import ServiceSettings
from tests.support.shop import LAPTEV, Shop

pytestmark = pytest.mark.integration

ISSUER = str(ServiceSettings.model_fields["jwt_issuer"].default)
AUDIENCE = str(ServiceSettings.model_fields["jwt_audience"].default)
# Well past the clock skew the verifier allows.
AN_HOUR = timedelta(hours=1)


def claims(**changes: Any) -> dict[str, Any]:
    """A manager's claims with `changes`; a change to None leaves the claim out."""
    now = utcnow()
    values: dict[str, Any] = {
        "sub": str(uuid.uuid4()),
        "role": "manager",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + timedelta(minutes=5),
    }
    values.update(changes)
    return {name: value for name, value in values.items() if value is not None}


def signed(keys: KeyPair, **changes: Any) -> str:
    return jwt.encode(claims(**changes), keys.private_pem, algorithm="EdDSA")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segments(header: dict[str, Any], payload: dict[str, Any]) -> str:
    as_json = {**payload, "iat": int(payload["iat"].timestamp()), "exp": int(payload["exp"].timestamp())}
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(as_json).encode())}"


def hs256_with_the_public_key(keys: KeyPair) -> str:
    """The algorithm-confusion attack: HMAC with the public key, which anyone has, as the secret."""
    unsigned = _segments({"alg": "HS256", "typ": "JWT"}, claims())
    signature = hmac.new(keys.public_pem.encode(), unsigned.encode(), hashlib.sha256).digest()
    return f"{unsigned}.{_b64(signature)}"


def unsigned(keys: KeyPair) -> str:
    return f"{_segments({'alg': 'none', 'typ': 'JWT'}, claims())}."


def promoted(keys: KeyPair) -> str:
    """A customer's token whose payload was rewritten to say manager, the signature kept."""
    header, _, signature = signed(keys, role="customer").split(".")
    payload = {**claims(), "iat": 0, "exp": int((utcnow() + AN_HOUR).timestamp())}
    return f"{header}.{_b64(json.dumps(payload).encode())}.{signature}"


Authorization = Callable[[KeyPair], dict[str, str]]


def bearer(make: Callable[[KeyPair], str]) -> Authorization:
    return lambda keys: {"Authorization": f"Bearer {make(keys)}"}


NOT_VALID = "the token is not valid"

# Each bad credential, and the refusal it gets. What the JWT library says of a token it refuses
# (which a forger would learn from) never reaches the caller: it goes to the log.
BAD_CREDENTIALS: dict[str, tuple[Authorization, str]] = {
    "no token": (lambda keys: {}, "send a bearer token"),
    "an empty bearer": (lambda keys: {"Authorization": "Bearer "}, "send a bearer token"),
    "another scheme": (lambda keys: {"Authorization": "Basic " + _b64(b"manager:pw")}, "send a bearer token"),
    "expired": (
        bearer(lambda keys: signed(keys, iat=utcnow() - 2 * AN_HOUR, exp=utcnow() - AN_HOUR)),
        "the token has expired",
    ),
    "not yet valid": (bearer(lambda keys: signed(keys, nbf=utcnow() + AN_HOUR)), NOT_VALID),
    "without an expiry": (bearer(lambda keys: signed(keys, exp=None)), NOT_VALID),
    "signed with another key": (bearer(lambda keys: signed(generate_key_pair())), NOT_VALID),
    "alg none": (bearer(unsigned), NOT_VALID),
    "HS256 with the public key as secret": (bearer(hs256_with_the_public_key), NOT_VALID),
    "payload changed after signing": (bearer(promoted), NOT_VALID),
    "for another audience": (bearer(lambda keys: signed(keys, aud="someone-else")), NOT_VALID),
    "from another issuer": (bearer(lambda keys: signed(keys, iss="someone-else")), NOT_VALID),
    "garbage": (bearer(lambda keys: "not-a-token"), NOT_VALID),
    "three garbage segments": (bearer(lambda keys: "a.b.c"), NOT_VALID),
    "without a role": (bearer(lambda keys: signed(keys, role=None)), "the token's claims are not valid"),
    "an unknown role": (bearer(lambda keys: signed(keys, role="admin")), "the token's claims are not valid"),
    "a courier without deliveryman_id": (
        bearer(lambda keys: signed(keys, role="courier")),
        "a courier's token must name the deliveryman_id",
    ),
}

APIS = {"orders": "/api/orders", "delivery": "/api/delivery/"}


@pytest.mark.parametrize("service", APIS)
@pytest.mark.parametrize(("credentials", "reason"), BAD_CREDENTIALS.values(), ids=BAD_CREDENTIALS)
async def test_a_bad_token_is_401(
    shop: Shop, key_pair: KeyPair, service: str, credentials: Authorization, reason: str
) -> None:
    client = shop.orders if service == "orders" else shop.delivery

    response = await client.get(APIS[service], headers=credentials(key_pair))

    assert response.status_code == 401, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == "unauthenticated"
    if reason == "send a bearer token":
        assert reason in body["detail"]
    else:
        assert body["detail"] == reason
    assert response.headers["WWW-Authenticate"] == "Bearer"


GOOD_CLAIMS = [
    pytest.param("orders", {}, id="orders-a manager"),
    pytest.param("orders", {"role": "customer"}, id="orders-a customer"),
    pytest.param("orders", {"nbf": utcnow() - AN_HOUR}, id="orders-valid since an hour ago"),
    pytest.param("delivery", {}, id="delivery-a manager"),
    pytest.param("delivery", {"role": "courier", "deliveryman_id": str(LAPTEV)}, id="delivery-a courier"),
    pytest.param("delivery", {"nbf": utcnow() - AN_HOUR}, id="delivery-valid since an hour ago"),
]


@pytest.mark.parametrize(("service", "changes"), GOOD_CLAIMS)
async def test_the_same_call_with_a_good_token_is_answered(
    shop: Shop, key_pair: KeyPair, service: str, changes: dict[str, Any]
) -> None:
    client = shop.orders if service == "orders" else shop.delivery

    response = await client.get(
        APIS[service], headers={"Authorization": f"Bearer {signed(key_pair, **changes)}"}
    )

    assert response.status_code == 200, response.text
