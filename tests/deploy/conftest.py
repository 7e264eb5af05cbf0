"""What the deployment tests share: compose.yaml as docker-compose resolves it."""

from __future__ import annotations

import pytest

from tests.support.artifacts import Json, resolve_compose


@pytest.fixture(scope="session")
def compose(tmp_path_factory: pytest.TempPathFactory) -> Json:
    """The resolved compose file; fails the tests that need it when docker-compose refuses the file."""
    empty_env_file = tmp_path_factory.mktemp("compose") / "empty.env"
    empty_env_file.write_text("")
    return resolve_compose(empty_env_file)


@pytest.fixture(scope="session")
def compose_services(compose: Json) -> dict[str, Json]:
    services: dict[str, Json] = compose["services"]
    return services
