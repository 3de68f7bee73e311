"""The shape of the repository's own code, read from the source with ``ast`` (no imports, so it is cheap):

- the boundaries of the design: training never imports the gateway; the gateway never imports training
  or PyTorch (its image carries neither); ``ganserve``'s own modules (the command, what both halves
  share, the development tools) import neither half — the command loads a half by name, from its
  table, only when one of its subcommands runs; the Python client (``ganserve.client``) imports only
  the gateway's generated gRPC code;
- the project's code is imported through its one installed name only (``ganserve.serve``, never the
  folder name ``serve``, which the repository root on ``sys.path`` would otherwise load a second time);
- the import graph has no cycle, counting imports made inside functions;
- argparse is imported only at the command-line edge (``training/commands/`` and the entry points).

Modules are named as installed: ``[tool.setuptools.package-dir]`` in pyproject.toml maps each package to
its folder (``ganserve.serve`` -> ``serve/``).
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
    "package-dir"]
# what each part of the code must never import (the name and everything under it); a module belongs to
# the longest package name of PACKAGE_DIR it falls under
FORBIDDEN = {
    "ganserve.training": ("ganserve.serve",),
    "ganserve.serve": ("ganserve.training", "torch", "torchvision"),
    "ganserve": ("ganserve.training", "ganserve.serve", "torch"),
}
# what a module may import all the same (the name and everything under it): the Python client speaks the
# gateway's gRPC API through the generated code, and nothing else of the gateway
EXCEPTIONS = {"ganserve.client": ("ganserve.serve.grpc._generated",)}
# code that is not installed but imports the project (folders, as found from the root)
CLIENT_FOLDERS = ("tests", "benchmarks")
# the only places that may import argparse: the training commands and the entry points
ARGPARSE_ALLOWED = ("training/commands/", "ganserve/usage.py", "ganserve/cli.py", "serve/cli.py",
                    "ganserve/dev/triton_cpu.py")
# calls that import the module named by their first argument
IMPORT_CALLS = {"import_module", "__import__", "importorskip"}


def modules(root: Path, package_dir: dict[str, str] = PACKAGE_DIR) -> dict[str, Path]:
    """Installed dotted module name -> file, for every .py file of the folders of ``package_dir``."""
    found = {}
    for package, folder in package_dir.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = path.relative_to(root / folder).with_suffix("").parts
            found[".".join([package, *(parts[:-1] if parts[-1] == "__init__" else parts)])] = path
    return found


def imported_names(name: str, path: Path) -> list[str]:
    """Every name that ``path`` (module ``name``) imports, anywhere in the file: ``import a.b`` gives
    ``a.b``, ``from a import b`` gives ``a.b`` (a module, or a name in module ``a``), and so does
    ``import_module("a.b")`` with a constant name; relative imports are resolved. (A package's
    ``__init__`` run on the way to its submodule is not counted.)"""
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
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              in IMPORT_CALLS and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            names.append(node.args[0].value)
    return names


def import_graph(root: Path, package_dir: dict[str, str] = PACKAGE_DIR) -> dict[str, set[str]]:
    """Module -> the repository modules it imports (an imported name that is not a module counts as its
    module: ``from ganserve.training.loop import Trainer`` is an edge to ``ganserve.training.loop``)."""
    found = modules(root, package_dir)

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


def under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def owner(name: str, package_dir: dict[str, str] = PACKAGE_DIR) -> str:
    """The package of ``package_dir`` that module ``name`` belongs to (the longest that contains it)."""
    return max((p for p in package_dir if under(name, p)), key=len)


def forbidden_imports(root: Path, package_dir: dict[str, str] = PACKAGE_DIR,
                      forbidden: dict[str, tuple[str, ...]] = FORBIDDEN,
                      exceptions: dict[str, tuple[str, ...]] = EXCEPTIONS) -> dict[str, list[str]]:
    """Module -> the names it imports that its part of the code must not, unless ``exceptions`` allow
    them to the module's package (modules without any left out)."""
    found = {}
    for name, path in modules(root, package_dir).items():
        banned = forbidden[owner(name, package_dir)]
        allowed = [a for package, names in exceptions.items() if under(name, package) for a in names]
        bad = sorted({n for n in imported_names(name, path)
                      if any(under(n, b) for b in banned) and not any(under(n, a) for a in allowed)})
        if bad:
            found[name] = bad
    return found


