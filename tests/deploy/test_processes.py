"""The containers' start commands as plain processes, then the story over HTTP through the gateway.

compose.yaml's commands (or the images' CMD) and environments are taken as they are, with what a
container would find around it stood in for by this machine: the service host names become
127.0.0.1, each container port a free local port, PostgreSQL and RabbitMQ this machine's servers
(the init script's roles and databases and a broker prefix under names of this run), each named
volume a folder, every file's owner this machine's user, the gateway's fixed address 127.0.0.1.
The jobs and services start in compose's order (a job must finish, a service must pass its health
check before what depends on it starts; PostgreSQL's first start, which makes the roles with the
passwords of the keys job's files, waits for that job too), the gateway is nginx with compose's
configuration, and at the end every process gets SIGTERM and must exit cleanly. The images
themselves are not run: see test_images.py.

Every password is the keys job's, read from the files it made. This machine's PostgreSQL trusts
local connections and checks none: the services' settings in effect show that each read its file,
and the roles' stored verifiers that the file holds its role's password.

The broker-access job needs RabbitMQ's management API. Where TEST_RABBITMQ_MANAGEMENT_URL names one
(`scripts/rabbitmq4.sh run` does), the job runs against it as that URL's administrator; without
one, its process is not run and `rabbitmqctl` (TEST_RABBITMQCTL) does its work, from its
environment and files. Either way the services' users are made under names of this run with the
passwords of the job's files, and the services connect as those users with the passwords of
theirs, which RabbitMQ checks.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
import pytest

from deliveryhub_kit.broker_access import (
    ADMIN_PASSWORD_FILE_VARIABLE,
    ADMIN_USER_VARIABLE,
    SERVICE_ROLES,
    AccessJob,
    ManagementApi,
    apply_with_rabbitmqctl,
    broker_access,
)
from deliveryhub_kit.migrations import drop_database, server_connection
from deliveryhub_kit.passwords import DEVELOPMENT_PASSWORDS, password_in, read_password_file
from deliveryhub_web.service import DEMO_ACCOUNTS
from deliveryhub_web.settings import WebSettings
from tests.support import story
from tests.support.artifacts import (
    OWNER_ARGUMENT,
    Json,
    PostgresInit,
    broker_access_jobs,
    code_of,
    command_of,
    fixed_addresses,
    healthcheck_of,
    image_of,
    is_one_shot,
    local_gateway_config,
    named_mounts,
    settings_from,
    this_user,
)
from tests.support.broker import AMQP_URL, BrokerNamespace, delete_broker_names
from tests.support.databases import POSTGRES_SERVER_URL
from tests.support.ports import free_port
from tests.support.running_system import System
from tests.support.scram import scram_verifies
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e

# What this machine provides in place of a container: its own servers.
MACHINE_SERVERS = {"postgres", "rabbitmq"}
# The test broker's management API, when it has one; else the command that administers it.
MANAGEMENT_URL = os.environ.get("TEST_RABBITMQ_MANAGEMENT_URL") or None
RABBITMQCTL = shlex.split(os.environ.get("TEST_RABBITMQCTL") or "rabbitmqctl")
VENV_BIN = Path(sys.executable).parent
START_TIMEOUT = 45.0
STOP_TIMEOUT = 30.0
DEMO_PASSWORD: str = WebSettings.model_fields["demo_password"].default


def container_port(service: Json) -> int | None:
    """The port the service's container listens on."""
    code = code_of(service)
    if code is not None:
        return image_of(code).port
    targets = [int(port["target"]) for port in service.get("ports", [])]
    return targets[0] if targets else None


