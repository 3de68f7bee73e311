"""The package list, which pyproject.toml cannot express: everything installs under the one name
``ganserve``, with the folders ``serve/`` and ``training/`` mapped to ``ganserve.serve`` and
``ganserve.training`` by ``[tool.setuptools.package-dir]`` (declared there). Each mapped folder's
packages are found here under their installed names; a folder that is absent is not installed (the
gateway image builds from ``ganserve/`` and ``serve/`` only).

Editable installs (``pip install -e .``, what scripts/bootstrap.sh does) put setuptools' finder on
``sys.meta_path`` with the same mapping, so ``ganserve.serve`` resolves to ``serve/`` also when the
folder ``ganserve/`` itself is imported from the repository root on ``sys.path`` (pytest, ``python -m
ganserve`` from the root): that folder has no ``serve/``, and the finder, asked next, answers from its
mapping. A regular install run from the repository root is shadowed by the folder ``ganserve/`` like any
flat layout: run it from elsewhere (the Dockerfile's check uses ``python -I``)."""

import tomllib
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
PACKAGE_DIR = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]

packages = []
for name, folder in PACKAGE_DIR.items():
    if (ROOT / folder / "__init__.py").is_file():
        packages += [name] + [f"{name}.{sub}" for sub in find_packages(ROOT / folder)]

setup(packages=packages)
