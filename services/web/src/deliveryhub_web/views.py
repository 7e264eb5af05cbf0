"""What each list page shows, read from the APIs: its tabs and their counts, one page of items, the
paging; built the same way for the page, its fragment and its live stream."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from deliveryhub_kit.identity import Principal
from deliveryhub_web.clients import Api, ListPage
from deliveryhub_web.live import ItemList, LiveView

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
    # the list's filters on the API
    filters: Mapping[str, str]
    # the order a tab opens in: the oldest first where the oldest is the most urgent
    sort: str = "newest"


BOARD_TABS = (
    Tab("waiting", "Waiting for a courier", {"status": "activated", "unassigned": "true"}, sort="oldest"),
    Tab("created", "Created", {"status": "created"}),
    Tab("activated", "Activated", {"status": "activated"}),
    Tab("done", "Done", {"status": "done"}),
    Tab("canceled", "Canceled", {"status": "canceled"}),
    Tab("all", "All", {}),
)
ORDER_TABS = (
    Tab("all", "All", {}),
    Tab("created", "Created", {"status": "created"}),
    Tab("paid", "Paid", {"status": "paid"}),
    Tab("canceling", "Cancel requested", {"status": "canceling"}),
    Tab("delivered", "Delivered", {"status": "delivered"}),
    Tab("canceled", "Canceled", {"status": "canceled"}),
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

    def params(self, **changes: Any) -> dict[str, str]:
        """The query string's values, with `changes` (`status` names a tab); the defaults left out."""
        if "status" in changes:
            key = changes.pop("status")
            changes["tab"] = next(tab for tab in self.tabs if tab.key == key)
        query = replace(self, **changes)
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

    def url(self, path: str | None = None, **changes: Any) -> str:
        params = self.params(**changes)
        return (path or self.path) + ("?" + urlencode(params) if params else "")

    def api_params(self, tab: Tab | None = None, *, limit: int = PAGE_SIZE) -> dict[str, Any]:
        tab = tab or self.tab
        params: dict[str, Any] = {**tab.filters, "q": self.q, "limit": limit}
        if tab is self.tab:
            params |= {"sort": self.sort, "offset": self.offset}
        return params


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
    api: Api, principal: Principal, path: str, query: ListQuery, kind: str
) -> tuple[ListPage, list[TabCount]]:
    """The page of the current tab, and every tab with its count (each its own list call, asked
    at once; "all" is the sum of the statuses)."""
    others = [tab for tab in query.tabs if tab is not query.tab and tab.key != "all"]
    answers = await asyncio.gather(
        api.page(principal, path, query.api_params()),
        *(api.page(principal, path, query.api_params(tab, limit=1)) for tab in others),
    )
    page = answers[0]
    counts = {tab.key: answer.total for tab, answer in zip(others, answers[1:], strict=True)}
    counts[query.tab.key] = page.total
    if "all" not in counts:
        counts["all"] = sum(counts[key] for key in STATUS_TABS[kind])
    tabs = [
        TabCount(tab, counts[tab.key], query.url(status=tab.key, offset=0, sort=tab.sort), tab is query.tab)
        for tab in query.tabs
    ]
    return page, tabs


async def board_view(api: Api, principal: Principal, query: ListQuery) -> LiveView:
    """The manager's board: the tabs, the couriers with their loads, one page of deliveries."""
    (page, tabs), couriers = await asyncio.gather(
        _counted(api, principal, "/api/delivery/", query, "board"),
        api.call(principal, "GET", "/api/deliverymen"),
    )
    return LiveView(
        context={
            "query": query,
            "tabs": tabs,
            "paging": Paging(query, page.total, len(page.items)),
            "couriers": couriers,
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


async def orders_view(api: Api, principal: Principal, query: ListQuery, *, with_tabs: bool) -> LiveView:
    """A customer's orders, or every order with the status tabs for a manager."""
    if with_tabs:
        page, tabs = await _counted(api, principal, "/api/orders", query, "orders")
    else:
        page, tabs = await api.page(principal, "/api/orders", query.api_params()), []
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


async def order_view(api: Api, principal: Principal, order_id: str) -> LiveView:
    order = await api.call(principal, "GET", f"/api/orders/{order_id}")
    return LiveView(
        context={"order": order},
        parts={},
        lists={"order": ItemList.of("_order.html", "order", [order])},
    )


async def courier_view(api: Api, principal: Principal, query: ListQuery) -> LiveView:
    """A courier's round: what to deliver now, the oldest first; then what is done, paged."""
    to_deliver, history = await asyncio.gather(
        api.page(principal, "/api/delivery/", {"status": "activated", "sort": "oldest", "limit": MOST_OPEN}),
        api.page(principal, "/api/delivery/", query.api_params()),
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


HISTORY_TABS = (Tab("done", "Done", {"status": "done"}), Tab("canceled", "Canceled", {"status": "canceled"}))
