"""Helpers of the deployment tests (tests/deploy): tool look-up, helm runs, manifest look-ups.

Tools are found in ./tools/bin (helm, kubectl) and ./.venv/bin (hadolint), where
scripts/install-tools.sh puts them, then on PATH. A developer without them (no npm) gets the tests
skipped with the reason; under CI (CI=true) a missing tool is a failure, so that a forgotten
install step cannot pass as a green run.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "ganserve"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "gs"  # release name used for every render
NAMESPACE = "ml"
INSTALL_HINT = "run scripts/install-tools.sh (needs npm and ./.venv)"


def find_tool(name: str) -> str | None:
    for folder in (REPO / "tools" / "bin", REPO / ".venv" / "bin"):
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def require_tool(name: str) -> str:
    path = find_tool(name)
    if path is None:
        message = f"{name} not found in tools/bin, .venv/bin or PATH: {INSTALL_HINT}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def require_module(name: str):
    """A Python tool that scripts/install-tools.sh installs into .venv (same skip/fail rule as tools)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        message = f"Python module {name} not installed: {INSTALL_HINT}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a mapping with the same key twice (the API server would too)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_manifests(text: str) -> list[dict]:
    return [doc for doc in yaml.load_all(text, Loader=_UniqueKeyLoader) if doc]


class Rendered(list):
    """The documents of one `helm template`, with look-ups by kind and component."""

    def of_kind(self, kind: str) -> list[dict]:
        return [d for d in self if d["kind"] == kind]

    def one(self, kind: str, component: str | None = None) -> dict:
        found = [d for d in self.of_kind(kind)
                 if component is None
                 or d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component]
        assert len(found) == 1, f"expected one {kind} ({component}), got {[d['metadata']['name'] for d in found]}"
        return found[0]

    def named(self, kind: str, name: str) -> dict:
        found = [d for d in self.of_kind(kind) if d["metadata"]["name"] == name]
        assert len(found) == 1, f"no {kind} named {name}"
        return found[0]


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([helm, *args], check=False, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "KUBECONFIG": os.devnull, "HELM_NAMESPACE": NAMESPACE})


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    """(name, pod spec) of every Deployment and bare Pod."""
    out = []
    for d in docs:
        if d["kind"] == "Deployment":
            out.append((d["metadata"]["name"], d["spec"]["template"]["spec"]))
        elif d["kind"] == "Pod":
            out.append((d["metadata"]["name"], d["spec"]))
    return out


def container(deployment: dict, name: str | None = None) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return containers[0] if name is None else next(c for c in containers if c["name"] == name)


def env_of(c: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in c.get("env", [])}
