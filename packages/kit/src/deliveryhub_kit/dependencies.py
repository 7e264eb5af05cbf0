"""FastAPI dependencies every service's routes use: the request's transaction and the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

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


async def _request_session(request: Request) -> AsyncIterator[UnitOfWork]:
    database: Database = request.app.state.database
    async with database.transaction() as work:
        yield work


async def _reading_session(request: Request) -> AsyncIterator[UnitOfWork]:
    database: Database = request.app.state.database
    async with database.reading() as work:
        yield work


# Committed when the route function returns and before the response is sent.
SessionDep = Annotated[UnitOfWork, Depends(_request_session, scope="function")]
# A route that only reads: no transaction around its statements (Database.reading).
ReadingDep = Annotated[UnitOfWork, Depends(_reading_session, scope="function")]


_bearer = HTTPBearer(auto_error=False, description="A JWT from the Delivery Hub token issuer")


async def _current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("send a bearer token in the Authorization header")
    verifier: TokenVerifier = request.app.state.token_verifier
    principal = verifier.verify(credentials.credentials)
    # Per caller, wherever it calls from (the address limit is checked before routing).
    rate: RequestRate = request.app.state.subject_rate
    if (wait := rate.take(str(principal.subject))) is not None:
        raise too_many_requests("you", wait)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(_current_principal)]


def role_dependency(*roles: Role) -> Any:
    """A dependency that yields the principal only if it has one of `roles`."""

    async def check(principal: CurrentPrincipal) -> Principal:
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
