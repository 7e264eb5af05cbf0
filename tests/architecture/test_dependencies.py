"""Each workspace member declares what it imports (deptry): none leans on a package that only
another dependency happens to bring along, and none declares one it has no use for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MEMBERS = sorted(path.parent for path in ROOT.glob("*/*/pyproject.toml") if (path.parent / "src").is_dir())
DEPTRY = Path(sys.executable).parent / "deptry"


def test_every_member_is_found() -> None:
    assert {member.name for member in MEMBERS} == {"contracts", "kit", "cli", "orders", "delivery", "web"}


@pytest.mark.parametrize("member", MEMBERS, ids=lambda member: member.name)
def test_each_member_declares_exactly_what_it_imports(member: Path) -> None:
    done = subprocess.run(
        [str(DEPTRY), "src"], cwd=member, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
