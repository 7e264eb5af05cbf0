"""The services' log lines: one JSON object a line, whichever logger wrote it."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from deliveryhub_kit.logs import configure_logging


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], Callable[[], list[Any]]]]:
    """Logging as a service configures it, onto the test's stdout; the lines written since."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def configured() -> Callable[[], list[Any]]:
        # In the test itself: the logs write to the stdout they were configured with.
        configure_logging("orders", level="INFO", json_lines=True)
        return lambda: [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    yield configured
    root.handlers, root.level = handlers, level
    structlog.reset_defaults()


def test_our_lines_and_the_libraries_lines_have_one_shape(json_logs: Any) -> None:
    lines = json_logs()
    structlog.get_logger("deliveryhub.http").info("request", status=201, route="/api/orders")
    logging.getLogger("uvicorn.error").info("started on %s", "port 8000")

    ours, theirs = lines()
    assert ours["event"] == "request"
    assert ours["status"] == 201
    assert theirs["event"] == "started on port 8000"
    for line, logger in ((ours, "deliveryhub.http"), (theirs, "uvicorn.error")):
        assert line["logger"] == logger
        assert line["level"] == "info"
        assert line["service"] == "orders"
        assert line["time"].endswith("Z")


def test_a_line_below_the_level_is_not_written(json_logs: Any) -> None:
    lines = json_logs()
    structlog.get_logger("deliveryhub.http").debug("request", path="/health/live")
    logging.getLogger("deliveryhub_kit.outbox").debug("nothing to send")
    structlog.get_logger("deliveryhub.http").warning("slow")

    assert [line["event"] for line in lines()] == ["slow"]


def test_an_exception_is_written_into_its_line(json_logs: Any) -> None:
    lines = json_logs()
    try:
        raise ValueError("no such courier")
    except ValueError:
        structlog.get_logger("deliveryhub.http").exception("request failed")

    (line,) = lines()
    assert line["level"] == "error"
    assert "ValueError: no such courier" in line["exception"]
