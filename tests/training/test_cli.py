"""The training side of the ``ganserve`` command line: a user error is one line on stderr and exit
status 2 (checked in-process, through the same entry point as the installed command), and one real
subprocess run as the smoke test."""

import json
import os
import subprocess
import sys

import pytest

from ganserve.cli import main
from tests.training.helpers import ROOT


def ganserve(capsys, *args: str) -> tuple[int, str, str]:
    """``ganserve ARGS`` in this process: (exit status, stdout, stderr)."""
    status = main(list(args))
    out = capsys.readouterr()
    return status, out.out, out.err


def test_smoke_train_as_a_user_runs_it(tmp_path):
    run = subprocess.run([sys.executable, "-m", "ganserve", "train", "--preset", "dcgan-digits-tiny", "--out",
                          str(tmp_path / "run"), "--steps", "3", "--no-progress"], capture_output=True, text=True,
                         check=False, cwd=ROOT, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr
    assert "training dcgan on scikit-learn digits" in run.stderr and "done: 3 steps" in run.stderr
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


def test_train_then_export_then_resume(tmp_path, capsys):
    status, _, err = ganserve(capsys, "train", "--preset", "dcgan-digits-tiny", "--out", str(tmp_path / "run"),
                              "--steps", "12", "--no-progress")
    assert status == 0, err
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["steps"] == 12
    status, out, err = ganserve(capsys, "export", "--checkpoint", str(tmp_path / "run" / "checkpoint.pt"),
                                "--repository", str(tmp_path / "repo"), "--name", "digits")
    assert status == 0, err
    assert "max abs diff" in out
    assert (tmp_path / "repo" / "digits" / "1" / "model.onnx").is_file()
    assert (tmp_path / "repo" / "digits" / "config.pbtxt").is_file()
    # resume continues to a new step count
    status, _, err = ganserve(capsys, "train", "--preset", "dcgan-digits-tiny", "--out", str(tmp_path / "run"),
                              "--steps", "15", "--no-progress", "--resume")
    assert status == 0, err
    assert "step 12 -> 15" in err
    status, _, err = ganserve(capsys, "train", "--preset", "dcgan-digits-tiny", "--out", str(tmp_path / "run"),
                              "--no-progress")
    assert status == 2 and "pass --resume" in err


@pytest.mark.parametrize("args,message", [
    (["train", "--preset", "stylegan9"], "unknown preset 'stylegan9'; valid presets: dcgan-mnist"),
    (["train", "--preset", "dcgan-digits-tiny", "--loss", "wasserstein"], "valid losses: bce, hinge, lsgan, wgan-gp"),
    (["train", "--data", "/nonexistent/mnist"], "MNIST folder /nonexistent/mnist does not exist"),
    (["train", "--preset", "dcgan-digits-tiny", "--batch-size", "0"], "train.batch_size must be positive"),
    (["train", "--preset", "dcgan-digits-tiny", "--set", "train.lr_d=2"], "train.lr_d must be in (0, 1)"),
    (["train", "--preset", "dcgan-digits-tiny", "--set", "model.foo=1"], "unknown field model.foo; valid fields"),
    (["train", "--preset", "dcgan-digits-tiny", "--set", "model.image_size=30"], "4*2^k or 7*2^k"),
    (["train", "--preset", "dcgan-digits-tiny", "--set", "train.loss=wgan-gp"], "set model.d_norm=layer"),
    (["train", "--preset", "dcgan-digits-tiny", "--set", "model.family=stylegan"], "valid families: dcgan"),
    (["train", "--preset", "dcgan-digits-tiny", "--device", "cuda"], "no CUDA device is available"),
    (["train", "--steps", "many"], "invalid int value"),
    (["train-text-encoder", "--preset", "dcgan-mnist", "--out", "enc.pt"], "not a gan-int-cls preset"),
    (["export", "--checkpoint", "/nonexistent.pt"], "checkpoint /nonexistent.pt does not exist"),
    (["evaluate", "/nonexistent.onnx", "--data", "/tmp"], "does not exist"),
    (["evaluate", "--data", "/tmp"], "evaluate needs a model"),
    (["frobnicate"], "unknown command 'frobnicate'; valid commands: train"),
])
def test_user_errors_are_one_line_exit_2(args, message, tmp_path, capsys):
    if args[0] == "train":
        args = [*args, "--out", str(tmp_path / "o")]
    status, out, err = ganserve(capsys, *args)
    assert status == 2, (out, err)
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_print_config_shows_overrides(capsys):
    status, out, _ = ganserve(capsys, "train", "--preset", "dcgan-mnist", "--set", "train.ema_decay=0.99",
                              "--print-config")
    assert status == 0
    cfg = json.loads(out)
    assert cfg["train"]["ema_decay"] == 0.99 and cfg["model"]["image_size"] == 28


def test_evaluate_takes_the_options_of_the_models_kind(sr_stage1, t2i_run, tmp_path, capsys):
    """``ganserve evaluate MODEL``: the model's kind chooses the metrics, so the options differ."""
    # text-conditional: an 8x8 colour-digits model (text2img-tiny) needs no --data: measured against
    # scikit-learn's digits in MNIST's frame
    status, out, err = ganserve(capsys, "evaluate", str(t2i_run[0] / "run" / "checkpoint.pt"), "--per-seen", "10",
                                "--per-heldout", "10", "--seeds", "2")
    assert status == 0, err
    assert "per-prompt diversity" in out and "prompt mix" in out and "heldout (10)" in out
    for model, option in ((sr_stage1[1], "--no-tiling"), (t2i_run[0] / "run" / "checkpoint.pt", "--per-heldout")):
        with pytest.raises(SystemExit) as exit_:
            main(["evaluate", str(model), "--help"])
        assert exit_.value.code == 0 and option in capsys.readouterr().out
    # a kind without metrics: the text encoder alone
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["tokens"], ["embedding"])], "encoder",
                              [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph)
    helper.set_model_props(model, {"ganserve.kind": "text-encoder"})
    onnx.save(model, str(tmp_path / "encoder.onnx"))
    status, _, err = ganserve(capsys, "evaluate", str(tmp_path / "encoder.onnx"))
    assert status == 2 and "no quality metrics for a 'text-encoder' model" in err
    (tmp_path / "empty.onnx").write_bytes(b"")
    status, _, err = ganserve(capsys, "evaluate", str(tmp_path / "empty.onnx"))
    assert status == 2 and "is not a ganserve model" in err
