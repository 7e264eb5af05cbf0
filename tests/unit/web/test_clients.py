"""How the console calls the APIs: who it says the user is, and what a refusal or an outage becomes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import TypeVar

import httpx
import jwt
import pytest

from deliveryhub_kit.identity import Principal, Role
from deliveryhub_kit.keys import KeyPair
from deliveryhub_kit.tokens import TokenIssuer, TokenVerifier
from deliveryhub_web.clients import (
    Api,
    ApiError,
    DeliveryApi,
    ListFilter,
    ListRequest,
    OrdersApi,
    ServiceDown,
)
from deliveryhub_web.resources import Delivery, Deliveryman, NewItem, NewOrder

ISSUER = "deliveryhub"
AUDIENCE = "deliveryhub-api"
BASE_URL = "http://delivery.test"
DELIVERY_ID = uuid.UUID("0b7c2f52-3f0e-4a39-9d0e-6f1d2a4b5c6d")
LAPTEV = uuid.UUID("85db966c-67f1-411e-95c0-f02edfa5464a")

MANAGER = Principal(subject=uuid.uuid4(), role=Role.MANAGER)
COURIER = Principal(subject=uuid.uuid4(), role=Role.COURIER, deliveryman_id=LAPTEV)
CUSTOMER = Principal(subject=uuid.uuid4(), role=Role.CUSTOMER)

Handler = Callable[[httpx.Request], httpx.Response]
ApiT = TypeVar("ApiT", bound=Api)

DELIVERY = {
    "id": str(DELIVERY_ID),
    "address": "Москва",
    "date": "2030-05-17T14:30:00Z",
    "status": "activated",
    "deliveryman": {"id": str(LAPTEV), "name": "Лаптев Иван Алексаендрович"},
    "created_at": "2030-05-10T09:00:00Z",
}


def answering(api: type[ApiT], handler: Handler, key_pair: KeyPair) -> ApiT:
    """The console's client of one API, whose every request `handler` answers."""
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return api(BASE_URL + "/", client, TokenIssuer(key_pair.private_pem, issuer=ISSUER, audience=AUDIENCE))


def api_answering(handler: Handler, key_pair: KeyPair) -> DeliveryApi:
    return answering(DeliveryApi, handler, key_pair)


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
        await api_answering(handler, key_pair).cancel_delivery(MANAGER, str(DELIVERY_ID))
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
        await api.list_deliveries(MANAGER, ListRequest())

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
    api = answering(OrdersApi, raising(error), key_pair)

    with pytest.raises(ServiceDown) as caught:
        await api.list_orders(CUSTOMER, ListRequest())

    assert caught.value.service == "orders"


async def test_a_success_that_is_not_json_means_the_service_is_not_right(key_pair: KeyPair) -> None:
    api = api_answering(answer(200, text="<html>a login page of some proxy</html>"), key_pair)

    with pytest.raises(ServiceDown):
        await api.get_delivery(MANAGER, str(DELIVERY_ID))


@pytest.mark.parametrize("body", [[DELIVERY], {"id": str(DELIVERY_ID)}, {**DELIVERY, "status": None}, None])
async def test_a_success_of_another_shape_means_the_service_is_not_right(
    body: object, key_pair: KeyPair
) -> None:
    with pytest.raises(ServiceDown):
        await api_answering(answer(200, body), key_pair).get_delivery(MANAGER, str(DELIVERY_ID))


async def test_a_success_returns_the_document_with_what_the_console_reads_of_it(key_pair: KeyPair) -> None:
    api = api_answering(answer(200, DELIVERY), key_pair)

    assert await api.get_delivery(MANAGER, str(DELIVERY_ID)) == Delivery(
        id=str(DELIVERY_ID),
        address="Москва",
        date="2030-05-17T14:30:00Z",
        status="activated",
        deliveryman=Deliveryman(id=str(LAPTEV), name="Лаптев Иван Алексаендрович"),
    )


async def test_a_list_is_its_items_and_the_number_of_all_its_matches(key_pair: KeyPair) -> None:
    def handle(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[DELIVERY], headers={"X-Total-Count": "41"})

    page = await api_answering(handle, key_pair).list_deliveries(MANAGER, ListRequest())

    assert [delivery.id for delivery in page.items] == [str(DELIVERY_ID)]
    assert page.total == 41


async def test_a_list_without_its_total_means_the_service_is_not_right(key_pair: KeyPair) -> None:
    with pytest.raises(ServiceDown):
        await api_answering(answer(200, [DELIVERY]), key_pair).list_deliveries(MANAGER, ListRequest())


@pytest.mark.parametrize(
    "principal", [MANAGER, COURIER, CUSTOMER], ids=lambda principal: principal.role.value
)
async def test_the_request_names_the_signed_in_user_in_a_token_the_apis_accept(
    principal: Principal, key_pair: KeyPair
) -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=DELIVERY)

    await api_answering(handle, key_pair).get_delivery(principal, str(DELIVERY_ID))

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

    await api_answering(handle, key_pair).list_deliverymen(MANAGER)

    token = seen[0].headers["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert 0 < claims["exp"] - claims["iat"] <= 5 * 60


def recording(seen: list[httpx.Request]) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "GET":
            return httpx.Response(200, json=[], headers={"X-Total-Count": "0"})
        return httpx.Response(200, json={"id": str(DELIVERY_ID)})

    return handle


async def test_an_appointment_is_posted_to_the_delivery_naming_the_deliveryman(key_pair: KeyPair) -> None:
    seen: list[httpx.Request] = []

    await api_answering(recording(seen), key_pair).appoint(MANAGER, str(DELIVERY_ID), str(LAPTEV))

    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == f"{BASE_URL}/api/delivery/{DELIVERY_ID}/appoint"
    assert json.loads(request.content) == {"deliveryman_id": str(LAPTEV)}


async def test_a_new_order_is_posted_with_its_idempotency_key(key_pair: KeyPair) -> None:
    seen: list[httpx.Request] = []
    order = NewOrder(
        address="Москва",
        date="2030-05-17T14:30:00-03:00",
        items=[NewItem(name="Чай", quantity=2, price="150.50")],
    )

    placed = await answering(OrdersApi, recording(seen), key_pair).place_order(
        CUSTOMER, order, idempotency_key="key-1"
    )

    [request] = seen
    assert str(request.url) == f"{BASE_URL}/api/orders"
    assert json.loads(request.content) == {
        "address": "Москва",
        "date": "2030-05-17T14:30:00-03:00",
        "items": [{"name": "Чай", "quantity": 2, "price": "150.50"}],
    }
    assert request.headers["Idempotency-Key"] == "key-1"
    assert placed.id == str(DELIVERY_ID)


async def test_a_list_asks_only_for_what_is_set(key_pair: KeyPair) -> None:
    seen: list[httpx.Request] = []
    waiting = ListRequest(ListFilter("activated", unassigned=True), sort="oldest", limit=200)

    await api_answering(recording(seen), key_pair).list_deliveries(MANAGER, waiting)
    await api_answering(recording(seen), key_pair).list_deliveries(MANAGER, ListRequest(limit=1))

    assert [str(request.url) for request in seen] == [
        f"{BASE_URL}/api/delivery/?status=activated&unassigned=true&limit=200&sort=oldest",
        f"{BASE_URL}/api/delivery/?limit=1",
    ]
