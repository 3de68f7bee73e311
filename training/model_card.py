"""Model card (``<repository>/<model>/README.md``) from a checkpoint, its export and its metrics.

One card layout for every kind: a title and summary, how to reproduce, the training facts, then a
quality section. The parts that differ per model kind (summary, evaluate command, quality table, the
quality target) come from a :class:`CardSection` registered under the model's kind (its family's
``kind``, the ONNX ``ganserve.kind``); a text-to-image export gets one card per model of its ensemble.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ganserve.errors import UsageError
from ganserve.training.checkpoint import checkpoint_config, read_checkpoint
from ganserve.training.data.captions import COLOUR_NAMES, DIGIT_WORDS, HELDOUT_COMBOS, HELDOUT_TEMPLATES
from ganserve.training.families import get_family
from ganserve.training.files import torch_load


def _train_commands(meta: dict) -> str:
    """The run's training command, then each distinct ``--resume`` command it was continued with."""
    lines = [meta.get("argv", "ganserve train ...")]
    for command in meta.get("resumed_with", []):
        if command not in lines:
            lines.append(command)
    return "\n".join(lines)


def _hms(seconds: float) -> str:
    return str(dt.timedelta(seconds=round(seconds)))


@dataclass(frozen=True)
class CardSection:
    title: str          # after "<name> — "
    summary: str        # what the model is, its tensors and value ranges
    evaluate: str       # the `ganserve evaluate ...` line of the reproduce block
    quality: str        # the quality section (markdown)
    optimiser: str      # losses and learning rates, for the "generator steps" row


_DCGAN_SAMPLES = """![seeds 0-59, then seeds 0-9 at each truncation](samples.png)

`samples.png`: the images of seeds 0-59 (what `POST /generate` returns for each seed), then seeds 0-9
at each truncation t of the curve below."""


def _dcgan_card(ckpt: dict, cfg: dict, reports, checkpoint: str, *, samples: str = _DCGAN_SAMPLES) -> CardSection:
    model, refs = reports[0], [r for r in reports[1:] if r.get("truncation") is None]
    curve = [r for r in reports[1:] if r.get("truncation") is not None]
    shift = next((r for r in refs if "shifted" in r["source"]), None)
    passes_fid = shift is not None and model["fid"] <= shift["fid"]
    passes_modes = model["classes_covered"] == 10 and model["min_class_share"] >= 0.05
    rows = "\n".join(
        f"| {r['source'] if r is not model else 'this model (EMA generator, uint8 output)'} | "
        f"{r['fid']:.2f} | {r['kid']:.0f} ± {r['kid_std']:.0f} | {r['classes_covered']} | "
        f"{r['min_class_share']:.3f} | {r['kl_to_uniform']:.4f} |" for r in [model, *refs])
    z_norm = cfg["model"].get("z_norm", "none") == "pixel"
    anchors = cfg["model"].get("truncation_anchors", 0)
    return CardSection(
        title="DCGAN generator trained on MNIST",
        summary=f"""Unconditional DCGAN (Radford et al. 2015) generator, 28x28 grey digits, trained and exported by
ganserve. Input `z` FP32 `[batch, {cfg['model']['latent_dim']}]` ~ N(0, 1); output `image` FP32
`[batch, 1, 28, 28]` in [-1, 1]. The weights are the exponential moving average of the generator
(decay {cfg['train']['ema_decay']}) with standing BatchNorm statistics; see `docs/model-contract.md`.{
        " The generator first rescales z to length sqrt(" + str(cfg['model']['latent_dim']) + ") (`model.z_norm=pixel`): "
        "only the direction of z picks the image" + (
            f"; a shorter z (what truncation makes) is drawn towards the nearest of {anchors} typical samples "
            "(see Truncation)." if anchors else ".") if z_norm else ""}""",
        evaluate=f"ganserve evaluate {checkpoint} --data ../shared/data/mnist{' --truncation-curve' if curve else ''} "
                 "--json metrics.json",
        quality=f"""{samples}

`ganserve evaluate` with {model['samples']} samples, features from ganserve's own MNIST classifier
(`training/assets/mnist_classifier.pt`, sha256-pinned) against the MNIST test set. Reference points
are computed the same way; a classifier's feature space is very sensitive, so compare with them
rather than with Inception-based FIDs from papers.

| source | FID | KID | classes (>= 1%) | min class share | KL to uniform |
| --- | --- | --- | --- | --- | --- |
{rows}

Class shares of the samples (digits 0-9): {model['class_shares']}.

Quality targets: all 10 digits with none under 5% — **{'met' if passes_modes else 'not met'}**;
FID no worse than the one-pixel-shift reference — **{'met' if passes_fid else 'not met'}**.{_truncation_section(model, curve)}""",
        optimiser=_optimiser(cfg["train"], f"loss `{cfg['train']['loss']}`", with_d=True),
    )


