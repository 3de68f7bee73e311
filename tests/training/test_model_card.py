"""training.model_card: the card written next to an export, from the checkpoint and its metrics."""

import json

from training.metrics.super_resolution import evaluate, report_to_json
from training.model_card import _train_commands, write_model_card


def test_card_reproduce_block_lists_each_distinct_resume_command():
    train = "ganserve train --preset p --out runs/x"
    resume = "ganserve train --preset p --out runs/x --resume --steps 900"
    assert _train_commands({"argv": train, "resumed_with": [resume, resume]}) == f"{train}\n{resume}"
    assert _train_commands({"argv": train}) == train


def test_super_resolution_card(sr_exported, photo_dir, tmp_path):
    ckpt, result = sr_exported
    (tmp_path / "m.json").write_text(json.dumps(report_to_json(evaluate(ckpt, data=photo_dir))))
    card = write_model_card(ckpt, metrics_path=tmp_path / "m.json", result=result).read_text()
    assert "SRResNet" in card and "bicubic" in card and "Quality target: the PSNR-oriented model beats bicubic" in card
    assert "ganserve train" in card and "issue" not in card
