"""The distribution claims one import name, ``ganserve``: wheels built from the repository's files (with
pip and this environment's setuptools, offline) hold ``ganserve`` and its metadata and nothing else, with
``serve/`` and ``training/`` inside as ``ganserve.serve`` and ``ganserve.training``. The gateway image's
file set (what the Dockerfile copies; no Docker engine here) builds a wheel without training code, without
the development tools, and with the whole gateway."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEV_TOOLS = "ganserve/dev"  # left out by .dockerignore (tests/deploy/test_dockerfile.py checks it)


def gateway_files() -> tuple[str, ...]:
    """What the Dockerfile copies from the build context into its build stage (the models, copied into
    the runtime stage, are no part of the package)."""
    sources = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            sources += [s.rstrip("/") for s in line.split()[1:-1]]
    return tuple(s for s in sources if s != "model_repository")


def wheel_files(tmp_path: Path, sources: tuple[str, ...], *, leave_out: tuple[str, ...] = ()) -> set[str]:
    """The file names in a wheel built from a copy of ``sources`` (minus ``leave_out``)."""
    pytest.importorskip("setuptools", minversion="68", reason="pyproject.toml's build-system wants setuptools>=68")
    source = tmp_path / "src"
    for name in sources:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    for name in leave_out:
        shutil.rmtree(source / name)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
                             "--no-build-isolation", "--wheel-dir", str(tmp_path / "dist"), str(source)],
                            capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (tmp_path / "dist").glob("ganserve-*.whl")
    return set(zipfile.ZipFile(wheel).namelist())


def test_the_wheel_claims_only_the_name_ganserve(tmp_path: Path) -> None:
    files = wheel_files(tmp_path, ("pyproject.toml", "setup.py", "README.md", "ganserve", "serve", "training"))
    assert {name.split("/")[0] for name in files} == {"ganserve", "ganserve-0.1.0.dist-info"}
    assert {"ganserve/cli.py", "ganserve/dev/triton_cpu.py", "ganserve/dev/triton_python_model.py",
            "ganserve/serve/app.py", "ganserve/serve/grpc/_generated/ganserve/v1/ganserve_pb2.py",
            "ganserve/training/loop.py", "ganserve/training/commands/train.py",
            "ganserve/training/assets/mnist_classifier.pt"} <= files
    # every module of the three folders is in it, under its installed name
    for package, folder in (("ganserve", "ganserve"), ("ganserve/serve", "serve"), ("ganserve/training", "training")):
        for path in (ROOT / folder).rglob("*.py"):
            assert f"{package}/{path.relative_to(ROOT / folder).as_posix()}" in files, path


def test_the_gateway_image_files_build_the_gateway_alone(tmp_path: Path) -> None:
    assert set(gateway_files()) == {"pyproject.toml", "setup.py", "README.md", "ganserve", "serve"}
    files = wheel_files(tmp_path, gateway_files(), leave_out=(DEV_TOOLS,))
    assert {name.split("/")[0] for name in files} == {"ganserve", "ganserve-0.1.0.dist-info"}
    assert "ganserve/serve/app.py" in files and "ganserve/serve/cli.py" in files
    # the playground's files (package data): the gateway serves them at /
    assert {f"ganserve/serve/http/static/{name}" for name in ("index.html", "app.js", "style.css", "favicon.svg")} <= files
    assert not [name for name in files if name.startswith(("ganserve/training/", "ganserve/dev/"))]
