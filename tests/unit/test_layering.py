"""The layers a newcomer reads from the folders: ``shared`` knows no service and no command line,
the services know no command line. (``guanhuai`` composes everything and may import all.)"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_packages(folder: str) -> dict[str, set[str]]:
    """Each module of ``folder`` with the top-level packages it imports (at any depth in the file)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / folder).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_shared_imports_neither_the_services_nor_the_command_line() -> None:
    offending = {m: n & {"services", "guanhuai"} for m, n in imported_packages("shared").items() if n & {"services", "guanhuai"}}
    assert offending == {}


def test_the_services_do_not_import_the_command_line_package() -> None:
    offending = {m: n & {"guanhuai"} for m, n in imported_packages("services").items() if "guanhuai" in n}
    assert offending == {}
