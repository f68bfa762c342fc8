"""The architecture as a contract: which packages may import what (checked on every import statement,
function-level ones included, so a lazy `import ray` inside an algorithm cannot slip in)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "rayfold"
PURE = ("model", "fragment", "align", "cluster", "eval")  # algorithm packages: arrays in, arrays out
ORCHESTRATION = ("rayfold.runtime", "rayfold.release", "rayfold.cli")


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py"))


def starts(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_only_runtime_imports_ray(path: Path):
    if path.relative_to(SRC).parts[0] == "runtime":
        return
    assert not [m for m in imports(path) if starts(m, "ray")], f"{path}: Ray belongs in rayfold.runtime"


@pytest.mark.parametrize("path", [p for p in modules() if p.relative_to(SRC).parts[0] in PURE],
                         ids=lambda p: str(p.relative_to(SRC)))
def test_algorithm_packages_import_no_storage_orchestration_or_cli(path: Path):
    bad = [m for m in imports(path)
           if starts(m, "fsspec") or starts(m, "s3fs") or any(starts(m, o) for o in ORCHESTRATION)]
    assert not bad, f"{path} imports {bad}"


def test_the_packages_are_the_documented_ones():
    packages = sorted(p.name for p in SRC.iterdir() if (p / "__init__.py").exists())
    assert packages == sorted(["model", "io", "fragment", "align", "cluster", "engines", "runtime", "release",
                               "analytics", "eval"])
