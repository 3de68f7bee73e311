"""Model card (``<repository>/<model>/README.md``) from a checkpoint, its export and its metrics.

One card layout for every kind: a title and summary, how to reproduce, the training facts, then a
quality section. The parts that differ per model kind (summary, evaluate command, quality table, the
issue's bar) come from a :class:`CardSection` registered under the kind in ``ganserve.kind``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ganserve.errors import UsageError
from training.config import RunConfig
from training.families import get_family
from training.loop import load_checkpoint_file


def _hms(seconds: float) -> str:
    return str(dt.timedelta(seconds=round(seconds)))


@dataclass(frozen=True)
class CardSection:
    title: str          # after "<name> — "
    summary: str        # what the model is, its tensors and value ranges
    evaluate: str       # the `ganserve evaluate ...` line of the reproduce block
    quality: str        # the quality section (markdown)
    optimiser: str      # losses and learning rates, for the "generator steps" row


def _dcgan_card(ckpt: dict, cfg: dict, reports, checkpoint: str) -> CardSection:
    model, refs = reports[0], reports[1:]
    shift = next((r for r in refs if "shifted" in r["source"]), None)
    passes_fid = shift is not None and model["fid"] <= shift["fid"]
    passes_modes = model["classes_covered"] == 10 and model["min_class_share"] >= 0.05
    rows = "\n".join(
        f"| {r['source'] if r is not model else 'this model (EMA generator, uint8 output)'} | "
        f"{r['fid']:.2f} | {r['kid']:.0f} ± {r['kid_std']:.0f} | {r['classes_covered']} | "
        f"{r['min_class_share']:.3f} | {r['kl_to_uniform']:.4f} |" for r in reports)
    return CardSection(
        title="DCGAN generator trained on MNIST",
        summary=f"""Unconditional DCGAN (Radford et al. 2015) generator, 28x28 grey digits, trained and exported by
ganserve. Input `z` FP32 `[batch, {cfg['model']['latent_dim']}]` ~ N(0, 1); output `image` FP32
`[batch, 1, 28, 28]` in [-1, 1]. The weights are the exponential moving average of the generator
(decay {cfg['train']['ema_decay']}) with standing BatchNorm statistics; see `docs/model-contract.md`.""",
        evaluate=f"ganserve evaluate {checkpoint} --data ../shared/data/mnist --json metrics.json",
        quality=f"""`ganserve evaluate` with {model['samples']} samples, features from ganserve's own MNIST classifier
(`training/assets/mnist_classifier.pt`, sha256-pinned) against the MNIST test set. Reference points
are computed the same way; a classifier's feature space is very sensitive, so compare with them
rather than with Inception-based FIDs from papers.

| source | FID | KID | classes (>= 1%) | min class share | KL to uniform |
| --- | --- | --- | --- | --- | --- |
{rows}

Class shares of the samples (digits 0-9): {model['class_shares']}.

Bar (issue 2): all 10 digits with none under 5% — **{'met' if passes_modes else 'not met'}**;
FID no worse than the one-pixel-shift reference — **{'met' if passes_fid else 'not met'}**.""",
        optimiser=_optimiser(cfg["train"], f"loss `{cfg['train']['loss']}`", with_d=True),
    )


def _optimiser(t: dict, losses: str, *, with_d: bool) -> str:
    lr = f"Adam lr G {t['lr_g']} / D {t['lr_d']}" if with_d else f"Adam lr {t['lr_g']}"
    return f"batch {t['batch_size']}, {losses}, {lr}, beta1 {t['beta1']}"


def _sr_card(ckpt: dict, cfg: dict, report, checkpoint: str) -> CardSection:
    m, t = cfg["model"], cfg["train"]
    s, tile = m["scale"], m["tile_size"]
    adversarial = m["family"] == "srgan"
    if not adversarial:
        losses = f"pixel loss `{t['pixel_loss']}` only (SRResNet, PSNR-oriented)"
    elif t["content_loss"] == "vgg":
        losses = (f"VGG19 content loss (`{t['vgg_layer']}`, weights `{t['vgg_weights']}`, weight "
                  f"{t['content_weight']}) + {t['adv_weight']} x adversarial (`{t['loss']}`)")
    elif t["content_loss"] == "feature-matching":
        losses = (f"content loss = pixel `{t['pixel_loss']}` + {t['fm_weight']} x feature matching on the "
                  f"discriminator's activations (the documented fallback: no VGG19 weights were given), "
                  f"+ {t['adv_weight']} x adversarial (`{t['loss']}`)")
    else:
        losses = f"pixel `{t['pixel_loss']}` + {t['adv_weight']} x adversarial (`{t['loss']}`) (SRGAN-MSE)"
    init = f" G initialised from `{t['init_from']}`." if t.get("init_from") else ""
    rows = "\n".join(
        f"| {i['image']} | {i['size']} | {i['psnr']:.2f} | {i['bicubic_psnr']:.2f} | "
        f"{i['psnr'] - i['bicubic_psnr']:+.2f} | {i['ssim']:.4f} | {i['bicubic_ssim']:.4f} |"
        for i in report["images"])
    gain = report["psnr_gain"]
    tiling = ""
    if report.get("tiling"):
        close = report.get("tiled_vs_whole_psnr")
        tiling = (f"\nTiling ({report['tiling']}, each output pixel from the tile that owns it, no blending) "
                  "against one whole-image pass: " + ("identical output." if close is None else
                  f"PSNR (Y) between the two >= {close:.1f} dB on every image.") + "\n")
    bar = (f"Bar (issue 5): the PSNR-oriented model beats bicubic by >= 1.0 dB (Y) on held-out images — "
           f"**{'met' if gain >= 1.0 else 'not met'}** ({gain:+.2f} dB)." if not adversarial else
           "Adversarial models trade PSNR for texture; the bar applies to the PSNR-oriented `srresnet`, "
           f"and these figures are reported next to it ({gain:+.2f} dB vs bicubic).")
    return CardSection(
        title=f"x{s} super-resolution ({'SRGAN' if adversarial else 'SRResNet'})",
        summary=f"""{'SRGAN' if adversarial else 'SRResNet'} (Ledig et al. 2017) x{s} super-resolution generator trained and
