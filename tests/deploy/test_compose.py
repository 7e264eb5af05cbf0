"""compose.yaml: accepted by docker-compose, wired to what the services read, startable in order."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import TypeAdapter

from deliveryhub_kit.broker_access import ENVIRONMENT_VARIABLES, SERVICE_ROLES, AccessJob, BrokerUser
from deliveryhub_kit.keys import main as make_keys
from deliveryhub_kit.settings import ServiceSettings
from deliveryhub_web.settings import WebSettings

from .artifacts import (
    COMPOSE_DEMO_FILE,
    POSTGRES_INIT,
    POSTGRES_INIT_RUNNER,
    RABBITMQ_CONFIG,
    REPOSITORY,
    SERVICES,
    Json,
    PostgresInit,
    ServiceCode,
    broker_access_jobs,
    code_of,
    command_of,
    dependencies,
    environment_names,
    fixed_addresses,
    healthcheck_of,
    is_one_shot,
    kubernetes_documents,
    kubernetes_manifests,
    named_mounts,
    parse_dockerfile,
    published_ports,
    raw_compose,
    resolve_compose,
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

    settings_from(environment, code, monkeypatch, tmp_path)


@dataclass(frozen=True)
class KeyVolumes:
    """Folders standing in for the named volumes, filled by the keys job's own command."""

    root: Path

    @classmethod
    def made_by_the_keys_job(cls, compose_services: dict[str, Json], root: Path) -> KeyVolumes:
        volumes = cls(root)
        keys_job = compose_services["keys"]
        command = command_of(keys_job)
        assert command[:3] == ["python", "-m", "deliveryhub_kit.keys"]
        make_keys([str(volumes.on_host(argument, keys_job)) for argument in command[3:]])
        return volumes

    def on_host(self, container_path: str, service: Json) -> Path:
        """Where a path inside one of the service's volumes is here."""
        path = PurePosixPath(container_path)
        for mount in named_mounts(service):
            if path.is_relative_to(mount.target):
                return self.root / mount.volume / path.relative_to(mount.target)
        raise AssertionError(f"{container_path} is in no volume of the service")

    def volume(self, name: str) -> Path:
        return self.root / name


def test_key_files_are_in_the_volumes_the_keys_job_fills(
    compose_services: dict[str, Json], tmp_path: Path
) -> None:
    """Run the keys job's command on stand-in volumes; every *_FILE a service names is then there."""
    volumes = KeyVolumes.made_by_the_keys_job(compose_services, tmp_path)
    keys_job = compose_services["keys"]

    for name, (service, _) in workspace_services(compose_services).items():
        if service is keys_job:
            continue
        files = {k: v for k, v in service.get("environment", {}).items() if k.endswith("_FILE")}
        for variable, container_path in files.items():
            assert volumes.on_host(str(container_path), service).is_file(), f"{name}'s {variable} is not made"
        for mount in named_mounts(service):
            assert mount.read_only, f"{name} can change the key material in {mount.volume}"
            if name != "web":
                assert not (volumes.volume(mount.volume) / "jwt-private.pem").exists(), (
                    f"{name} can read the private key"
                )


