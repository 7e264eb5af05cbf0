"""`.env.example`, written from the settings classes themselves: every variable a service reads, with
its default. `python -m deliveryhub_cli.env_example > .env.example`; the suite fails when the file
and the classes differ."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import AliasChoices
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from deliveryhub_delivery.settings import DeliverySettings
from deliveryhub_kit.settings import ServiceSettings
from deliveryhub_orders.settings import OrdersSettings
from deliveryhub_web.settings import WebSettings

SERVICES: dict[str, type[ServiceSettings]] = {
    "orders": OrdersSettings,
    "delivery": DeliverySettings,
    "web": WebSettings,
}
HEADER = """\
# Delivery Hub's settings: every variable the services read, with its default, commented out.
# Each service reads them from its environment or from a .env file in the folder it starts in.
# Written from the settings classes (python -m deliveryhub_cli.env_example > .env.example); the
# suite fails when this file and the classes differ. A secret has no default outside development.
"""


def variable_name(field_name: str, info: FieldInfo) -> str:
    """The environment variable a field is read from (the first, where it has several)."""
    alias = info.validation_alias
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0].upper()
    if isinstance(alias, str):
        return alias.upper()
    return field_name.upper()


def default_text(info: FieldInfo) -> str:
    if info.default_factory is not None:
        return ""
    value: Any = info.default
    if value is PydanticUndefined or value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    if isinstance(value, Path):
        return str(value)
    return str(value)


def lines_of(settings: type[ServiceSettings], *, only: set[str] | None = None) -> list[str]:
    lines = []
    for name, info in settings.model_fields.items():
        if only is not None and name not in only:
            continue
        if info.default_factory is not None:
            lines.append("# (unset: worked out at start from the machine)")
        lines.append(f"# {variable_name(name, info)}={default_text(info)}")
    return lines


def render() -> str:
    """The whole file: what every service reads, then what each reads besides or sets otherwise."""
    parts = [HEADER, "\n## Every service\n", *(line + "\n" for line in lines_of(ServiceSettings))]
    shared = ServiceSettings.model_fields
    for service, settings in SERVICES.items():
        own = {
            name
            for name, info in settings.model_fields.items()
            if name not in shared or default_text(info) != default_text(shared[name])
        }
        parts.append(f"\n## {service}: its own, or its own defaults\n")
        parts.extend(line + "\n" for line in lines_of(settings, only=own))
    return "".join(parts)


if __name__ == "__main__":
    print(render(), end="")
