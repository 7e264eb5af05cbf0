"""The deployment files read as their tools read them: the Dockerfile, .dockerignore, compose, nginx, k8s."""

from __future__ import annotations

import functools
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices
from starlette import routing

from deliveryhub_delivery.settings import DeliverySettings
from deliveryhub_kit.keys import KeysJob
from deliveryhub_kit.settings import ServiceSettings
from deliveryhub_orders.settings import OrdersSettings
from deliveryhub_web.settings import WebSettings

REPOSITORY = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPOSITORY / "compose.yaml"
# The one Dockerfile of the three services' images, each built with its service's arguments.
DOCKERFILE = REPOSITORY / "Dockerfile"
# The development override: the console in development mode, with the demo accounts.
COMPOSE_DEMO_FILE = REPOSITORY / "compose.demo.yaml"
DOCKERIGNORE = REPOSITORY / ".dockerignore"
GATEWAY_CONFIG = REPOSITORY / "deploy" / "gateway" / "nginx.conf"
POSTGRES_INIT = REPOSITORY / "deploy" / "postgres" / "init-databases.sql"
# What the postgres image runs: the statements above, with the passwords from the environment.
POSTGRES_INIT_RUNNER = REPOSITORY / "deploy" / "postgres" / "init-databases.sh"
RABBITMQ_CONFIG = REPOSITORY / "deploy" / "rabbitmq" / "rabbitmq.conf"
KUBERNETES = REPOSITORY / "deploy" / "kubernetes"
IMAGE_PREFIX = "deliveryhub/"

Json = dict[str, Any]


@dataclass(frozen=True)
class ServiceCode:
    """One service of the workspace: its package and its settings."""

    name: str
    settings: type[ServiceSettings]

    @property
    def package(self) -> str:
        return f"deliveryhub_{self.name}"

    @property
    def distribution(self) -> str:
        return f"deliveryhub-{self.name}"


# Variables read by libraries rather than the settings: uvicorn (whose X-Forwarded-For to trust)
# and the OpenTelemetry SDK (where to send traces).
SERVER_VARIABLES = {"FORWARDED_ALLOW_IPS"}
SERVER_VARIABLE_PREFIXES = ("OTEL_",)

# DESIGN.md's public paths (its tables fix them) and the service each belongs to.
DESIGN_PATHS = {
    "/api/delivery/": "delivery",
    "/api/delivery/{id}": "delivery",
    "/api/delivery/{id}/appoint": "delivery",
    "/api/delivery/{id}/finish": "delivery",
    "/api/delivery/{id}/cancel": "delivery",
    "/api/deliverymen": "delivery",
    "/api/orders": "orders",
    "/api/orders/{id}": "orders",
    "/api/orders/{id}/pay": "orders",
    "/api/orders/{id}/cancel": "orders",
    "/": "web",
    "/login": "web",
}
SAMPLE_ID = "85db966c-67f1-411e-95c0-f02edfa5464a"

SERVICES = {
    code.name: code
    for code in (
        ServiceCode("orders", OrdersSettings),
        ServiceCode("delivery", DeliverySettings),
        ServiceCode("web", WebSettings),
    )
}


def uses_broker(code: ServiceCode) -> bool:
    """Whether the service's process connects to RabbitMQ (the console does not); nothing connects here."""
    create_app = importlib.import_module(f"{code.package}.app").create_app
    return create_app(code.settings()).state.runtime.broker is not None


