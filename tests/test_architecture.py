"""The shape of the repository's own code (``training``, ``serve``, ``ganserve``), read from the source
with ``ast`` (no imports, so it is cheap): the import graph has no cycle, counting imports made inside
functions, and argparse is imported only at the command-line edge (``training/commands/`` and the
entry points)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("training", "serve", "ganserve")
# the only places that may import argparse: the training commands and the entry points
ARGPARSE_ALLOWED = ("training/commands/", "ganserve/usage.py", "ganserve/cli.py", "serve/cli.py",
                    "ganserve/dev/triton_cpu.py")


def modules(root: Path, packages=PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of ``packages`` under ``root``."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_names(name: str, path: Path) -> list[str]:
    """Every name that ``path`` (module ``name``) imports, anywhere in the file: ``import a.b`` gives
    ``a.b``, ``from a import b`` gives ``a.b`` (a module, or a name in module ``a``); relative imports
    are resolved. (A package's ``__init__`` run on the way to its submodule is not counted.)"""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            names += [f"{base}.{alias.name}" for alias in node.names]
    return names


def import_graph(root: Path, packages=PACKAGES) -> dict[str, set[str]]:
    """Module -> the repository modules it imports (an imported name that is not a module counts as its
    module: ``from training.loop import Trainer`` is an edge to ``training.loop``)."""
    found = modules(root, packages)

    def resolve(target: str) -> str | None:
        while target and target not in found:
            target = target.rpartition(".")[0]
        return target or None

    graph: dict[str, set[str]] = {}
    for name, path in found.items():
        targets = {resolve(t) for t in imported_names(name, path)}
        graph[name] = {t for t in targets if t and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def argparse_importers(root: Path, packages=PACKAGES) -> list[str]:
    """Files outside ``ARGPARSE_ALLOWED`` that import argparse."""
    return [path.relative_to(root).as_posix() for name, path in modules(root, packages).items()
            if "argparse" in {n.split(".")[0] for n in imported_names(name, path)}
            and not path.relative_to(root).as_posix().startswith(ARGPARSE_ALLOWED)]


def test_the_import_graph_has_no_cycle():
    graph = import_graph(ROOT)
    assert "training.loop" in graph and "serve.service" in graph and "ganserve.cli" in graph
    assert cycles(graph) == []


def test_argparse_is_imported_only_by_commands_and_entry_points():
    assert argparse_importers(ROOT) == []


def test_only_the_entry_point_reaches_the_training_commands():
    """``training/commands/`` is the top floor: nothing else imports it (``ganserve/cli.py`` loads its
    modules by name, from its table)."""
    graph = import_graph(ROOT)
    importers = {name for name, targets in graph.items() for t in targets
                 if t.startswith("training.commands") and not name.startswith("training.commands")}
    assert importers == set()


def test_the_checks_see_function_local_and_relative_imports(tmp_path):
    """The detector itself, on a made-up package: a cycle closed by a function-local relative import, and
    argparse imported inside a function."""
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from pkg.sub.b import f\n")
    (tmp_path / "pkg" / "sub" / "b.py").write_text("def f():\n    from ..a import g\n    import argparse\n")
    (tmp_path / "pkg" / "c.py").write_text("from pkg import a\n")
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.c"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"]]
    assert argparse_importers(tmp_path, ("pkg",)) == ["pkg/sub/b.py"]
