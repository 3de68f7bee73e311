"""The ``ganserve`` command, run as a user runs it: a real subprocess."""

import json
import os
import subprocess
import sys

import pytest

from tests.training.helpers import ROOT


def ganserve(*args, cwd=None, env=None, timeout=180):
    return subprocess.run([sys.executable, "-m", "ganserve", *args], capture_output=True, text=True, check=False,
                          cwd=cwd or ROOT, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def test_train_then_export_end_to_end(tmp_path):
    run = ganserve("train", "--preset", "dcgan-digits-tiny", "--out", str(tmp_path / "run"), "--steps", "12",
                   "--no-progress")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["steps"] == 12
    exp = ganserve("export", "--checkpoint", str(tmp_path / "run" / "checkpoint.pt"),
                   "--repository", str(tmp_path / "repo"), "--name", "digits")
    assert exp.returncode == 0, exp.stderr
    assert "max abs diff" in exp.stdout
    assert (tmp_path / "repo" / "digits" / "1" / "model.onnx").is_file()
    assert (tmp_path / "repo" / "digits" / "config.pbtxt").is_file()
    # resume continues to a new step count
    more = ganserve("train", "--preset", "dcgan-digits-tiny", "--out", str(tmp_path / "run"), "--steps", "15",
                    "--no-progress", "--resume")
    assert more.returncode == 0, more.stderr
    assert "step 12 -> 15" in more.stderr
    again = ganserve("train", "--preset", "dcgan-digits-tiny", "--out", str(tmp_path / "run"), "--no-progress")
    assert again.returncode == 2 and "pass --resume" in again.stderr


@pytest.mark.parametrize("args,message", [
    (["train", "--preset", "stylegan9"], "unknown preset 'stylegan9'; valid presets: dcgan-mnist"),
    (["train", "--preset", "dcgan-digits-tiny", "--loss", "wasserstein"], "valid losses: bce, hinge, lsgan, wgan-gp"),
    (["train", "--data", "/nonexistent/mnist"], "MNIST folder /nonexistent/mnist does not exist"),
    (["train", "--preset", "dcgan-digits-tiny", "--batch-size", "0"], "train.batch_size must be positive"),
    (["train", "--preset", "dcgan-digits-tiny", "--set", "train.lr_d=2"], "train.lr_d must be in (0, 1)"),
    (["train", "--preset", "dcgan-digits-tiny", "--set", "model.foo=1"], "unknown field model.foo; valid fields"),
    (["train", "--preset", "dcgan-digits-tiny", "--set", "model.image_size=30"], "4*2^k or 7*2^k"),
    (["train", "--preset", "dcgan-digits-tiny", "--set", "train.loss=wgan-gp"], "set model.d_norm=layer"),
    (["train", "--preset", "dcgan-digits-tiny", "--device", "cuda"], "no CUDA device is available"),
    (["train", "--steps", "many"], "invalid int value"),
    (["export", "--checkpoint", "/nonexistent.pt"], "checkpoint /nonexistent.pt does not exist"),
    (["evaluate", "/nonexistent.onnx", "--data", "/tmp"], "does not exist"),
    (["frobnicate"], "unknown command 'frobnicate'; valid commands: train"),
])
def test_user_errors_are_one_line_exit_2(args, message, tmp_path):
    result = ganserve(*args, "--out", str(tmp_path / "o")) if args[0] == "train" else ganserve(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_print_config_shows_overrides():
    result = ganserve("train", "--preset", "dcgan-mnist", "--set", "train.ema_decay=0.99", "--print-config")
    assert result.returncode == 0
    cfg = json.loads(result.stdout)
    assert cfg["train"]["ema_decay"] == 0.99 and cfg["model"]["image_size"] == 28