@dataclass(frozen=True)
class Instruction:
    keyword: str
    flags: dict[str, str]
    arguments: str
    line: int

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form instruction; fails for the shell form."""
        text = self.arguments
        if self.keyword == "HEALTHCHECK":
            assert text.startswith("CMD "), f"line {self.line}: HEALTHCHECK without CMD"
            text = text.removeprefix("CMD ").strip()
        parsed = json.loads(text) if text.startswith("[") else None
        assert isinstance(parsed, list), f"line {self.line}: {self.keyword} is not in exec form: {text}"
        return [str(part) for part in parsed]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [instruction for instruction in self.instructions if instruction.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"the stage FROM {self.base} has no {keyword}"
        return found[-1]

    def environment(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for pair in shlex.split(instruction.arguments):
                name, _, value = pair.partition("=")
                values[name] = value
        return values

    def workdir_at(self, instruction: Instruction) -> PurePosixPath:
        workdir = PurePosixPath("/")
        for earlier in self.instructions:
            if earlier is instruction:
                break
            if earlier.keyword == "WORKDIR":
                workdir = workdir / earlier.arguments
        return workdir


# A CMD or HEALTHCHECK through a shell, `sh -c SCRIPT`, whose SCRIPT stays one program's command
# line: no operator, no command substitution.
SHELL = ["sh", "-c"]
_SHELL_OPERATOR = re.compile(r"[();<>|&]+")
_SUBSTITUTION = ("$(", "`")


def shell_words(script: str, environment: dict[str, str]) -> list[str]:
    """The words of a one-command shell script as sh reads them with `environment`: quotes removed,
    variables filled in; an unset variable fails."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    operators = [token for token in lexer if _SHELL_OPERATOR.fullmatch(token)]
    assert not operators, f"more than one command line for sh: {script}"
    assert not any(mark in script for mark in _SUBSTITUTION), f"a command substitution for sh: {script}"
    read = subprocess.run(
        ["/bin/sh", "-c", 'set -u; eval "set -- $1"; printf "%s\\0" "$@"', "sh", script],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    assert read.returncode == 0, f"sh cannot read {script}: {read.stderr}"
    return read.stdout.split("\0")[:-1]


@dataclass
class Dockerfile:
    """A Dockerfile as one build of it sees it (its build arguments filled in)."""

    path: Path
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def runs(self, keyword: str) -> list[str]:
        """What the container runs for its CMD or HEALTHCHECK: the exec form, or the program that a
        shell in front of it execs, as that shell reads it with the image's environment."""
        instruction = self.final.last(keyword)
        command = instruction.exec_form()
        if command[:2] != SHELL:
            return command
        assert len(command) == 3, f"line {instruction.line}: sh -c takes one script here: {command}"
        words = shell_words(command[2], self.final.environment())
        # A shell that stayed would be PID 1, and SIGTERM would stop at it.
        assert words[:1] == ["exec"], f"line {instruction.line}: the shell does not exec its program"
        return words[1:]

    @property
    def command(self) -> list[str]:
        return self.runs("CMD")

    @property
    def healthcheck(self) -> list[str]:
        return self.runs("HEALTHCHECK")

    @property
    def port(self) -> int:
        """The port the server listens on, from the command."""
        command = self.command
        return int(command[command.index("--port") + 1])


_FLAG = re.compile(r"--([a-z-]+)=(\S+)\s+")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
# What runs in the container, after the build: Docker fills no build argument in there.
RUNTIME_KEYWORDS = {"CMD", "ENTRYPOINT", "HEALTHCHECK"}


@functools.cache
def _logical_lines(path: Path) -> tuple[tuple[int, str], ...]:
    """A Dockerfile's instructions with their first line's number, continuation lines joined,
    comments dropped."""
    logical: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        logical.append((start, " ".join(part for part in pending if part)))
        pending = []
    assert not pending, f"{path} ends in a continuation"
    return tuple(logical)


def _fill_in(text: str, values: dict[str, str]) -> str:
    """`text` with the build arguments in scope replaced; any other variable left as it is."""
    return _VARIABLE.sub(lambda match: values.get(match.group(1) or match.group(2), match.group(0)), text)


def parse_dockerfile(path: Path, arguments: Mapping[str, str]) -> Dockerfile:
    """The stages and instructions of a Dockerfile as a build with these build arguments sees them:
    each ARG in scope filled in where Docker (or a RUN's shell) fills it in, none in what runs later."""
    given = dict(arguments)
    before_first_stage: dict[str, str] = {}
    in_stage: dict[str, str] = {}
    declared: set[str] = set()
    stages: list[Stage] = []
    for number, text in _logical_lines(path):
        keyword, _, rest = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG":
            name, has_default, default = rest.partition("=")
            declared.add(name)
            value = given.get(name, default if has_default else before_first_stage.get(name))
            assert value is not None, f"{path}:{number}: the build gives ARG {name} no value"
            (in_stage if stages else before_first_stage)[name] = value
            continue
        if keyword == "FROM":
            base, _, name = _fill_in(rest, before_first_stage).partition(" AS ")
            stages.append(Stage(base=base.strip(), name=name.strip() or None))
            in_stage = {}
            continue
        assert stages, f"{path}:{number}: {keyword} before FROM"
        if keyword not in RUNTIME_KEYWORDS:
            rest = _fill_in(rest, in_stage)
        flags: dict[str, str] = {}
        while match := _FLAG.match(rest):
            flags[match.group(1)] = match.group(2)
            rest = rest[match.end() :]
        stages[-1].instructions.append(Instruction(keyword, flags, rest.strip(), number))
    unknown = set(given) - declared
    assert not unknown, f"the build passes {sorted(unknown)}, which {path} does not declare"
    return Dockerfile(path, stages)


@dataclass(frozen=True)
class ImageBuild:
    """How compose.yaml builds one service's image: the file, the context, the arguments, the tag."""

    image: str
    context: Path
    dockerfile: Path
    arguments: dict[str, str]


def image_builds() -> dict[str, ImageBuild]:
    """compose.yaml's build of each service's image, by service."""
    builds: dict[str, ImageBuild] = {}
    for service in raw_compose()["services"].values():
        code = code_of(service)
        if code is None or "build" not in service:
            continue
        build = service["build"]
        context = REPOSITORY / build["context"]
        arguments = {str(name): str(value) for name, value in build.get("args", {}).items()}
        dockerfile = context / build["dockerfile"]
        builds[code.name] = ImageBuild(str(service["image"]), context, dockerfile, arguments)
    return builds


@functools.cache
def image_of(code: ServiceCode) -> Dockerfile:
    """The service's image as compose.yaml builds it: the Dockerfile read with that build's arguments."""
    build = image_builds()[code.name]
    return parse_dockerfile(build.dockerfile, build.arguments)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            parts.append("(?:.*/)?")
            index += 3
            continue
        if pattern.startswith("**", index):
            parts.append(".*")
            index += 2
            continue
        if char == "*":
            parts.append("[^/]*")
        elif char == "?":
            parts.append("[^/]")
        elif char == "[":
            end = pattern.index("]", index)
            parts.append(pattern[index : end + 1])
            index = end
        else:
            parts.append(re.escape(char))
        index += 1
    return re.compile("".join(parts))


@dataclass(frozen=True)
class DockerIgnore:
    """Docker's rules: patterns in order, the last that matches a path or one of its parents wins."""

    rules: tuple[tuple[bool, re.Pattern[str]], ...]

    @classmethod
    def read(cls, path: Path) -> DockerIgnore:
        rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            keep = line.startswith("!")
            pattern = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
            rules.append((keep, _pattern_regex(pattern)))
        return cls(tuple(rules))

    def excludes(self, relative: str) -> bool:
        parts = PurePosixPath(relative).parts
        candidates = ["/".join(parts[: length + 1]) for length in range(len(parts))]
        excluded = False
        for keep, regex in self.rules:
            if any(regex.fullmatch(candidate) for candidate in candidates):
                excluded = not keep
        return excluded


def context_files(source: Path, ignore: DockerIgnore) -> Iterator[Path]:
    """The files under `source` that reach the build context."""
    paths = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for path in paths:
        if not ignore.excludes(path.relative_to(REPOSITORY).as_posix()):
            yield path


@functools.cache
def workspace_members() -> dict[str, Path]:
    """Each workspace member's distribution name and folder."""
    members: dict[str, Path] = {}
    for pyproject in sorted(
        [*REPOSITORY.glob("packages/*/pyproject.toml"), *REPOSITORY.glob("services/*/pyproject.toml")]
    ):
        name = tomllib.loads(pyproject.read_text())["project"]["name"]
        members[name] = pyproject.parent
    return members


def member_closure(distribution: str) -> set[str]:
    """The workspace members a member needs, itself included."""
    members = workspace_members()
    needed: set[str] = set()
    waiting = [distribution]
    while waiting:
        name = waiting.pop()
        if name in needed:
            continue
        needed.add(name)
        project = tomllib.loads((members[name] / "pyproject.toml").read_text())["project"]
        for requirement in project.get("dependencies", []):
            required = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]
            if required in members:
                waiting.append(required)
    return needed