exported by ganserve: {m['blocks']} residual blocks of width {m['g_width']}, {s.bit_length() - 1} PixelShuffle x2
upsampling stage(s), 9x9 head and tail. Trained with {losses}.{init}

Input `lr` FP32 `[batch, 3, h, w]`, RGB in [0, 1] (`ganserve.input_range`); output `sr` FP32
`[batch, 3, {s}h, {s}w]`, RGB in [0, 1] (clamped in the graph; `ganserve.value_range`). The ONNX graph
and `config.pbtxt` (`[3, -1, -1]` -> `[3, -1, -1]`) take any h and w. The gateway cuts images into
{tile}x{tile} LR tiles overlapping by {m['tile_overlap']} px by default (`ganserve.tile_size`, `ganserve.tile_overlap`;
`/upscale` takes others per request) and sends each request's tiles, all of one shape, in batches.
Weights: EMA of the generator (decay {t['ema_decay']}) with standing BatchNorm statistics; see
`docs/model-contract.md`.""",
        evaluate=f"ganserve evaluate {checkpoint} --json metrics.json",
        quality=f"""`ganserve evaluate` on held-out images never trained on: {report['data']}.
HR images cropped to a multiple of {s}, LR = Pillow bicubic downscaling, output quantised to uint8;
PSNR and SSIM on the Y channel (BT.601) with {s} px cropped at the border (BasicSR's convention);
bicubic = Pillow bicubic upscaling of the same LR image.

| image | HR size | PSNR (dB) | bicubic | gain | SSIM | bicubic |
| --- | --- | --- | --- | --- | --- | --- |
{rows}
| **mean** | | **{report['psnr']:.2f}** | {report['bicubic_psnr']:.2f} | **{gain:+.2f}** | **{report['ssim']:.4f}** | {report['bicubic_ssim']:.4f} |
{tiling}
{bar}""",
        optimiser=_optimiser(t, f"pixel loss `{t['pixel_loss']}`" + (
            f", content `{t['content_loss']}`, adversarial `{t['loss']}` x {t['adv_weight']}" if adversarial else ""),
            with_d=adversarial),
    )


CARDS: dict[str, Callable[..., CardSection]] = {"unconditional": _dcgan_card, "super-resolution": _sr_card}


def write_model_card(checkpoint: str | Path, *, metrics_path: str | Path, result,
                     notes: str | None = None) -> Path:
    """Write the card; ``notes`` (markdown) goes in a final "Notes" section, e.g. why a bar was missed."""
    ckpt = load_checkpoint_file(checkpoint)
    meta, cfg = ckpt.get("meta", {}), ckpt["config"]
    kind = get_family(RunConfig.from_dict(cfg)).export_spec().kind
    try:
        section = CARDS[kind](ckpt, RunConfig.from_dict(cfg).to_dict(), json.loads(Path(metrics_path).read_text()),
                              str(checkpoint))
    except KeyError:
        raise UsageError(f"no model card layout for kind {kind!r}; known: {', '.join(CARDS)}") from None
    name = result.onnx_path.parent.parent.name
    how = []
    if ckpt["step"] != cfg["train"]["steps"]:
        how.append(f"The shipped weights are step {ckpt['step']} of that run (it was stopped there); with "
                     f"`--steps {ckpt['step']}` the same command stops at the same point: no schedule "
                     "depends on the total.")
    if meta.get("resumed_with"):
        how.append(f"The run was interrupted and resumed {len(meta['resumed_with'])} time(s) with `--resume` "
                     "(exact continuation from the checkpoint).")
    note = ("\n" + " ".join(how) + "\n") if how else ""
    card = f"""# {name} — {section.title}

{section.summary}

## Reproduce
```
{meta.get('argv', 'ganserve train ...')}
{section.evaluate}
ganserve export --checkpoint {checkpoint} --repository model_repository --name {name} --metrics metrics.json
```
{note}
| | |
| --- | --- |
| data | {meta.get('data', cfg['data']['name'])} |
| generator steps | {ckpt['step']} ({section.optimiser}) |
| wall time | {_hms(ckpt['wall_time'])} |
| machine | {meta.get('machine', 'unknown')} ({meta.get('world_size', 1)} process(es)) |
| training commit | `{meta.get('commit', 'unknown')}` |
| ONNX | opset 17, {result.size_bytes / 1e6:.2f} MB, max abs diff vs PyTorch {result.parity_max_abs_diff:.1e} |

## Quality
{section.quality}
"""
    if notes:
        card += f"\n## Notes\n{notes.strip()}\n"
    path = result.onnx_path.parent.parent / "README.md"
    path.write_text(card)
    return path