def folder_imports(root: Path, package_dir: dict[str, str] = PACKAGE_DIR,
                   clients: tuple[str, ...] = CLIENT_FOLDERS) -> dict[str, list[str]]:
    """File -> the names it imports through a mapped folder's own name (``serve.app`` for
    ``ganserve.serve.app``), in the packages and in ``clients``."""
    folders = {folder for package, folder in package_dir.items() if folder != package.replace(".", "/")}
    files = dict(modules(root, package_dir))
    for client in clients:
        for path in sorted((root / client).rglob("*.py")):
            files[".".join(path.relative_to(root).with_suffix("").parts)] = path
    found = {}
    for name, path in files.items():
        bad = sorted({n for n in imported_names(name, path) if n.split(".")[0] in folders})
        if bad:
            found[path.relative_to(root).as_posix()] = bad
    return found


def argparse_importers(root: Path, package_dir: dict[str, str] = PACKAGE_DIR) -> list[str]:
    """Files outside ``ARGPARSE_ALLOWED`` that import argparse."""
    return [path.relative_to(root).as_posix() for name, path in modules(root, package_dir).items()
            if "argparse" in {n.split(".")[0] for n in imported_names(name, path)}
            and not path.relative_to(root).as_posix().startswith(ARGPARSE_ALLOWED)]


def test_every_part_has_its_modules():
    names = modules(ROOT)
    assert {"ganserve.cli", "ganserve.dev.triton_cpu", "ganserve.serve.service", "ganserve.training.loop",
            "ganserve.serve.grpc._generated.ganserve.v1.ganserve_pb2"} <= set(names)
    for package in FORBIDDEN:
        assert sum(owner(n) == package for n in names) >= 5, package


def test_training_the_gateway_and_the_command_keep_their_boundaries():
    assert forbidden_imports(ROOT) == {}


def test_the_project_is_imported_only_through_the_name_ganserve():
    assert folder_imports(ROOT) == {}


def test_the_import_graph_has_no_cycle():
    graph = import_graph(ROOT)
    assert "ganserve.training.loop" in graph and "ganserve.serve.service" in graph and "ganserve.cli" in graph
    assert cycles(graph) == []


def test_argparse_is_imported_only_by_commands_and_entry_points():
    assert argparse_importers(ROOT) == []


def test_only_the_entry_point_reaches_the_training_commands():
    """``training/commands/`` is the top floor: nothing else imports it (``ganserve/cli.py`` loads its
    modules by name, from its table)."""
    graph = import_graph(ROOT)
    importers = {name for name, targets in graph.items() for t in targets
                 if under(t, "ganserve.training.commands") and not under(name, "ganserve.training.commands")}
    assert importers == set()


def test_the_checks_see_what_they_are_meant_to(tmp_path):
    """The detectors themselves, on a made-up project whose folder ``lib/`` installs as ``pkg.sub``: a
    cycle closed by a function-local relative import, argparse imported inside a function, a boundary
    crossed through ``import_module``, and the folder's own name imported by a client."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "lib").mkdir()
    (tmp_path / "client").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "lib" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from pkg.sub.b import f\n")
    (tmp_path / "lib" / "b.py").write_text("def f():\n    from ..a import g\n    import argparse\n")
    (tmp_path / "pkg" / "c.py").write_text("import importlib\nimportlib.import_module('pkg.sub')\n")
    (tmp_path / "client" / "d.py").write_text("from lib.b import f\nimport pkg.a\n")
    package_dir = {"pkg": "pkg", "pkg.sub": "lib"}
    graph = import_graph(tmp_path, package_dir)
    assert set(graph) == {"pkg", "pkg.a", "pkg.c", "pkg.sub", "pkg.sub.b"}
    assert graph["pkg.c"] == {"pkg.sub"}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"]]
    assert argparse_importers(tmp_path, package_dir) == ["lib/b.py"]
    assert forbidden_imports(tmp_path, package_dir, {"pkg": ("pkg.sub",), "pkg.sub": ("argparse",)}, {}) == {
        "pkg.a": ["pkg.sub.b.f"], "pkg.c": ["pkg.sub"], "pkg.sub.b": ["argparse"]}
    assert forbidden_imports(tmp_path, package_dir, {"pkg": ("pkg.sub",), "pkg.sub": ()},
                             {"pkg.a": ("pkg.sub.b",)}) == {"pkg.c": ["pkg.sub"]}
    assert folder_imports(tmp_path, package_dir, ("client",)) == {"client/d.py": ["lib.b.f"]}
