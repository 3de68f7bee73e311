"""Fixtures of the deployment tests: the Helm chart rendered by the real `helm` (tools from
scripts/install-tools.sh; see tests/deploy/helpers.py for how they are found and when a missing one skips)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.deploy.helpers import CHART, NAMESPACE, RELEASE, Rendered, load_manifests, require_tool, run_helm


@pytest.fixture(scope="session")
def helm() -> str:
    return require_tool("helm")


@pytest.fixture(scope="session")
def render(helm: str) -> Callable[..., Rendered]:
    """render(values_file=None, *extra helm args) -> Rendered; cached per argument list."""
    cache: dict[tuple, Rendered] = {}

    def _render(values: Path | str | None = None, *extra: str) -> Rendered:
        key = (str(values), *extra)
        if key not in cache:
            args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
            if values is not None:
                args += ["-f", str(values)]
            result = run_helm(helm, *args, *extra)
            assert result.returncode == 0, f"helm template {values or ''} {extra} failed:\n{result.stderr}"
            cache[key] = Rendered(load_manifests(result.stdout))
        return cache[key]

    return _render
