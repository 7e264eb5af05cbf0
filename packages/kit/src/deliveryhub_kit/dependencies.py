"""FastAPI dependencies every service's routes use: the request's transaction and the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from deliveryhub_kit.db import Database
from deliveryhub_kit.errors import Unauthenticated
from deliveryhub_kit.identity import Principal, Role, require_role
from deliveryhub_kit.lists import TOTAL_HEADER
from deliveryhub_kit.rates import RequestRate, too_many_requests
from deliveryhub_kit.search import MAX_QUERY_CHARACTERS
from deliveryhub_kit.tokens import TokenVerifier
from deliveryhub_kit.unit_of_work import UnitOfWork

T = TypeVar("T")


def in_transaction(make: Callable[[UnitOfWork], T]) -> Any:
    """A dependency yielding `make(work)` (a service) over the request's transaction, committed
    when the route function returns and before the response is sent, as `SessionDep`'s is: one
    dependency to solve where a session and the service over it would be two."""
    return _over(make, Database.transaction)


def only_reading(make: Callable[[UnitOfWork], T]) -> Any:
    """As `in_transaction`, for a route that only reads (`ReadingDep`'s unit of work)."""
    return _over(make, Database.reading)


def _over(
    make: Callable[[UnitOfWork], T], unit: Callable[[Database], AbstractAsyncContextManager[UnitOfWork]]
) -> Any:
    async def over_unit_of_work(request: Request) -> AsyncIterator[T]:
        async with unit(request.app.state.database) as work:
            yield make(work)

    return Depends(over_unit_of_work, scope="function")


def _itself(work: UnitOfWork) -> UnitOfWork:
    return work


# Committed when the route function returns and before the response is sent.
SessionDep = Annotated[UnitOfWork, in_transaction(_itself)]
# A route that only reads: no transaction around its statements (Database.reading).
ReadingDep = Annotated[UnitOfWork, only_reading(_itself)]


_bearer = HTTPBearer(auto_error=False, description="A JWT from the Delivery Hub token issuer")


def _caller(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("send a bearer token in the Authorization header")
    verifier: TokenVerifier = request.app.state.token_verifier
    principal = verifier.verify(credentials.credentials)
    # Per caller, wherever it calls from (the address limit is checked before routing).
    rate: RequestRate = request.app.state.subject_rate
    if (wait := rate.take(str(principal.subject))) is not None:
        raise too_many_requests("you", wait)
    return principal


def role_dependency(*roles: Role) -> Any:
    """A dependency that yields the principal only if it has one of `roles`: the token checked,
    the caller's rate taken and the role required in one step (one dependency less to solve on
    every request)."""

    async def check(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> Principal:
        principal = _caller(request, credentials)
        require_role(principal, *roles)
        return principal

    return Depends(check)


# Paging of every list: PostgreSQL's OFFSET is a 64-bit integer.
Limit = Annotated[int, Query(ge=1, le=1000, description="At most this many items (1-1000)")]
Offset = Annotated[int, Query(ge=0, le=2**63 - 1, description="Skip this many items")]
SearchText = Annotated[
    str | None,
    Query(
        max_length=MAX_QUERY_CHARACTERS,
        description="The first characters of an id, or words that begin words of the address",
    ),
]


def total_count_header() -> dict[int | str, dict[str, Any]]:
    """The OpenAPI description of a list's `X-Total-Count` header."""
    return {
        200: {
            "headers": {
                TOTAL_HEADER: {
                    "description": "How many items match the filters, on every page",
                    "schema": {"type": "integer"},
                }
            }
        }
    }
