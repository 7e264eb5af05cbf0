"""The deployment files read as their tools read them: Dockerfiles, .dockerignore, compose, nginx, k8s."""

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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from pydantic import AliasChoices

from deliveryhub_delivery.settings import DeliverySettings
from deliveryhub_kit.settings import ServiceSettings
from deliveryhub_orders.settings import OrdersSettings
from deliveryhub_web.settings import WebSettings

REPOSITORY = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPOSITORY / "compose.yaml"
DOCKERIGNORE = REPOSITORY / ".dockerignore"
GATEWAY_CONFIG = REPOSITORY / "deploy" / "gateway" / "nginx.conf"
POSTGRES_INIT = REPOSITORY / "deploy" / "postgres" / "init-databases.sql"
RABBITMQ_CONFIG = REPOSITORY / "deploy" / "rabbitmq" / "rabbitmq.conf"
KUBERNETES = REPOSITORY / "deploy" / "kubernetes"
IMAGE_PREFIX = "deliveryhub/"

Json = dict[str, Any]


@dataclass(frozen=True)
class ServiceCode:
    """One service of the workspace: its package, its settings and its image."""

    name: str
    settings: type[ServiceSettings]

    @property
    def package(self) -> str:
        return f"deliveryhub_{self.name}"

    @property
    def distribution(self) -> str:
        return f"deliveryhub-{self.name}"

    @property
    def dockerfile(self) -> Path:
        return REPOSITORY / "services" / self.name / "Dockerfile"


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


@dataclass
class Dockerfile:
    path: Path
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    @property
    def port(self) -> int:
        """The port the server listens on, from the CMD."""
        command = self.final.last("CMD").exec_form()
        return int(command[command.index("--port") + 1])


_FLAG = re.compile(r"--([a-z-]+)=(\S+)\s+")


def parse_dockerfile(path: Path) -> Dockerfile:
    """The stages and instructions of a Dockerfile, continuation lines joined, comments dropped."""
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

    arguments: dict[str, str] = {}
    stages: list[Stage] = []
    for number, text in logical:
        keyword, _, rest = text.partition(" ")
        keyword = keyword.upper()
        flags: dict[str, str] = {}
        while match := _FLAG.match(rest):
            flags[match.group(1)] = match.group(2)
            rest = rest[match.end() :]
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            arguments[name] = default
            continue
        if keyword == "FROM":
            base, _, name = rest.partition(" AS ")
            for argument, value in arguments.items():
                base = base.replace("${" + argument + "}", value).replace("$" + argument, value)
            stages.append(Stage(base=base.strip(), name=name.strip() or None))
            continue
        assert stages, f"{path}:{number}: {keyword} before FROM"
        stages[-1].instructions.append(Instruction(keyword, flags, rest.strip(), number))
    return Dockerfile(path, stages)


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


def resolve_compose(empty_env_file: Path) -> Json:
    """compose.yaml as `docker-compose config` validates and resolves it, with only its own defaults.

    An empty env file stands in for a developer's `.env`, and no variable of ours is passed on.
    """
    result = subprocess.run(
        [docker_compose(), "--file", str(COMPOSE_FILE), "--env-file", str(empty_env_file), "config"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPOSITORY,
        env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/")},
        timeout=60,
    )
    assert result.returncode == 0, f"docker-compose config refused compose.yaml:\n{result.stderr}"
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
    return parse_dockerfile(code.dockerfile).final.last("CMD").exec_form()


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
    return parse_dockerfile(code.dockerfile).final.last("HEALTHCHECK").exec_form()


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


def gateway_locations(text: str | None = None) -> list[Location]:
    """The gateway's locations and where each one proxies to (a `host:port`)."""
    config = text if text is not None else GATEWAY_CONFIG.read_text()
    config = re.sub(r"#[^\n]*", "", config)
    upstreams = dict(re.findall(r"set\s+\$(\w+)\s+http://([\w.:-]+)\s*;", config))
    locations: list[Location] = []
    for modifier, path, body in re.findall(r"location\s+(=\s+)?(\S+)\s*\{([^}]*)\}", config):
        assert not path.startswith("~"), "the gateway's routes are prefixes and exact paths only"
        target = re.search(r"proxy_pass\s+\$(\w+)\s*;", body)
        locations.append(Location(bool(modifier), path, upstreams[target.group(1)] if target else None))
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
