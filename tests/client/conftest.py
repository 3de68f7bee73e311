"""Fixtures of the client tests: one gateway (tiny generators, a 2x super-resolution model and a
text-to-image ensemble, small upload limits) shared by the session (helpers are in
``tests.client.helpers``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serve.helpers import (
    RunningGateway,
    add_super_resolution,
    add_text2img,
    build_repository,
    running_gateway,
    test_settings,
)


@pytest.fixture(scope="session")
def client_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny`` (versions 1, 2), three broken models, ``sr2x`` (16 x 16 tiles, overlap 4) and ``text2img``."""
    root = build_repository(tmp_path_factory.mktemp("client_repository"))
    add_super_resolution(root, "sr2x", scale=2, tile=16, overlap=4)
    add_text2img(root)
    return root


@pytest.fixture(scope="session")
def gateway(client_repo: Path) -> Iterator[RunningGateway]:
    """Uploads up to 16 KiB and 64 x 64 pixels."""
    with running_gateway(test_settings(client_repo, max_upload_bytes=16384, max_pixels=64 * 64)) as running:
        yield running