@dataclass
class Sandbox:
    """This machine standing in for compose's network, volumes and servers, for one run."""

    services: dict[str, Json]
    root: Path
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, service in self.services.items():
            if name not in MACHINE_SERVERS and not is_one_shot(service):
                self.ports[name] = free_port()

    def broker_user(self, name: str) -> str:
        """A service's broker user under this run's name, so that runs never share one."""
        return f"deploy-{self.run}-{name}"

    def service_users(self) -> list[str]:
        """The broker users the replayed access job makes, under this run's names."""
        urls = [self.services[role.service]["environment"]["AMQP_URL"] for role in SERVICE_ROLES]
        return [self.broker_user(str(urlsplit(url).username)) for url in urls]

    @property
    def database_prefix(self) -> str:
        return f"dh_deploy_{self.run}_"

    @property
    def broker_prefix(self) -> str:
        return f"deploy-{self.run}."

    def volume(self, name: str) -> Path:
        path = self.root / "volumes" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def url(self, value: str) -> str:
        """A URL naming a compose service, pointed at what stands in for it here."""
        url = urlsplit(value)
        host = url.hostname
        if host not in self.services:
            return value
        if host == "postgres":
            # The service's own role, under this run's name (its password, from its file, is added by
            # the service itself).
            server = urlsplit(POSTGRES_SERVER_URL)
            netloc = f"{self.database_prefix}{url.username}{password_part(url.password)}@{server.hostname}"
            netloc += f":{server.port or 5432}"
            return urlunsplit((url.scheme, netloc, "/" + self.database_prefix + url.path.lstrip("/"), "", ""))
        if host == "rabbitmq":
            if url.scheme in ("http", "https"):
                if MANAGEMENT_URL is None:
                    # Nothing answers it here: rabbitmqctl does the access job's work instead.
                    return value
                management = urlsplit(MANAGEMENT_URL)
                netloc = f"{management.hostname}:{management.port}"
                return urlunsplit((management.scheme, netloc, url.path, url.query, ""))
            server = urlsplit(AMQP_URL)
            if url.username is None:
                return urlunsplit((url.scheme, server.netloc, url.path, url.query, ""))
            # The user the replayed access job makes, under this run's name.
            netloc = f"{self.broker_user(url.username)}{password_part(url.password)}@{server.hostname}"
            netloc += f":{server.port}"
            return urlunsplit((url.scheme, netloc, url.path, url.query, ""))
        assert url.port == container_port(self.services[host]), f"{value}: {host} listens elsewhere"
        return urlunsplit((url.scheme, f"127.0.0.1:{self.ports[host]}", url.path, url.query, url.fragment))

    def path(self, value: str, service: Json) -> str:
        """A path inside one of the service's volumes, as a path here."""
        if not value.startswith("/"):
            return value
        inside = PurePosixPath(value)
        for mount in named_mounts(service):
            if inside.is_relative_to(mount.target):
                return str(self.volume(mount.volume) / inside.relative_to(mount.target))
        return value

    def address(self, value: str) -> str:
        """A fixed address on compose's network (the gateway's): here, every process is on 127.0.0.1."""
        entries = [entry.strip() for entry in value.split(",")]
        fixed = set(fixed_addresses(self.services).values())
        if not fixed & set(entries):
            return value
        return ",".join("127.0.0.1" if entry in fixed else entry for entry in entries)

    def value(self, value: str, service: Json) -> str:
        if "://" in value:
            return self.url(value)
        return self.path(value, service) if value.startswith("/") else self.address(value)

    def stand_in(self, name: str, password: str) -> str:
        """A password file of this machine's servers, standing in for one of the keys job's."""
        folder = self.root / "machine-passwords"
        folder.mkdir(mode=0o700, exist_ok=True)
        path = folder / name
        path.write_text(password)
        path.chmod(0o600)
        return str(path)

    def environment(self, service: Json) -> dict[str, str]:
        given = {key: str(value) for key, value in service.get("environment", {}).items()}
        assert "BROKER_PREFIX" not in given, "the run's broker prefix would override compose's"
        if ADMIN_USER_VARIABLE in given and MANAGEMENT_URL is not None:
            # The broker's administrator here is the one the management URL names.
            management = urlsplit(MANAGEMENT_URL)
            given[ADMIN_USER_VARIABLE] = unquote(management.username or "")
            password = unquote(management.password or "")
            given[ADMIN_PASSWORD_FILE_VARIABLE] = self.stand_in("rabbitmq-administrator", password)
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "LANG": "C.UTF-8",
            **{key: self.value(value, service) for key, value in given.items()},
            # The one addition: this run's names on the shared broker.
            "BROKER_PREFIX": self.broker_prefix,
        }

    def command(self, name: str, argv: list[str]) -> list[str]:
        """A command of the image, run from this checkout's environment and on this run's port."""
        service = self.services[name]
        program = VENV_BIN / argv[0]
        assert program.exists(), f"{argv[0]} is not in this environment"
        mapped = [str(program)]
        arguments = iter(argv[1:])
        for argument in arguments:
            mapped.append(argument)
            if OWNER_ARGUMENT.fullmatch(argument):
                # The keys job's UID:GID: here every file is this machine's user's.
                mapped[-1] = this_user()
            elif argument == "--host":
                assert next(arguments) == "0.0.0.0"
                mapped.append("127.0.0.1")
            elif argument == "--port":
                assert int(next(arguments)) == container_port(service)
                mapped.append(str(self.ports[name]))
            else:
                mapped[-1] = self.value(argument, service)
        return mapped

    def health_command(self, name: str) -> list[str] | None:
        check = healthcheck_of(self.services[name])
        if check is None:
            return None
        port = container_port(self.services[name])
        local = [part.replace(f"127.0.0.1:{port}/", f"127.0.0.1:{self.ports[name]}/") for part in check]
        if local[0] == "python":
            local[0] = sys.executable
        return local

    def gateway_config(self) -> Path:
        """compose's gateway configuration on this run's ports, writing under this run's folder."""
        return local_gateway_config(self.root / "gateway", self.ports["gateway"], self.url)

    def database_statements(self) -> list[str]:
        """The init script's statements on this run's role and database names, with the passwords
        the runner would read from the files the postgres service's environment names."""
        init = PostgresInit.read()
        postgres = self.services["postgres"]
        passwords = {
            variable: read_password_file(Path(self.path(str(postgres["environment"][name]), postgres)))
            for variable, name in init.password_files.items()
        }
        return init.renamed_statements(self.database_prefix, passwords)

    def databases(self) -> list[str]:
        return [self.database_prefix + role.database for role in PostgresInit.read().roles.values()]

    def roles(self) -> list[str]:
        return [self.database_prefix + role.name for role in PostgresInit.read().roles.values()]


