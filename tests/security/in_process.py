"""A `requests` session whose requests go to an in-process app on the test's event loop.

Schemathesis sends its cases through `requests`; the services run on the loop the async fixtures
started them on. A synchronous test leaves that loop idle, so each request runs on it to the end.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Mapping

import httpx
import requests
import requests.adapters
import urllib3


class InProcessAdapter(requests.adapters.HTTPAdapter):
    """Hands each prepared request to an httpx client of the app and reads back its answer."""

    def __init__(self, client: httpx.AsyncClient, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._client = client
        self._loop = loop

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        body = request.body.encode() if isinstance(request.body, str) else request.body
        assert body is None or isinstance(body, bytes), "streamed request bodies are not supported"
        assert request.method is not None
        assert request.url is not None
        # On the wire a header is latin-1, as a real server would receive it.
        headers = [(name.encode("latin-1"), _octets(value)) for name, value in request.headers.items()]
        answer = self._loop.run_until_complete(
            self._client.request(request.method, request.url, headers=headers, content=body)
        )
        answer_headers = urllib3.HTTPHeaderDict()
        for name, value in answer.headers.multi_items():
            answer_headers.add(name, value)
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(answer.content),
            headers=answer_headers,
            status=answer.status_code,
            reason=answer.reason_phrase,
            version=11,
            preload_content=False,
        )
        return self.build_response(request, raw)


def _octets(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def in_process_session(client: httpx.AsyncClient, loop: asyncio.AbstractEventLoop) -> requests.Session:
    """A session that reaches the app behind `client` whatever host a URL names."""
    session = requests.Session()
    adapter = InProcessAdapter(client, loop)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