def _lapgan_card(ckpt: dict, cfg: dict, reports, checkpoint: str) -> CardSection:
    """A pyramid's card: DCGAN's measurements and layout, its own summary and sample sheet."""
    m = cfg["model"]
    side, levels = m["image_size"], m["levels"]
    sides = [side // 2 ** k for k in range(levels, -1, -1)]
    zs = [f"`z_{k}` [{m['coarse_latent_dim'] if k == levels else m['level_latent_dim']}]" for k in range(levels, -1, -1)]
    section = _dcgan_card(ckpt, {**cfg, "model": {**m, "latent_dim": sum(m["coarse_latent_dim"] if k == levels else
                                                                     m["level_latent_dim"] for k in range(levels + 1))}},
                          reports, checkpoint, samples=f"""![each seed's levels, coarse to fine](samples.png)

`samples.png`: seeds 0-29, each as its {levels + 1} levels ({' -> '.join(f'{s}x{s}' for s in sides)}, all drawn at
the final size, nearest neighbour), the last row of each block being what `POST /generate` returns.""")
    return dataclasses.replace(
        section, title="LAPGAN (Laplacian pyramid of generators) trained on MNIST",
        summary=f"""LAPGAN (Denton et al. 2015), {side}x{side} grey digits built in {levels + 1} levels
{' -> '.join(str(s) for s in sides)}, trained and exported by ganserve. The model is a Triton ensemble
(pure wiring) of {levels + 1} ONNX models: `<name>_coarse` (z -> {sides[0]}x{sides[0]} image, a fully connected
generator) and {', '.join(f'`<name>_level{k}`' for k in range(levels - 1, -1, -1))} (z, coarse image -> image of
twice the side = bilinear upsampling of the coarse image + the predicted Laplacian band, the upsampling
inside the graph). Inputs {', '.join(zs)} FP32 ~ N(0, 1); outputs `image` FP32 `[batch, 1, {side}, {side}]` in
[-1, 1] and each coarser level's image (`image_1`, ...). The gateway draws one z of length
{m['coarse_latent_dim'] + levels * m['level_latent_dim']} per seed and splits it coarse level first
(`docs/model-contract.md`, "Pyramid models"); `levels: true` on `/generate` returns every level's image.
The levels were trained independently, each finer one on the real coarse images, its discriminator
judging the band beside the upsampled coarse image; they are chained only when sampling. The weights
are the exponential moving average of the generators (decay {cfg['train']['ema_decay']}) with BatchNorm
statistics recomputed on chained samples.""",
        evaluate=section.evaluate)


def _truncation_section(model: dict, curve: list[dict]) -> str:
    """The truncation curve's table and its target (confidence rises as t falls, FID does not collapse)."""
    if not curve:
        return ""
    points = [model, *sorted(curve, key=lambda r: -r["truncation"])]
    label = lambda t: "∞ (none)" if t is None else f"{t:g}"
    rows = "\n".join(
        f"| {label(r.get('truncation'))} | {r['fid']:.2f} | "
        f"{r['confidence']:.3f} | {r['pixel_diversity']:.3f} | {r['feature_diversity']:.2f} | "
        f"{r['min_class_share']:.3f} |" for r in points)
    conf = [r["confidence"] for r in points]
    rises = conf[-1] > conf[0] and all(b >= a - 0.002 for a, b in zip(conf, conf[1:]))
    worst = max(r["fid"] for r in points[1:])
    holds = worst <= 1.5 * model["fid"]
    return f"""

### Truncation
The gateway's `truncation` t redraws every component of z with |z_i| > t from the seed's own
generator (`docs/model-contract.md`); the same {model['samples']} seeds at every t:

| t | FID | classifier confidence | diversity (pixels) | diversity (features) | min class share |
| --- | --- | --- | --- | --- | --- |
{rows}

Confidence is the classifier's mean top probability; diversity is the mean distance between the
images of two different seeds (absolute pixel difference as a fraction of 255, and L2 distance of the
classifier's features).

Truncation target: confidence rises from t = ∞ to t = 0.5 (no point more than 0.002 below the one
before) — **{'met' if rises else 'not met'}** ({conf[0]:.3f} -> {conf[-1]:.3f}); FID never above 1.5x its
untruncated value — **{'met' if holds else 'not met'}** (worst {worst:.2f} against {model['fid']:.2f})."""


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
    ref = report.get("reference") or ""
    ref_name = _model_name(ref)
    sharp = "sharpness" in report  # metrics written before the sharpness figure have none

    def row(name: str, size: str, r: dict, bold: bool = False) -> str:
        b = "**" if bold else ""
        cells = [name, size, f"{b}{r['psnr']:.2f}{b}", f"{r['bicubic_psnr']:.2f}",
                 f"{b}{r['psnr'] - r['bicubic_psnr']:+.2f}{b}", f"{b}{r['ssim']:.4f}{b}", f"{r['bicubic_ssim']:.4f}"]
        if sharp:
            cells += [f"{b}{r['sharpness']:.3f}{b}", f"{r['bicubic_sharpness']:.3f}"]
        if ref:
            cells += [f"{r['reference_psnr']:.2f}", f"{r['reference_ssim']:.4f}"] + (
                [f"{r['reference_sharpness']:.3f}"] if sharp else [])
        return "| " + " | ".join(cells) + " |"

    header = ["image", "HR size", "PSNR (dB)", "bicubic", "gain", "SSIM", "bicubic"] + (
        ["sharpness", "bicubic"] if sharp else []) + (
        [f"{ref_name} PSNR", "SSIM"] + (["sharpness"] if sharp else []) if ref else [])
    table = "\n".join(["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)] +
                      [row(i["image"], i["size"], i) for i in report["images"]] +
                      [row("**mean**", "", report, bold=True)])
    gain = report["psnr_gain"]
    tiling = ""
    if report.get("tiling"):
        close = report.get("tiled_vs_whole_psnr")
        tiling = (f"\nTiling ({report['tiling']}, each output pixel from the tile that owns it, no blending) "
                  "against one whole-image pass: " + ("identical output." if close is None else
                  f"PSNR (Y) between the two >= {close:.1f} dB on every image.") + "\n")
    target = (f"Quality target: the PSNR-oriented model beats bicubic by >= 1.0 dB (Y) on held-out images — "
           f"**{'met' if gain >= 1.0 else 'not met'}** ({gain:+.2f} dB)." if not adversarial else
           "Adversarial models trade PSNR for texture; the PSNR target applies to the PSNR-oriented `srresnet`, "
           f"and these figures are reported next to it ({gain:+.2f} dB vs bicubic).")
    if adversarial and ref and sharp:
        more = report["sharpness"] > report["reference_sharpness"]
        target += (f" Sharpness target: more high-frequency energy than {ref_name} — "
                   f"**{'met' if more else 'not met'}** ({report['sharpness']:.3f} vs {report['reference_sharpness']:.3f}, "
                   f"at {report['psnr'] - report['reference_psnr']:+.2f} dB PSNR).")
    sharpness = ("\nsharpness = high-frequency energy of the output over the HR image's (mean squared 3x3 "
                 "Laplacian of Y, same border crop): 1 = as much fine detail as the ground truth, lower = "
                 "blurrier; it does not say whether the detail is right (PSNR and SSIM do)." if sharp else "")
    compared = (f"\n`{ref_name}` = `{ref}`, measured alongside (`--compare`)." if ref else "")
    samples = ("\n\n![LR, bicubic, " + (f"{ref_name}, " if ref else "") + "this model and HR crops of each "
               "held-out photo](samples.png)\n\n`samples.png`: the most detailed 96x96 window of each held-out "
               "photo, enlarged 2x (nearest neighbour): LR input, bicubic, " + (f"{ref_name}, " if ref else "") +
               "this model, HR (`ganserve evaluate ... --samples samples.png`).")
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
        evaluate=f"ganserve evaluate {checkpoint} --json metrics.json" + (
            f" --compare {ref} --samples samples.png" if ref else " --samples samples.png"),
        quality=f"""`ganserve evaluate` on held-out images never trained on: {report['data']}.
HR images cropped to a multiple of {s}, LR = Pillow bicubic downscaling, output quantised to uint8;
PSNR and SSIM on the Y channel (BT.601) with {s} px cropped at the border (BasicSR's convention);
bicubic = Pillow bicubic upscaling of the same LR image.{sharpness}{compared}{samples}

{table}
{tiling}
{target}""",
        optimiser=_optimiser(t, f"pixel loss `{t['pixel_loss']}`" + (
            f", content `{t['content_loss']}`, adversarial `{t['loss']}` x {t['adv_weight']}" if adversarial else ""),
            with_d=adversarial),
    )


def _model_name(path: str) -> str:
    """``model_repository/srresnet/1/model.onnx`` -> ``srresnet``; a checkpoint path as it is."""
    p = Path(path)
    return p.parent.parent.name if p.suffix == ".onnx" and p.parent.name.isdigit() else path


CARDS: dict[str, Callable[..., CardSection]] = {"unconditional": _dcgan_card, "super-resolution": _sr_card,
                                                 "pyramid": _lapgan_card}


def write_model_card(checkpoint: str | Path, *, metrics_path: str | Path, result,
                     notes: str | None = None) -> Path:
    """Write the card; ``notes`` (markdown) goes in a final "Notes" section, e.g. why a target was missed."""
    ckpt = read_checkpoint(checkpoint)
    meta, cfg = ckpt.get("meta", {}), ckpt["config"]
    kind = get_family(checkpoint_config(ckpt)).kind
    if cfg["model"].get("family") == "lapgan":
        kind = "pyramid"
    if kind not in CARDS:
        raise UsageError(f"no model card layout for kind {kind!r}; known: {', '.join(CARDS)}")
    section = CARDS[kind](ckpt, checkpoint_config(ckpt).to_dict(), json.loads(Path(metrics_path).read_text()),
                          str(checkpoint))
    model_dir = result.onnx_path.parent if result.onnx_path.is_dir() else result.onnx_path.parent.parent
    name = model_dir.name
    how = []
    if ckpt["step"] != cfg["train"]["steps"]:
        how.append(f"The shipped weights are step {ckpt['step']} of that run (it was stopped there); with "
                     f"`--steps {ckpt['step']}` the same command stops at the same point: no schedule "
                     "depends on the total.")
    if meta.get("resumed_with"):
        how.append(f"The run was continued {len(meta['resumed_with'])} time(s) with `--resume` (after an interruption, or "
                     "to more steps): an exact continuation from the checkpoint.")
    note = ("\n" + " ".join(how) + "\n") if how else ""
    card = f"""# {name} — {section.title}

{section.summary}

## Reproduce
```
{_train_commands(meta)}
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
    path = model_dir / "README.md"
    path.write_text(card)
    return path


def write_model_cards(checkpoint: str | Path, *, metrics_path: str | Path, results: dict, name: str,
                      notes: str | None = None) -> list[Path]:
    """The cards of everything one export wrote: one card for a one-model family; for a text-to-image
    export, the full card in the ensemble's folder and a short one in each step's folder."""
    ckpt = read_checkpoint(checkpoint)
    kind = get_family(checkpoint_config(ckpt)).kind
    if len(results) > 1 and kind == "unconditional":  # a pyramid: the card in the ensemble's folder, its levels
        from ganserve.training.export import ExportResult
        from ganserve.training.metrics.unconditional import pyramid_sheet

        parts = [r for n, r in results.items() if n != name]
        whole = ExportResult(results[name].onnx_path, results[name].config_path,
                             max(r.parity_max_abs_diff for r in parts), sum(r.size_bytes for r in parts))
        card = write_model_card(checkpoint, metrics_path=metrics_path, result=whole, notes=notes)
        return [card, pyramid_sheet(card.parent, card.parent / "samples.png"),
                *_part_cards(ckpt, str(checkpoint), results, name, what="level", chain=" -> ".join(
                    f"`{n}`" for n in results if n != name))]
    if kind == "unconditional":  # the card and, beside it, a sheet of what the exported model makes
        from ganserve.training.metrics.unconditional import sample_sheet

        card = write_model_card(checkpoint, metrics_path=metrics_path, result=results[name], notes=notes)
        return [card, sample_sheet(results[name].onnx_path, card.parent / "samples.png")]
    if kind == "super-resolution":  # the card and a sheet of crops: LR, bicubic, [the compared model,] this, HR
        from ganserve.training.metrics.super_resolution import sample_sheet

        card = write_model_card(checkpoint, metrics_path=metrics_path, result=results[name], notes=notes)
        compare = json.loads(Path(metrics_path).read_text()).get("reference") or None
        return [card, sample_sheet(results[name].onnx_path, card.parent / "samples.png", compare=compare)]
    if kind != "text-conditional":
        return [write_model_card(checkpoint, metrics_path=metrics_path, result=results[name], notes=notes)]
    return _text2img_cards(ckpt, str(checkpoint), json.loads(Path(metrics_path).read_text()), results, name, notes)


def _part_cards(ckpt: dict, checkpoint: str, results: dict, name: str, *, what: str, chain: str) -> list[Path]:
    """A short card in the folder of each ONNX model of the ensemble ``name`` (a pyramid's levels)."""
    meta, paths = ckpt.get("meta", {}), []
    for part, result in results.items():
        if part == name:
            continue
        path = result.onnx_path.parent.parent / "README.md"
        path.write_text(f"""# {part} — a {what} of `{name}`

Part of `{name}` (a Triton ensemble: {chain}); the model card with data, metrics and the full command
list is `../{name}/README.md`.

```
{_train_commands(meta)}
ganserve export --checkpoint {checkpoint} --repository model_repository --name {name} --metrics metrics.json
```

ONNX opset 17, {result.size_bytes / 1e6:.2f} MB, max abs diff vs PyTorch {result.parity_max_abs_diff:.1e};
generator steps {ckpt['step']}; training commit `{meta.get('commit', 'unknown')}`.
""")
        paths.append(path)
    return paths


def _text2img_cards(ckpt: dict, checkpoint: str, report: dict, results: dict, name: str,
                    notes: str | None) -> list[Path]:
    meta, cfg = ckpt.get("meta", {}), checkpoint_config(ckpt).to_dict()
    m, t = cfg["model"], cfg["train"]
    encoder_file = t.get("text_encoder") or "ENCODER.pt"
    enc: dict = {}
    if Path(encoder_file).is_file():
        enc = torch_load(encoder_file, what="text encoder", expected="ganserve train-text-encoder output")
    enc_cmd = enc.get("meta", {}).get("argv", f"ganserve train-text-encoder --data DIR --out {encoder_file}")
    groups = report["groups"]
    rows = []
    for group, e in groups.items():
        for phrasing in ("heldout_prompts", "train_prompts"):
            r = e[phrasing]
            rows.append(f"| {group} ({e['combos']}) | {phrasing.replace('_', ' ')} | {r['digit_acc']:.3f} | "
                        f"{r['colour_acc']:.3f} | {r['both_acc']:.3f} | {r['fid']:.2f} | "
                        f"{e['fid_floor_real_train']:.2f} | {r['samples']} |")
    seen = groups["seen"]["heldout_prompts"]
    held = groups["heldout"]["heldout_prompts"]
    met = seen["digit_acc"] >= 0.90 and seen["colour_acc"] >= 0.95
    enc_name, gen_name = f"{name}_encoder", f"{name}_generator"
    sizes = {k: r.size_bytes / 1e6 for k, r in results.items() if r.size_bytes}
    diffs = {k: r.parity_max_abs_diff for k, r in results.items() if r.size_bytes}
    how = []
    if ckpt["step"] != t["steps"]:
        how.append(f"The shipped weights are step {ckpt['step']} of that run (its checkpoint at that step; "
                   f"`--steps {ckpt['step']}` stops the same command there: no schedule depends on the total).")
    if meta.get("resumed_with"):
        how.append(f"The run was resumed {len(meta['resumed_with'])} time(s) with `--resume` "
                   f"({'; '.join(meta['resumed_with'])}).")
    note = ("\n" + " ".join(how) + "\n") if how else ""
    enc_line = (f"{enc.get('steps')} steps, {_hms(enc.get('wall_time', 0))}, joint image-text embedding; attribute "
                f"probes read {enc.get('probe_accuracy', float('nan')):.3f} of held-out prompts right"
                if enc else "see its command")
    if enc.get("meta", {}).get("from_onnx"):
        enc_line = (f"the weights of `{enc['meta']['from_onnx']}`, taken unchanged (its training: {enc.get('steps')} "
                    f"steps on {enc.get('data')})")
    extras = _text2img_remedies(m, t)
    enc_time = ("; the text encoder was not trained again" if enc.get("meta", {}).get("from_onnx")
                else f" + {_hms(enc.get('wall_time', 0))} (text encoder)")
    diversity, mix, targets = _text2img_diversity_and_mix(report)
    held_met = held["digit_acc"] >= 0.85
    card = f"""# {name} — text-to-image GAN-INT-CLS on captioned colour MNIST

GAN-INT-CLS (Reed et al. 2016) trained and exported by ganserve: prompt -> char-v1 token ids ->
char-CNN-RNN text encoder -> {m['embedding_dim']}-d embedding -> generator -> 28x28 RGB image. Three entries:

| model | kind | inputs | outputs |
| --- | --- | --- | --- |
| `{enc_name}` | `text-encoder` | `tokens` INT64 `[batch, {m['max_tokens']}]` (char-v1) | `embedding` FP32 `[batch, {m['embedding_dim']}]` |
| `{gen_name}` | `text-conditional-generator` | `z` FP32 `[batch, {m['latent_dim']}]` ~ N(0, 1), `embedding` | `image` FP32 `[batch, 3, {m['image_size']}, {m['image_size']}]` in [-1, 1] |
| `{name}` | Triton ensemble | `tokens` INT64 `[{m['max_tokens']}]`, `z` FP32 `[{m['latent_dim']}]` | `image` FP32 `[3, {m['image_size']}, {m['image_size']}]` |

Tokenise prompts with `ganserve/text.py` (`char-v1`, ONNX metadata `ganserve.tokenizer`). Generator: the
text embedding is compressed by FC + LeakyReLU to {m['text_proj_dim']} dims and concatenated to z, then DCGAN
transposed convolutions; its discriminator joins the compressed embedding at the {m['image_size'] // 4}x{m['image_size'] // 4}
features (matching-aware loss: real/right text vs fake/right text and real/wrong text, 1/2 each;
GAN-INT on interpolated embeddings, beta = {'U(0, 1)' if t.get('int_beta_random') else t['int_beta']}){extras}. The text encoder (char CNN + GRU, masked mean,
frozen during GAN training) was pre-trained with the deep symmetric structured joint embedding
against a small image encoder. Weights: EMA of the generator (decay {t['ema_decay']}) with standing
BatchNorm statistics; see `docs/model-contract.md` ("Text-conditional models").

## Reproduce
```
{enc_cmd}
{_train_commands(meta)}
ganserve evaluate {checkpoint} --data ../shared/data/mnist --json metrics.json
ganserve export --checkpoint {checkpoint} --repository model_repository --name {name} --metrics metrics.json
```
{note}
| | |
| --- | --- |
| data | {meta.get('data', cfg['data']['name'])} |
| held out | (digit, colour) never trained on: {', '.join(f'{d}/{c}' for d, c in _heldout_names())}; prompt phrasings never trained on: {len(_heldout_templates())} templates |
| text encoder | `{encoder_file}`: {enc_line} |
| generator steps | {ckpt['step']} ({_optimiser(t, f"matching-aware loss `{t['loss']}` + {t['int_weight']} x INT", with_d=True)}) |
| wall time | {_hms(ckpt['wall_time'])} (GAN){enc_time} |
| machine | {meta.get('machine', 'unknown')} ({meta.get('world_size', 1)} process(es)) |
| training commit | `{meta.get('commit', 'unknown')}` |
| ONNX | opset 17; {', '.join(f'`{k}` {v:.2f} MB' for k, v in sizes.items())}; max abs diff vs PyTorch {', '.join(f'{v:.1e}' for v in diffs.values())} |

## Quality
![a row per prompt, a column per seed; then prompt-mix strips](samples.png)

`samples.png`: a row per prompt, a column per seed (each image is what `POST /generate` returns for that
prompt and seed; * marks combinations never trained on), then mixes of two prompts at 0, 0.1, ..., 1.

`ganserve evaluate`: images generated from prompts in held-out phrasings (and, for comparison, in
training phrasings), classified by ganserve's colour-MNIST attribute classifier
(`training/assets/colour_mnist_attributes.pt`, sha256-pinned; digit and colour heads). FID in that
classifier's 128-d feature space against real MNIST *test* digits coloured in the same combinations;
the floor is real *train* digits coloured the same way.

| combinations | prompts | digit acc | colour acc | both | FID | FID floor | images |
| --- | --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(rows)}

{diversity}{mix}
Quality targets, all on held-out prompts:
- seen combinations: digit accuracy >= 0.90 and colour accuracy >= 0.95 — **{'met' if met else 'not met'}**
  ({seen['digit_acc']:.3f} / {seen['colour_acc']:.3f});
- held-out combinations (compositional generalisation): digit accuracy >= 0.85 — **{'met' if held_met else 'not met'}**
  ({held['digit_acc']:.3f}; colour {held['colour_acc']:.3f}, both {held['both_acc']:.3f});
{targets}"""
    if notes:
        card += f"\n## Notes\n{notes.strip()}\n"
    repo = results[name].config_path.parent.parent
    paths = [repo / name / "README.md"]
    paths[0].write_text(card)
    from ganserve.training.metrics.text_conditional import load_text_to_image, sample_sheet

    paths.append(sample_sheet(load_text_to_image(checkpoint), repo / name / "samples.png"))
    for part, kind in ((enc_name, "text encoder"), (gen_name, "generator")):
        path = repo / part / "README.md"
        path.write_text(f"""# {part} — the {kind} of `{name}`

Part of the text-to-image model `{name}` (a Triton ensemble: `{enc_name}` -> `{gen_name}`); the model
card with data, metrics and the full command list is `../{name}/README.md`.

```
{enc_cmd}
{_train_commands(meta)}
ganserve export --checkpoint {checkpoint} --repository model_repository --name {name} --metrics metrics.json
```

ONNX opset 17, {sizes.get(part, 0):.2f} MB, max abs diff vs PyTorch {diffs.get(part, 0):.1e}; generator steps
{ckpt['step']}; training commit `{meta.get('commit', 'unknown')}`.
""")
        paths.append(path)
    return paths


def _text2img_remedies(m: dict, t: dict) -> str:
    """The options against a generator that ignores z or interpolates through blanks, as card prose."""
    parts = []
    if m.get("d_minibatch_std"):
        parts.append(f"a minibatch-stddev channel in D (groups of {m['d_minibatch_std']})")
    if t.get("ms_weight"):
        parts.append(f"mode seeking for G ({t['ms_weight']} / (image distance / z distance), two z per text)")
    if t.get("text_noise"):
        parts.append(f"noise on G's text embeddings ({t['text_noise']} x their batch std)")
    if t.get("int_shared_batch") and t.get("int_weight"):
        parts.append("the interpolated-text images drawn in the fakes' generator pass (one set of BatchNorm statistics)")
    if t.get("feature_match_weight"):
        parts.append(f"feature matching on D's image features ({t['feature_match_weight']} x, interpolated texts included)")
    return "; with " + ", ".join(parts) if parts else ""


def _text2img_diversity_and_mix(report: dict) -> tuple[str, str, str]:
    """The per-prompt diversity and prompt-mix sections of the card and their target lines (empty for a
    report without them)."""
    from ganserve.training.metrics.text_conditional import (
        BLANK_INK,
        DIVERSITY_TARGET,
        INK_LEVEL,
        MIX_CONFIDENCE_TARGET,
        diversity_met,
        mix_met,
    )

    groups = report["groups"]
    diversity = mix = targets = ""
    if all("diversity" in e for e in groups.values()):
        rows = "\n".join(
            f"| {g} ({e['combos']}) | {v['pixel']:.4f} | {v['pixel_real']:.4f} | **{v['pixel_ratio']:.2f}** | "
            f"{v['feature']:.2f} | {v['feature_real']:.2f} | **{v['feature_ratio']:.2f}** | {v['collapsed_prompts']:.2f} |"
            for g, e in groups.items() for v in [e["diversity"]])
        v = groups["heldout"]["diversity"], groups["seen"]["diversity"]
        diversity = f"""Per-prompt diversity: the mean pairwise distance between the images of one prompt (held-out phrasings,
{v[1]['prompts'] // groups['seen']['combos']} per combination) under {v[1]['seeds']} seeds, next to the same figure for real test digits of
that (digit, colour); in pixels (mean absolute difference, share of the full range) and in the
attribute classifier's 128-d feature space (L2). "Near-identical": the share of prompts whose pixel
diversity is under a tenth of real.

| combinations | pixels | real | ratio | features | real | ratio | near-identical |
| --- | --- | --- | --- | --- | --- | --- | --- |
{rows}
"""
        ok = all(diversity_met(e["diversity"]) for e in groups.values())
        worst = min(min(x["pixel_ratio"], x["feature_ratio"]) for x in v)
        targets += (f"- per-prompt diversity >= {DIVERSITY_TARGET:.0%} of real, in pixels and in features — "
                    f"**{'met' if ok else 'not met'}** (lowest ratio {worst:.2f});\n")
    if "mix" in report:
        curve = report["mix"]
        steps = curve["pairs"][0]["steps"]
        head = " | ".join(f"{s['mix']:.1f}" for s in steps)
        rows = "\n".join(f"| {p['a']} -> {p['b']} | " + " | ".join(
            f"{s['confidence']:.2f} / {s['foreground']:.2f}" for s in p["steps"]) + " |" for p in curve["pairs"])
        mix = f"""
Prompt mix: images of `(1 - mix) * e(a) + mix * e(b)` (the text embeddings mixed as the gateway mixes
`prompt` and `prompt_b`), {curve['seeds']} seeds per step, each seed's z the same along the curve. Each cell: the
classifier's digit confidence (its largest digit probability, mean over seeds) / the foreground
(mean over pixels of the brightest channel) relative to real digits'. A frame is blank when its ink
area (pixels whose brightest channel reaches {INK_LEVEL} of 255) is under {BLANK_INK} of real digits' (no real test
digit's is; the thinnest ones reach 0.28); area rather than intensity, because mixing complementary
colours (cyan and red) draws visible strokes in a dull grey at half a pure colour's brightness.

| a -> b | {head} |
| --- | {' | '.join('---' for _ in steps)} |
{rows}

Worst step: confidence {curve['min_confidence']:.2f}, foreground {curve['min_foreground']:.2f}; faintest frame: ink
area {curve['min_ink']:.2f} of real; blank frames: {curve['blank_frames']} of {curve['frames']}.
"""
        targets += (f"- every mix step a confident digit (mean confidence >= {MIX_CONFIDENCE_TARGET}) and no blank frame — "
                    f"**{'met' if mix_met(curve) else 'not met'}** (worst step {curve['min_confidence']:.2f}, "
                    f"{curve['blank_frames']} blank frames).\n")
    return diversity, mix, targets


def _heldout_names() -> list[tuple[str, str]]:
    return [(DIGIT_WORDS[d], COLOUR_NAMES[c]) for d, c in sorted(HELDOUT_COMBOS)]


def _heldout_templates() -> tuple[str, ...]:
    return HELDOUT_TEMPLATES