def unread_variables(variables: Iterable[str], settings: type[ServiceSettings]) -> set[str]:
    """The variables that neither the settings nor the server read: typos, or settings of another service."""
    readable = environment_names(settings)
    return {
        variable
        for variable in variables
        if variable not in readable
        and variable not in SERVER_VARIABLES
        and not variable.startswith(SERVER_VARIABLE_PREFIXES)
    }


def environment_names(settings: type[ServiceSettings]) -> dict[str, str]:
    """Every environment variable a settings class reads, mapped to its field."""
    names: dict[str, str] = {}
    for field_name, info in settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            for choice in alias.choices:
                assert isinstance(choice, str)
                names[choice.upper()] = field_name
        elif isinstance(alias, str):
            names[alias.upper()] = field_name
        else:
            names[field_name.upper()] = field_name
    return names


def docker_compose() -> str:
    found = shutil.which("docker-compose")
    assert found, "docker-compose is not installed (Debian's package `docker-compose`; .ci/run installs it)"
    return found


def resolve_compose(env_file: Path, *overrides: Path) -> Json:
    """compose.yaml (and any override files after it) as `docker-compose config` validates, merges
    and resolves them, with only their own defaults and what `env_file` sets.

    The env file stands in for a developer's `.env`, and no variable of ours is passed on.
    """
    files = [argument for path in (COMPOSE_FILE, *overrides) for argument in ("--file", str(path))]
    result = subprocess.run(
        [docker_compose(), *files, "--env-file", str(env_file), "config"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPOSITORY,
        env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/")},
        timeout=60,
    )
    names = " + ".join(path.name for path in (COMPOSE_FILE, *overrides))
    assert result.returncode == 0, f"docker-compose config refused {names}:\n{result.stderr}"
    loaded = yaml.safe_load(result.stdout)
    assert isinstance(loaded, dict)
    return loaded


def raw_compose() -> Json:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def code_of(service: Json) -> ServiceCode | None:
    """The workspace service whose image a compose service runs (`deliveryhub/<name>:…`), if any."""
    image = str(service.get("image", ""))
    if not image.startswith(IMAGE_PREFIX):
        return None
    return SERVICES[image.removeprefix(IMAGE_PREFIX).split(":")[0]]


def dependencies(name: str, services: dict[str, Json]) -> set[str]:
    """Every service `name` waits for, directly or through others."""
    found: set[str] = set()
    waiting = list(services[name].get("depends_on", {}))
    while waiting:
        target = waiting.pop()
        if target not in found:
            found.add(target)
            waiting.extend(services[target].get("depends_on", {}))
    return found


def is_one_shot(service: Json) -> bool:
    return str(service.get("restart", "no")) == "no"


def migrates(service: Json) -> bool:
    """Whether the compose service is a migration job: `python -m deliveryhub_<name> migrate`."""
    code = code_of(service)
    return code is not None and command_of(service) == ["python", "-m", code.package, "migrate"]


def reader_of(name: str, services: dict[str, Json]) -> str:
    """Who a compose service reads secrets for: a migration job for its service, anything else for itself."""
    service = services[name]
    if not migrates(service):
        return name
    (owner,) = [
        other
        for other, candidate in services.items()
        if not is_one_shot(candidate) and code_of(candidate) == code_of(service)
    ]
    return owner


# The job that makes the token keys and the passwords (deliveryhub_kit/keys.py).
KEYS_COMMAND = ["python", "-m", "deliveryhub_kit.keys"]


def keys_job_name(services: dict[str, Json]) -> str:
    (name,) = [
        name
        for name, service in services.items()
        if code_of(service) is not None and command_of(service)[:3] == KEYS_COMMAND
    ]
    return name


def keys_job_of(services: dict[str, Json]) -> KeysJob:
    """What the compose keys job is told to make, read by the job's own parser (paths in its container)."""
    return KeysJob.from_arguments(command_of(services[keys_job_name(services)])[3:])


# The keys job names who a file is for as UID:GID. On this machine every file is this user's: a
# process that is not root cannot hand one to another user.
OWNER_ARGUMENT = re.compile(r"\d+:\d+")


def this_user() -> str:
    return f"{os.getuid()}:{os.getgid()}"


# The user each server's image runs as (UID:GID), as its Dockerfile makes it: the postgres alpine
# images' postgres (70:70), the rabbitmq alpine images' rabbitmq (100:101), grafana's 472 in group 0.
SERVER_IMAGE_USERS = {
    "postgres:16-alpine": "70:70",
    "rabbitmq:4-management-alpine": "100:101",
    "grafana/grafana:11.3.0": "472:0",
}


def runs_as(service: Json) -> str:
    """The UID:GID the service's container runs as: its compose `user`, else its image's."""
    if "user" in service:
        return str(service["user"])
    code = code_of(service)
    if code is not None:
        return image_of(code).final.last("USER").arguments
    image = str(service["image"])
    assert image in SERVER_IMAGE_USERS, f"which user does {image} run as? Add it to SERVER_IMAGE_USERS"
    return SERVER_IMAGE_USERS[image]


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


# The job that gives each service its own RabbitMQ user (deliveryhub_kit/broker_access.py).
BROKER_ACCESS_COMMAND = ["python", "-m", "deliveryhub_kit.broker_access"]


def broker_access_jobs(services: dict[str, Json]) -> list[str]:
    """The compose services that run the broker-access entry point."""
    return [
        name
        for name, service in services.items()
        if code_of(service) is not None and command_of(service) == BROKER_ACCESS_COMMAND
    ]


def command_of(service: Json) -> list[str]:
    """What the container runs: its compose command, else its image's CMD."""
    if "command" in service:
        command = service["command"]
        return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]
    code = code_of(service)
    assert code is not None, "a service without a command of its own must be built here"
    return image_of(code).command


