"""HTTP routes of the web console: each page reads the form, calls an API or the account service, renders."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from deliveryhub_kit.dependencies import SessionDep
from deliveryhub_kit.errors import DomainError
from deliveryhub_kit.identity import Role
from deliveryhub_web.clients import ApiError
from deliveryhub_web.cookies import SESSION_COOKIE
from deliveryhub_web.forms import CheckedForm, Form
from deliveryhub_web.live import Interest, anything
from deliveryhub_web.pages import (
    CurrentUser,
    Pages,
    PagesDep,
    UserDep,
    flash_redirect,
    require_role,
)
from deliveryhub_web.resources import Outcome
from deliveryhub_web.schemas import order_body, order_form_defaults, order_form_values
from deliveryhub_web.service import DEMO_ACCOUNTS, MAX_EMAIL_LENGTH, AccountService, SignedInUser
from deliveryhub_web.views import (
    BOARD_TABS,
    HISTORY_TABS,
    ORDER_TABS,
    PAGE_SIZE,
    ListQuery,
    board_view,
    order_view,
    orders_view,
    round_view,
)

router = APIRouter(include_in_schema=False)

# One page's deliveries at most: what a manager can select at once.
MOST_SELECTED = PAGE_SIZE * 5
HOME_BY_ROLE = {Role.CUSTOMER: "/orders", Role.MANAGER: "/board", Role.COURIER: "/deliveries"}


def _accounts(session: AsyncSession, pages: Pages) -> AccountService:
    return pages.runtime.accounts(session)


@router.get("/")
async def home(user: UserDep) -> Response:
    """Each role's main page."""
    if user is None:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse(HOME_BY_ROLE[user.role], status_code=303)


@router.get("/login")
async def login_form(pages: PagesDep, user: UserDep, next: str = "/") -> Response:
    if user is not None:
        return RedirectResponse(HOME_BY_ROLE[user.role], status_code=303)
    return pages.render("login.html", {"next": next, **_demo(pages)})


@router.post("/login")
async def login(pages: PagesDep, session: SessionDep, form: Form) -> Response:
    email = form.text("email").strip().lower()
    if len(email) > MAX_EMAIL_LENGTH:
        # Not an e-mail address of anyone: refused before it is counted or looked up.
        return pages.render(
            "login.html", {"error": "That is not an e-mail address.", **_demo(pages)}, status_code=422
        )
    client = _client_address(pages)
    guard = pages.runtime.sign_in_guard
    wait = guard.before(email, client)
    if wait is not None:
        return pages.render(
            "login.html",
            {
                "email": email,
                "error": f"Too many sign-in attempts. Try again in {int(wait) + 1} seconds.",
                **_demo(pages),
            },
            status_code=429,
            headers={"Retry-After": str(int(wait) + 1)},
        )
    try:
        _, token = await _accounts(session, pages).sign_in(email=email, password=form.text("password"))
    except DomainError as error:
        guard.failed(email, client)
        return pages.render(
            "login.html", {"email": email, "error": _sentence(error.detail), **_demo(pages)}, status_code=401
        )
    guard.succeeded(email, client)
    response = RedirectResponse(_safe_next(form.text("next")), status_code=303)
    pages.set_cookie(response, SESSION_COOKIE, token, max_age=pages.runtime.session_lifetime)
    return response


@router.get("/register")
async def register_form(pages: PagesDep) -> Response:
    return pages.render("register.html", {})


@router.post("/register")
async def register(pages: PagesDep, session: SessionDep, form: Form) -> Response:
    values = {"email": form.text("email"), "name": form.text("name")}
    if (wait := pages.runtime.registration_limiter.attempt(_client_address(pages))) is not None:
        return pages.render(
            "register.html",
            {**values, "error": f"Too many attempts. Try again in {int(wait) + 1} seconds."},
            status_code=429,
            headers={"Retry-After": str(int(wait) + 1)},
        )
    if form.text("password") != form.text("password_again"):
        return pages.render(
            "register.html", {**values, "error": "The two passwords differ."}, status_code=422
        )
    accounts = _accounts(session, pages)
    try:
        user = await accounts.register_customer(
            email=values["email"], name=values["name"], password=form.text("password")
        )
        _, token = await accounts.sign_in(email=user.email, password=form.text("password"))
    except DomainError as error:
        status = 409 if error.code == "email_taken" else 422
        return pages.render("register.html", {**values, "error": _sentence(error.detail)}, status_code=status)
    response = RedirectResponse("/orders", status_code=303)
    pages.set_cookie(response, SESSION_COOKIE, token, max_age=pages.runtime.session_lifetime)
    return response


