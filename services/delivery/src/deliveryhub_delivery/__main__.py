"""`python -m deliveryhub_delivery migrate`: bring the delivery database to the newest schema."""

from __future__ import annotations

import sys
from pathlib import Path

from deliveryhub_delivery.settings import DeliverySettings
from deliveryhub_kit.migrations import upgrade

MIGRATIONS = Path(__file__).parent / "migrations"


def main() -> None:
    if sys.argv[1:] != ["migrate"]:
        sys.exit("usage: python -m deliveryhub_delivery migrate")
    upgrade(MIGRATIONS, DeliverySettings().database_url)


if __name__ == "__main__":
    main()
