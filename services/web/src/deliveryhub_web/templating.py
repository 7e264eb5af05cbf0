"""The console's templates and the filters they use."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from fastapi.templating import Jinja2Templates

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")


def _format_date(value: str | None) -> str:
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value).strftime("%d %b %Y, %H:%M UTC")
    except ValueError:
        return value


def _money(value: float | int | str | None) -> str:
    return f"{float(value or 0):,.2f}".replace(",", " ")


TEMPLATES.env.filters["date"] = _format_date
TEMPLATES.env.filters["money"] = _money
TEMPLATES.env.filters["short"] = lambda value: str(value)[:8]
