"""The console's operator commands.

python -m deliveryhub_web migrate
    bring the console's database to the newest schema (DATABASE_URL)
python -m deliveryhub_web create-manager EMAIL [--name NAME] [--password-file FILE]
    create a shop manager's account: the first one of a deployment, where no demo account
    exists; prints a new password once, unless FILE holds the one to set
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from datetime import timedelta
from pathlib import Path

from deliveryhub_kit.db import Database
from deliveryhub_kit.errors import DomainError
from deliveryhub_kit.migrations import upgrade
from deliveryhub_web.service import Passwords, account_service
from deliveryhub_web.settings import WebSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deliveryhub_web",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="bring the console's database to the newest schema")
    manager = commands.add_parser("create-manager", help="create a shop manager's account")
    manager.add_argument("email")
    manager.add_argument("--name", default="Shop manager")
    manager.add_argument("--password-file", type=Path, help="a file holding the password to set")
    options = parser.parse_args(argv)
    settings = WebSettings()
    if options.command == "migrate":
        upgrade(MIGRATIONS, settings.database_url)
        return 0
    given = options.password_file.read_text().strip() if options.password_file else None
    password = given or secrets.token_urlsafe(18)
    try:
        asyncio.run(_create_manager(settings, options.email, options.name, password))
    except DomainError as error:
        print(f"not created: {error.detail}", file=sys.stderr)
        return 1
    print(f"created the manager {options.email.strip().lower()}")
    if given is None:
        print(f"password (shown once; keep it somewhere safe): {password}")
    return 0


async def _create_manager(settings: WebSettings, email: str, name: str, password: str) -> None:
    database = Database(settings.async_database_url, pool_size=1, max_overflow=0)
    try:
        async with database.transaction() as session:
            lifetime = timedelta(hours=settings.session_hours)
            accounts = account_service(session, session_lifetime=lifetime, passwords=Passwords())
            await accounts.create_manager(email=email, name=name, password=password)
    finally:
        await database.dispose()


if __name__ == "__main__":
    sys.exit(main())
