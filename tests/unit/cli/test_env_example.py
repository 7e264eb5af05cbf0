"""`.env.example` is what the settings classes read, as they read it."""

from __future__ import annotations

from pathlib import Path

from deliveryhub_cli.env_example import SERVICES, render, variable_name
from deliveryhub_kit.settings import ServiceSettings

ENV_EXAMPLE = Path(__file__).resolve().parents[3] / ".env.example"


def test_the_committed_env_example_is_the_one_the_settings_write() -> None:
    assert ENV_EXAMPLE.read_text() == render(), (
        "the settings changed: python -m deliveryhub_cli.env_example > .env.example"
    )


def test_every_variable_of_every_service_is_in_it() -> None:
    text = render()
    every: list[type[ServiceSettings]] = [ServiceSettings, *SERVICES.values()]
    for settings in every:
        for name, info in settings.model_fields.items():
            assert f"# {variable_name(name, info)}=" in text, name
