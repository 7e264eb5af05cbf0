"""How the console calls the APIs: who it says the user is, and what a refusal or an outage becomes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import httpx
import jwt
import pytest

from deliveryhub_kit.identity import Principal, Role
from deliveryhub_kit.keys import KeyPair
from deliveryhub_kit.tokens import TokenIssuer, TokenVerifier
from deliveryhub_web.clients import Api, ApiError, ServiceDown

ISSUER = "deliveryhub"
AUDIENCE = "deliveryhub-api"
BASE_URL = "http://delivery.test"
DELIVERY_ID = uuid.UUID("0b7c2f52-3f0e-4a39-9d0e-6f1d2a4b5c6d")
LAPTEV = uuid.UUID("85db966c-67f1-411e-95c0-f02edfa5464a")

MANAGER = Principal(subject=uuid.uuid4(), role=Role.MANAGER)
COURIER = Principal(subject=uuid.uuid4(), role=Role.COURIER, deliveryman_id=LAPTEV)
CUSTOMER = Principal(subject=uuid.uuid4(), role=Role.CUSTOMER)

Handler = Callable[[httpx.Request], httpx.Response]


def api_answering(handler: Handler, key_pair: KeyPair, name: str = "delivery") -> Api:
    """The console's client of one API, whose every request `handler` answers."""
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return Api(
        name, BASE_URL + "/", client, TokenIssuer(key_pair.private_pem, issuer=ISSUER, audience=AUDIENCE)
    )


def answer(status: int, body: object = None, *, text: str | None = None) -> Handler:
    def handle(_: httpx.Request) -> httpx.Response:
        if text is not None:
            return httpx.Response(status, text=text, headers={"Content-Type": "text/html"})
        return httpx.Response(status, json=body)

    return handle


def raising(error: Exception) -> Handler:
    def handle(_: httpx.Request) -> httpx.Response:
        raise error

    return handle


async def refusal(handler: Handler, key_pair: KeyPair) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await api_answering(handler, key_pair).call(MANAGER, "POST", f"/api/delivery/{DELIVERY_ID}/cancel")
    return caught.value


async def test_a_409_says_it_is_not_possible_now_and_why(key_pair: KeyPair) -> None:
    detail = "a courier can be appointed only to an activated delivery; this one is created"

    error = await refusal(answer(409, {"error": "invalid_transition", "detail": detail}), key_pair)

    assert error.status == 409
    assert error.code == "invalid_transition"
    assert error.detail == detail
    assert error.message.startswith("Not possible now:")
    assert detail in error.message


async def test_a_422_asks_to_check_what_was_entered_and_says_what(key_pair: KeyPair) -> None:
    detail = "deliveryman_id: Input should be a valid UUID"

    error = await refusal(answer(422, {"error": "validation_error", "detail": detail}), key_pair)

    assert error.status == 422
    assert error.message.startswith("Please check what you entered")
    assert detail in error.message


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, "Your session is no longer valid; please sign in again."),
        (403, "You are not allowed to do that."),
        (404, "That does not exist, or it is not yours to see."),
        (413, "That is too much at once."),
        (429, "Too many requests right now; wait a moment and try again."),
    ],
)
async def test_other_refusals_are_told_in_plain_words(status: int, message: str, key_pair: KeyPair) -> None:
    body = {"error": "some_code", "detail": "the internal detail of a refusal"}

    error = await refusal(answer(status, body), key_pair)

    assert error.status == status
    assert error.code == "some_code"
    assert error.message == message


async def test_an_unforeseen_refusal_still_says_what_the_api_said(key_pair: KeyPair) -> None:
    error = await refusal(
        answer(400, {"error": "bad_request", "detail": "the body is not valid JSON"}), key_pair
    )

    assert error.message == "That did not work: the body is not valid JSON."