@router.post("/logout")
async def logout(pages: PagesDep, session: SessionDep, form: Form) -> Response:
    token = pages.cookie(SESSION_COOKIE)
    if token:
        await _accounts(session, pages).sign_out(token)
    response = RedirectResponse("/login", status_code=303)
    pages.delete_cookie(response, SESSION_COOKIE)
    return response


@dataclass(frozen=True)
class ListAddress:
    """What a list page's address may say: its tab, a search, the order, where to start."""

    status: str | None = None
    q: str | None = None
    sort: str | None = None
    offset: int = 0


ListAddressDep = Annotated[ListAddress, Depends()]


def _orders_query(user: SignedInUser, address: ListAddress) -> ListQuery:
    tabs = ORDER_TABS if user.role is Role.MANAGER else ORDER_TABS[:1]
    return ListQuery.parse("/orders", tabs, **vars(address), default="all")


def _orders_interest(user: SignedInUser) -> Interest:
    """A manager's list may change with any order; a customer's with their own alone."""
    if user.role is Role.MANAGER:
        return anything
    mine = str(user.id)
    return lambda changes, shown: (
        any(item.customer_id == mine for item in changes.items) or bool(changes.ids() & shown)
    )


@router.get("/orders")
async def orders_page(
    pages: PagesDep,
    user: CurrentUser,
    address: ListAddressDep,
    fragment: bool = False,
) -> Response:
    """A customer's orders; every order for a manager, by status; paged, searchable, live."""
    require_role(user, Role.CUSTOMER, Role.MANAGER)
    query = _orders_query(user, address)
    view = await orders_view(
        pages.backends.orders, user.principal, query, with_tabs=user.role is Role.MANAGER
    )
    stream = query.url("/live/orders")
    return pages.live_page(view, "orders.html", "_orders.html", fragment=fragment, stream_url=stream)


@router.get("/live/orders")
async def orders_live(
    pages: PagesDep,
    user: CurrentUser,
    address: ListAddressDep,
    digest: str | None = None,
) -> Response:
    """The orders page's changes as server-sent events."""
    require_role(user, Role.CUSTOMER, Role.MANAGER)
    query = _orders_query(user, address)
    return pages.live_stream(
        lambda: orders_view(
            pages.backends.orders, user.principal, query, with_tabs=user.role is Role.MANAGER
        ),
        pages.runtime.feeds.orders,
        _orders_interest(user),
        page_path="/orders",
        digest=digest,
    )


@router.get("/orders/new")
async def new_order_form(pages: PagesDep, user: CurrentUser) -> Response:
    require_role(user, Role.CUSTOMER)
    return pages.render("order_new.html", order_form_defaults())


@router.post("/orders")
async def place_order(pages: PagesDep, user: CurrentUser, form: Form) -> Response:
    require_role(user, Role.CUSTOMER)
    values = order_form_values(form)
    try:
        body = order_body(values)
        placed = await pages.backends.orders.place_order(
            user.principal, body, idempotency_key=values["idempotency_key"]
        )
    except (ApiError, ValueError) as error:
        message = error.message if isinstance(error, ApiError) else f"Please check what you entered: {error}."
        status_code = error.status if isinstance(error, ApiError) else 422
        return pages.render("order_new.html", {**values, "error": message}, status_code=status_code)
    return flash_redirect(
        pages, f"/orders#order-{placed.id}", "Order placed.", kind="success", target=placed.id
    )


@router.get("/orders/{order_id}")
async def order_page(
    pages: PagesDep, user: CurrentUser, order_id: uuid.UUID, fragment: bool = False
) -> Response:
    require_role(user, Role.CUSTOMER, Role.MANAGER)
    view = await order_view(pages.backends.orders, user.principal, str(order_id))
    stream = f"/live/orders/{order_id}"
    return pages.live_page(view, "order.html", "_order_page.html", fragment=fragment, stream_url=stream)


