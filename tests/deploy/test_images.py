"""The Dockerfile, as each service's image builds it: linted, copying only what exists and what the
service needs, running its server unprivileged as PID 1, and its build replayed.

There is no Docker engine here, so the build is replayed on this machine: the build stage's COPY
instructions (through the .dockerignore rules) into a scratch folder, its `uv sync` lines as
written, then the image's commands are run with the environment that build made.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from tests.support.artifacts import (
    DOCKERFILE,
    DOCKERIGNORE,
    REPOSITORY,
    SERVICES,
    Dockerfile,
    DockerIgnore,
    Instruction,
    ServiceCode,
    Stage,
    context_files,
    image_of,
    member_closure,
    workspace_members,
)

HADOLINT = Path(sys.executable).parent / "hadolint"
CODES = list(SERVICES.values())


def code_id(code: ServiceCode) -> str:
    return code.name


def copies_from_context(stage: Stage) -> list[tuple[Instruction, list[str], str]]:
    """Each COPY of the build context in a stage: its sources and its destination."""
    found = []
    for instruction in stage.all("COPY"):
        if "from" in instruction.flags:
            continue
        *sources, destination = shlex.split(instruction.arguments)
        found.append((instruction, sources, destination))
    return found


def uv_syncs(stage: Stage) -> list[Instruction]:
    return [i for i in stage.all("RUN") if i.arguments.startswith("uv sync")]


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not result.stdout.strip(), result.stdout


def test_the_dockerignore_keeps_local_things_out_and_the_sources_in() -> None:
    ignore = DockerIgnore.read(DOCKERIGNORE)
    for left_out in (
        ".git/HEAD",
        ".venv/bin/python",
        ".deliveryhub/keys/jwt-private.pem",
        ".env",
        ".mypy_cache/3.11/cache.db",
        ".pytest_cache/v/cache/lastfailed",
        "test-results/screenshots/a.png",
        "tests/e2e/test_story.py",
        "packages/kit/src/deliveryhub_kit/__pycache__/keys.cpython-311.pyc",
        "services/web/.venv/bin/python",
        "services/web/.env",
    ):
        assert ignore.excludes(left_out), f"{left_out} would reach the build"
    for kept in (
        "pyproject.toml",
        "uv.lock",
        "packages/kit/src/deliveryhub_kit/keys.py",
        "services/web/pyproject.toml",
    ):
        assert not ignore.excludes(kept), f"{kept} would not reach the build"


@pytest.mark.parametrize("code", CODES, ids=code_id)
def test_the_image_copies_only_its_members_and_paths_that_exist(code: ServiceCode) -> None:
    dockerfile = image_of(code)
    ignore = DockerIgnore.read(DOCKERIGNORE)
    copied: set[Path] = set()
    for stage in dockerfile.stages:
        for instruction, sources, _ in copies_from_context(stage):
            for source in sources:
                path = REPOSITORY / source
                assert path.exists(), f"line {instruction.line}: {source} does not exist"
                assert list(context_files(path, ignore)), (
                    f"line {instruction.line}: .dockerignore drops {source}"
                )
                copied.add(path)
    members = workspace_members()
    needed = {members[name] for name in member_closure(code.distribution)}
    copied_members = {member for member in members.values() for path in copied if path.is_relative_to(member)}
    assert copied_members == needed, f"the image takes {sorted(copied_members)}, needs {sorted(needed)}"
    assert {REPOSITORY / "pyproject.toml", REPOSITORY / "uv.lock"} <= copied
    assert not any(path.is_relative_to(REPOSITORY / "tests") for path in copied)


@pytest.mark.parametrize("code", CODES, ids=code_id)
def test_dependencies_install_from_the_lock_in_a_layer_before_the_code(code: ServiceCode) -> None:
    build = image_of(code).stages[0]
    first, second = uv_syncs(build)
    for sync in (first, second):
        flags = shlex.split(sync.arguments)
        assert {"--frozen", "--no-dev"} <= set(flags), f"line {sync.line} does not install from uv.lock alone"
        assert flags[flags.index("--package") + 1] == code.distribution
    assert "--no-install-workspace" in first.arguments
    assert "--no-editable" in second.arguments, "the final image has no sources for an editable install"
    copies = copies_from_context(build)
    before = [
        source for instruction, sources, _ in copies if instruction.line < first.line for source in sources
    ]
    assert all(source.endswith(("pyproject.toml", "uv.lock")) for source in before), (
        f"code is copied before the dependencies are installed: {before}"
    )
    assert any(instruction.line > first.line for instruction, _, _ in copies), "the code is never copied"


@pytest.mark.parametrize("code", CODES, ids=code_id)
def test_the_image_runs_unprivileged_checks_its_health_and_stops_gracefully(code: ServiceCode) -> None:
    dockerfile = image_of(code)
    final = dockerfile.final
    user = final.last("USER").arguments.split(":")[0]
    assert user.isdigit(), "the image's user must be numeric, so that a cluster can check it is not root"
    assert int(user) != 0, "the image must not run as root"
    environment = final.environment()
    assert environment.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert environment.get("PYTHONUNBUFFERED") == "1"
    assert final.last("STOPSIGNAL").arguments == "SIGTERM"

    # What the container runs (through a shell that execs it: see Dockerfile.runs).
    command = dockerfile.command
    assert command[:3] == ["uvicorn", "--factory", f"{code.package}.app:create_app"]
    assert "--timeout-graceful-shutdown" in command
    assert final.last("EXPOSE").arguments == str(dockerfile.port)
    check = dockerfile.healthcheck
    assert check[:2] == ["python", "-c"]
    assert f"http://127.0.0.1:{dockerfile.port}/health/live" in check[2]
    assert final.base == dockerfile.stages[0].base, "the venv is built on the Python it runs on"


def replay_build(dockerfile: Dockerfile, root: Path) -> Path:
    """The build stage on this machine, under `root`; where its virtual environment ends up."""
    build = dockerfile.stages[0]
    ignore = DockerIgnore.read(DOCKERIGNORE)
    environment = build.environment()
    venv = PurePosixPath(environment["UV_PROJECT_ENVIRONMENT"])

    def here(path: PurePosixPath) -> Path:
        return root / path.relative_to("/")

    uv = shutil.which("uv")
    assert uv, "uv is not on PATH"
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("UV_", "VIRTUAL_ENV"))}
    for instruction in build.instructions:
        workdir = build.workdir_at(instruction)
        if instruction.keyword == "COPY" and "from" not in instruction.flags:
            *sources, destination = shlex.split(instruction.arguments)
            target = here(workdir / destination)
            for source in sources:
                origin = REPOSITORY / source
                for file in context_files(origin, ignore):
                    relative = file.relative_to(origin) if origin.is_dir() else Path(file.name)
                    placed = target / relative if destination.endswith("/") or origin.is_dir() else target
                    placed.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(file, placed)
        elif instruction.keyword == "RUN" and instruction.arguments.startswith("uv sync"):
            here(workdir).mkdir(parents=True, exist_ok=True)
            result = subprocess.run(
                [uv, *shlex.split(instruction.arguments)[1:], "--quiet"],
                cwd=here(workdir),
                env={
                    **clean,
                    **environment,
                    "UV_PROJECT_ENVIRONMENT": str(here(venv)),
                    "UV_PYTHON": os.path.realpath(sys.executable),
                    # Speed only, what is installed is the same: link from the cache, compile lazily.
                    "UV_LINK_MODE": "hardlink",
                    "UV_COMPILE_BYTECODE": "0",
                },
                capture_output=True,
                text=True,
                check=False,
                timeout=300,
            )
            assert result.returncode == 0, f"line {instruction.line} failed:\n{result.stderr}"
    final_copy = [i for i in dockerfile.final.all("COPY") if i.flags.get("from") == build.name]
    assert [shlex.split(i.arguments) for i in final_copy] == [[str(venv), str(venv)]], (
        "the final image takes exactly the build's virtual environment"
    )
    assert f"{venv}/bin" in dockerfile.final.environment()["PATH"]
    return here(venv)


@pytest.mark.parametrize("code", CODES, ids=code_id)
def test_the_replayed_build_holds_only_its_members_and_its_commands_start(
    code: ServiceCode, tmp_path: Path
) -> None:
    dockerfile = image_of(code)
    venv = replay_build(dockerfile, tmp_path / "image")
    python = venv / "bin" / "python"
    run_in = tmp_path / "run"
    run_in.mkdir()

    def run(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(python), *arguments],
            cwd=run_in,
            env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(run_in)},
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    listed = run(
        "-c",
        "import importlib.metadata as m; print('\\n'.join(d.metadata['Name'] for d in m.distributions()))",
    )
    assert listed.returncode == 0, listed.stderr
    installed = {name for name in listed.stdout.split() if name.startswith("deliveryhub")}
    assert installed == member_closure(code.distribution)
    assert "pytest" not in listed.stdout.split(), "development dependencies reached the image"

    # The CMD's factory builds the app (nothing connects before it starts), templates and all.
    module, factory = dockerfile.command[2].split(":")
    started = run("-c", f"import {module} as m; app = m.{factory}(); print(len(app.routes))")
    assert started.returncode == 0, started.stderr
    assert int(started.stdout) > 3

    # The migration job's module is there (without its argument it only says how to call it).
    migrate = run("-m", code.package)
    assert migrate.returncode != 0
    usage = migrate.stderr.partition("usage: ")[2]
    assert usage.startswith(f"python -m {code.package}"), migrate.stderr
    assert "migrate" in usage, migrate.stderr
    if code.name == "web":
        made = run("-m", "deliveryhub_kit.keys", str(run_in / "keys"), str(run_in / "public"))
        assert made.returncode == 0, made.stderr
        assert (run_in / "public" / "jwt-public.pem").is_file()
