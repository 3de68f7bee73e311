"""Fixtures for the gateway tests: a tiny model repository and a real gateway serving it (helpers are
in ``tests.serve.helpers``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serve.helpers import RunningGateway, build_repository, running_gateway, test_settings


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny`` (versions 1, 2) plus three broken models."""
    return build_repository(tmp_path_factory.mktemp("model_repository"))


@pytest.fixture(scope="session")
def gateway(model_repo: Path) -> Iterator[RunningGateway]:
    """A gateway on loopback with default behaviour (no queue delay), shared by the session."""
    with running_gateway(test_settings(model_repo)) as running:
        yield running


@pytest.fixture(scope="session")
def full_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The standard repository plus a 2x super-resolution model ``sr2x`` on 16 x 16 tiles (overlap 4)."""
    from tests.serve.helpers import add_super_resolution

    root = build_repository(tmp_path_factory.mktemp("full_repository"))
    add_super_resolution(root, "sr2x", scale=2, tile=16, overlap=4)
    return root


@pytest.fixture(scope="session")
def full_gateway(full_repo: Path) -> Iterator[RunningGateway]:
    """A gateway that can also upscale, with small upload limits (16 KiB, 64 x 64 pixels)."""
    with running_gateway(test_settings(full_repo, max_upload_bytes=16384, max_pixels=64 * 64)) as running:
        yield running
