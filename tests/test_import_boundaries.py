"""The architecture's hard boundaries: training and serve never import each other; serve has no torch."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(folder: Path):
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield path, alias.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield path, node.module.split(".")[0]


@pytest.mark.parametrize("package,forbidden", [("training", {"serve"}), ("serve", {"training", "torch"}),
                                               ("ganserve", {"training", "serve", "torch"})])
def test_forbidden_imports(package, forbidden):
    folder = ROOT / package
    if not folder.is_dir():
        pytest.skip(f"{package}/ does not exist yet")
    offenders = [(str(p.relative_to(ROOT)), m) for p, m in imported_modules(folder) if m in forbidden]
    assert offenders == []
