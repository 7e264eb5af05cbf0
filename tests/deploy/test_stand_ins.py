"""The container test's stand-ins carry exactly the names of the third-party images that compose.yaml
(without its optional profiles) and the services' images start from, so that both run unchanged on them."""

from __future__ import annotations

import re

from tests.support.artifacts import IMAGE_PREFIX, SERVICES, image_of, raw_compose
from tests.support.containers import STAND_IN_IMAGES, STAND_INS


def stand_ins_built() -> set[str]:
    table = re.search(r"STAND_INS=\((.*?)\n\)", STAND_INS.read_text(), re.DOTALL)
    assert table, "deploy/testing/stand-ins.sh has no STAND_INS table"
    return {line.strip().strip('"').split("|")[0] for line in table.group(1).strip().splitlines()}


def third_party_images() -> set[str]:
    services = raw_compose()["services"].values()
    named = {service["image"] for service in services if "image" in service and "profiles" not in service}
    named |= {stage.base for code in SERVICES.values() for stage in image_of(code).stages}
    return {image for image in named if not image.startswith(IMAGE_PREFIX)}


def test_every_third_party_image_of_the_default_stack_has_a_stand_in_of_its_name() -> None:
    assert stand_ins_built() == third_party_images()
    assert set(STAND_IN_IMAGES) == stand_ins_built()
