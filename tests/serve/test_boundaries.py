"""serve/ never imports PyTorch or the training package (the gateway image carries neither)."""

import ast
from pathlib import Path

SERVE = Path(__file__).resolve().parents[2] / "serve"
FORBIDDEN = {"torch", "training", "torchvision"}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in {
                "import_module", "__import__"} and node.args and isinstance(node.args[0], ast.Constant):
            roots.add(str(node.args[0].value).split(".")[0])
    return roots


def test_serve_imports_no_torch_and_no_training() -> None:
    files = sorted(SERVE.rglob("*.py"))
    assert len(files) > 10
    offenders = {str(f.relative_to(SERVE)): sorted(_imported_roots(f) & FORBIDDEN) for f in files}
    assert {f: m for f, m in offenders.items() if m} == {}
