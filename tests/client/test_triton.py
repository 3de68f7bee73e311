"""The client and the command-line clients against a gateway in front of a REAL Triton server (the CPU
Triton of ``ganserve.dev.triton_cpu``, as ``tests/serve/test_triton.py`` runs it): one server and one
gateway for the module, a generator and a super-resolution model. Skips where Triton is not installed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ganserve.cli import main as ganserve
from ganserve.dev.triton_cpu import LocalTriton, TritonNotInstalled, derive_cpu_repository
from tests.client.helpers import MODES, PROTOCOLS, call, direct_images, direct_upscale, png, url
from tests.serve.helpers import (
    RunningGateway,
    add_generator,
    add_super_resolution,
    running_gateway,
    test_settings,
)


@pytest.fixture(scope="module")
def via_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    root = tmp_path_factory.mktemp("triton_client_repository")
    add_generator(root, "small", latent_dim=6, size=4, max_batch_size=4, weight_seed=3)
    add_super_resolution(root, "sr2x", scale=2, tile=16, overlap=4)
    cpu_repo = tmp_path_factory.mktemp("triton") / "cpu_repository"
    derive_cpu_repository(root, cpu_repo)
    try:
        server = LocalTriton(cpu_repo)
    except TritonNotInstalled as exc:
        pytest.skip(f"no Triton server here: {exc}")
    server.start()
    try:
        settings = test_settings(root, backend="triton", triton_url=server.grpc_url, triton_health_interval_s=0.2,
                                 triton_startup_timeout_s=30)
        with running_gateway(settings) as running:
            yield running
    finally:
        server.close()


@pytest.mark.parametrize("protocol,mode", [(p, m) for p in PROTOCOLS for m in MODES])
def test_the_client_through_triton(via_triton: RunningGateway, protocol: str, mode: str) -> None:
    images = call(url(via_triton, protocol), mode, "generate", 6, seed=20)  # > max_batch_size: two Triton calls
    assert [(i.seed, i.data) for i in images] == direct_images(via_triton, {"n": 6, "seed": 20})
    assert {(i.model, i.version) for i in images} == {("small", 1)}
    assert {m.name for m in call(url(via_triton, protocol), mode, "models").models} == {"small", "sr2x"}


def test_the_upscale_command_through_triton(via_triton: RunningGateway, tmp_path: Path, capsys) -> None:
    for k in range(3):
        (tmp_path / f"{k}.png").write_bytes(png((20 + k, 18, 3), seed=k))
    status = ganserve(["upscale", str(tmp_path / "*.png"), "-o", str(tmp_path / "out"), "--concurrency", "3",
                       "--url", url(via_triton, "grpc")])
    assert status == 0, capsys.readouterr().err
    for k in range(3):
        expected = direct_upscale(via_triton, (tmp_path / f"{k}.png").read_bytes())
        assert (tmp_path / "out" / f"{k}.png").read_bytes() == expected