class Stack:
    """The processes of one run, started as compose would order them."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.finished: set[str] = set()
        self.healthy: set[str] = set()
        self.started_order: list[str] = []
        self.logs = sandbox.root / "logs"
        self.logs.mkdir(exist_ok=True)

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def ready_to_start(self, name: str) -> bool:
        for target, condition in self.sandbox.services[name].get("depends_on", {}).items():
            wanted = (
                self.finished if condition["condition"] == "service_completed_successfully" else self.healthy
            )
            if target not in wanted:
                return False
        return True

    def start(self, name: str) -> None:
        service = self.sandbox.services[name]
        if name in MACHINE_SERVERS:
            # Already running; PostgreSQL's first start makes the init script's roles and databases.
            if name == "postgres":
                asyncio.run(create_databases(self.sandbox))
            self.healthy.add(name)
            self.started_order.append(name)
            return
        if name in broker_access_jobs(self.sandbox.services) and MANAGEMENT_URL is None:
            give_users_with_rabbitmqctl(self.sandbox, name)
            self.finished.add(name)
            self.started_order.append(name)
            return
        if name == "gateway":
            nginx = shutil.which("nginx") or "/usr/sbin/nginx"
            argv = [
                nginx,
                "-e",
                "stderr",
                "-p",
                f"{self.sandbox.root / 'gateway'}/",
                "-c",
                str(self.sandbox.gateway_config()),
                "-g",
                "daemon off;",
            ]
            environment = {"PATH": os.environ.get("PATH", "")}
        else:
            argv = self.sandbox.command(name, command_of(service))
            environment = self.sandbox.environment(service)
        work = self.sandbox.root / "work" / name
        work.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("wb") as output:
            self.processes[name] = subprocess.Popen(
                argv,
                cwd=work,
                env=environment,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started_order.append(name)

    def passes_health_check(self, name: str) -> bool:
        check = self.sandbox.health_command(name)
        assert check is not None
        if shutil.which(check[0]) is None and not Path(check[0]).exists():
            # The check's tool is not on this machine; ask its URL the same way.
            (url,) = [part for part in check if part.startswith("http://")]
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        return subprocess.run(check, capture_output=True, check=False, timeout=10).returncode == 0

    def up(self) -> None:
        """Start everything in dependency order; fail with the log of what did not come up."""
        # This repository's images, the servers and the gateway; nothing else in the file is needed by them.
        waiting = [
            name
            for name, service in self.sandbox.services.items()
            if code_of(service) is not None or name == "gateway" or name in MACHINE_SERVERS
        ]
        for name in waiting:
            outside = set(self.sandbox.services[name].get("depends_on", {})) - set(waiting)
            assert not outside, f"{name} waits for {outside}, which this test does not run"
        deadline = time.monotonic() + START_TIMEOUT
        while waiting or not set(self.processes) <= self.finished | self.healthy:
            for name in [n for n in waiting if self.ready_to_start(n)]:
                waiting.remove(name)
                self.start(name)
            for name, process in self.processes.items():
                if name in self.finished or name in self.healthy:
                    continue
                code = process.poll()
                one_shot = is_one_shot(self.sandbox.services[name])
                if code is not None:
                    assert one_shot, f"{name} stopped ({code}):\n{self.log(name)}"
                    assert code == 0, f"{name} failed ({code}):\n{self.log(name)}"
                    self.finished.add(name)
                elif not one_shot and self.passes_health_check(name):
                    self.healthy.add(name)
            if time.monotonic() > deadline:
                late = sorted(set(self.processes) - self.finished - self.healthy) + waiting
                logs = "\n".join(f"--- {name}\n{self.log(name)}" for name in late)
                pytest.fail(f"not up after {START_TIMEOUT:.0f}s: {late}\n{logs}")
            time.sleep(0.1)

    def stop(self) -> dict[str, int]:
        """SIGTERM to every process still running, the gateway first; their exit codes."""
        running = [
            name
            for name in reversed(self.started_order)
            if name in self.processes and self.processes[name].poll() is None
        ]
        codes: dict[str, int] = {}
        for name in running:
            self.processes[name].send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for name in running:
            process = self.processes[name]
            try:
                codes[name] = process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                codes[name] = -signal.SIGKILL
        return codes


def give_users_with_rabbitmqctl(sandbox: Sandbox, name: str) -> None:
    """The access job's work without a management API: the users and rights it reads from its
    environment and files, given with rabbitmqctl."""
    job = AccessJob.from_environment(sandbox.environment(sandbox.services[name]))
    for role, user in job.users:
        apply_with_rabbitmqctl(broker_access(role, job.broker_prefix, job.legacy_prefix), user, RABBITMQCTL)


def delete_broker_user(name: str) -> None:
    if MANAGEMENT_URL is not None:
        management_api().delete_user(name)
        return
    subprocess.run(
        [*RABBITMQCTL, "-q", "delete_user", "--", name],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
        timeout=60,
    )


def connected_users() -> set[str]:
    """The users connected to the test broker now."""
    if MANAGEMENT_URL is not None:
        # The management API lists a connection once it has collected its statistics.
        connections = json.loads(management_api().request("GET", "/api/connections"))
        return {str(connection["user"]) for connection in connections}
    listed = subprocess.run(
        [*RABBITMQCTL, "-q", "list_connections", "user"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return {line.strip() for line in listed.stdout.splitlines()[1:] if line.strip()}


def password_part(password: str | None) -> str:
    """The `:PASSWORD` of a URL's user part, as it was written (nothing when it has none)."""
    return "" if password is None else f":{password}"


