"""compose.yaml: accepted by docker-compose, wired to what the services read, startable in order."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest

from deliveryhub_kit.broker_access import ENVIRONMENT_VARIABLES, SERVICE_ROLES, AccessJob, BrokerUser
from deliveryhub_kit.keys import main as make_keys
from deliveryhub_kit.settings import ServiceSettings

from .artifacts import (
    POSTGRES_INIT,
    RABBITMQ_CONFIG,
    REPOSITORY,
    SERVICES,
    Json,
    ServiceCode,
    broker_access_jobs,
    code_of,
    command_of,
    dependencies,
    environment_names,
    healthcheck_of,
    is_one_shot,
    named_mounts,
    parse_dockerfile,
    raw_compose,
    unread_variables,
    uses_broker,
)

SCALED_SERVICES = ("orders", "delivery", "web")


def workspace_services(services: dict[str, Json]) -> dict[str, tuple[Json, ServiceCode]]:
    """The compose services that run one of the workspace's images."""
    found: dict[str, tuple[Json, ServiceCode]] = {}
    for name, service in services.items():
        code = code_of(service)
        if code is not None:
            found[name] = (service, code)
    return found


def test_docker_compose_accepts_the_file_and_it_has_every_part(compose: Json) -> None:
    assert "version" not in raw_compose(), "the Compose Specification has no `version:` key"
    assert set(compose["services"]) >= {
        "postgres",
        "rabbitmq",
        "keys",
        "orders-migrate",
        "delivery-migrate",
        "web-migrate",
        "broker-access",
        "orders",
        "delivery",
        "web",
        "gateway",
    }


def test_each_image_is_built_once_and_before_any_service_runs_it(compose_services: dict[str, Json]) -> None:
    """Two builds of one tag collide (compose builds in parallel); a service started before its
    image is built would try to pull it (docker-compose 1.x starts in dependency order)."""
    builders: dict[str, str] = {}
    for name, service in compose_services.items():
        if "build" in service:
            code = code_of(service)
            assert code is not None, f"{name} builds an image of no service"
            assert Path(service["build"]["context"]) == REPOSITORY
            assert (REPOSITORY / service["build"]["dockerfile"]).resolve() == code.dockerfile
            assert service["image"] not in builders, (
                f"{name} and {builders[service['image']]} build one image"
            )
            assert service["pull_policy"] == "build", "never pull an image of this repository"
            builders[service["image"]] = name
    assert len(builders) == len(SERVICES)
    for name, service in compose_services.items():
        if code_of(service) is not None and "build" not in service:
            assert service["pull_policy"] == "never", f"{name} would pull an image of this repository"
            assert builders[service["image"]] in dependencies(name, compose_services), (
                f"{name} may start before {builders[service['image']]} builds its image"
            )


def test_every_long_running_service_has_a_health_check(compose_services: dict[str, Json]) -> None:
    for name, service in compose_services.items():
        if not is_one_shot(service):
            assert healthcheck_of(service), f"{name} runs on but has no health check"


def test_every_dependency_is_a_healthy_service_or_a_finished_job(compose_services: dict[str, Json]) -> None:
    for name, service in compose_services.items():
        for target, condition in service.get("depends_on", {}).items():
            awaited = compose_services[target]
            if condition["condition"] == "service_healthy":
                assert not is_one_shot(awaited), f"{name} waits for {target}, a job, to be healthy"
                assert healthcheck_of(awaited), f"{name} waits for {target}, which has no health check"
            else:
                assert condition["condition"] == "service_completed_successfully", (name, target, condition)
                assert is_one_shot(awaited), f"{name} waits for {target} to finish, which runs on"
                assert healthcheck_of(awaited) is None, f"{target} is a job: its image's health check is off"


def test_each_service_waits_for_its_migration_the_keys_and_its_servers(
    compose_services: dict[str, Json],
) -> None:
    for name, (service, code) in workspace_services(compose_services).items():
        if is_one_shot(service):
            continue
        waits_for = service["depends_on"]
        migrations = [
            target
            for target in waits_for
            if code_of(compose_services[target]) == code
            and command_of(compose_services[target]) == ["python", "-m", code.package, "migrate"]
        ]
        assert migrations, f"{name} does not wait for `python -m {code.package} migrate`"
        assert "postgres" in waits_for
        assert ("rabbitmq" in waits_for) == uses_broker(code), name
        # Its broker user exists, with its rights, before it connects.
        assert bool(set(broker_access_jobs(compose_services)) & set(waits_for)) == uses_broker(code), name
        keys_jobs = [
            target
            for target in waits_for
            if code_of(compose_services[target])
            and command_of(compose_services[target])[:3] == ["python", "-m", "deliveryhub_kit.keys"]
        ]
        assert keys_jobs, f"{name} does not wait for the key material"


