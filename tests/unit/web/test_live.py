"""Live pages without a browser: what a stream sends for a change; how the change feed finds changes."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from deliveryhub_kit.keys import KeyPair
from deliveryhub_kit.tokens import TokenIssuer
from deliveryhub_web.clients import DeliveryApi
from deliveryhub_web.live import MOST_PENDING, ChangeFeed, Changes, Listener, Rendered
from deliveryhub_web.resources import Change


def api_answering(handler: Any, key_pair: KeyPair) -> DeliveryApi:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    issuer = TokenIssuer(key_pair.private_pem, issuer="deliveryhub", audience="deliveryhub-api")
    return DeliveryApi("http://delivery.test", client, issuer)


def shown(**items: str) -> Rendered:
    return Rendered({"tabs": "Waiting 3"}, {"deliveries": dict(items)})


def test_nothing_is_sent_when_nothing_differs() -> None:
    assert shown(a="<li id=a>", b="<li id=b>").patch(shown(a="<li id=a>", b="<li id=b>")) is None


def test_only_the_changed_item_is_sent_in_place() -> None:
    before = shown(a="<li id=a>1</li>", b="<li id=b>1</li>")
    after = shown(a="<li id=a>1</li>", b="<li id=b>2</li>")
    patch = after.patch(before)
    changed = {"deliveries": {"items": {"b": "<li id=b>2</li>"}}}
    assert patch == {"digest": after.digest, "parts": {}, "lists": changed}


def test_an_item_gone_or_come_sends_the_order_and_the_new_item_alone() -> None:
    before = shown(a="<li id=a>", b="<li id=b>")
    after = Rendered({"tabs": "Waiting 2"}, {"deliveries": {"b": "<li id=b>", "c": "<li id=c>"}})
    patch = after.patch(before)
    assert patch is not None
    assert patch["parts"] == {"tabs": "Waiting 2"}
    assert patch["lists"] == {"deliveries": {"items": {"c": "<li id=c>"}, "order": ["b", "c"]}}


def test_a_page_of_unknown_content_is_sent_everything() -> None:
    now = shown(a="<li id=a>")
    assert now.patch(None) == {
        "digest": now.digest,
        "parts": {"tabs": "Waiting 3"},
        "lists": {"deliveries": {"items": {"a": "<li id=a>"}, "order": ["a"]}},
    }


def test_the_digest_follows_what_is_shown() -> None:
    assert shown(a="x").digest == shown(a="x").digest
    assert shown(a="x").digest != shown(a="y").digest
    assert shown(a="x", b="y").digest != shown(b="y", a="x").digest  # the order is shown too


def test_a_listener_that_falls_behind_is_told_everything_changed() -> None:
    listener = Listener()
    for number in range(MOST_PENDING + 1):
        listener.tell(Changes([Change(id=str(number), updated_at="10:00")]))
    taken = listener.take()
    assert taken.overflow
    assert taken.items == []
    assert listener.take() == Changes()


class Latest:
    """An API's latest changes, as a test sets them round by round."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.asked = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.params["sort"] == "updated"
        self.asked += 1
        limit = int(request.url.params["limit"])
        return httpx.Response(200, json=self.items[:limit], headers={"X-Total-Count": str(len(self.items))})


def item(number: int, stamp: str) -> dict[str, Any]:
    return {"id": str(uuid.UUID(int=number)), "updated_at": stamp}


async def next_changes(listener: Listener) -> Changes:
    await asyncio.wait_for(listener.wait(), 2)
    return listener.take()


async def test_the_feed_tells_each_listener_which_items_changed_since_the_last_round(
    key_pair: KeyPair,
) -> None:
    latest = Latest()
    latest.items = [item(1, "10:00"), item(2, "09:00")]
    feed = ChangeFeed(api_answering(latest, key_pair), interval=0.01, window=3)
    try:
        async with feed.listen() as first, feed.listen() as second:
            assert latest.asked >= 1  # where it stands is known before anyone listens
            # One changed; one changed with an older stamp than the newest (a late commit).
            latest.items = [item(3, "10:05"), item(1, "10:00"), item(2, "09:30")]
            for listener in (first, second):
                changes = await next_changes(listener)
                assert sorted(changes.ids()) == sorted({str(uuid.UUID(int=3)), str(uuid.UUID(int=2))})
                assert not changes.overflow
            # A whole window of changes: more may have changed than it holds.
            latest.items = [item(4, "11:00"), item(5, "11:00"), item(6, "11:00")]
            assert (await next_changes(first)).overflow
    finally:
        await feed.close()


async def test_the_feed_asks_nothing_while_nobody_listens(key_pair: KeyPair) -> None:
    latest = Latest()
    feed = ChangeFeed(api_answering(latest, key_pair), interval=0.01)
    async with feed.listen():
        assert feed.watching
    await asyncio.wait_for(feed.idle(), 2)  # by itself, at its next round
    assert not feed.watching
    assert latest.asked >= 1
    await feed.close()


async def test_the_feed_waits_out_an_api_that_does_not_answer(key_pair: KeyPair) -> None:
    answers = iter([httpx.Response(503), httpx.Response(503)])
    latest = Latest()
    latest.items = [item(1, "10:00")]

    def flaky(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or latest(request)

    feed = ChangeFeed(api_answering(flaky, key_pair), interval=0.01)
    try:
        async with feed.listen(settle_seconds=2) as listener:
            latest.items = [item(1, "10:01")]
            assert (await next_changes(listener)).ids() == {str(uuid.UUID(int=1))}
    finally:
        await feed.close()