def healthcheck_of(service: Json) -> list[str] | None:
    """The service's health check command: its compose one, else its image's HEALTHCHECK."""
    check = service.get("healthcheck")
    if check is not None:
        test = check.get("test", ["NONE"])
        assert isinstance(test, list), test
        if check.get("disable") or test[0] == "NONE":
            return None
        assert test[0] in ("CMD", "CMD-SHELL"), test
        return [str(part) for part in test[1:]] if test[0] == "CMD" else ["sh", "-c", test[1]]
    code = code_of(service)
    if code is None:
        return None
    return image_of(code).healthcheck


@dataclass(frozen=True)
class Mount:
    volume: str
    target: PurePosixPath
    read_only: bool


def named_mounts(service: Json) -> list[Mount]:
    mounts: list[Mount] = []
    for entry in service.get("volumes", []):
        source, target, *mode = str(entry).split(":")
        if source.startswith(("/", ".")):
            continue
        mounts.append(Mount(source, PurePosixPath(target), bool(mode) and mode[0] == "ro"))
    return mounts


@dataclass(frozen=True)
class Location:
    exact: bool
    path: str
    upstream: str | None
    # The location's own directives, comments removed.
    body: str = ""


def gateway_locations(text: str | None = None) -> list[Location]:
    """The gateway's locations and where each one proxies to (a `host:port`)."""
    config = text if text is not None else GATEWAY_CONFIG.read_text()
    config = re.sub(r"#[^\n]*", "", config)
    upstreams = dict(re.findall(r"set\s+\$(\w+)\s+http://([\w.:-]+)\s*;", config))
    locations: list[Location] = []
    for modifier, path, body in re.findall(r"location\s+(=\s+)?(\S+)\s*\{([^}]*)\}", config):
        assert not path.startswith("~"), "the gateway's routes are prefixes and exact paths only"
        target = re.search(r"proxy_pass\s+\$(\w+)\s*;", body)
        upstream = upstreams[target.group(1)] if target else None
        locations.append(Location(bool(modifier), path, upstream, body))
    return locations


