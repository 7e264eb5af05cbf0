"""What each list page shows, read from the APIs: its tabs and their counts, one page of items, the
paging; built the same way for the page, its fragment and its live stream."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from urllib.parse import urlencode

from deliveryhub_kit.identity import Principal
from deliveryhub_web.clients import DeliveryApi, ListFilter, ListPage, ListRequest, OrdersApi
from deliveryhub_web.live import ItemList, LiveView
from deliveryhub_web.resources import DocumentT

PAGE_SIZE = 20
# The longest search the APIs take; a longer one is cut, not refused.
MOST_SEARCH_CHARACTERS = 200
# Deeper than any shop pages by hand; the APIs walk an offset row by row.
DEEPEST_OFFSET = 1_000_000
# A courier's open deliveries, shown at once (more than a day's round).
MOST_OPEN = 100


@dataclass(frozen=True)
class Tab:
    key: str
    label: str
    # which records of the API's list the tab shows
    filter: ListFilter
    # the order a tab opens in: the oldest first where the oldest is the most urgent
    sort: str = "newest"


BOARD_TABS = (
    Tab("waiting", "Waiting for a courier", ListFilter("activated", unassigned=True), sort="oldest"),
    Tab("created", "Created", ListFilter("created")),
    Tab("activated", "Activated", ListFilter("activated")),
    Tab("done", "Done", ListFilter("done")),
    Tab("canceled", "Canceled", ListFilter("canceled")),
    Tab("all", "All", ListFilter()),
)
ORDER_TABS = (
    Tab("all", "All", ListFilter()),
    Tab("created", "Created", ListFilter("created")),
    Tab("paid", "Paid", ListFilter("paid")),
    Tab("canceling", "Cancel requested", ListFilter("canceling")),
    Tab("delivered", "Delivered", ListFilter("delivered")),
    Tab("canceled", "Canceled", ListFilter("canceled")),
)
# Every record has one status: "all" is the sum of these tabs.
STATUS_TABS = {
    "board": ("created", "activated", "done", "canceled"),
    "orders": ("created", "paid", "canceling", "delivered", "canceled"),
}


@dataclass(frozen=True)
class ListQuery:
    """A list page's address: its tab, search, order and offset."""

    path: str
    tab: Tab
    tabs: tuple[Tab, ...]
    q: str | None
    sort: str
    offset: int

    @classmethod
    def parse(
        cls,
        path: str,
        tabs: tuple[Tab, ...],
        *,
        status: str | None,
        q: str | None,
        sort: str | None,
        offset: int,
        default: str,
    ) -> ListQuery:
        """From what the address says, each value made sensible rather than refused: a search
        without a tab looks through everything."""
        by_key = {tab.key: tab for tab in tabs}
        q = (q or "").strip()[:MOST_SEARCH_CHARACTERS] or None
        wanted = "all" if q and not status and "all" in by_key else default
        tab = by_key.get(status or "") or by_key[wanted]
        order = sort if sort in ("newest", "oldest") else tab.sort
        return cls(path, tab, tabs, q, order, min(max(offset, 0), DEEPEST_OFFSET))

    def params(
        self, *, status: str | None = None, sort: str | None = None, offset: int | None = None
    ) -> dict[str, str]:
        """The query string's values, with what is given changed (`status` names a tab); the
        defaults left out."""
        query = replace(
            self,
            tab=self.tab if status is None else next(tab for tab in self.tabs if tab.key == status),
            sort=self.sort if sort is None else sort,
            offset=self.offset if offset is None else offset,
        )
        values = {
            "status": query.tab.key,
            "q": query.q or "",
            "sort": query.sort,
            "offset": str(query.offset),
        }
        if query.sort == query.tab.sort:
            values["sort"] = ""
        if query.offset == 0:
            values["offset"] = ""
        return {key: value for key, value in values.items() if value}

    def url(
        self,
        path: str | None = None,
        *,
        status: str | None = None,
        sort: str | None = None,
        offset: int | None = None,
    ) -> str:
        """The address of this list (or of `path` with its query), with what is given changed."""
        params = self.params(status=status, sort=sort, offset=offset)
        return (path or self.path) + ("?" + urlencode(params) if params else "")

    def list_request(self, tab: Tab | None = None, *, limit: int = PAGE_SIZE) -> ListRequest:
        """What to ask the API for: this page of the list, or (of another tab) how many it holds."""
        tab = tab or self.tab
        if tab is not self.tab:
            return ListRequest(tab.filter, q=self.q, limit=limit)
        return ListRequest(tab.filter, q=self.q, sort=self.sort, limit=limit, offset=self.offset)


