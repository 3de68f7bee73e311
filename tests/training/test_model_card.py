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
    assert "| sharpness |" in card and "sharpness = high-frequency energy" in card


def test_srgan_card_reports_srresnet_alongside_with_sharpness_and_sample_sheet(sr_exported, photo_dir, tmp_path):
    """An SRGAN stage 2 from an exported SRResNet, evaluated with --compare: the card's table has the
    SRResNet's columns, the sharpness verdict, and samples.png (five columns) beside it."""
    from PIL import Image

    from ganserve.training.export import export_checkpoint
    from ganserve.training.loop import Trainer
    from ganserve.training.model_card import write_model_cards
    from tests.training.helpers import sr_config

    _, srresnet = sr_exported
    out = tmp_path / "srgan"
    trainer = Trainer(sr_config(photo_dir, "model.family=srgan", "train.content_loss=feature-matching",
                                f"train.init_from={srresnet.onnx_path}", "train.steps=2"), out_dir=out)
    trainer.fit()
    trainer.save_checkpoint()
    ckpt = out / "checkpoint.pt"
    assert main(["evaluate", str(ckpt), "--data", str(photo_dir), "--compare", str(srresnet.onnx_path),
                 "--json", str(tmp_path / "m.json")]) == 0
    report = json.loads((tmp_path / "m.json").read_text())
    results = export_checkpoint(ckpt, repository=tmp_path / "repo", name="srgan", max_batch_size=8)
    card_path, sheet = write_model_cards(ckpt, metrics_path=tmp_path / "m.json", results={"srgan": results},
                                         name="srgan")
    card = card_path.read_text()
    assert "SRGAN" in card and f"G initialised from `{srresnet.onnx_path}`" in card
    assert "| srresnet PSNR | SSIM | sharpness |" in card
    verdict = "met" if report["sharpness"] > report["reference_sharpness"] else "not met"
    assert f"Sharpness target: more high-frequency energy than srresnet — **{verdict}**" in card
    assert f"--compare {srresnet.onnx_path} --samples samples.png" in card and "](samples.png)" in card
    assert sheet == card_path.parent / "samples.png" and Image.open(sheet).size[0] == 90 + 5 * (2 * 96 + 4)


def _t2i_report(*, diversity_ratio: float, blank_frames: int) -> dict:
    acc = {"digit_acc": 0.95, "colour_acc": 0.99, "both_acc": 0.94, "samples": 100, "fid": 50.0}
    div = {"prompts": 4, "seeds": 8, "pixel": 0.05 * diversity_ratio, "pixel_real": 0.05, "pixel_ratio": diversity_ratio,
           "feature": 30 * diversity_ratio, "feature_real": 30.0, "feature_ratio": diversity_ratio,
           "collapsed_prompts": 0.0}
    group = {"combos": 2, "per_combo": 50, "fid_floor_real_train": 5.0, "heldout_prompts": acc,
             "train_prompts": acc, "diversity": div}
    steps = [{"mix": m / 10, "confidence": 0.9, "foreground": 1.0, "digit_a": 1.0, "digit_b": 0.0, "blank": 0.0}
             for m in range(11)]
    return {"groups": {"seen": group, "heldout": group},
            "mix": {"pairs": [{"a": "a red seven", "b": "a blue three", "steps": steps}], "seeds": 16,
                    "real_foreground": 0.2, "real_ink": 0.15, "min_confidence": 0.9, "min_foreground": 1.0,
                    "min_ink": 0.8,
                    "blank_frames": blank_frames, "frames": 176}}


def test_text_to_image_card_has_the_sample_sheet_diversity_and_mix(t2i_run, tmp_path):
    from PIL import Image

    from ganserve.training.export import export_checkpoint_parts
    from ganserve.training.model_card import write_model_cards

    tmp, _ = t2i_run
    ckpt = tmp / "run" / "checkpoint.pt"
    results = export_checkpoint_parts(ckpt, repository=tmp_path / "repo", name="t2i", max_batch_size=8)
    for ratio, blanks, verdicts in ((0.8, 0, ("**met** (lowest ratio 0.80)", "**met** (worst step 0.90, 0 blank")),
                                    (0.2, 5, ("**not met** (lowest ratio 0.20)", "**not met** (worst step 0.90, 5 blank"))):
        (tmp_path / "m.json").write_text(json.dumps(_t2i_report(diversity_ratio=ratio, blank_frames=blanks)))
        paths = write_model_cards(ckpt, metrics_path=tmp_path / "m.json", results=results, name="t2i")
        card = (tmp_path / "repo" / "t2i" / "README.md").read_text()
        assert "](samples.png)" in card and "Per-prompt diversity" in card and "Prompt mix" in card
        assert "| a red seven -> a blue three | 0.90 / 1.00 |" in card
        for verdict in verdicts:
            assert verdict in card
    sheet = tmp_path / "repo" / "t2i" / "samples.png"
    assert sheet in paths and Image.open(sheet).size[0] > 200


def _dcgan_report(*, confidences: list[float], fids: list[float]) -> list[dict]:
    def row(source, fid, conf, truncation=None, kid=(30.0, 5.0)):
        return {"source": source, "samples": 2000, "fid": fid, "kid": kid[0] if truncation is None else None,
                "kid_std": kid[1] if truncation is None else None, "classes_covered": 10, "min_class_share": 0.08,
                "kl_to_uniform": 0.01, "class_shares": [0.1] * 10, "confidence": conf, "pixel_diversity": 0.16,
                "feature_diversity": 40.0, "truncation": truncation}
    return [row("m.pt", fids[0], confidences[0]), row("reference: real digits shifted 1 px", 30.0, 0.98),
            *(row(f"m.pt truncation {t}", f, c, truncation=t)
              for t, f, c in zip((1.5, 1.0, 0.7, 0.5), fids[1:], confidences[1:]))]


def test_dcgan_card_has_the_sample_sheet_and_the_truncation_curve_with_its_verdict(dcgan_tiny, tmp_path):
    from PIL import Image

    from ganserve.training.export import export_checkpoint_parts
    from ganserve.training.model_card import write_model_cards

    ckpt = dcgan_tiny / "run" / "checkpoint.pt"
    results = export_checkpoint_parts(ckpt, repository=tmp_path / "repo", name="dcgan", max_batch_size=8)
    cases = (([0.90, 0.91, 0.93, 0.94, 0.95], [25, 26, 28, 30, 36], ("**met** (0.900 -> 0.950)", "**met** (worst 36.00")),
             ([0.89, 0.88, 0.88, 0.84, 0.75], [25, 26, 58, 126, 415], ("**not met** (0.890 -> 0.750)",
                                                                        "**not met** (worst 415.00")))
    for confidences, fids, verdicts in cases:
        (tmp_path / "m.json").write_text(json.dumps(_dcgan_report(confidences=confidences, fids=fids)))
        paths = write_model_cards(ckpt, metrics_path=tmp_path / "m.json", results=results, name="dcgan")
        card = (tmp_path / "repo" / "dcgan" / "README.md").read_text()
        assert "](samples.png)" in card and "### Truncation" in card and "--truncation-curve" in card
        assert "| 0.5 | " in card and "| ∞ (none) | 25.00 |" in card
        assert "FID no worse than the one-pixel-shift reference — **met**" in card
        for verdict in verdicts:
            assert verdict in card
    sheet = tmp_path / "repo" / "dcgan" / "samples.png"
    assert sheet in paths and Image.open(sheet).size[0] > 200