def route(locations: list[Location], path: str) -> Location:
    """The location nginx picks for a path: an exact match, else the longest prefix."""
    for location in locations:
        if location.exact and location.path == path:
            return location
    prefixes = [loc for loc in locations if not loc.exact and path.startswith(loc.path)]
    assert prefixes, f"no gateway location serves {path}"
    return max(prefixes, key=lambda loc: len(loc.path))


def kubernetes_documents(path: Path) -> list[Json]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def kubernetes_manifests() -> list[Path]:
    return sorted(path for path in KUBERNETES.rglob("*.yaml") if path.name != "kustomization.yaml")


@dataclass(frozen=True)
class PublishedPort:
    """A port a compose service publishes on the host: on which address, which port, to which."""

    host_ip: str
    published: int
    target: int


def published_ports(service: Json) -> list[PublishedPort]:
    """The service's published ports; docker-compose writes `IP:PORT:TARGET/PROTOCOL` when an
    address is given, else the long form without one (every address)."""
    ports: list[PublishedPort] = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.append(PublishedPort("0.0.0.0", int(entry["published"]), int(entry["target"])))
            continue
        host_ip, published, target = str(entry).split("/")[0].rsplit(":", 2)
        ports.append(PublishedPort(host_ip, int(published), int(target)))
    return ports