@dataclass(frozen=True)
class Paging:
    """Where a page is in its list: "41–60 of 3,104", and the pages before and after."""

    query: ListQuery
    total: int
    shown: int

    @property
    def summary(self) -> str:
        if not self.shown:
            return f"none of {self.total:,}" if self.total else "none"
        first = self.query.offset + 1
        return f"{first:,}–{self.query.offset + self.shown:,} of {self.total:,}"

    @property
    def previous(self) -> str | None:
        if self.query.offset == 0:
            return None
        return self.query.url(offset=max(0, min(self.query.offset - PAGE_SIZE, self.last_offset)))

    @property
    def next(self) -> str | None:
        if self.query.offset + PAGE_SIZE >= self.total:
            return None
        return self.query.url(offset=self.query.offset + PAGE_SIZE)

    @property
    def first(self) -> str | None:
        return self.query.url(offset=0) if self.query.offset > 0 else None

    @property
    def last(self) -> str | None:
        return self.query.url(offset=self.last_offset) if self.query.offset < self.last_offset else None

    @property
    def last_offset(self) -> int:
        return max(0, (self.total - 1) // PAGE_SIZE * PAGE_SIZE)


@dataclass(frozen=True)
class TabCount:
    tab: Tab
    count: int
    url: str
    current: bool


async def _counted(
    read: Callable[[Principal, ListRequest], Awaitable[ListPage[DocumentT]]],
    principal: Principal,
    query: ListQuery,
    kind: str,
) -> tuple[ListPage[DocumentT], list[TabCount]]:
    """The page of the current tab, and every tab with its count (each its own list call, asked
    at once; "all" is the sum of the statuses)."""
    others = [tab for tab in query.tabs if tab is not query.tab and tab.key != "all"]
    page, *answers = await asyncio.gather(
        read(principal, query.list_request()),
        *(read(principal, query.list_request(tab, limit=1)) for tab in others),
    )
    counts = {tab.key: answer.total for tab, answer in zip(others, answers, strict=True)}
    counts[query.tab.key] = page.total
    if "all" not in counts:
        counts["all"] = sum(counts[key] for key in STATUS_TABS[kind])
    tabs = [
        TabCount(tab, counts[tab.key], query.url(status=tab.key, offset=0, sort=tab.sort), tab is query.tab)
        for tab in query.tabs
    ]
    return page, tabs


async def board_view(api: DeliveryApi, principal: Principal, query: ListQuery) -> LiveView:
    """The manager's board: the tabs, the deliverymen with their loads, one page of deliveries."""
    (page, tabs), deliverymen = await asyncio.gather(
        _counted(api.list_deliveries, principal, query, "board"),
        api.list_deliverymen(principal),
    )
    return LiveView(
        context={
            "query": query,
            "tabs": tabs,
            "paging": Paging(query, page.total, len(page.items)),
            "deliverymen": deliverymen,
            "deliveries": page.items,
            "back": query.url(),
        },
        parts={
            "tabs": "parts/tabs.html",
            "pager": "parts/pager.html",
            "bulk": "parts/bulk_appoint.html",
            "empty": "parts/board_empty.html",
        },
        lists={"deliveries": ItemList.of("parts/delivery_card.html", "delivery", page.items)},
    )


async def orders_view(api: OrdersApi, principal: Principal, query: ListQuery, *, with_tabs: bool) -> LiveView:
    """A customer's orders, or every order with the status tabs for a manager."""
    if with_tabs:
        page, tabs = await _counted(api.list_orders, principal, query, "orders")
    else:
        page, tabs = await api.list_orders(principal, query.list_request()), []
    return LiveView(
        context={
            "query": query,
            "tabs": tabs,
            "paging": Paging(query, page.total, len(page.items)),
            "orders": page.items,
            "back": query.url(),
        },
        parts={"tabs": "parts/tabs.html", "pager": "parts/pager.html", "empty": "parts/orders_empty.html"},
        lists={"orders": ItemList.of("parts/order_card.html", "order", page.items)},
    )


async def order_view(api: OrdersApi, principal: Principal, order_id: str) -> LiveView:
    """One order's page."""
    order = await api.get_order(principal, order_id)
    return LiveView(
        context={"order": order},
        parts={},
        lists={"order": ItemList.of("_order.html", "order", [order])},
    )


async def round_view(api: DeliveryApi, principal: Principal, query: ListQuery) -> LiveView:
    """A deliveryman's round: what to deliver now, the oldest first; then what is done, paged."""
    to_deliver, history = await asyncio.gather(
        api.list_deliveries(principal, ListRequest(ListFilter("activated"), sort="oldest", limit=MOST_OPEN)),
        api.list_deliveries(principal, query.list_request()),
    )
    return LiveView(
        context={
            "query": query,
            "tabs": [],
            "open_total": to_deliver.total,
            "paging": Paging(query, history.total, len(history.items)),
            "back": query.url(),
            "to_deliver": to_deliver.items,
            "history": history.items,
        },
        parts={
            "round": "parts/round.html",
            "pager": "parts/pager.html",
            "history_tabs": "parts/history_tabs.html",
        },
        lists={
            "to_deliver": ItemList.of("parts/round_card.html", "delivery", to_deliver.items),
            "history": ItemList.of("parts/done_card.html", "delivery", history.items),
        },
    )


HISTORY_TABS = (Tab("done", "Done", ListFilter("done")), Tab("canceled", "Canceled", ListFilter("canceled")))
