"""Every error a client can meet comes back as `{"error", "detail"}` with the status HTTP means."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict
from sqlalchemy import exc as sa_exc

from deliveryhub_delivery.errors import DeliveryNotFound, UnknownDeliveryman
from deliveryhub_kit.errors import (
    Conflict,
    DomainError,
    InvalidInput,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from deliveryhub_kit.http_errors import install_error_handlers

RAISED: dict[str, DomainError] = {
    "unauthenticated": Unauthenticated("send a bearer token"),
    "forbidden": PermissionDenied("this action is for: manager"),
    "not-found": NotFound("no such thing"),
    "conflict": Conflict("it changed meanwhile"),
    "invalid-input": InvalidInput("that is not right"),
    "unavailable": Unavailable("try again shortly"),
    "uncategorised": DomainError("something is off"),
    "delivery-not-found": DeliveryNotFound("there is no delivery 42"),
    "invalid-transition": InvalidTransition("only an activated delivery can be finished"),
    "unknown-deliveryman": UnknownDeliveryman("there is no courier with id 7"),
}


class Appointment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deliveryman_id: int


def build_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/raise/{name}")
    async def raise_domain_error(name: str) -> None:
        raise RAISED[name]

    @app.post("/appointments")
    async def appoint(appointment: Appointment) -> Appointment:
        return appointment

    @app.get("/database-down")
    async def database_down() -> None:
        raise sa_exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))

    @app.get("/duplicate")
    async def duplicate() -> None:
        raise sa_exc.IntegrityError("INSERT", {}, ValueError("duplicate key"))

    # What a transaction written in one statement on the driver meets, not wrapped by SQLAlchemy.
    driver_errors = {
        "unique": asyncpg.UniqueViolationError("duplicate key value violates unique constraint"),
        "too-long": asyncpg.StringDataRightTruncationError("value too long for type character varying(10)"),
        "shutdown": asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        "lost": asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    }

    @app.get("/driver/{name}")
    async def driver_error(name: str) -> None:
        raise driver_errors[name]

    @app.get("/bug")
    async def bug() -> None:
        raise ZeroDivisionError("division by zero")

    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # Unexpected errors are re-raised after the answer is sent, as under a real server.
    transport = httpx.ASGITransport(app=build_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("unauthenticated", 401, "unauthenticated"),
        ("forbidden", 403, "forbidden"),
        ("not-found", 404, "not_found"),
        ("conflict", 409, "conflict"),
        ("invalid-input", 422, "invalid_input"),
        ("unavailable", 503, "unavailable"),
        ("uncategorised", 400, "error"),
        ("delivery-not-found", 404, "delivery_not_found"),
        ("invalid-transition", 409, "invalid_transition"),
        ("unknown-deliveryman", 422, "unknown_deliveryman"),
    ],
)
async def test_a_domain_error_has_its_status_and_body(
    client: httpx.AsyncClient, name: str, status: int, code: str
) -> None:
    response = await client.get(f"/raise/{name}")

    assert response.status_code == status
    assert response.json() == {"error": code, "detail": RAISED[name].detail}


async def test_an_unauthenticated_caller_is_told_to_send_a_bearer_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/raise/unauthenticated")

    assert response.headers["www-authenticate"] == "Bearer"


async def test_a_forbidden_caller_is_not_asked_to_authenticate(client: httpx.AsyncClient) -> None:
    response = await client.get("/raise/forbidden")

    assert "www-authenticate" not in response.headers


async def test_an_invalid_body_is_422_naming_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/appointments", json={"deliveryman_id": "seven"})

    assert response.status_code == 422
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == "validation_error"
    assert body["detail"].startswith("deliveryman_id: ")


async def test_an_unknown_field_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/appointments", json={"deliveryman_id": 7, "tip": 100})

    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert "tip" in response.json()["detail"]


async def test_a_body_that_is_not_json_is_an_error_body_not_a_crash(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/appointments", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert "not valid JSON" in response.json()["detail"]


async def test_a_missing_body_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/appointments")

    assert response.status_code == 422
    assert response.json() == {"error": "validation_error", "detail": "body: Field required"}


async def test_an_unknown_path_is_404_with_the_error_body(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/path")

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "Not Found"}


async def test_a_wrong_method_is_405_with_the_error_body(client: httpx.AsyncClient) -> None:
    response = await client.delete("/appointments")

    assert response.status_code == 405
    assert response.json() == {"error": "method_not_allowed", "detail": "Method Not Allowed"}
    assert response.headers["allow"] == "POST"


async def test_an_unreachable_database_is_503_to_retry(client: httpx.AsyncClient) -> None:
    response = await client.get("/database-down")

    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"
    assert response.headers["retry-after"] == "1"


async def test_a_constraint_violation_is_409(client: httpx.AsyncClient) -> None:
    response = await client.get("/duplicate")

    assert response.status_code == 409
    assert response.json()["error"] == "conflict"


async def test_a_driver_error_is_read_as_its_sqlalchemy_form_would_be(client: httpx.AsyncClient) -> None:
    answers = {}
    for name in ("unique", "too-long", "shutdown", "lost"):
        response = await client.get(f"/driver/{name}")
        answers[name] = (response.status_code, response.json()["error"])

    assert answers == {
        "unique": (409, "conflict"),
        "too-long": (422, "validation_error"),
        "shutdown": (503, "unavailable"),
        "lost": (503, "unavailable"),
    }


async def test_an_unexpected_error_keeps_the_body_shape_and_hides_the_cause(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/bug")

    assert response.status_code == 500
    assert response.json() == {"error": "internal_error", "detail": "an unexpected error occurred"}