def management_api() -> ManagementApi:
    """The test broker's management API, as the administrator its URL names."""
    assert MANAGEMENT_URL is not None
    management = urlsplit(MANAGEMENT_URL)
    return ManagementApi(
        MANAGEMENT_URL, unquote(management.username or ""), unquote(management.password or "")
    )


async def create_databases(sandbox: Sandbox) -> None:
    async with server_connection(POSTGRES_SERVER_URL + "/postgres") as connection:
        for statement in sandbox.database_statements():
            await connection.execute(statement)


async def remove_databases(sandbox: Sandbox) -> None:
    for database in sandbox.databases():
        await drop_database(f"{POSTGRES_SERVER_URL}/{database}")
    async with server_connection(POSTGRES_SERVER_URL + "/postgres") as connection:
        for role in sandbox.roles():
            await connection.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture(scope="module")
def stack(compose_services: dict[str, Json], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    sandbox = Sandbox(compose_services, tmp_path_factory.mktemp("compose-as-processes"))
    started = Stack(sandbox)
    try:
        started.up()
        yield started
    finally:
        started.stop()
        asyncio.run(remove_databases(sandbox))
        namespace = BrokerNamespace(
            prefix=sandbox.broker_prefix, legacy_prefix=f"{sandbox.broker_prefix}legacy_"
        )
        asyncio.run(delete_broker_names(namespace))
        for user in sandbox.service_users():
            delete_broker_user(user)


@pytest.fixture(scope="module")
def gateway(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.sandbox.ports['gateway']}"


@pytest.fixture(scope="module")
def system(stack: Stack, gateway: str) -> System:
    """The e2e tests' view of the system, every call through the gateway, tokens signed with the job's key."""
    signing_volume = Path(
        stack.sandbox.path(
            stack.sandbox.services["web"]["environment"]["JWT_PRIVATE_KEY_FILE"],
            stack.sandbox.services["web"],
        )
    ).parent
    data_dir = stack.sandbox.root / "tokens"
    data_dir.mkdir(exist_ok=True)
    (data_dir / "keys").symlink_to(signing_volume, target_is_directory=True)

    def ready() -> bool | None:
        for name in ("orders", "delivery"):
            response = httpx.get(f"http://127.0.0.1:{stack.sandbox.ports[name]}/health/ready", timeout=2)
            if response.status_code != 200:
                return None
        return True

    # Healthy is "the process answers"; the story also needs the consumers on the broker.
    eventually(ready, what="orders and delivery to be ready", timeout=20)
    return System(
        orders_url=gateway,
        delivery_url=gateway,
        web_url=gateway,
        data_dir=data_dir,
        legacy_prefix="",
        broker_prefix=stack.sandbox.broker_prefix,
        log=stack.logs,
    )


def test_jobs_finish_before_the_services_that_wait_for_them(stack: Stack) -> None:
    order = stack.started_order
    for name in order:
        for target in stack.sandbox.services[name].get("depends_on", {}):
            assert order.index(target) < order.index(name), f"{name} started before {target}"
    jobs = {
        "keys",
        "orders-migrate",
        "delivery-migrate",
        "web-migrate",
        *broker_access_jobs(stack.sandbox.services),
    }
    assert jobs <= stack.finished
    assert {"orders", "delivery", "web", "gateway"} <= stack.healthy


async def role_verifiers(sandbox: Sandbox) -> dict[str, str]:
    """The password verifier PostgreSQL stored for each of this run's roles."""
    async with server_connection(POSTGRES_SERVER_URL + "/postgres") as connection:
        rows = await connection.fetch(
            "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY($1::text[])", sandbox.roles()
        )
    return {row["rolname"]: row["rolpassword"] for row in rows}


def test_each_process_ran_with_the_passwords_of_its_files(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The settings the environment each service and job was started with gives (read as the
    process reads it) hold the passwords of its files, which the keys job made; its role was made
    with that very password, from the postgres service's own file."""
    sandbox = stack.sandbox
    verifiers = asyncio.run(role_verifiers(sandbox))
    volumes = sandbox.root / "volumes"
    checked: set[str] = set()
    for name in stack.started_order:
        service = sandbox.services[name]
        code = code_of(service)
        if code is None or "DATABASE_PASSWORD_FILE" not in service.get("environment", {}):
            continue
        environment = sandbox.environment(service)
        database_password = Path(environment["DATABASE_PASSWORD_FILE"])
        assert database_password.is_relative_to(volumes), f"{name}'s password is in no volume"
        password = read_password_file(database_password)
        assert password not in DEVELOPMENT_PASSWORDS
        where = sandbox.root / "settings" / name
        where.mkdir(parents=True)
        settings = settings_from(environment, code, monkeypatch, where)
        assert password_in(settings.database_url) == password, f"{name} ignores its DATABASE_PASSWORD_FILE"
        role = str(urlsplit(settings.database_url).username)
        assert scram_verifies(verifiers[role], password), f"{name}'s role {role} has another password"
        if "AMQP_PASSWORD_FILE" in environment:
            amqp_password = read_password_file(Path(environment["AMQP_PASSWORD_FILE"]))
            assert password_in(settings.amqp_url) == amqp_password, f"{name} ignores its AMQP_PASSWORD_FILE"
        checked.add(name)
    assert checked == {"orders", "delivery", "web", "orders-migrate", "delivery-migrate", "web-migrate"}


def test_the_services_connect_as_the_users_the_access_job_made(stack: Stack, system: System) -> None:
    """RabbitMQ checks the passwords: each service's file holds what the access job gave its user."""
    expected = set(stack.sandbox.service_users())

    def connected() -> set[str] | None:
        users = connected_users()
        return users if expected <= users else None

    eventually(connected, what=f"connections as {sorted(expected)}", timeout=30)


def test_the_story_ends_delivered_through_the_gateway(system: System) -> None:
    story.the_whole_story_ends_delivered(system)


@dataclass(frozen=True)
class SignInForm:
    """The console's sign-in form as a visitor got it: its cookie and its CSRF token."""

    gateway: str
    visitor: str
    csrf_token: str

    @classmethod
    def opened(cls, gateway: str) -> SignInForm:
        form = httpx.get(f"{gateway}/login", timeout=10)
        assert form.status_code == 200, form.text
        visitor = form.cookies.get("__Host-dh_visitor")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert visitor
        assert csrf
        return cls(gateway, visitor, csrf.group(1))

    def submit(self, email: str, password: str, headers: dict[str, str] | None = None) -> httpx.Response:
        # Secure cookies are kept by hand: a client sends them only over HTTPS, a browser also to localhost.
        return httpx.post(
            f"{self.gateway}/login",
            data={"email": email, "password": password, "csrf_token": self.csrf_token, "next": "/"},
            headers={"Cookie": f"__Host-dh_visitor={self.visitor}", **(headers or {})},
            timeout=10,
        )


@dataclass(frozen=True)
class Manager:
    email: str
    password: str


@pytest.fixture(scope="module")
def manager(stack: Stack) -> Manager:
    """The shop's manager, made by the operator's command in the console's container:
    `docker compose exec web python -m deliveryhub_web create-manager EMAIL --password-file FILE`."""
    password_file = stack.sandbox.root / "manager-password"
    password_file.write_text(secrets.token_urlsafe(24) + "\n")
    password_file.chmod(0o600)
    email = f"manager-{stack.sandbox.run}@shop.example"
    argv = ["python", "-m", "deliveryhub_web", "create-manager", email, "--password-file", str(password_file)]
    result = subprocess.run(
        stack.sandbox.command("web", argv),
        env=stack.sandbox.environment(stack.sandbox.services["web"]),
        cwd=stack.sandbox.root / "work" / "web",
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, (
        f"create-manager failed ({result.returncode}):\n{result.stdout}{result.stderr}"
    )
    assert password_file.read_text().strip() not in result.stdout + result.stderr, "the password was printed"
    return Manager(email, password_file.read_text().strip())


def test_the_manager_the_operator_made_signs_in_through_the_gateway(gateway: str, manager: Manager) -> None:
    signed_in = SignInForm.opened(gateway).submit(manager.email, manager.password)
    assert signed_in.status_code == 303, signed_in.text
    session = signed_in.cookies.get("__Host-dh_session")
    assert session

    # The board lists the deliveries from the delivery API, called with a token the console signed.
    board = httpx.get(f"{gateway}/board", headers={"Cookie": f"__Host-dh_session={session}"}, timeout=10)
    assert board.status_code == 200, board.text
    assert 'class="banner"' not in board.text, "the console could not reach the delivery API"


def test_no_demo_account_signs_in_to_the_production_console(gateway: str) -> None:
    form = SignInForm.opened(gateway)
    assert DEMO_PASSWORD not in httpx.get(f"{gateway}/login", timeout=10).text, "the sign-in page shows it"
    for account in DEMO_ACCOUNTS:
        refused = form.submit(account.email, DEMO_PASSWORD)
        assert refused.status_code == 401, f"{account.email} signed in with the demo password"


def test_a_forged_x_forwarded_for_does_not_escape_the_sign_in_limit(gateway: str) -> None:
    """Each attempt claims another address and another account; the gateway names the visitor itself,
    and the console counts them all against the one address they come from. It spends that
    address's sign-ins for a while: no later test signs in."""
    form = SignInForm.opened(gateway)
    statuses: list[int] = []
    for attempt in range(30):
        answer = form.submit(
            f"nobody-{attempt}@shop.example",
            "not-the-password",
            headers={"X-Forwarded-For": f"203.0.113.{attempt + 1}", "X-Real-IP": f"203.0.113.{attempt + 1}"},
        )
        statuses.append(answer.status_code)
        if answer.status_code == 429:
            # The console's own limit, not the gateway's.
            assert "Too many sign-in attempts" in answer.text, answer.text
    refused = statuses.index(429) if 429 in statuses else len(statuses)
    assert 0 < refused < len(statuses), f"30 forged addresses were counted as 30 visitors: {statuses}"
    assert statuses == [401] * refused + [429] * (len(statuses) - refused), statuses


def test_every_process_stops_cleanly_on_sigterm(stack: Stack) -> None:
    codes = stack.stop()
    assert set(codes) == {"orders", "delivery", "web", "gateway"}
    # uvicorn ends by re-raising the signal it handled, so a clean stop also reads as "terminated".
    failed = {
        name: code
        for name, code in codes.items()
        if code not in (0, -signal.SIGTERM)
        or (name != "gateway" and "Application shutdown complete" not in stack.log(name))
    }
    assert not failed, "\n".join(f"{name} exited {code}:\n{stack.log(name)}" for name, code in failed.items())