def test_urls_name_the_servers_their_credentials_and_the_init_scripts_databases(
    compose_services: dict[str, Json],
) -> None:
    postgres = compose_services["postgres"]
    rabbitmq = compose_services["rabbitmq"]["environment"]
    init = PostgresInit.read()
    mounted = {
        Path(source): PurePosixPath(target)
        for source, target, *_ in (str(entry).split(":") for entry in postgres["volumes"])
    }
    # The image runs what is in docker-entrypoint-initdb.d; the runner reads the statements where
    # they are mounted.
    assert mounted.get(POSTGRES_INIT_RUNNER, PurePosixPath()).parent == PurePosixPath(
        "/docker-entrypoint-initdb.d"
    )
    assert mounted[POSTGRES_INIT_RUNNER].suffix == ".sh", "the image runs only *.sh and *.sql files"
    assert mounted.get(POSTGRES_INIT) == init.script_path, "the runner reads a file compose does not mount"
    assert mounted[POSTGRES_INIT].parent != PurePosixPath("/docker-entrypoint-initdb.d"), (
        "the image would run the statements without their passwords"
    )

    roles: dict[str, str] = {}
    for name, (service, code) in workspace_services(compose_services).items():
        environment = service.get("environment", {})
        if "DATABASE_URL" in environment:
            url = urlsplit(environment["DATABASE_URL"])
            assert (url.hostname, url.port) == ("postgres", 5432), name
            database = url.path.lstrip("/")
            assert database in {role.database for role in init.roles.values()}, (
                f"{name} uses {database}, which the init script does not create"
            )
            owner = init.role_of(database)
            assert url.username == owner.name, f"{name} connects as {url.username}, not as {database}'s owner"
            assert url.username != postgres["environment"]["POSTGRES_USER"], (
                f"{name} connects as the superuser"
            )
            # The very password the runner gives the role.
            variable = init.variables[owner.password_variable]
            assert url.password == postgres["environment"][variable], f"{name}'s password is not {variable}"
            assert roles.setdefault(code.name, owner.name) == owner.name, "a service's job and process differ"
        if "AMQP_URL" in environment:
            url = urlsplit(environment["AMQP_URL"])
            assert (url.hostname, url.port) == ("rabbitmq", 5672), name
            assert url.username != rabbitmq["RABBITMQ_DEFAULT_USER"], f"{name} connects as the administrator"
    assert len(set(roles.values())) == len(roles) == len(SERVICES), f"one role per service: {roles}"
    assert {init.roles[role].database for role in roles.values()} <= init.closed, (
        "every role may still connect to another service's database"
    )


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


def settings_from(
    environment: dict[str, str], code: ServiceCode, monkeypatch: pytest.MonkeyPatch, where: Path
) -> ServiceSettings:
    """The service's settings with only these variables: nothing from this shell, no .env."""
    for variable in environment_names(code.settings):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(where)
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    return code.settings()


def demo_accounts_on(environment: dict[str, Any]) -> bool:
    return "DEMO_ACCOUNTS" in environment and TypeAdapter(bool).validate_python(environment["DEMO_ACCOUNTS"])


@pytest.fixture(scope="module")
def demo_services(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Json]:
    """compose.yaml with the demo override after it, as `docker compose -f … -f … up` merges them."""
    empty_env_file = tmp_path_factory.mktemp("compose-demo") / "empty.env"
    empty_env_file.write_text("")
    services: dict[str, Json] = resolve_compose(empty_env_file, COMPOSE_DEMO_FILE)["services"]
    return services


