"""compose.yaml: accepted by docker-compose, wired to what the services read, startable in order."""

from __future__ import annotations

import ipaddress
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import TypeAdapter

from deliveryhub_kit.broker_access import (
    ADMIN_PASSWORD_FILE_VARIABLE,
    ADMIN_USER_VARIABLE,
    ENVIRONMENT_VARIABLES,
    SERVICE_ROLES,
    AccessJob,
)
from deliveryhub_kit.keys import main as make_keys
from deliveryhub_kit.keys import password_variable
from deliveryhub_kit.passwords import DEVELOPMENT_PASSWORDS, password_in, read_password_file
from deliveryhub_kit.settings import ServiceSettings
from deliveryhub_web.settings import WebSettings
from tests.support.artifacts import (
    COMPOSE_DEMO_FILE,
    COMPOSE_FILE,
    DOCKERFILE,
    OWNER_ARGUMENT,
    POSTGRES_INIT,
    POSTGRES_INIT_RUNNER,
    RABBITMQ_CONFIG,
    REPOSITORY,
    SERVICES,
    Json,
    Mount,
    PostgresInit,
    ServiceCode,
    broker_access_jobs,
    code_of,
    command_of,
    dependencies,
    environment_names,
    fixed_addresses,
    healthcheck_of,
    image_of,
    is_one_shot,
    keys_job_name,
    keys_job_of,
    kubernetes_documents,
    kubernetes_manifests,
    named_mounts,
    published_ports,
    raw_compose,
    reader_of,
    resolve_compose,
    runs_as,
    settings_from,
    this_user,
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
            assert (REPOSITORY / service["build"]["dockerfile"]).resolve() == DOCKERFILE
            assert service["build"]["args"]["SERVICE"] == code.name, f"{name} builds another service's image"
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
    """Every variable is one the service reads, and with them (and the keys job's files) alone it
    starts in production, with the passwords of its files."""
    service = compose_services[service_name]
    code = code_of(service)
    assert code is not None
    environment: dict[str, str] = {key: str(value) for key, value in service.get("environment", {}).items()}
    readable = environment_names(code.settings)
    unread = unread_variables(environment, code.settings)
    assert not unread, f"{service_name} sets {unread}, which {code.settings.__name__} does not read"
    needed = {"DATABASE_URL", "DATABASE_PASSWORD_FILE"}
    if not is_one_shot(service):
        needed |= {
            variable
            for variable, field_name in readable.items()
            if "://127.0.0.1" in str(code.settings.model_fields[field_name].default)
            and (field_name != "amqp_url" or uses_broker(code))
        }
        needed -= {"POSTGRES_URL"}
        if uses_broker(code):
            needed.add("AMQP_PASSWORD_FILE")
        assert environment.get("ENVIRONMENT") == "production", f"{service_name} must run as production"
    missing = needed - set(environment)
    assert not missing, f"{service_name} leaves {missing} at a default (or its password in no file)"

    volumes = KeyVolumes.made_by_the_keys_job(compose_services, tmp_path / "volumes")
    here = volumes.environment_of(service)
    (tmp_path / "work").mkdir()
    settings = settings_from(here, code, monkeypatch, tmp_path / "work")
    assert password_in(settings.database_url) == read_password_file(Path(here["DATABASE_PASSWORD_FILE"]))
    if "AMQP_PASSWORD_FILE" in here:
        assert password_in(settings.amqp_url) == read_password_file(Path(here["AMQP_PASSWORD_FILE"]))


@dataclass(frozen=True)
class KeyVolumes:
    """Folders standing in for the named volumes, filled by the keys job's own command and
    environment; every file it makes is this machine's user's (see OWNER_ARGUMENT)."""

    root: Path

    @classmethod
    def made_by_the_keys_job(
        cls, compose_services: dict[str, Json], root: Path, environment: dict[str, str] | None = None
    ) -> KeyVolumes:
        volumes = cls(root)
        keys_job = compose_services[keys_job_name(compose_services)]
        command = command_of(keys_job)
        given = {key: str(value) for key, value in keys_job.get("environment", {}).items()}
        make_keys([volumes.argument(argument, keys_job) for argument in command[3:]], environment or given)
        return volumes

    def argument(self, argument: str, service: Json) -> str:
        """One of the keys job's arguments as it runs here."""
        if argument.startswith("/"):
            return str(self.on_host(argument, service))
        return this_user() if OWNER_ARGUMENT.fullmatch(argument) else argument

    def on_host(self, container_path: str, service: Json) -> Path:
        """Where a path inside one of the service's volumes is here."""
        path = PurePosixPath(container_path)
        for mount in named_mounts(service):
            if path.is_relative_to(mount.target):
                return self.root / mount.volume / path.relative_to(mount.target)
        raise AssertionError(f"{container_path} is in no volume of the service")

    def environment_of(self, service: Json) -> dict[str, str]:
        """The service's environment, each path into one of its volumes as a path here."""
        environment = {key: str(value) for key, value in service.get("environment", {}).items()}
        return {
            key: str(self.on_host(value, service))
            if key in secret_files(service) or key.endswith("_FILE")
            else value
            for key, value in environment.items()
        }

    def volume(self, name: str) -> Path:
        return self.root / name


# The variables by which a part names a file holding a password: the services' and jobs' *_FILE,
# the postgres image's, Grafana's (…__FILE), and RabbitMQ's configuration file with its administrator's.
SECRET_FILE_VARIABLE = re.compile(r"\w*PASSWORD_{1,2}FILE|RABBITMQ_CONFIG_FILE")


def secret_files(service: Json) -> dict[str, PurePosixPath]:
    """The files holding a password that the service reads, by the variable naming each."""
    return {
        variable: PurePosixPath(str(value))
        for variable, value in service.get("environment", {}).items()
        if SECRET_FILE_VARIABLE.fullmatch(variable)
    }


def mount_of(service: Json, path: PurePosixPath) -> Mount:
    (mount,) = [mount for mount in named_mounts(service) if path.is_relative_to(mount.target)]
    return mount


def secrets_volumes(services: dict[str, Json]) -> dict[str, KeysJobFolder]:
    """Each volume the keys job hands passwords out into: who it is made for, and which files."""
    keys_job = services[keys_job_name(services)]
    job = keys_job_of(services)
    folders: dict[str, KeysJobFolder] = {}
    for copies in job.copies:
        mount = mount_of(keys_job, PurePosixPath(copies.folder))
        assert PurePosixPath(copies.folder) == mount.target, f"{copies.folder} is not a volume of its own"
        folders[mount.volume] = KeysJobFolder(str(copies.owner), frozenset(copies.names))
    for administrator in job.rabbitmq_administrators:
        mount = mount_of(keys_job, PurePosixPath(administrator.path))
        assert PurePosixPath(administrator.path).parent == mount.target
        folders[mount.volume] = KeysJobFolder(str(administrator.owner), frozenset({administrator.path.name}))
    return folders


@dataclass(frozen=True)
class KeysJobFolder:
    owner: str
    files: frozenset[str]


def test_no_password_has_a_default_and_only_the_keys_job_is_given_one(
    compose_services: dict[str, Json],
) -> None:
    """A deployment that sets nothing runs on passwords the keys job made, never on ones in this file."""
    text = COMPOSE_FILE.read_text()
    for variable, default in re.findall(r"\$\{(\w+):?[-?]([^}]*)\}", text):
        if "PASS" in variable:
            assert default == "", f"${{{variable}}} defaults to a password anyone can read here"
    keys_name = keys_job_name(compose_services)
    job = keys_job_of(compose_services)
    # The variables the job reads are those of the passwords it makes, derived from their names.
    keys_environment = compose_services[keys_name]["environment"]
    assert set(keys_environment) == {password_variable(name) for name in job.password_names}
    assert all(value == "" for value in keys_environment.values()), "an empty env file sets no password"
    for name, service in compose_services.items():
        if name == keys_name:
            continue
        for variable, value in service.get("environment", {}).items():
            if "PASS" in variable:
                assert SECRET_FILE_VARIABLE.fullmatch(variable), f"{name} is given {variable} itself"
            if "://" in str(value):
                assert urlsplit(str(value)).password is None, f"{name}'s {variable} carries a password"


def test_every_password_a_part_uses_is_a_file_of_the_keys_job_in_a_volume_of_its_own(
    compose_services: dict[str, Json], tmp_path: Path
) -> None:
    volumes = KeyVolumes.made_by_the_keys_job(compose_services, tmp_path)
    folders = secrets_volumes(compose_services)
    keys_name = keys_job_name(compose_services)
    readers = {name for name, service in compose_services.items() if secret_files(service)}
    assert readers >= {"postgres", "rabbitmq", "grafana", "broker-access", *SERVICES}
    for name in readers:
        service = compose_services[name]
        for variable, path in secret_files(service).items():
            mount = mount_of(service, path)
            assert mount.volume in folders, (
                f"{name}'s {variable} is in {mount.volume}, which the keys job fills not"
            )
            assert mount.read_only, f"{name} can change its passwords in {mount.volume}"
            assert path.relative_to(mount.target).as_posix() in folders[mount.volume].files, (
                f"the keys job makes no {path.name} in {mount.volume}"
            )
            owner = folders[mount.volume].owner
            assert owner == runs_as(service), (
                f"{mount.volume} is {owner}'s, but {name} runs as {runs_as(service)}"
            )
            made = volumes.on_host(str(path), service)
            assert stat.S_IMODE(made.stat().st_mode) == 0o600, made
            assert stat.S_IMODE(made.parent.stat().st_mode) == 0o700, made.parent
            assert read_password_file(made), f"{name}'s {variable} is empty"
    # The job's own copy of every password is its alone.
    store = compose_services[keys_name]
    job = keys_job_of(compose_services)
    assert job.password_store is not None
    (store_volume,) = [m.volume for m in named_mounts(store) if m.target == PurePosixPath(job.password_store)]
    mounting = {name for name, service in compose_services.items() if store_volume in volume_names(service)}
    assert mounting == {keys_name}, f"{mounting - {keys_name}} can read every password"


def volume_names(service: Json) -> set[str]:
    return {mount.volume for mount in named_mounts(service)}


def test_no_two_parts_share_a_secrets_volume_and_each_holds_only_what_its_reader_uses(
    compose_services: dict[str, Json],
) -> None:
    keys_name = keys_job_name(compose_services)
    for volume, folder in secrets_volumes(compose_services).items():
        mounting = {name for name, service in compose_services.items() if volume in volume_names(service)} - {
            keys_name
        }
        # A service's migration job reads for it, and from its volume.
        readers = {reader_of(name, compose_services) for name in mounting}
        assert len(readers) == 1, f"{sorted(mounting)} share {volume}"
        used: set[str] = set()
        for name in mounting:
            service = compose_services[name]
            target = next(mount.target for mount in named_mounts(service) if mount.volume == volume)
            files = {
                p.relative_to(target).as_posix()
                for p in secret_files(service).values()
                if p.is_relative_to(target)
            }
            assert files, f"{name} mounts {volume} but reads nothing from it"
            used |= files
        assert folder.files == used, (
            f"{volume} also holds {sorted(folder.files - used)}, which {readers} does not use"
        )


def test_the_passwords_are_random_kept_and_the_same_at_both_ends(
    compose_services: dict[str, Json], tmp_path: Path
) -> None:
    """Both ends of each login read one password: a role's and its service's, a broker user's and the
    access job's, the broker administrator's and the access job's."""
    volumes = KeyVolumes.made_by_the_keys_job(compose_services, tmp_path)

    def read(name: str, variable: str) -> str:
        service = compose_services[name]
        return read_password_file(volumes.on_host(str(service["environment"][variable]), service))

    init = PostgresInit.read()
    passwords: dict[str, str] = {}
    for name, (service, _) in workspace_services(compose_services).items():
        if "DATABASE_URL" in service.get("environment", {}):
            database_role = init.role_of(urlsplit(service["environment"]["DATABASE_URL"]).path.lstrip("/"))
            password = read(name, "DATABASE_PASSWORD_FILE")
            assert password == read("postgres", init.password_files[database_role.password_variable]), (
                f"{name} connects with another password than its role was made with"
            )
            passwords[f"role {database_role.name}"] = password
    (job_name,) = broker_access_jobs(compose_services)
    for role in SERVICE_ROLES:
        password = read(role.service, "AMQP_PASSWORD_FILE")
        assert password == read(job_name, role.amqp_password_file_variable), (
            f"{role.service} connects with another password than the access job gives its user"
        )
        passwords[f"broker user of {role.service}"] = password

    administrator = rabbitmq_administrator(compose_services, volumes)
    job = compose_services[job_name]["environment"]
    assert administrator["default_user"] == job[ADMIN_USER_VARIABLE]
    assert administrator["default_pass"] == read(job_name, ADMIN_PASSWORD_FILE_VARIABLE)
    passwords["broker administrator"] = administrator["default_pass"]
    passwords["postgres superuser"] = read("postgres", "POSTGRES_PASSWORD_FILE")
    passwords["grafana admin"] = read("grafana", "GF_SECURITY_ADMIN_PASSWORD__FILE")

    assert len(set(passwords.values())) == len(passwords), "two logins share a password"
    for who, password in passwords.items():
        assert len(password) >= 32, who
        assert password not in DEVELOPMENT_PASSWORDS, who
    # A later start keeps them: the roles and the broker's users were made with these.
    again = KeyVolumes.made_by_the_keys_job(compose_services, tmp_path)
    assert (
        rabbitmq_administrator(compose_services, again)["default_pass"] == passwords["broker administrator"]
    )
    assert read("postgres", "POSTGRES_PASSWORD_FILE") == passwords["postgres superuser"]


def rabbitmq_administrator(compose_services: dict[str, Json], volumes: KeyVolumes) -> dict[str, str]:
    """The settings of the configuration file RabbitMQ reads its administrator from."""
    rabbitmq = compose_services["rabbitmq"]
    text = volumes.on_host(str(rabbitmq["environment"]["RABBITMQ_CONFIG_FILE"]), rabbitmq).read_text()
    lines = [line.partition("=") for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return {key.strip(): value.strip() for key, _, value in lines}


def test_a_password_the_operator_sets_wins_and_a_development_one_is_refused(
    compose_services: dict[str, Json], tmp_path: Path
) -> None:
    chosen = "chosen-by-the-operator.1"
    env_file = tmp_path / "chosen.env"
    env_file.write_text(f"RABBITMQ_ORDERS_PASSWORD={chosen}\nGRAFANA_ADMIN_PASSWORD={chosen}-too\n")
    resolved = resolve_compose(env_file)["services"]
    volumes = KeyVolumes.made_by_the_keys_job(resolved, tmp_path / "volumes")
    for name, variable in (("orders", "AMQP_PASSWORD_FILE"), ("broker-access", "ORDERS_AMQP_PASSWORD_FILE")):
        service = resolved[name]
        assert volumes.on_host(service["environment"][variable], service).read_text() == chosen, name
    grafana = resolved["grafana"]
    made = volumes.on_host(grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"], grafana)
    assert made.read_text() == f"{chosen}-too"

    keys_environment = {key: str(value) for key, value in compose_services["keys"]["environment"].items()}
    for refused in ("orders", "guest"):
        with pytest.raises(SystemExit, match="RABBITMQ_ORDERS_PASSWORD is a development value"):
            KeyVolumes.made_by_the_keys_job(
                compose_services,
                tmp_path / refused,
                {**keys_environment, "RABBITMQ_ORDERS_PASSWORD": refused},
            )


def test_the_keys_job_runs_as_root_with_only_the_rights_to_hand_files_out(
    compose_services: dict[str, Json],
) -> None:
    keys_job = compose_services[keys_job_name(compose_services)]
    assert runs_as(keys_job) == "0:0"
    assert keys_job["cap_drop"] == ["ALL"]
    assert set(keys_job["cap_add"]) == {"CHOWN", "DAC_OVERRIDE", "FOWNER"}
    # Its token keys are the services' to read, who run as the images' user.
    job = keys_job_of(compose_services)
    assert str(job.owner) == runs_as(compose_services["web"]) == runs_as(compose_services["orders"])


def test_the_servers_read_their_passwords_from_files_after_the_keys_job(
    compose_services: dict[str, Json],
) -> None:
    postgres = compose_services["postgres"]["environment"]
    assert "POSTGRES_PASSWORD_FILE" in postgres
    assert "POSTGRES_PASSWORD" not in postgres
    rabbitmq = compose_services["rabbitmq"]["environment"]
    # RabbitMQ reads it as rabbitmq.conf (by its extension), then conf.d's files, which name no user.
    assert PurePosixPath(rabbitmq["RABBITMQ_CONFIG_FILE"]).suffix == ".conf"
    assert not {"RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS"} & set(rabbitmq)
    assert "default_" not in RABBITMQ_CONFIG.read_text()
    grafana = compose_services["grafana"]["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD__FILE" in grafana
    assert "GF_SECURITY_ADMIN_PASSWORD" not in grafana
    keys_name = keys_job_name(compose_services)
    for name, service in compose_services.items():
        if secret_files(service):
            assert service["depends_on"][keys_name]["condition"] == "service_completed_successfully", (
                f"{name} may start before its passwords are made"
            )


def test_key_files_are_in_the_volumes_the_keys_job_fills(
    compose_services: dict[str, Json], tmp_path: Path
) -> None:
    """Run the keys job's command on stand-in volumes; every *_FILE a service names is then there."""
    volumes = KeyVolumes.made_by_the_keys_job(compose_services, tmp_path)
    keys_job = compose_services[keys_job_name(compose_services)]

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


def test_urls_name_the_servers_their_users_and_the_init_scripts_databases(
    compose_services: dict[str, Json],
) -> None:
    postgres = compose_services["postgres"]
    init = PostgresInit.read()
    mounted = {
        Path(source): PurePosixPath(target)
        for source, target, *_ in (str(entry).split(":") for entry in postgres["volumes"])
        if source.startswith(("/", "."))
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
    # The runner reads each role's password from a file the postgres service names.
    assert set(init.password_files.values()) <= set(secret_files(postgres))

    (job_name,) = broker_access_jobs(compose_services)
    administrator = compose_services[job_name]["environment"][ADMIN_USER_VARIABLE]
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
            assert roles.setdefault(code.name, owner.name) == owner.name, "a service's job and process differ"
        if "AMQP_URL" in environment:
            url = urlsplit(environment["AMQP_URL"])
            assert (url.hostname, url.port) == ("rabbitmq", 5672), name
            assert url.username != administrator, f"{name} connects as the administrator"
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
        # The very URL: the job makes this user, in this vhost (with the password of the same file's).
        assert job[role.amqp_url_variable] == amqp_url, (
            f"{role.service} connects as a user the job does not make"
        )
        users[role.service] = str(urlsplit(amqp_url).username)
        assert job_name in service["depends_on"], f"{role.service} may connect before its user exists"
    assert len(set(users.values())) == len(users), f"the services share a broker user: {users}"
    for name, (service, code) in workspace_services(compose_services).items():
        if "AMQP_URL" in service.get("environment", {}):
            assert code.name in users, f"{name} connects to RabbitMQ with a user of no service's"


def test_the_access_job_runs_as_the_administrator_on_the_brokers_names(
    compose_services: dict[str, Json], tmp_path: Path
) -> None:
    (job_name,) = broker_access_jobs(compose_services)
    service = compose_services[job_name]
    environment = {key: str(value) for key, value in service["environment"].items()}
    rabbitmq = compose_services["rabbitmq"]
    assert set(environment) <= set(ENVIRONMENT_VARIABLES), "a variable the entry point does not read"

    volumes = KeyVolumes.made_by_the_keys_job(compose_services, tmp_path)
    job = AccessJob.from_environment(volumes.environment_of(service))

    management = urlsplit(job.management_url)
    # The management UI's port in the container: `HOST:PORT:CONTAINER_PORT/PROTOCOL`, or the long form.
    listening = {
        int(port["target"]) if isinstance(port, dict) else int(str(port).rsplit(":", 1)[-1].split("/")[0])
        for port in rabbitmq["ports"]
    }
    assert management.hostname == "rabbitmq"
    assert management.port in listening, "the job asks another port than the management UI's"
    administrator = rabbitmq_administrator(compose_services, volumes)
    assert (job.admin_user, job.admin_password) == (
        administrator["default_user"],
        administrator["default_pass"],
    )
    # The users it makes have the passwords their services read.
    for role, user in job.users:
        mapped = volumes.environment_of(compose_services[role.service])
        assert user.password == read_password_file(Path(mapped["AMQP_PASSWORD_FILE"])), role.service
    # The job's rights must name what the services declare: the same prefixes.
    for role in SERVICE_ROLES:
        service_environment = compose_services[role.service]["environment"]
        assert environment.get("BROKER_PREFIX", "") == service_environment.get("BROKER_PREFIX", ""), (
            role.service
        )
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
        assert url.port == image_of(SERVICES[target]).port


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
    volumes = KeyVolumes.made_by_the_keys_job(compose_services, tmp_path / "volumes")
    environment = volumes.environment_of(compose_services["web"])
    assert environment["ENVIRONMENT"] == "production"
    (tmp_path / "work").mkdir()
    settings = settings_from(environment, SERVICES["web"], monkeypatch, tmp_path / "work")
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
    compose_services: dict[str, Json],
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
    # Its admin's password is a file of the keys job's (see the tests of the passwords above).
    assert "GF_SECURITY_ADMIN_PASSWORD__FILE" in secret_files(compose_services["grafana"])
