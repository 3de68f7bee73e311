"""ganserve.training.model_card: the card written next to an export, from the checkpoint and its metrics."""

import json

from ganserve.cli import main
from ganserve.training.model_card import _train_commands, write_model_card


def test_card_reproduce_block_lists_each_distinct_resume_command():
    train = "ganserve train --preset p --out runs/x"
    resume = "ganserve train --preset p --out runs/x --resume --steps 900"
    assert _train_commands({"argv": train, "resumed_with": [resume, resume]}) == f"{train}\n{resume}"
    assert _train_commands({"argv": train}) == train


def test_super_resolution_card_from_the_evaluate_commands_json(sr_exported, photo_dir, tmp_path, capsys):
    ckpt, result = sr_exported
    assert main(["evaluate", str(ckpt), "--data", str(photo_dir), "--json", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "bicubic" in out and "photo0.png" in out and "mean" in out
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["kind"] == "super-resolution" and report["scale"] == 2 and len(report["images"]) == 3
    card = write_model_card(ckpt, metrics_path=tmp_path / "m.json", result=result).read_text()
    assert "SRResNet" in card and "bicubic" in card and "Quality target: the PSNR-oriented model beats bicubic" in card
    assert "ganserve train" in card and "issue" not in card
