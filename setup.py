"""The package list, which pyproject.toml cannot express: everything installs under the one name
``ganserve``, with the folders ``serve/`` and ``training/`` mapped to ``ganserve.serve`` and
``ganserve.training`` by ``[tool.setuptools.package-dir]`` (declared there). Each mapped folder's
packages are found here under their installed names; a folder that is absent is not installed (the
gateway image builds from ``ganserve/`` and ``serve/`` only)."""

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
