"""Live pages: which items changed, learnt once per process, sent to each open page as the items alone.

A `ChangeFeed` asks one API for its latest changes (`sort=updated`) while any page listens, and
tells every listener which items changed since it last asked. A page's stream keeps what it last
sent the browser; on a change it may care about it builds the page again, and sends only the parts
and the items whose HTML differs (server-sent events). A page left open with nothing happening is
sent a comment line now and then, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol

from jinja2 import Environment

from deliveryhub_kit.identity import Principal, Role
from deliveryhub_web.clients import Api, ApiError, ServiceDown
from deliveryhub_web.resources import Change

logger = logging.getLogger(__name__)

# The console asks the APIs for their latest changes as a manager of its own.
WATCHER = Principal(subject=uuid.uuid5(uuid.NAMESPACE_URL, "deliveryhub-console-live"), role=Role.MANAGER)
# A listener that has not taken its changes holds at most this many; past it, "everything changed".
MOST_PENDING = 1000


@dataclass
class Changes:
    """What changed since a listener last looked: the items as the API answered them; `overflow`
    when more changed than could be told apart (anything may have changed)."""

    items: list[Change] = field(default_factory=list)
    overflow: bool = False

    def ids(self) -> set[str]:
        return {item.id for item in self.items}


class Listener:
    """One open page's share of a feed."""

    def __init__(self) -> None:
        self._pending = Changes()
        self._arrived = asyncio.Event()

    def tell(self, changes: Changes) -> None:
        self._pending.items.extend(changes.items)
        self._pending.overflow |= changes.overflow
        if len(self._pending.items) > MOST_PENDING:
            self._pending = Changes(overflow=True)
        self._arrived.set()

    async def wait(self) -> None:
        await self._arrived.wait()

    def take(self) -> Changes:
        taken, self._pending = self._pending, Changes()
        self._arrived.clear()
        return taken


class ChangeFeed:
    """The latest changes of one API's list, asked for every `interval` seconds while anyone listens.

    Each round reads the `window` items changed last; an item whose `updated_at` differs from the
    previous round's is a change (a late commit with an older stamp still shows as one). When every
    item of a full window is new, more may have changed than it holds: listeners are told so.
    """

    def __init__(self, api: Api, *, interval: float, window: int = 50) -> None:
        self._api = api
        self._interval = interval
        self._window = window
        self._listeners: set[Listener] = set()
        self._watching: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    @contextlib.asynccontextmanager
    async def listen(self, *, settle_seconds: float = 2.0) -> AsyncIterator[Listener]:
        """A listener, once the feed knows where it stands (so that no change falls between)."""
        listener = Listener()
        self._listeners.add(listener)
        if self._watching is None or self._watching.done():
            self._ready.clear()
            self._watching = asyncio.create_task(self._watch(), name=f"change-feed {self._api.list_path}")
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), settle_seconds)
            yield listener
        finally:
            self._listeners.discard(listener)

    @property
    def watching(self) -> bool:
        """Whether the feed asks its API now (only while anyone listens)."""
        return self._watching is not None and not self._watching.done()

    async def idle(self) -> None:
        """Once the feed has stopped asking, as it does by itself when the last listener leaves."""
        if self._watching is not None:
            await asyncio.shield(self._watching)

    async def close(self) -> None:
        self._listeners.clear()
        if self._watching is not None:
            self._watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watching

    async def _watch(self) -> None:
        seen: dict[str, str] | None = None
        quiet_since: float | None = None
        while self._listeners:
            try:
                items = await self._api.latest_changes(WATCHER, limit=self._window)
            except (ApiError, ServiceDown) as error:
                if quiet_since is None:
                    quiet_since = time.monotonic()
                    logger.warning("live updates wait: %s", error)
                await asyncio.sleep(self._interval)
                continue
            if quiet_since is not None:
                logger.info("live updates resume after %.1f s", time.monotonic() - quiet_since)
                quiet_since = None
            latest = {item.id: item.updated_at for item in items}
            if seen is not None:
                changed = [item for item in items if seen.get(item.id) != latest[item.id]]
                if changed:
                    changes = Changes(changed, overflow=len(changed) == len(items) == self._window)
                    for listener in list(self._listeners):
                        listener.tell(changes)
            seen = latest
            self._ready.set()
            await asyncio.sleep(self._interval)


class Identified(Protocol):
    """An item of a page's list: what its element is called after."""

    @property
    def id(self) -> str: ...


@dataclass(frozen=True)
class ItemList:
    """A list of a page: the template of one item, and each item's element id with what it adds to
    the page's context."""

    template: str
    items: list[tuple[str, dict[str, Any]]]

    @classmethod
    def of(cls, template: str, noun: str, items: Sequence[Identified]) -> ItemList:
        """Each item as `noun` in the template, its element id `noun-<its id>`."""
        return cls(template, [(f"{noun}-{item.id}", {noun: item}) for item in items])


