"""The README's make targets and install scripts: ``make serve ARGS=...`` reaches the gateway, and
``scripts/bootstrap.sh`` says what it installs, one line per step."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


@needs_make
def test_make_serve_passes_args_to_serve_sh() -> None:
    out = subprocess.run(["make", "-n", "serve", "ARGS=--backend triton --triton-url localhost:8001"],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    assert "scripts/serve.sh --backend triton --triton-url localhost:8001" in out.stdout.splitlines()


@needs_make
def test_make_serve_args_reach_the_gateway() -> None:
    """A real ``make serve`` with an option the gateway does not know: its own usage error, status 2."""
    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip("make serve runs ./.venv, which is not the environment of this test run")
    check = subprocess.run(["scripts/bootstrap.sh", "--check"], cwd=ROOT, check=False,
                           env={**os.environ, "GANSERVE_EXTRAS": "serve"})
    if check.returncode != 0:
        pytest.skip("./.venv is not up to date (make serve would install first): run scripts/bootstrap.sh")
    out = subprocess.run(["make", "serve", "ARGS=--no-such-option"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode != 0
    assert "ganserve serve: error: unrecognized arguments: --no-such-option" in out.stderr
    assert "serve: starting .venv/bin/ganserve serve --model-repository model_repository --no-such-option" in out.stderr


FAKE_PYTHON = """#!/usr/bin/env bash
# stands in for ./.venv/bin/python: records its arguments; has no torch; every pip install succeeds
echo "$*" >> "$(dirname "$0")/../calls"
case "$*" in
  "-c import torch") exit 1 ;;
  *) exit 0 ;;
esac
"""


def _project_copy(tmp_path: Path) -> Path:
    """The files bootstrap.sh reads, with a fake ./.venv/bin/python (no network, no pip)."""
    (tmp_path / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "bootstrap.sh", tmp_path / "scripts" / "bootstrap.sh")
    for name in ("pyproject.toml", "setup.py"):
        shutil.copy2(ROOT / name, tmp_path / name)
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    return tmp_path


def test_bootstrap_says_what_it_installs_step_by_step(tmp_path: Path) -> None:
    project = _project_copy(tmp_path)
    run = [str(project / "scripts" / "bootstrap.sh")]
    assert subprocess.run([*run, "--check"], check=False).returncode == 1  # nothing installed yet

    out = subprocess.run(run, capture_output=True, text=True, check=True,
                         env={**os.environ, "GANSERVE_EXTRAS": "train,serve"})
    lines = out.stderr.splitlines()
    assert lines[0].startswith("bootstrap: installing PyTorch 2.13.0, CPU build")
    assert lines[1].startswith("bootstrap: PyTorch installed (")
    assert lines[2].startswith("bootstrap: installing ganserve[train,serve] and its dependencies")
    assert lines[3].startswith("bootstrap: ganserve[train,serve] installed (")
    assert lines[4].startswith("bootstrap: ./.venv is ready: extras serve,train (")
    calls = (project / ".venv" / "calls").read_text().splitlines()
    assert any("torch==2.13.0" in c for c in calls) and any("-e .[train,serve]" in c for c in calls)

    # up to date now: silent, and --check agrees; a new extra installs only ganserve again
    again = subprocess.run(run, capture_output=True, text=True, check=True,
                           env={**os.environ, "GANSERVE_EXTRAS": "serve"})
    assert again.stderr == ""
    serve_only = {**os.environ, "GANSERVE_EXTRAS": "serve"}
    assert subprocess.run([*run, "--check"], env=serve_only, check=False).returncode == 0
    more = subprocess.run(run, capture_output=True, text=True, check=True,
                          env={**os.environ, "GANSERVE_EXTRAS": "serve,client"})
    assert "installing ganserve[serve,client]" in more.stderr and "PyTorch" not in more.stderr
