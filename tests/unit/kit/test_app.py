"""The request body limit every service is built with."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request
from pydantic import BaseModel

from deliveryhub_kit.app import BodyLimit
from deliveryhub_kit.http_errors import install_error_handlers

LIMIT = 1024
TOO_LARGE = {"error": "payload_too_large", "detail": f"the request body is larger than {LIMIT} bytes"}


class Note(BaseModel):
    text: str


def build_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/notes")
    async def add_note(note: Note) -> dict[str, int]:
        return {"length": len(note.text)}

    @app.post("/raw")
    async def add_raw(request: Request) -> dict[str, int]:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return {"length": size}

    app.add_middleware(BodyLimit, max_bytes=LIMIT)
    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def streamed(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def test_a_body_within_the_limit_is_served(client: httpx.AsyncClient) -> None:
    response = await client.post("/notes", json={"text": "a" * 100})

    assert response.status_code == 200
    assert response.json() == {"length": 100}


async def test_a_declared_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/notes", json={"text": "a" * 2 * LIMIT})

    assert response.status_code == 413
    assert response.json() == TOO_LARGE


@pytest.mark.parametrize("path", ["/notes", "/raw"])
async def test_a_streamed_body_over_the_limit_is_413(client: httpx.AsyncClient, path: str) -> None:
    body = streamed(b'{"text": "', *([b"a" * 500] * 4), b'"}')

    response = await client.post(path, content=body, headers={"content-type": "application/json"})

    assert response.status_code == 413
    assert response.json() == TOO_LARGE


async def test_a_streamed_body_within_the_limit_is_served(client: httpx.AsyncClient) -> None:
    body = streamed(b'{"text": "', b"a" * 300, b"a" * 300, b'"}')

    response = await client.post("/notes", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 200
    assert response.json() == {"length": 600}