@dataclass
class LiveView:
    """A page as parts (each an element's inside) and lists of items (each a whole element)."""

    context: dict[str, Any]
    # part name -> the template rendering the inside of the page's `[data-part=name]` elements
    parts: dict[str, str]
    # list name -> the items of the page's `[data-items=name]` element
    lists: dict[str, ItemList]


@dataclass(frozen=True)
class Rendered:
    parts: dict[str, str]
    lists: dict[str, dict[str, str]]

    @property
    def digest(self) -> str:
        """What the page shows, in 16 hex digits: a page and its stream compare it on connecting."""
        lists = {name: list(items.items()) for name, items in self.lists.items()}
        text = json.dumps([self.parts, lists], ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def shown(self) -> set[str]:
        """The element ids of every item shown."""
        return {key for items in self.lists.values() for key in items}

    def patch(self, before: Rendered | None) -> dict[str, Any] | None:
        """What to send a page showing `before` (None: anything), or None when nothing differs."""
        old = before or Rendered({}, {})
        parts = {name: html for name, html in self.parts.items() if old.parts.get(name) != html}
        lists: dict[str, Any] = {}
        for name, items in self.lists.items():
            was = old.lists.get(name, {})
            changed = {key: html for key, html in items.items() if was.get(key) != html}
            entry: dict[str, Any] = {"items": changed}
            if list(items) != list(was):
                entry["order"] = list(items)
            if changed or "order" in entry:
                lists[name] = entry
        if not parts and not lists:
            return None
        return {"digest": self.digest, "parts": parts, "lists": lists}


def render(environment: Environment, view: LiveView, base: dict[str, Any]) -> Rendered:
    context = {**base, **view.context}
    parts = {
        name: environment.get_template(template).render(context) for name, template in view.parts.items()
    }
    lists = {}
    for name, item_list in view.lists.items():
        template = environment.get_template(item_list.template)
        lists[name] = {key: template.render({**context, **extra}) for key, extra in item_list.items}
    return Rendered(parts, lists)


# Which changes a page may care about: given what changed and the items it shows now.
Interest = Callable[[Changes, set[str]], bool]


def anything(changes: Changes, shown: set[str]) -> bool:
    return True


@dataclass
class Stream:
    """One open page's stream: what it needs to build itself again, and when to."""

    build: Callable[[], Awaitable[Rendered]]
    feed: ChangeFeed
    interest: Interest
    still_signed_in: Callable[[], Awaitable[bool]]
    # what the page showed when it was served (its digest), to send only what differs since
    digest: str | None
    heartbeat_seconds: float
    lifetime_seconds: float
    closing: asyncio.Event

    async def events(self) -> AsyncIterator[str]:
        """The server-sent events: a patch when the page differs, a comment line now and then."""
        yield "retry: 3000\n\n"
        async with self.feed.listen() as listener:
            shown = await self.build()
            if shown.digest != self.digest:
                yield _event("patch", shown.patch(None))
            ends_at = time.monotonic() + self.lifetime_seconds
            while not self.closing.is_set():
                left = ends_at - time.monotonic()
                if left <= 0:
                    return  # the browser connects again, and is checked again
                woke = await _first(
                    listener.wait(), self.closing.wait(), within=min(self.heartbeat_seconds, left)
                )
                if self.closing.is_set():
                    return
                if not woke:
                    yield ": still here\n\n"
                    continue
                changes = listener.take()
                ids = {key.split("-", 1)[-1] for key in shown.shown()}
                if not (changes.overflow or self.interest(changes, ids)):
                    continue
                if not await self.still_signed_in():
                    yield _event("signed-out", {"location": "/login"})
                    return
                try:
                    fresh = await self.build()
                except (ApiError, ServiceDown) as error:
                    logger.info("a live page could not be built now: %s", error)
                    continue
                patch = fresh.patch(shown)
                shown = fresh
                if patch is not None:
                    yield _event("patch", patch)


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


async def _first(*waits: Awaitable[Any], within: float) -> bool:
    """Whether any of `waits` ended `within` seconds; the others are let go."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        done, _ = await asyncio.wait(tasks, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
    return bool(done)


def close_on_signals(closing: asyncio.Event) -> None:
    """Set `closing` when the process is told to stop, before the server waits for open requests:
    else an open stream would hold the shutdown for its whole grace period. The server's own
    handler still runs after."""
    loop = asyncio.get_running_loop()
    if threading.current_thread() is not threading.main_thread():
        return
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}

    def chained(number: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(closing.set)
        handler = previous[signal.Signals(number)]
        if callable(handler):
            handler(number, frame)

    for number, handler in previous.items():
        if callable(handler):  # a server that handles the signal: ours runs first
            signal.signal(number, chained)
