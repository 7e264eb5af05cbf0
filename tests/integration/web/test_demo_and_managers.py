"""The demo accounts exist only while they are on; a real deployment's manager is made by an operator."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deliveryhub_kit.identity import Role
from deliveryhub_web.service import DEMO_ACCOUNTS
from tests.support.web import SESSION_SECRET, StartWeb, text_of

pytestmark = pytest.mark.integration


async def test_turning_the_demo_accounts_off_removes_them_and_their_sessions(
    start_web: StartWeb, web_database_url: str
) -> None:
    demo = await start_web(demo_accounts=True)
    signed_in = await demo.browser()
    assert (
        await signed_in.sign_in("manager@deliveryhub.example", demo.settings.demo_password)
    ).status_code == 303
    await demo.stack.aclose()

    web = await start_web(demo_accounts=False)

    assert not set(await web.emails()) & {account.email for account in DEMO_ACCOUNTS}
    assert await web.session_count() == 0
    browser = await web.browser()
    refused = await browser.sign_in("manager@deliveryhub.example", web.settings.demo_password)
    assert refused.status_code == 401
    assert "delivery-hub-demo" not in (await browser.get("/login")).text


async def test_an_account_registered_with_a_demo_address_is_not_taken_for_a_demo_account(
    start_web: StartWeb,
) -> None:
    web = await start_web(demo_accounts=False)
    registered = await web.add_user(Role.CUSTOMER, email="customer@deliveryhub.example")
    await web.stack.aclose()

    again = await start_web(demo_accounts=False)

    assert await again.user(registered.email) is not None


def create_manager(database_url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    """`python -m deliveryhub_web create-manager` as an operator runs it against the console's database."""
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ENVIRONMENT": "test",
        "SESSION_SECRET": SESSION_SECRET,
    }
    return subprocess.run(
        [sys.executable, "-m", "deliveryhub_web", "create-manager", *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


async def test_the_first_manager_is_created_by_a_command_that_prints_a_one_time_password(
    start_web: StartWeb, web_database_url: str
) -> None:
    made = await asyncio.to_thread(create_manager, web_database_url, "Boss@Shop.example", "--name", "Ольга")
    assert made.returncode == 0, made.stderr
    password = made.stdout.split("password (shown once; keep it somewhere safe): ")[1].strip()
    assert len(password) >= 20

    web = await start_web(demo_accounts=False)
    browser = await web.browser()
    response = await browser.sign_in("boss@shop.example", password)

    assert response.status_code == 303
    assert await browser.where_home_is() == "/board"
    assert "Ольга" in text_of((await browser.visit("/board")).text)


async def test_a_manager_made_with_a_password_file_prints_no_password_and_one_is_made_once(
    start_web: StartWeb, web_database_url: str, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text("a-long-chosen-password\n")

    made = await asyncio.to_thread(
        create_manager, web_database_url, "ops@shop.example", "--password-file", str(secret)
    )
    again = await asyncio.to_thread(create_manager, web_database_url, "ops@shop.example")

    assert made.returncode == 0, made.stderr
    assert "a-long-chosen-password" not in made.stdout + made.stderr
    assert "password" not in made.stdout
    assert again.returncode == 1
    assert "exists already" in again.stderr
    web = await start_web(demo_accounts=False)
    assert (
        await (await web.browser()).sign_in("ops@shop.example", "a-long-chosen-password")
    ).status_code == 303
