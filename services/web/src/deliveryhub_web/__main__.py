"""`python -m deliveryhub_web migrate`: bring the web console database to the newest schema."""

from __future__ import annotations

import sys
from pathlib import Path

from deliveryhub_kit.migrations import upgrade
from deliveryhub_web.settings import WebSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def main() -> None:
    if sys.argv[1:] != ["migrate"]:
        sys.exit("usage: python -m deliveryhub_web migrate")
    upgrade(MIGRATIONS, WebSettings().database_url)


if __name__ == "__main__":
    main()
