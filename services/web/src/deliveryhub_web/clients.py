"""The orders and delivery APIs as the console calls them, with timeouts and plain-language errors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from deliveryhub_kit.context import CORRELATION_HEADER, current_correlation_id, current_traceparent
from deliveryhub_kit.identity import Principal
from deliveryhub_kit.tokens import TokenIssuer

_PLAIN_STATUS = {
    401: "Your session is no longer valid; please sign in again.",
    403: "You are not allowed to do that.",
    404: "That does not exist, or it is not yours to see.",
    413: "That is too much at once.",
    429: "Too many requests right now; wait a moment and try again.",
}


class ApiError(Exception):
    """The API refused the call; `message` says why in plain words."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail

    @property
    def message(self) -> str:
        if self.status == 409:
            return f"Not possible now: {self.detail}."
        if self.status == 422:
            return f"Please check what you entered: {self.detail}."
        return _PLAIN_STATUS.get(self.status, f"That did not work: {self.detail}.")


class ServiceDown(Exception):
    """The service did not answer in time, or answered that it cannot serve now."""

    def __init__(self, service: str) -> None:
        super().__init__(f"the {service} service is not answering")
        self.service = service


@dataclass(frozen=True)
class ListPage:
    """One page of an API's list, and how many items match in all (its `X-Total-Count`)."""

    items: list[dict[str, Any]]
    total: int


class Api:
    """One backend service, called with a short-lived token for the signed-in user."""

    def __init__(self, name: str, base_url: str, client: httpx.AsyncClient, issuer: TokenIssuer) -> None:
        self.name = name
        self._base_url = base_url.rstrip("/")
        self._client = client
        self._issuer = issuer

    async def call(
        self,
        principal: Principal,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """The answer's JSON; an `ApiError` for a refusal, `ServiceDown` when it cannot answer."""
        response = await self._send(principal, method, path, json=json, params=params, headers=headers)
        try:
            return response.json()
        except ValueError as error:
            raise ServiceDown(self.name) from error

    async def page(self, principal: Principal, path: str, params: dict[str, Any]) -> ListPage:
        """One page of a list, with the number of all its matches."""
        response = await self._send(principal, "GET", path, params=params)
        try:
            items = response.json()
            total = int(response.headers["X-Total-Count"])
        except (ValueError, KeyError) as error:
            raise ServiceDown(self.name) from error
        if not isinstance(items, list):
            raise ServiceDown(self.name)
        return ListPage(items, total)

    async def _send(
        self,
        principal: Principal,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        token = self._issuer.issue(principal, lifetime=timedelta(minutes=5))
        try:
            response = await self._client.request(
                method,
                self._base_url + path,
                json=json,
                params={key: value for key, value in (params or {}).items() if value is not None},
                headers={**(headers or {}), **_context_headers(), "Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as error:
            raise ServiceDown(self.name) from error
        if response.status_code >= 500:
            raise ServiceDown(self.name)
        if response.status_code >= 400:
            try:
                body = response.json()
                code, detail = str(body["error"]), str(body["detail"])
            except (ValueError, KeyError, TypeError):
                code, detail = "error", response.reason_phrase
            raise ApiError(response.status_code, code, detail)
        return response


def _context_headers() -> dict[str, str]:
    """The page's correlation id and trace travel on to the APIs."""
    headers: dict[str, str] = {}
    if correlation_id := current_correlation_id():
        headers[CORRELATION_HEADER] = correlation_id
    if traceparent := current_traceparent():
        headers["traceparent"] = traceparent
    return headers


class Backends:
    """The two APIs behind the console, on one connection pool with timeouts."""

    def __init__(
        self, *, orders_url: str, delivery_url: str, timeout_seconds: float, issuer: TokenIssuer
    ) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds, connect=min(2.0, timeout_seconds)),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )
        self.orders = Api("orders", orders_url, self._client, issuer)
        self.delivery = Api("delivery", delivery_url, self._client, issuer)

    async def close(self) -> None:
        await self._client.aclose()
