"""The orders and delivery APIs as the console calls them, with timeouts and plain-language errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, Generic, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from deliveryhub_kit.context import CORRELATION_HEADER, current_correlation_id, current_traceparent
from deliveryhub_kit.identity import Principal
from deliveryhub_kit.tokens import TokenIssuer
from deliveryhub_web.resources import (
    Appointment,
    Change,
    Delivery,
    DeliverymanLoad,
    DocumentT,
    NewOrder,
    Order,
    Outcome,
)

ParsedT = TypeVar("ParsedT")

_ORDERS = TypeAdapter(list[Order])
_DELIVERIES = TypeAdapter(list[Delivery])
_DELIVERYMEN = TypeAdapter(list[DeliverymanLoad])
_CHANGES = TypeAdapter(list[Change])

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
class ListFilter:
    """Which records of an API's list to read; `unassigned` only those no deliveryman is appointed to."""

    status: str | None = None
    unassigned: bool = False


@dataclass(frozen=True)
class ListRequest:
    """One page of an API's list to read: its filter, the search, the order and where to start."""

    filter: ListFilter = ListFilter()
    q: str | None = None
    sort: str | None = None
    limit: int = 100
    offset: int | None = None

    def params(self) -> dict[str, str | int]:
        """The query string's values, those not set left out."""
        values: dict[str, str | int | None] = {
            "status": self.filter.status,
            "unassigned": "true" if self.filter.unassigned else None,
            "q": self.q,
            "limit": self.limit,
            "sort": self.sort,
            "offset": self.offset,
        }
        return {key: value for key, value in values.items() if value is not None}


@dataclass(frozen=True)
class ListPage(Generic[DocumentT]):
    """One page of an API's list, and how many items match in all (its `X-Total-Count`)."""

    items: list[DocumentT]
    total: int


