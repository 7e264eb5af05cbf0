"""The end-to-end tests' fixtures: the running system, in both of its modes, and browsers on its console."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.support.console import CHROMIUM, Console
from tests.support.running_system import System, embedded_system, system_on_servers

HERE = Path(__file__).parent


def _system_mode(item: pytest.Item) -> str | None:
    """Which running system a test takes, if it takes one."""
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("system") if callspec is not None else None


# Last, so that the order it makes is the one that runs: after pytest grouped the tests by system.
@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests of `test_check.py` judge what the others left behind: each runs right after the
    last other test on the same system, while that system still runs."""
    finals = [item for item in items if item.path.name == "test_check.py" and item.path.parent == HERE]
    ordered = [item for item in items if item not in finals]
    for final in finals:
        mode = _system_mode(final)
        same = [index for index, item in enumerate(ordered) if _system_mode(item) == mode]
        ordered.insert(same[-1] + 1 if same else len(ordered), final)
    items[:] = ordered


@pytest.fixture(scope="session", params=["servers", "embedded"])
def system(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """The running system; every test that takes it runs against both modes."""
    if request.param == "embedded":
        yield from embedded_system(tmp_path_factory)
    else:
        yield from system_on_servers(tmp_path_factory)


# Per module: Playwright's synchronous API keeps an event loop running while it is open, which
# the asynchronous tests of later modules could not share.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield launched
        launched.close()


@pytest.fixture
def console(system: System, browser: Browser, request: pytest.FixtureRequest) -> Iterator[Console]:
    opened = Console(system=system, browser=browser, name=request.node.name)
    yield opened
    for number, page in enumerate(opened.pages):
        if not page.is_closed():
            opened.save(page, f"{opened.name}-{number}")
            page.context.close()