def fixed_addresses(services: dict[str, Json]) -> dict[str, str]:
    """The services with a fixed address on compose's network, and that address."""
    return {
        name: str(network["ipv4_address"])
        for name, service in services.items()
        for network in (service.get("networks") or {}).values()
        if network and "ipv4_address" in network
    }


def local_gateway_config(folder: Path, port: int, upstream: Callable[[str], str]) -> Path:
    """The gateway's configuration outside a container: listening on 127.0.0.1:`port`, proxying to
    `upstream(url)` for each service URL it names, writing its files under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    text = GATEWAY_CONFIG.read_text()
    text = re.sub(r"http://[\w.-]+:\d+", lambda match: upstream(match.group(0)), text)
    text = re.sub(r"listen\s+\d+\s*;", f"listen 127.0.0.1:{port};", text)
    text = text.replace(" /tmp/", f" {folder}/")
    config = folder / "nginx.conf"
    config.write_text(text)
    return config


def _route_paths(routes: Iterable[Any]) -> Iterator[str]:
    for entry in routes:
        if hasattr(entry, "original_router"):
            yield from _route_paths(entry.original_router.routes)
        elif isinstance(entry, routing.Route):
            yield entry.path


def public_paths(code: ServiceCode) -> set[str]:
    """What the service is for: the routes of its `api.py` and the files it mounts (the console's
    /static), as the gateway and the Ingress must pass them."""
    router = importlib.import_module(f"{code.package}.api").router
    app = importlib.import_module(f"{code.package}.app").create_app(code.settings())
    mounted = {entry.path for entry in app.routes if isinstance(entry, routing.Mount)}
    return set(_route_paths(router.routes)) | mounted


def operator_paths(code: ServiceCode) -> set[str]:
    """The routes every service also serves for its operators and developers (health, metrics, the
    OpenAPI pages), which stay inside the network."""
    app = importlib.import_module(f"{code.package}.app").create_app(code.settings())
    return set(_route_paths(app.routes)) - public_paths(code)


@dataclass(frozen=True)
class DatabaseRole:
    """A login role the init script makes, the database it owns and the psql variable of its password."""

    name: str
    database: str
    password_variable: str


_CREATE_ROLE = re.compile(r"CREATE ROLE (\w+) ((?:\w+ )*)PASSWORD :'(\w+)'")
_CREATE_DATABASE = re.compile(r"CREATE DATABASE (\w+) OWNER (\w+)")
_REVOKE = re.compile(r"REVOKE ([\w, ]+) ON DATABASE (\w+) FROM PUBLIC")
_PSQL_VARIABLE = re.compile(r":'(\w+)'")


@dataclass(frozen=True)
class PostgresInit:
    """deploy/postgres/init-databases.sql read statement by statement, and the runner that feeds it."""

    statements: tuple[str, ...]
    roles: dict[str, DatabaseRole]
    # The databases that PUBLIC (every role) may no longer connect to.
    closed: frozenset[str]
    # Each psql variable and the environment variable naming the file the runner reads it from.
    password_files: dict[str, str]
    # Where the runner reads the statements from, inside the container.
    script_path: PurePosixPath

    @classmethod
    def read(cls) -> PostgresInit:
        text = re.sub(r"--[^\n]*", "", POSTGRES_INIT.read_text())
        statements = tuple(" ".join(part.split()) for part in text.split(";") if part.strip())
        role_options: dict[str, tuple[str, str]] = {}
        owners: dict[str, str] = {}
        closed: set[str] = set()
        for statement in statements:
            if role := _CREATE_ROLE.fullmatch(statement):
                role_options[role.group(1)] = (role.group(2), role.group(3))
            elif database := _CREATE_DATABASE.fullmatch(statement):
                owners[database.group(1)] = database.group(2)
            elif (revoke := _REVOKE.fullmatch(statement)) and "CONNECT" in revoke.group(1):
                closed.add(revoke.group(2))
            else:
                raise AssertionError(f"the init script has a statement these tests do not read: {statement}")
        roles: dict[str, DatabaseRole] = {}
        for name, (options, variable) in role_options.items():
            assert set(options.split()) >= {"LOGIN", "NOSUPERUSER", "NOCREATEDB", "NOCREATEROLE"}, (
                f"{name} is not a plain login role: {options}"
            )
            owned = [database for database, owner in owners.items() if owner == name]
            assert len(owned) == 1, f"{name} owns {owned}, not one database"
            roles[name] = DatabaseRole(name, owned[0], variable)
        assert set(owners.values()) <= set(roles), "a database is owned by a role the script does not make"

        runner = POSTGRES_INIT_RUNNER.read_text()
        read_from = dict(re.findall(r"^(\w+)=\$\(password_from (\w+)\) \|\| exit 1$", runner, re.MULTILINE))
        given = dict(re.findall(r"-v (\w+)=\"\$(\w+)\"", runner))
        assert set(given.values()) == set(read_from), "the runner gives psql a password it read from no file"
        password_files = {psql: read_from[shell] for psql, shell in given.items()}
        (script_path,) = re.findall(r"--file (\S+)", runner)
        return cls(statements, roles, frozenset(closed), password_files, PurePosixPath(script_path))

    def role_of(self, database: str) -> DatabaseRole:
        (role,) = [role for role in self.roles.values() if role.database == database]
        return role

    def renamed(self, prefix: str) -> str:
        """The script on names of one run: `prefix` before every role and database it names."""
        names = {name for role in self.roles.values() for name in (role.name, role.database)}
        pattern = re.compile(r"\b(" + "|".join(sorted(names)) + r")\b")
        text = re.sub(r"--[^\n]*", "", POSTGRES_INIT.read_text())
        return pattern.sub(lambda match: f'"{prefix}{match.group(1)}"', text)

    def renamed_statements(self, prefix: str, passwords: dict[str, str]) -> list[str]:
        """The statements on names of one run, each psql variable replaced by its value (`passwords`
        by psql variable), as psql would send them."""
        statements = [part.strip() for part in self.renamed(prefix).split(";") if part.strip()]
        return [
            _PSQL_VARIABLE.sub(lambda match: "'" + passwords[match.group(1)].replace("'", "''") + "'", s)
            for s in statements
        ]
