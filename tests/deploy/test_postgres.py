"""The postgres init script run by psql on the tests' PostgreSQL (TEST_POSTGRES_URL), as the image
runs it at first start, each role's password read from the file its variable names: each service's
role uses its own database and cannot even connect to another's.

The script runs on names of this run (its roles and databases under a prefix), which are dropped at
the end. A server that trusts local connections checks no password at sign-in, so each role's
password is checked against the verifier the server stored; test_compose.py checks that each
service's file and its role's hold one password.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import asyncpg
import pytest

from deliveryhub_kit.migrations import server_connection
from tests.support.artifacts import POSTGRES_INIT_RUNNER, DatabaseRole, PostgresInit
from tests.support.databases import POSTGRES_SERVER_URL
from tests.support.scram import scram_verifies


@dataclass(frozen=True)
class Initialized:
    """The init script's roles and databases as this run made them."""

    init: PostgresInit
    prefix: str
    # By the variable naming each password's file.
    passwords: dict[str, str]

    def name(self, name: str) -> str:
        return f"{self.prefix}{name}"

    async def connect(self, role: DatabaseRole, database: str) -> asyncpg.Connection:
        server = urlsplit(POSTGRES_SERVER_URL)
        return await asyncpg.connect(
            host=server.hostname or "127.0.0.1",
            port=server.port or 5432,
            user=self.name(role.name),
            password=self.passwords[self.init.password_files[role.password_variable]],
            database=self.name(database),
            timeout=10,
        )


def password_files(folder: Path, passwords: dict[str, str]) -> dict[str, str]:
    """Each password in a file of its own, as an operator's editor leaves it (a line end after it),
    by the variable that names the file."""
    files: dict[str, str] = {}
    for variable, password in passwords.items():
        path = folder / variable.lower()
        path.write_text(password + "\n")
        files[variable] = str(path)
    return files


def run_the_init_script(
    init: PostgresInit, prefix: str, folder: Path, files: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """The runner as the image runs it, on the statements renamed for this run, against this server,
    with `files` (by variable) for the password files."""
    statements = folder / "init-databases.sql"
    statements.write_text(init.renamed(prefix))
    runner = folder / "init-databases.sh"
    runner.write_text(POSTGRES_INIT_RUNNER.read_text().replace(str(init.script_path), str(statements)))
    server = urlsplit(POSTGRES_SERVER_URL)
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "POSTGRES_USER": unquote(server.username or "postgres"),
        "PGHOST": server.hostname or "127.0.0.1",
        "PGPORT": str(server.port or 5432),
        "PGPASSWORD": unquote(server.password or ""),
        **files,
    }
    return subprocess.run(
        ["sh", str(runner)], env=environment, capture_output=True, text=True, check=False, timeout=60
    )


async def drop_everything(init: PostgresInit, prefix: str) -> None:
    async with server_connection(POSTGRES_SERVER_URL + "/postgres") as connection:
        for role in init.roles.values():
            await connection.execute(f'DROP DATABASE IF EXISTS "{prefix}{role.database}" WITH (FORCE)')
        for role in init.roles.values():
            await connection.execute(f'DROP ROLE IF EXISTS "{prefix}{role.name}"')


@pytest.fixture
def initialized(tmp_path: Path) -> Iterator[Initialized]:
    init = PostgresInit.read()
    prefix = f"dh_init_{uuid.uuid4().hex[:8]}_"
    # Quotes and spaces too: psql must pass each password as one literal.
    passwords = {
        variable: f"it's {variable.lower()} {uuid.uuid4().hex}" for variable in init.password_files.values()
    }
    try:
        result = run_the_init_script(init, prefix, tmp_path, password_files(tmp_path, passwords))
        assert result.returncode == 0, result.stdout + result.stderr
        yield Initialized(init, prefix, passwords)
    finally:
        asyncio.run(drop_everything(init, prefix))


def test_each_services_role_owns_its_database_and_nothing_more(initialized: Initialized) -> None:
    async def check() -> None:
        for role in initialized.init.roles.values():
            connection = await initialized.connect(role, role.database)
            try:
                # What its migrations do: tables of its own, in its own database.
                await connection.execute("CREATE TABLE migrated (id integer PRIMARY KEY)")
                await connection.execute("INSERT INTO migrated VALUES (1)")
                assert await connection.fetchval("SELECT count(*) FROM migrated") == 1
                rights = await connection.fetchrow(
                    "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user"
                )
                assert rights is not None
                assert tuple(rights) == (False, False, False), (
                    f"{role.name} may do more than use its database"
                )
            finally:
                await connection.close()

    asyncio.run(check())


def test_each_role_has_the_password_the_runner_gave_it(initialized: Initialized) -> None:
    async def verifiers() -> dict[str, str]:
        async with server_connection(POSTGRES_SERVER_URL + "/postgres") as connection:
            rows = await connection.fetch(
                "SELECT rolname, rolpassword FROM pg_authid WHERE rolname LIKE $1", initialized.prefix + "%"
            )
            return {row["rolname"]: row["rolpassword"] for row in rows}

    made = asyncio.run(verifiers())
    for role in initialized.init.roles.values():
        password = initialized.passwords[initialized.init.password_files[role.password_variable]]
        assert scram_verifies(made[initialized.name(role.name)], password), role.name


def test_no_services_role_can_connect_to_another_services_database(initialized: Initialized) -> None:
    async def check() -> None:
        for role, other in itertools.permutations(initialized.init.roles.values(), 2):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for database"):
                await initialized.connect(role, other.database)

    asyncio.run(check())


@pytest.mark.parametrize("lacking", ["no variable", "no file", "an empty file"])
def test_without_a_password_the_init_script_makes_nothing(lacking: str, tmp_path: Path) -> None:
    """A role must never be made without its password: the first start stops instead."""
    init = PostgresInit.read()
    prefix = f"dh_init_{uuid.uuid4().hex[:8]}_"
    files = password_files(
        tmp_path, {variable: uuid.uuid4().hex for variable in init.password_files.values()}
    )
    missing = sorted(files)[-1]
    if lacking == "no variable":
        del files[missing]
    elif lacking == "no file":
        Path(files[missing]).unlink()
    else:
        Path(files[missing]).write_text("\n")

    async def made() -> list[str]:
        async with server_connection(POSTGRES_SERVER_URL + "/postgres") as connection:
            rows = await connection.fetch("SELECT rolname FROM pg_roles WHERE rolname LIKE $1", prefix + "%")
            return [row["rolname"] for row in rows]

    try:
        result = run_the_init_script(init, prefix, tmp_path, files)
        assert result.returncode != 0
        assert (missing if lacking != "no file" else files[missing]) in result.stderr
        assert asyncio.run(made()) == []
    finally:
        asyncio.run(drop_everything(init, prefix))