@router.get("/live/orders/{order_id}")
async def order_live(
    pages: PagesDep, user: CurrentUser, order_id: uuid.UUID, digest: str | None = None
) -> Response:
    """One order's changes as server-sent events."""
    require_role(user, Role.CUSTOMER, Role.MANAGER)
    # The order must be the user's before anything of it is streamed.
    await pages.backends.orders.get_order(user.principal, str(order_id))
    return pages.live_stream(
        lambda: order_view(pages.backends.orders, user.principal, str(order_id)),
        pages.runtime.feeds.orders,
        lambda changes, shown: str(order_id) in changes.ids(),
        page_path=f"/orders/{order_id}",
        digest=digest,
    )


@router.post("/orders/{order_id}/pay")
async def pay_order(pages: PagesDep, user: CurrentUser, order_id: uuid.UUID, form: Form) -> Response:
    require_role(user, Role.CUSTOMER)
    return await _act(
        pages,
        form,
        "/orders",
        str(order_id),
        "Paid.",
        pages.backends.orders.pay_order(user.principal, str(order_id)),
    )


@router.post("/orders/{order_id}/cancel")
async def cancel_order(pages: PagesDep, user: CurrentUser, order_id: uuid.UUID, form: Form) -> Response:
    require_role(user, Role.CUSTOMER, Role.MANAGER)
    return await _act(
        pages,
        form,
        "/orders",
        str(order_id),
        _cancel_outcome,
        pages.backends.orders.cancel_order(user.principal, str(order_id)),
    )


def _cancel_outcome(outcome: Outcome) -> str:
    """An unpaid order is canceled at once; a paid one's cancel is asked of the delivery service."""
    if outcome.status == "canceling":
        return "Cancel requested: the order is canceled unless the parcel has been handed over already."
    return "Order canceled."


def _board_query(address: ListAddress) -> ListQuery:
    return ListQuery.parse("/board", BOARD_TABS, **vars(address), default="waiting")


@router.get("/board")
async def board(
    pages: PagesDep,
    user: CurrentUser,
    address: ListAddressDep,
    fragment: bool = False,
) -> Response:
    """The manager's queue: the deliveries waiting for a courier, the oldest first; every status
    a tab with its count; paged, searchable, live."""
    require_role(user, Role.MANAGER)
    query = _board_query(address)
    view = await board_view(pages.backends.delivery, user.principal, query)
    stream = query.url("/live/board")
    return pages.live_page(view, "board.html", "_board.html", fragment=fragment, stream_url=stream)


@router.get("/live/board")
async def board_live(
    pages: PagesDep,
    user: CurrentUser,
    address: ListAddressDep,
    digest: str | None = None,
) -> Response:
    """The board's changes as server-sent events: any delivery's change may move its counts."""
    require_role(user, Role.MANAGER)
    query = _board_query(address)
    return pages.live_stream(
        lambda: board_view(pages.backends.delivery, user.principal, query),
        pages.runtime.feeds.delivery,
        anything,
        page_path="/board",
        digest=digest,
    )


@router.post("/board/{delivery_id}/appoint")
async def appoint(pages: PagesDep, user: CurrentUser, delivery_id: uuid.UUID, form: Form) -> Response:
    require_role(user, Role.MANAGER)
    deliveryman_id = form.text("deliveryman_id")
    return await _act(
        pages,
        form,
        "/board",
        str(delivery_id),
        "Courier appointed.",
        pages.backends.delivery.appoint(user.principal, str(delivery_id), deliveryman_id),
    )


@router.post("/board/appoint")
async def appoint_selected(pages: PagesDep, user: CurrentUser, form: Form) -> Response:
    """Appoint one courier to each selected delivery: each its own call to the API (and its own
    event); each refusal is shown next to its delivery."""
    require_role(user, Role.MANAGER)
    back = _safe_next(form.text("next")) if form.text("next") else "/board"
    selected = list(dict.fromkeys(form.list("delivery_id")))
    if not selected:
        return flash_redirect(pages, back, "Select the deliveries to appoint first.", kind="error")
    if len(selected) > MOST_SELECTED:
        return flash_redirect(
            pages, back, f"Select at most {MOST_SELECTED} deliveries at once.", kind="error"
        )
    deliveryman_id = form.text("deliveryman_id")
    appointed, refusals = 0, {}
    for delivery_id in selected:
        try:
            uuid.UUID(delivery_id)
            await pages.backends.delivery.appoint(user.principal, delivery_id, deliveryman_id)
        except ValueError:
            refusals[delivery_id[:40]] = "That is not a delivery."
        except ApiError as error:
            refusals[delivery_id] = error.message
        else:
            appointed += 1
    message = f"{appointed} of {len(selected)} appointed."
    if refusals:
        message += f" {len(refusals)} refused: see why next to {'it' if len(refusals) == 1 else 'each'}."
    return flash_redirect(pages, back, message, kind="error" if refusals else "success", refusals=refusals)


