"""DistributedDataParallel on CPU: two real processes under torchrun, gloo backend."""

import json
import os
import socket
import subprocess
import sys

from tests.training.helpers import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args, timeout=240):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    return subprocess.run(check=False, args=[sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
                           "--master-addr=127.0.0.1", f"--master-port={free_port()}", *args],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)


def test_ranks_stay_in_sync_on_different_shards_and_only_rank0_writes(tmp_path):
    result = torchrun(str(ROOT / "tests" / "training" / "ddp_worker.py"), str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2 and r0["step"] == r1["step"] == 4
    assert r0["g_sha256"] == r1["g_sha256"]            # gradients all-reduced: identical weights
    assert not set(r0["first_batch"]) & set(r1["first_batch"])  # each rank reads its own shard
    assert (tmp_path / "checkpoint.pt").is_file()


def test_cli_under_torchrun_logs_once(tmp_path):
    result = torchrun("-m", "ganserve", "train", "--preset", "dcgan-digits-tiny", "--steps", "6",
                      "--out", str(tmp_path), "--no-progress", "--set", "train.batch_size=16")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("2 process(es)") == 1
    steps = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))
    import torch

    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["meta"]["world_size"] == 2