def test_the_scaled_services_have_no_fixed_name_or_host_port(compose_services: dict[str, Json]) -> None:
    for name in SCALED_SERVICES:
        service = compose_services[name]
        assert "container_name" not in service, name
        assert not service.get("ports"), f"{name} publishes a host port, so it cannot scale"
    for name, (service, _) in workspace_services(compose_services).items():
        assert not service.get("ports"), f"{name} faces the host; the gateway is the way in"


def test_data_lives_in_named_volumes(compose: Json, compose_services: dict[str, Json]) -> None:
    declared = set(compose["volumes"])
    for name, service in compose_services.items():
        for mount in named_mounts(service):
            assert mount.volume in declared, f"{name} mounts an undeclared volume {mount.volume}"
    targets = {
        name: {mount.target for mount in named_mounts(service)} for name, service in compose_services.items()
    }
    assert PurePosixPath("/var/lib/postgresql/data") in targets["postgres"]
    assert PurePosixPath("/var/lib/rabbitmq") in targets["rabbitmq"]


@pytest.mark.parametrize(
    "service_name", ["orders", "delivery", "web", "orders-migrate", "delivery-migrate", "web-migrate"]
)
def test_the_environment_is_what_the_settings_read(
    service_name: str, compose_services: dict[str, Json], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every variable is one the service reads, and with them alone it starts in production."""
    service = compose_services[service_name]
    code = code_of(service)
    assert code is not None
    environment: dict[str, str] = {key: str(value) for key, value in service.get("environment", {}).items()}
    readable = environment_names(code.settings)
    unread = unread_variables(environment, code.settings)
    assert not unread, f"{service_name} sets {unread}, which {code.settings.__name__} does not read"
    needed = {"DATABASE_URL"}
    if not is_one_shot(service):
        needed |= {
            variable
            for variable, field_name in readable.items()
            if "://127.0.0.1" in str(code.settings.model_fields[field_name].default)
            and (field_name != "amqp_url" or uses_broker(code))
        }
        needed -= {"POSTGRES_URL"}
        assert environment.get("ENVIRONMENT") == "production", f"{service_name} must run as production"
    missing = needed - set(environment)
    assert not missing, f"{service_name} leaves {missing} at a default that points at the container itself"

    # Only the compose values: nothing inherited from this shell, no .env.
    for variable in readable:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    code.settings()


def test_key_files_are_in_the_volumes_the_keys_job_fills(
    compose_services: dict[str, Json], tmp_path: Path
) -> None:
    """Run the keys job's command on stand-in volumes; every *_FILE a service names is then there."""
    keys_job = compose_services["keys"]
    mounts = {mount.target: mount.volume for mount in named_mounts(keys_job)}
    command = command_of(keys_job)
    assert command[:3] == ["python", "-m", "deliveryhub_kit.keys"]
    volumes = {volume: tmp_path / volume for volume in mounts.values()}

    def on_host(container_path: str, service: Json) -> Path:
        path = PurePosixPath(container_path)
        for mount in named_mounts(service):
            if path.is_relative_to(mount.target):
                return volumes[mount.volume] / path.relative_to(mount.target)
        raise AssertionError(f"{container_path} is in no volume of the service")

    make_keys([str(on_host(argument, keys_job)) for argument in command[3:]])

    for name, (service, _) in workspace_services(compose_services).items():
        if service is keys_job:
            continue
        files = {k: v for k, v in service.get("environment", {}).items() if k.endswith("_FILE")}
        for variable, container_path in files.items():
            assert on_host(str(container_path), service).is_file(), f"{name}'s {variable} is not made"
        for mount in named_mounts(service):
            assert mount.read_only, f"{name} can change the key material in {mount.volume}"
            if name != "web":
                assert not (volumes[mount.volume] / "jwt-private.pem").exists(), (
                    f"{name} can read the private key"
                )


def test_urls_name_the_servers_their_credentials_and_the_init_scripts_databases(
    compose_services: dict[str, Json],
) -> None:
    postgres = compose_services["postgres"]["environment"]
    rabbitmq = compose_services["rabbitmq"]["environment"]
    created = set(re.findall(r"CREATE DATABASE (\w+);", POSTGRES_INIT.read_text()))
    mounted = [str(entry) for entry in compose_services["postgres"]["volumes"]]
    assert any(entry.startswith(str(POSTGRES_INIT) + ":/docker-entrypoint-initdb.d/") for entry in mounted), (
        "the init script is not mounted where the postgres image runs it"
    )

    databases: dict[str, str] = {}
    for name, (service, code) in workspace_services(compose_services).items():
        environment = service.get("environment", {})
        if "DATABASE_URL" in environment:
            url = urlsplit(environment["DATABASE_URL"])
            assert (url.hostname, url.port) == ("postgres", 5432), name
            assert (url.username, url.password) == (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"])
            database = url.path.lstrip("/")
            assert database in created, f"{name} uses {database}, which the init script does not create"
            assert databases.setdefault(code.name, database) == database, "a service's job and process differ"
        if "AMQP_URL" in environment:
            url = urlsplit(environment["AMQP_URL"])
            assert (url.hostname, url.port) == ("rabbitmq", 5672), name
            assert url.username != rabbitmq["RABBITMQ_DEFAULT_USER"], f"{name} connects as the administrator"
    assert len(set(databases.values())) == len(databases) == len(SERVICES), "one database per service"


def test_each_service_connects_as_its_own_user_which_the_access_job_makes(
    compose_services: dict[str, Json],
) -> None:
    (job_name,) = broker_access_jobs(compose_services)
    job = compose_services[job_name]["environment"]
    users: dict[str, str] = {}
    for role in SERVICE_ROLES:
        service = compose_services[role.service]
        amqp_url = service["environment"]["AMQP_URL"]
        # The very URL: the job makes this user, with this password, in this vhost.
        assert job[role.amqp_url_variable] == amqp_url, (
            f"{role.service} connects as a user the job does not make"
        )
        users[role.service] = BrokerUser.from_amqp_url(amqp_url).name
        assert job_name in service["depends_on"], f"{role.service} may connect before its user exists"
    assert len(set(users.values())) == len(users), f"the services share a broker user: {users}"
    for name, (service, code) in workspace_services(compose_services).items():
        if "AMQP_URL" in service.get("environment", {}):
            assert code.name in users, f"{name} connects to RabbitMQ with a user of no service's"


def test_the_access_job_runs_as_the_administrator_on_the_brokers_names(
    compose_services: dict[str, Json],
) -> None:
    (job_name,) = broker_access_jobs(compose_services)
    environment = {key: str(value) for key, value in compose_services[job_name]["environment"].items()}
    rabbitmq = compose_services["rabbitmq"]
    assert set(environment) <= set(ENVIRONMENT_VARIABLES), "a variable the entry point does not read"

    job = AccessJob.from_environment(environment)

    management = urlsplit(job.management_url)
    # The management UI's port in the container: `HOST:PORT:CONTAINER_PORT/PROTOCOL`, or the long form.
    listening = {
        int(port["target"]) if isinstance(port, dict) else int(str(port).rsplit(":", 1)[-1].split("/")[0])
        for port in rabbitmq["ports"]
    }
    assert management.hostname == "rabbitmq"
    assert management.port in listening, "the job asks another port than the management UI's"
    administrator = rabbitmq["environment"]
    assert (job.admin_user, job.admin_password) == (
        administrator["RABBITMQ_DEFAULT_USER"],
        administrator["RABBITMQ_DEFAULT_PASS"],
    )
    # The job's rights must name what the services declare: the same prefixes.
    for role in SERVICE_ROLES:
        service = compose_services[role.service]["environment"]
        assert environment.get("BROKER_PREFIX", "") == service.get("BROKER_PREFIX", ""), role.service
    delivery = compose_services["delivery"]["environment"]
    assert environment.get("LEGACY_QUEUE_PREFIX") == delivery.get("LEGACY_QUEUE_PREFIX")
    assert {"rabbitmq", "delivery-migrate"} <= set(compose_services[job_name]["depends_on"])


def test_rabbitmq_is_4_and_refuses_messages_over_2_mib(compose_services: dict[str, Json]) -> None:
    rabbitmq = compose_services["rabbitmq"]
    image, _, tag = str(rabbitmq["image"]).partition(":")
    assert image == "rabbitmq"
    assert tag.split("-")[0].split(".")[0] == "4", tag
    mounted = [str(entry).split(":") for entry in rabbitmq["volumes"]]
    config = [target for source, target, *_ in mounted if Path(source) == RABBITMQ_CONFIG]
    assert len(config) == 1, "deploy/rabbitmq/rabbitmq.conf is not mounted"
    target = PurePosixPath(config[0])
    assert target.parent == PurePosixPath("/etc/rabbitmq/conf.d"), target
    assert target.suffix == ".conf", "RabbitMQ reads only *.conf files from conf.d"
    lines = [
        line for line in RABBITMQ_CONFIG.read_text().splitlines() if line.strip() and line.strip()[0] != "#"
    ]
    settings = {key.strip(): value.strip() for key, _, value in (line.partition("=") for line in lines)}
    limit = int(settings["max_message_size"])
    assert limit == 2 * 1024 * 1024
    # A message the consumers would park unread (over MAX_MESSAGE_BYTES) still reaches them.
    assert limit > int(ServiceSettings.model_fields["max_message_bytes"].default)


def test_the_console_calls_the_apis_at_their_container_ports(compose_services: dict[str, Json]) -> None:
    environment = compose_services["web"]["environment"]
    for variable, target in (("ORDERS_URL", "orders"), ("DELIVERY_URL", "delivery")):
        url = urlsplit(environment[variable])
        assert url.hostname == target
        assert url.port == parse_dockerfile(SERVICES[target].dockerfile).port