@router.post("/board/{delivery_id}/cancel")
async def cancel_delivery(pages: PagesDep, user: CurrentUser, delivery_id: uuid.UUID, form: Form) -> Response:
    require_role(user, Role.MANAGER)
    return await _act(
        pages,
        form,
        "/board",
        str(delivery_id),
        "Delivery canceled.",
        pages.backends.delivery.cancel_delivery(user.principal, str(delivery_id)),
    )


def _round_query(status: str | None, offset: int) -> ListQuery:
    return ListQuery.parse(
        "/deliveries", HISTORY_TABS, status=status, q=None, sort=None, offset=offset, default="done"
    )


def _round_interest(user: SignedInUser) -> Interest:
    """A courier's round changes with a delivery of theirs, or one they show."""
    mine = str(user.deliveryman_id)
    return lambda changes, shown: (
        bool(changes.ids() & shown)
        or any(item.deliveryman is not None and item.deliveryman.id == mine for item in changes.items)
    )


@router.get("/deliveries")
async def my_deliveries(
    pages: PagesDep, user: CurrentUser, status: str | None = None, offset: int = 0, fragment: bool = False
) -> Response:
    """A courier's deliveries: what to deliver now, then what is done, paged; live."""
    require_role(user, Role.COURIER)
    query = _round_query(status, offset)
    view = await round_view(pages.backends.delivery, user.principal, query)
    stream = query.url("/live/deliveries")
    return pages.live_page(view, "deliveries.html", "_deliveries.html", fragment=fragment, stream_url=stream)


@router.get("/live/deliveries")
async def my_deliveries_live(
    pages: PagesDep, user: CurrentUser, status: str | None = None, offset: int = 0, digest: str | None = None
) -> Response:
    """The courier's round's changes as server-sent events."""
    require_role(user, Role.COURIER)
    query = _round_query(status, offset)
    return pages.live_stream(
        lambda: round_view(pages.backends.delivery, user.principal, query),
        pages.runtime.feeds.delivery,
        _round_interest(user),
        page_path="/deliveries",
        digest=digest,
    )


@router.get("/deliveries/{delivery_id}")
async def delivery_page(pages: PagesDep, user: CurrentUser, delivery_id: uuid.UUID) -> Response:
    require_role(user, Role.COURIER, Role.MANAGER)
    delivery = await pages.backends.delivery.get_delivery(user.principal, str(delivery_id))
    return pages.render("delivery.html", {"delivery": delivery})


@router.post("/deliveries/{delivery_id}/finish")
async def finish(pages: PagesDep, user: CurrentUser, delivery_id: uuid.UUID, form: Form) -> Response:
    require_role(user, Role.COURIER, Role.MANAGER)
    back = "/deliveries" if user.role is Role.COURIER else "/board"
    return await _act(
        pages,
        form,
        back,
        str(delivery_id),
        "Marked delivered.",
        pages.backends.delivery.finish_delivery(user.principal, str(delivery_id)),
    )


async def _act(
    pages: Pages,
    form: CheckedForm,
    back: str,
    target: str,
    done: str | Callable[[Outcome], str],
    call: Awaitable[Outcome],
) -> Response:
    """Run an API action; come back to the page with its outcome (`done`, or what `done` makes of
    the answer) shown next to its item."""
    back = _safe_next(form.text("next")) if form.text("next") else back
    try:
        answer = await call
    except ApiError as error:
        return flash_redirect(pages, back, error.message, kind="error", target=target)
    message = done if isinstance(done, str) else done(answer)
    return flash_redirect(pages, back, message, kind="success", target=target)


def _client_address(pages: Pages) -> str:
    return pages.request.client.host if pages.request.client else "unknown"


def _demo(pages: Pages) -> dict[str, Any]:
    if not pages.runtime.settings.seeds_demo_accounts:
        return {}
    return {"demo_accounts": DEMO_ACCOUNTS, "demo_password": pages.runtime.settings.demo_password}


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _safe_next(target: str) -> str:
    """Only paths of this site; never another site's address."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"
