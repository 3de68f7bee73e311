"""``ort_intra_op_threads`` 0 (the default): each model gets ONNX Runtime's thread pool only when the pool
runs it markedly faster than one thread (ganserve.serve.backends.onnxruntime)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from ganserve.serve.backends.onnxruntime import keeps_thread_pool
from ganserve.serve.runtime import Runtime
from tests.serve.helpers import add_generator, add_slow_super_resolution, test_settings


def test_the_pool_must_be_worth_its_cpu() -> None:
    assert keeps_thread_pool(one_s=0.090, many_s=0.048)      # srresnet's tile on 2 cores: 1.9x faster
    assert not keeps_thread_pool(one_s=0.0081, many_s=0.0075)  # dcgan's batch: 8 % faster for 2x the threads
    assert not keeps_thread_pool(one_s=0.010, many_s=0.008)   # 1.25x
    assert not keeps_thread_pool(one_s=0.0054, many_s=0.0043)  # text2img's generator: 1.27x
    assert not keeps_thread_pool(one_s=0.015, many_s=0.010)   # 1.5x: not more than the bar


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("threads")
    add_generator(root, "small", latent_dim=8, size=8)
    add_slow_super_resolution(root, "sr", channels=32, layers=3)
    return root


def _load(repo: Path, threads: int) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """(intra-op threads of each model's session, the outputs of the same inputs)"""
    async def main() -> tuple[dict[str, int], dict[str, np.ndarray]]:
        runtime = Runtime(test_settings(repo, ort_intra_op_threads=threads))
        await runtime.load()
        try:
            backend = runtime.backend
            sessions = {name: backend._instances[name, 1].session for name in ("small", "sr")}
            chosen = {name: s.get_session_options().intra_op_num_threads for name, s in sessions.items()}
            z = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
            lr = np.random.default_rng(1).random((1, 3, 24, 24)).astype(np.float32)
            outputs = {"small": (await backend.infer("small", 1, {"z": z}))["image"],
                       "sr": (await backend.infer("sr", 1, {"lr": lr}))["sr"]}
            return chosen, outputs
        finally:
            await runtime.close()

    return asyncio.run(main())


def test_each_model_gets_the_threads_it_needs_and_the_same_results(repo: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ganserve.serve.backends.onnxruntime"):
        chosen, outputs = _load(repo, threads=0)
    lines = {name: next((r.getMessage() for r in caplog.records if r.getMessage().startswith(f"model {name} ")), None)
             for name in chosen}
    if (os.cpu_count() or 1) == 1:
        assert chosen == {"small": 0, "sr": 0} and lines == {"small": None, "sr": None}  # nothing to choose
    else:
        for name, threads in chosen.items():
            assert threads in (0, 1)  # 0: ONNX Runtime's pool
            assert lines[name] is not None
            assert ("1 intra-op thread(s)" in lines[name]) == (threads == 1), lines[name]
        assert chosen["small"] == 1  # 8 x 8 pixels from 8 numbers: nothing for a pool to share
    _, single = _load(repo, threads=1)
    for name in outputs:
        np.testing.assert_allclose(outputs[name], single[name], rtol=0, atol=1e-5)