class Api:
    """One backend service, called with a short-lived token for the signed-in user."""

    # The service's name, as an outage names it, and the path of its list.
    name: ClassVar[str]
    list_path: ClassVar[str]

    def __init__(self, base_url: str, client: httpx.AsyncClient, issuer: TokenIssuer) -> None:
        self._base_url = base_url.rstrip("/")
        self._client = client
        self._issuer = issuer

    async def latest_changes(self, principal: Principal, *, limit: int) -> list[Change]:
        """The `limit` records of the list changed last, the latest first."""
        page = await self._list(principal, self.list_path, _CHANGES, ListRequest(sort="updated", limit=limit))
        return page.items

    async def _read(self, principal: Principal, path: str, document: type[DocumentT]) -> DocumentT:
        """The document at `path`; `ServiceDown` when the answer is not one."""
        response = await self._send(principal, "GET", path)
        return self._parsed(response, document.model_validate_json)

    async def _list(
        self, principal: Principal, path: str, documents: TypeAdapter[list[DocumentT]], request: ListRequest
    ) -> ListPage[DocumentT]:
        """One page of a list, with the number of all its matches."""
        response = await self._send(principal, "GET", path, params=request.params())
        try:
            total = int(response.headers["X-Total-Count"])
        except (ValueError, KeyError) as error:
            raise ServiceDown(self.name) from error
        return ListPage(self._parsed(response, documents.validate_json), total)

    async def _act(
        self,
        principal: Principal,
        path: str,
        body: BaseModel | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Outcome:
        """POST an action; what its answer says of the record acted on."""
        response = await self._send(principal, "POST", path, body=body, headers=headers)
        return self._parsed(response, Outcome.model_validate_json)

    def _parsed(self, response: httpx.Response, read: Callable[[bytes], ParsedT]) -> ParsedT:
        """The answer as `read` makes it; `ServiceDown` when it is not JSON of that shape."""
        try:
            return read(response.content)
        except ValidationError as error:
            raise ServiceDown(self.name) from error

    async def _send(
        self,
        principal: Principal,
        method: str,
        path: str,
        *,
        body: BaseModel | None = None,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        token = self._issuer.issue(principal, lifetime=timedelta(minutes=5))
        json: Any = None if body is None else body.model_dump(mode="json")
        try:
            response = await self._client.request(
                method,
                self._base_url + path,
                json=json,
                params=dict(params or {}),
                headers={**(headers or {}), **_context_headers(), "Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as error:
            raise ServiceDown(self.name) from error
        if response.status_code >= 500:
            raise ServiceDown(self.name)
        if response.status_code >= 400:
            try:
                answer: Any = response.json()
                code, detail = str(answer["error"]), str(answer["detail"])
            except (ValueError, KeyError, TypeError):
                code, detail = "error", response.reason_phrase
            raise ApiError(response.status_code, code, detail)
        return response


class OrdersApi(Api):
    """The orders API: a customer's orders, or every order for a manager."""

    name = "orders"
    list_path = "/api/orders"

    async def list_orders(self, principal: Principal, request: ListRequest) -> ListPage[Order]:
        """One page of the orders the caller may see."""
        return await self._list(principal, self.list_path, _ORDERS, request)

    async def get_order(self, principal: Principal, order_id: str) -> Order:
        """One order, if it is the caller's to see."""
        return await self._read(principal, f"/api/orders/{order_id}", Order)

    async def place_order(self, principal: Principal, order: NewOrder, *, idempotency_key: str) -> Outcome:
        """Place a customer's order, once per idempotency key."""
        headers = {"Idempotency-Key": idempotency_key}
        return await self._act(principal, self.list_path, order, headers=headers)

    async def pay_order(self, principal: Principal, order_id: str) -> Outcome:
        """Pay a created order."""
        return await self._act(principal, f"/api/orders/{order_id}/pay")

    async def cancel_order(self, principal: Principal, order_id: str) -> Outcome:
        """Cancel an order, or ask for a paid one's cancel (its status `canceling`)."""
        return await self._act(principal, f"/api/orders/{order_id}/cancel")


class DeliveryApi(Api):
    """The delivery API: the deliveries, and the deliverymen they are appointed to."""

    name = "delivery"
    list_path = "/api/delivery/"

    async def list_deliveries(self, principal: Principal, request: ListRequest) -> ListPage[Delivery]:
        """One page of the deliveries the caller may see."""
        return await self._list(principal, self.list_path, _DELIVERIES, request)

    async def get_delivery(self, principal: Principal, delivery_id: str) -> Delivery:
        """One delivery, if it is the caller's to see."""
        return await self._read(principal, f"/api/delivery/{delivery_id}", Delivery)

    async def list_deliverymen(self, principal: Principal) -> list[DeliverymanLoad]:
        """Every deliveryman, with the deliveries open in their hands."""
        response = await self._send(principal, "GET", "/api/deliverymen")
        return self._parsed(response, _DELIVERYMEN.validate_json)

    async def appoint(self, principal: Principal, delivery_id: str, deliveryman_id: str) -> Outcome:
        """Appoint a deliveryman to an activated delivery."""
        body = Appointment(deliveryman_id=deliveryman_id)
        return await self._act(principal, f"/api/delivery/{delivery_id}/appoint", body)

    async def finish_delivery(self, principal: Principal, delivery_id: str) -> Outcome:
        """Mark a delivery done."""
        return await self._act(principal, f"/api/delivery/{delivery_id}/finish")

    async def cancel_delivery(self, principal: Principal, delivery_id: str) -> Outcome:
        """Cancel a delivery that is not done."""
        return await self._act(principal, f"/api/delivery/{delivery_id}/cancel")


def _context_headers() -> dict[str, str]:
    """The page's correlation id and trace travel on to the APIs."""
    headers: dict[str, str] = {}
    if correlation_id := current_correlation_id():
        headers[CORRELATION_HEADER] = correlation_id
    if traceparent := current_traceparent():
        headers["traceparent"] = traceparent
    return headers


# An idle connection is dropped before the APIs' server would close it (uvicorn: after 5 s): a
# request sent on one the server is closing at that moment fails with no answer.
KEEPALIVE_SECONDS = 2.0


class Backends:
    """The two APIs behind the console, on one connection pool with timeouts."""

    def __init__(
        self, *, orders_url: str, delivery_url: str, timeout_seconds: float, issuer: TokenIssuer
    ) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds, connect=min(2.0, timeout_seconds)),
            limits=httpx.Limits(
                max_connections=100, max_keepalive_connections=20, keepalive_expiry=KEEPALIVE_SECONDS
            ),
        )
        self.orders = OrdersApi(orders_url, self._client, issuer)
        self.delivery = DeliveryApi(delivery_url, self._client, issuer)

    async def close(self) -> None:
        await self._client.aclose()