def test_the_console_of_compose_yaml_runs_in_production_without_demo_accounts(
    compose_services: dict[str, Json], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    environment = {key: str(value) for key, value in compose_services["web"]["environment"].items()}
    assert environment["ENVIRONMENT"] == "production"
    settings = settings_from(environment, SERVICES["web"], monkeypatch, tmp_path)
    assert isinstance(settings, WebSettings)
    assert not settings.seeds_demo_accounts, "anyone reaching the gateway could sign in as the shop manager"


def test_only_the_demo_override_turns_the_demo_accounts_on(
    compose_services: dict[str, Json], demo_services: dict[str, Json]
) -> None:
    for name, service in compose_services.items():
        assert not demo_accounts_on(service.get("environment", {})), (
            f"compose.yaml gives {name} demo accounts"
        )
    for manifest in kubernetes_manifests():
        for document in kubernetes_documents(manifest):
            if document["kind"] == "ConfigMap":
                assert not demo_accounts_on(document["data"]), f"{manifest.name} turns the demo accounts on"

    # The override changes the console's mode and its demo accounts, and nothing else.
    override = yaml.safe_load(COMPOSE_DEMO_FILE.read_text())
    assert set(override) == {"services"}
    assert set(override["services"]) == {"web"}
    assert set(override["services"]["web"]) == {"environment"}
    assert set(override["services"]["web"]["environment"]) == {"ENVIRONMENT", "DEMO_ACCOUNTS"}
    assert demo_services.keys() == compose_services.keys()
    environment = compose_services["web"]["environment"]
    demo_environment = demo_services["web"]["environment"]
    assert {
        key
        for key in environment.keys() | demo_environment.keys()
        if environment.get(key) != demo_environment.get(key)
    } == {"ENVIRONMENT", "DEMO_ACCOUNTS"}
    assert demo_environment["ENVIRONMENT"] == "development"
    assert demo_accounts_on(demo_environment)


def test_the_demo_console_signs_with_the_keys_jobs_files(
    demo_services: dict[str, Json], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """In development the console would make keys of its own where none are named: it must not."""
    volumes = KeyVolumes.made_by_the_keys_job(demo_services, tmp_path / "volumes")
    web = demo_services["web"]
    environment = {key: str(value) for key, value in web["environment"].items()}
    for variable, value in environment.items():
        if variable.endswith("_FILE"):
            environment[variable] = str(volumes.on_host(value, web))
    (tmp_path / "work").mkdir()
    settings = settings_from(environment, SERVICES["web"], monkeypatch, tmp_path / "work")
    assert isinstance(settings, WebSettings)
    assert settings.seeds_demo_accounts
    signing_key = volumes.on_host(web["environment"]["JWT_PRIVATE_KEY_FILE"], web)
    assert settings.private_key_pem() == signing_key.read_text()
    # The APIs verify with the public key the job shared.
    public_key = volumes.on_host(
        demo_services["orders"]["environment"]["JWT_PUBLIC_KEY_FILE"], demo_services["orders"]
    )
    assert settings.public_key_pem() == public_key.read_text()
    session_secret = volumes.on_host(web["environment"]["SESSION_SECRET_FILE"], web)
    assert settings.session_secret_value() == session_secret.read_text().strip()
    assert not (tmp_path / "work" / ".deliveryhub").exists(), "the console made keys of its own"


def test_the_services_believe_forwarded_headers_only_from_the_gateway(
    compose: Json, compose_services: dict[str, Json]
) -> None:
    addresses = fixed_addresses(compose_services)
    assert set(addresses) == {"gateway"}, f"only the gateway needs a fixed address: {addresses}"
    gateway = ipaddress.ip_address(addresses["gateway"])
    (network,) = compose_services["gateway"]["networks"]
    (subnet,) = compose["networks"][network]["ipam"]["config"]
    assert gateway in ipaddress.ip_network(subnet["subnet"])
    # Docker hands out addresses from ip_range to the other containers, which start first.
    assert gateway not in ipaddress.ip_network(subnet["ip_range"]), "another container may take its address"
    for name, (service, _) in workspace_services(compose_services).items():
        if is_one_shot(service):
            continue
        assert network in (service.get("networks") or {"default": None}), (
            f"{name} is not on the gateway's network"
        )
        trusted = str(service["environment"].get("FORWARDED_ALLOW_IPS", "127.0.0.1"))
        assert trusted != "*", f"{name} believes any caller's X-Forwarded-For"
        for entry in trusted.split(","):
            assert ipaddress.ip_network(entry.strip()) == ipaddress.ip_network(gateway), (
                f"{name} believes X-Forwarded-For from {entry}, not only from the gateway"
            )
    assert compose_services["web"]["environment"]["FORWARDED_ALLOW_IPS"] == str(gateway), (
        "the console counts sign-ins per visitor: it must hear the visitor's address from the gateway"
    )


def test_the_observability_tools_face_the_hosts_loopback_only_and_grafana_asks_for_a_password(
    compose_services: dict[str, Json], tmp_path: Path
) -> None:
    tools = {
        name: service
        for name, service in compose_services.items()
        if "observability" in service.get("profiles", [])
    }
    assert set(tools) >= {"prometheus", "grafana", "jaeger"}
    for name, service in tools.items():
        ports = published_ports(service)
        assert ports, f"{name} publishes nothing"
        for port in ports:
            assert port.host_ip == "127.0.0.1", f"{name} publishes {port.published} on {port.host_ip}"

    grafana = compose_services["grafana"]["environment"]
    assert not TypeAdapter(bool).validate_python(grafana.get("GF_AUTH_ANONYMOUS_ENABLED", "false"))
    written = raw_compose()["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    variable = re.fullmatch(r"\$\{(\w+):-[^}]+\}", str(written))
    assert variable, f"Grafana's password is {written}, not a variable with a development default"
    chosen = "chosen-by-the-operator"
    env_file = tmp_path / "chosen.env"
    env_file.write_text(f"{variable.group(1)}={chosen}\n")
    resolved = resolve_compose(env_file)["services"]["grafana"]["environment"]
    assert resolved["GF_SECURITY_ADMIN_PASSWORD"] == chosen
