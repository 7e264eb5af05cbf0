"""What a list page's address means, and how its paging reads."""

from __future__ import annotations

import pytest

from deliveryhub_web.views import BOARD_TABS, DEEPEST_OFFSET, HISTORY_TABS, ListQuery, Paging


def board(**address: object) -> ListQuery:
    values = {"status": None, "q": None, "sort": None, "offset": 0, **address}
    return ListQuery.parse("/board", BOARD_TABS, default="waiting", **values)  # type: ignore[arg-type]


def test_the_board_opens_on_the_queue_the_oldest_first() -> None:
    query = board()
    assert (query.tab.key, query.sort, query.offset) == ("waiting", "oldest", 0)
    assert query.list_request().params() == {
        "status": "activated",
        "unassigned": "true",
        "limit": 20,
        "sort": "oldest",
        "offset": 0,
    }
    assert query.url() == "/board?status=waiting"


def test_a_search_without_a_tab_looks_through_everything() -> None:
    assert board(q="  4045a0c  ").tab.key == "all"
    assert board(q="4045a0c").q == "4045a0c"
    assert board(q="Арбат", status="done").tab.key == "done"
    assert board(q="   ").q is None
    assert len(board(q="x" * 500).q or "") == 200


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ({"status": "sideways"}, ("waiting", "oldest", 0)),
        ({"status": "done"}, ("done", "newest", 0)),
        ({"status": "done", "sort": "oldest"}, ("done", "oldest", 0)),
        ({"sort": "'; drop table"}, ("waiting", "oldest", 0)),
        ({"offset": -5}, ("waiting", "oldest", 0)),
        ({"offset": 10**30}, ("waiting", "oldest", DEEPEST_OFFSET)),
    ],
)
def test_what_an_address_cannot_mean_falls_back_to_what_it_can(
    address: dict[str, object], expected: tuple[str, str, int]
) -> None:
    query = board(**address)
    assert (query.tab.key, query.sort, query.offset) == expected


def test_links_keep_the_search_and_leave_the_defaults_out() -> None:
    query = board(q="Арбат 5", status="activated", offset=40)
    assert query.url() == "/board?status=activated&q=%D0%90%D1%80%D0%B1%D0%B0%D1%82+5&offset=40"
    arbat = "q=%D0%90%D1%80%D0%B1%D0%B0%D1%82+5"
    assert query.url(status="waiting", offset=0) == f"/board?status=waiting&{arbat}&sort=newest"
    assert query.url("/live/board").startswith("/live/board?status=activated")


def test_the_paging_says_where_the_page_is_and_links_its_neighbours() -> None:
    paging = Paging(board(offset=40), total=3104, shown=20)
    assert paging.summary == "41–60 of 3,104"
    assert paging.previous == "/board?status=waiting&offset=20"
    assert paging.next == "/board?status=waiting&offset=60"
    assert paging.first == "/board?status=waiting"
    assert paging.last == "/board?status=waiting&offset=3100"
    last = Paging(board(offset=3100), total=3104, shown=4)
    assert last.summary == "3,101–3,104 of 3,104"
    assert last.next is None
    assert last.last is None
    assert Paging(board(), total=0, shown=0).summary == "none"
    # Past the end (the list shrank meanwhile): nothing here, a way back to the last page.
    beyond = Paging(board(offset=5000), total=3104, shown=0)
    assert beyond.summary == "none of 3,104"
    assert beyond.previous == "/board?status=waiting&offset=3100"


def test_a_courier_history_has_no_all_tab_to_fall_back_to() -> None:
    query = ListQuery.parse(
        "/deliveries", HISTORY_TABS, status=None, q="x", sort=None, offset=0, default="done"
    )
    assert query.tab.key == "done"
