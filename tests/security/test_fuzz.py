"""Schemathesis against each API's own `/openapi.json`: no input is a server error, and every
answer is one the OpenAPI document declares, with the status, media type and body it says.

Each case is sent with a valid token of a role the route lets in. Half of the valid cases name an
order or a delivery that exists (the fuzzing customer's orders, deliveries waiting for a courier or
appointed to the fuzzing courier), a real courier and a price the database can store, so that the
fuzzing reaches the state machines and not only the 404 of a random id.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from schemathesis import Case
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from deliveryhub_delivery.app import create_app as create_delivery_app
from deliveryhub_delivery.settings import DeliverySettings
from deliveryhub_kit.identity import Role
from deliveryhub_kit.settings import ServiceSettings
from deliveryhub_orders.app import create_app as create_orders_app
from deliveryhub_orders.settings import OrdersSettings
from tests.security.in_process import in_process_session
from tests.support.shop import KUDZH, LAPTEV, ZUEV, Caller, RunningService, Services, Shop

pytestmark = pytest.mark.integration

CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]

# The roles each operation lets in, as in the design's tables; None: the route needs no token.
ROLES: dict[str, list[Role | None]] = {
    "GET /health/live": [None],
    "GET /health/ready": [None],
    "POST /api/orders": [Role.CUSTOMER],
    "GET /api/orders": [Role.CUSTOMER, Role.MANAGER],
    "GET /api/orders/{order_id}": [Role.CUSTOMER, Role.MANAGER],
    "POST /api/orders/{order_id}/pay": [Role.CUSTOMER],
    "POST /api/orders/{order_id}/cancel": [Role.CUSTOMER, Role.MANAGER],
    "GET /api/delivery/": [Role.MANAGER, Role.COURIER],
    "GET /api/delivery/{delivery_id}": [Role.MANAGER, Role.COURIER],
    "POST /api/delivery/{delivery_id}/appoint": [Role.MANAGER],
    "POST /api/delivery/{delivery_id}/finish": [Role.MANAGER, Role.COURIER],
    "POST /api/delivery/{delivery_id}/cancel": [Role.MANAGER],
    "GET /api/deliverymen": [Role.MANAGER],
}

# A bounded run: every operation of both APIs in well under a minute on two cores. No shrinking:
# the services' state moves on between examples, so a replayed case would not get the same answer.
FUZZ_SETTINGS = settings(
    max_examples=30,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@dataclass
class Fuzzing:
    """How the cases of one API are sent: where, by whom, and values that lead past a 404 or 422."""

    base_url: str
    callers: dict[Role | None, dict[str, str]]
    # By name of a path parameter or body field: values the service knows (ids that exist, a
    # courier, a price it can store). Half of the cases take them where they are valid.
    known: dict[str, st.SearchStrategy[Any]]
    session: requests.Session

    def send(self, case: Case[Any], data: st.DataObject) -> None:
        roles = ROLES.get(case.operation.label)
        assert roles is not None, f"{case.operation.label} is not in the table of roles; add it"
        headers = self.callers[data.draw(st.sampled_from(roles), label="role")]
        # A component made invalid on purpose stays as it was made, so that it is still invalid.
        if data.draw(st.booleans(), label="known values"):
            if case.path_parameters and not _is_negative(case, ParameterLocation.PATH):
                self._take_known(case.path_parameters, data)
            if isinstance(case.body, dict) and not _is_negative(case, ParameterLocation.BODY):
                self._take_known(case.body, data)
        case.call_and_validate(base_url=self.base_url, session=self.session, headers=headers, checks=CHECKS)

    def _take_known(self, values: dict[str, Any], data: st.DataObject) -> None:
        for name, value in values.items():
            if name in self.known:
                values[name] = data.draw(self.known[name], label=name)
            elif isinstance(value, list):
                for element in value:
                    if isinstance(element, dict):
                        self._take_known(element, data)


def _is_negative(case: Case[Any], location: ParameterLocation) -> bool:
    return case.meta is not None and case.meta.is_negative_at(location)


def _in_process(service: RunningService) -> requests.Session:
    return in_process_session(service.client, service.loop)


# A price the orders table stores: pydantic's schema of a Decimal allows any string at all.
PRICES = st.decimals(min_value=0, max_value=10**6, places=2).map(str)


@pytest.fixture(scope="module")
async def orders_fuzzing(services: Services, shop: Shop) -> AsyncIterator[Fuzzing]:
    customer = Caller.customer()
    created = [await shop.place_order(customer) for _ in range(3)]
    paid = [await shop.paid_order(customer) for _ in range(3)]
    callers = {
        None: {},
        Role.CUSTOMER: customer.headers(shop.tokens),
        Role.MANAGER: Caller.manager().headers(shop.tokens),
    }
    known = {"order_id": st.sampled_from([str(order_id) for order_id in created + paid]), "price": PRICES}
    session = _in_process(services.orders)
    yield Fuzzing("http://orders.test", callers, known, session)
    session.close()


@pytest.fixture(scope="module")
async def delivery_fuzzing(services: Services, shop: Shop) -> AsyncIterator[Fuzzing]:
    activated = [await shop.activated_delivery() for _ in range(3)]
    appointed = [await shop.appointed_delivery(LAPTEV) for _ in range(3)]
    callers = {
        None: {},
        Role.MANAGER: Caller.manager().headers(shop.tokens),
        Role.COURIER: Caller.courier(LAPTEV).headers(shop.tokens),
    }
    known = {
        "delivery_id": st.sampled_from([str(delivery_id) for delivery_id in activated + appointed]),
        "deliveryman_id": st.sampled_from([str(courier) for courier in (LAPTEV, ZUEV, KUDZH)]),
    }
    session = _in_process(services.delivery)
    yield Fuzzing("http://delivery.test", callers, known, session)
    session.close()


def served_openapi(create_app: Callable[[Any], FastAPI], settings: ServiceSettings) -> dict[str, Any]:
    """The document a service serves at `/openapi.json`, read from its app without starting it."""
    return create_app(settings).openapi()


# Read when the tests are collected, so that each operation is a test of its own.
ORDERS_OPENAPI = served_openapi(
    create_orders_app, OrdersSettings(environment="test", configure_logging=False)
)
DELIVERY_OPENAPI = served_openapi(
    create_delivery_app, DeliverySettings(environment="test", configure_logging=False)
)


def fuzzed(document: dict[str, Any]) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_dict(document)
    # The cases carry the tokens sent with them; made-up credentials would only meet the 401s,
    # which the token tests cover one by one.
    schema.config.generation.update(with_security_parameters=False)
    return schema


orders_api = fuzzed(ORDERS_OPENAPI)
delivery_api = fuzzed(DELIVERY_OPENAPI)


@pytest.mark.parametrize(
    ("service", "document"), [("orders", ORDERS_OPENAPI), ("delivery", DELIVERY_OPENAPI)]
)
async def test_the_fuzzed_document_is_the_one_each_running_service_serves(
    services: Services, service: str, document: dict[str, Any]
) -> None:
    running = services.orders if service == "orders" else services.delivery

    response = await running.client.get("/openapi.json")

    assert response.status_code == 200, response.text
    assert response.json() == document


@orders_api.parametrize()
@orders_api.given(data=st.data())
@FUZZ_SETTINGS
def test_the_orders_api_answers_every_input_as_its_openapi_says(
    case: Case[Any], data: st.DataObject, orders_fuzzing: Fuzzing
) -> None:
    orders_fuzzing.send(case, data)


@delivery_api.parametrize()
@delivery_api.given(data=st.data())
@FUZZ_SETTINGS
def test_the_delivery_api_answers_every_input_as_its_openapi_says(
    case: Case[Any], data: st.DataObject, delivery_fuzzing: Fuzzing
) -> None:
    delivery_fuzzing.send(case, data)


@pytest.mark.parametrize(
    ("service", "path", "operation"),
    [
        ("orders", "/api/orders", ORDERS_OPENAPI["paths"]["/api/orders"]["post"]),
        (
            "delivery",
            f"/api/delivery/{LAPTEV}/appoint",
            DELIVERY_OPENAPI["paths"]["/api/delivery/{delivery_id}/appoint"]["post"],
        ),
    ],
    ids=["place an order", "appoint a courier"],
)
async def test_a_body_that_is_not_utf8_is_the_400_the_document_declares(
    services: Services, shop: Shop, service: str, path: str, operation: dict[str, Any]
) -> None:
    running, caller = (
        (services.orders, Caller.customer()) if service == "orders" else (services.delivery, Caller.manager())
    )
    headers = {**caller.headers(shop.tokens), "Content-Type": "application/json"}

    response = await running.client.post(path, content=b'{"address": "\xff\xfe"}', headers=headers)

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "bad_request"
    assert "400" in operation["responses"]