@pytest.mark.parametrize("status", [400, 404, 409])
async def test_a_refusal_that_is_not_json_is_told_by_its_status(status: int, key_pair: KeyPair) -> None:
    error = await refusal(answer(status, text="<html><body>Refused by a proxy</body></html>"), key_pair)

    assert error.status == status
    assert error.code == "error"
    assert error.detail == httpx.codes.get_reason_phrase(status)


@pytest.mark.parametrize("body", [[], "refused", {"error": "conflict"}, {"detail": "no code"}, None])
async def test_a_refusal_of_another_json_shape_is_told_by_its_status(body: object, key_pair: KeyPair) -> None:
    error = await refusal(answer(409, body), key_pair)

    assert error.status == 409
    assert error.detail == "Conflict"
    assert error.message == "Not possible now: Conflict."


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_a_server_error_means_the_service_is_down(status: int, key_pair: KeyPair) -> None:
    api = api_answering(answer(status, {"error": "unavailable", "detail": "the database is down"}), key_pair)

    with pytest.raises(ServiceDown) as caught:
        await api.call(MANAGER, "GET", "/api/delivery/")

    assert caught.value.service == "delivery"
    assert "delivery" in str(caught.value)


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("Connection refused"),
        httpx.ConnectTimeout("timed out connecting"),
        httpx.ReadTimeout("timed out reading"),
        httpx.PoolTimeout("no connection free"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
    ids=lambda error: type(error).__name__,
)
async def test_no_answer_means_the_service_is_down(error: Exception, key_pair: KeyPair) -> None:
    api = api_answering(raising(error), key_pair, name="orders")

    with pytest.raises(ServiceDown) as caught:
        await api.call(CUSTOMER, "GET", "/api/orders")

    assert caught.value.service == "orders"


async def test_a_success_that_is_not_json_means_the_service_is_not_right(key_pair: KeyPair) -> None:
    api = api_answering(answer(200, text="<html>a login page of some proxy</html>"), key_pair)

    with pytest.raises(ServiceDown):
        await api.call(MANAGER, "GET", "/api/delivery/")


async def test_a_success_returns_the_json_body(key_pair: KeyPair) -> None:
    deliveries = [{"id": str(DELIVERY_ID), "address": "Москва", "status": "activated", "deliveryman": None}]
    api = api_answering(answer(200, deliveries), key_pair)

    assert await api.call(MANAGER, "GET", "/api/delivery/") == deliveries


@pytest.mark.parametrize(
    "principal", [MANAGER, COURIER, CUSTOMER], ids=lambda principal: principal.role.value
)
async def test_the_request_names_the_signed_in_user_in_a_token_the_apis_accept(
    principal: Principal, key_pair: KeyPair
) -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    await api_answering(handle, key_pair).call(principal, "GET", f"/api/delivery/{DELIVERY_ID}")

    [request] = seen
    scheme, _, token = request.headers["Authorization"].partition(" ")
    assert scheme == "Bearer"
    verified = TokenVerifier(key_pair.public_pem, issuer=ISSUER, audience=AUDIENCE).verify(token)
    assert verified == principal


async def test_the_token_lives_only_minutes(key_pair: KeyPair) -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[])

    await api_answering(handle, key_pair).call(MANAGER, "GET", "/api/deliverymen")

    token = seen[0].headers["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert 0 < claims["exp"] - claims["iat"] <= 5 * 60


async def test_the_request_goes_to_the_path_with_its_body_query_and_headers(key_pair: KeyPair) -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": str(DELIVERY_ID)})

    await api_answering(handle, key_pair).call(
        MANAGER,
        "POST",
        f"/api/delivery/{DELIVERY_ID}/appoint",
        json={"deliveryman_id": str(LAPTEV)},
        params={"status": None, "limit": 200},
        headers={"Idempotency-Key": "key-1"},
    )

    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == f"{BASE_URL}/api/delivery/{DELIVERY_ID}/appoint?limit=200"
    assert json.loads(request.content) == {"deliveryman_id": str(LAPTEV)}
    assert request.headers["Idempotency-Key"] == "key-1"
