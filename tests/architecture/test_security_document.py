"""docs/security.md cites only tests that exist: a threat's proof cannot silently go away."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "security.md"


def functions_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
    }


def test_every_test_the_security_document_cites_exists() -> None:
    cited = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`|`::(\w+)`", DOCUMENT.read_text(encoding="utf-8"))
    assert cited, "the document cites no test"
    missing: list[str] = []
    current: Path | None = None
    for file, function, same_file_function in cited:
        if file:
            current = ROOT / file
            if not current.is_file():
                missing.append(file)
                continue
        name = function or same_file_function
        if name and (current is None or name not in functions_of(current)):
            missing.append(f"{current}::{name}")
    assert not missing, missing
