"""Quality of a text-to-image model on captioned colour MNIST, measured by ganserve's attribute
classifier (``ganserve.training.metrics.classifiers.AttributeClassifier``, sha256-pinned):

- **Attribute accuracy** on held-out prompts (phrasings never used in training): for every
  (digit, colour) combination, images generated from its prompts are classified; digit accuracy,
  colour accuracy and both together, separately on the **seen** combinations and on the **held-out**
  combinations (never in training: compositional generalisation). The same on training phrasings for
  comparison.
- **FID** in the classifier's 128-d feature space: generated images vs real MNIST *test* digits coloured
  in the same combinations (same number per combination), per group; the floor is real *train* digits
  coloured the same way.
- **Per-prompt diversity**: images of one prompt under different seeds (z), their mean pairwise
  distance, in pixels (mean absolute difference, share of the full range) and in the classifier's
  feature space (L2), next to the same figure for real test digits of the same (digit, colour). A
  generator that ignores z scores 0; the target is at least :data:`DIVERSITY_TARGET` of real.
- **Prompt-mix curve**: for a few pairs of prompts, images at mix 0, 0.1, ..., 1 of their embeddings,
  ``(1 - mix) * e(a) + mix * e(b)`` as the gateway mixes them, each seed's z fixed along the curve:
  the classifier's digit confidence (its largest digit probability), the foreground intensity (mean
  over pixels of the brightest channel) and the ink area (share of pixels whose brightest channel
  reaches :data:`INK_LEVEL`), both relative to real digits'. A mix step is a confident digit when its
  mean confidence is at least :data:`MIX_CONFIDENCE_TARGET`; a frame is blank when its ink area is under
  :data:`BLANK_INK` of real digits' (no real test digit is; thin ones reach 0.28). The area, not the
  intensity, decides: mixing complementary colours (cyan and red) draws strokes in a dull grey whose
  brightest channel is half a pure colour's, visible strokes that an intensity test would call blank.

The measurements take the model as a :class:`TextToImage` (encoder and generator apart, so embeddings
can be mixed between them) and the classifier as a ``readout`` function, so tests can run them on tiny
models with a tiny classifier.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ganserve import text
from ganserve.errors import UsageError
from ganserve.training.checkpoint import load_generator, model_file
from ganserve.training.data.captions import (
    COLOUR_NAMES,
    DIGIT_WORDS,
    HELDOUT_COMBOS,
    TRAIN_TEMPLATES,
    caption,
    heldout_prompts,
    render_combos,
    seen_combos,
)
from ganserve.training.data.images import ImageSet, load_mnist, load_sklearn_digits, to_uint8
from ganserve.training.files import onnx_session
from ganserve.training.metrics.classifiers import load_attribute_classifier, readout
from ganserve.training.metrics.distances import fid
from ganserve.training.metrics.unconditional import as_mnist_frame, seed_latents
from ganserve.training.progress import track

DIVERSITY_TARGET = 0.5        # per-prompt diversity (held-out prompts), as a share of real within-class diversity
MIX_CONFIDENCE_TARGET = 0.5   # every mix step's mean digit confidence
INK_LEVEL = 64                # a pixel is ink when its brightest channel reaches a quarter of the range
BLANK_INK = 0.25              # a frame whose ink area is under this share of real digits' is blank
MIX_STEPS = tuple(round(i / 10, 1) for i in range(11))
# (digit, colour) pairs mixed by the prompt-mix curve, all seen combinations; prompts "a <colour> <digit>"
MIX_PAIRS: tuple[tuple[tuple[int, int], tuple[int, int]], ...] = (
    ((7, 0), (3, 5)),   # a red seven -> a blue three
    ((2, 3), (0, 8)),   # a green two -> a white zero
    ((1, 2), (8, 6)),   # a yellow one -> a purple eight
    ((4, 4), (6, 7)),   # a cyan four -> a pink six
)

# uint8 images [N, 3, S, S] -> (features [N, F] float64 numpy, digit probabilities [N, 10], colour probabilities [N, K])
Readout = Callable[[torch.Tensor], tuple[np.ndarray, torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class TextToImage:
    """A text-to-image model as the metrics see it: its encoder and generator apart."""

    embed: Callable[[torch.Tensor], torch.Tensor]                     # tokens int64 [B, L] -> float [B, E]
    generate: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]    # (z [B, Z], embedding [B, E]) -> uint8 [B, 3, S, S]
    latent_dim: int
    max_tokens: int

    def tokens(self, prompts: Sequence[str]) -> torch.Tensor:
        return torch.from_numpy(text.encode_batch(list(prompts), length=self.max_tokens))


def from_module(G: torch.nn.Module, *, latent_dim: int, max_tokens: int) -> TextToImage:
    """A :class:`ganserve.training.models.gan_int_cls.TextToImageGenerator` (or anything with ``embed(tokens)`` and
    ``forward(z, embedding)``), in eval mode."""

    @torch.no_grad()
    def generate(z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return to_uint8(G(z, e))

    return TextToImage(torch.no_grad()(G.embed), generate, latent_dim, max_tokens)


def load_text_to_image(path: str | Path, *, encoder: str | Path | None = None) -> TextToImage:
    """From a checkpoint (its EMA generator), or from an exported generator ``.onnx`` with its text
    encoder's ``.onnx`` (default: the ``<name>_encoder`` beside ``<name>_generator`` in the repository)."""
    path = model_file(path)
    if path.suffix != ".onnx":
        loaded = load_generator(path)
        m = loaded.family.cfg.model
        return from_module(loaded.model, latent_dim=m.latent_dim, max_tokens=m.max_tokens)
    gen, meta = onnx_session(path, kind="text-conditional-generator")
    if encoder is None:
        folder = path.parent.parent
        if not folder.name.endswith("_generator"):
            raise UsageError(f"{path}: say where its text encoder is (--encoder ENCODER.onnx)")
        encoder = folder.parent / (folder.name.removesuffix("_generator") + "_encoder") / path.parent.name / path.name
    enc, enc_meta = onnx_session(model_file(encoder), kind="text-encoder")

    def embed(tokens: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(enc.run(["embedding"], {"tokens": tokens.numpy()})[0])

    def generate(z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return to_uint8(torch.from_numpy(gen.run(["image"], {"z": z.numpy(), "embedding": e.numpy()})[0]))

    return TextToImage(embed, generate, int(meta["ganserve.latent_dim"]), int(enc_meta["ganserve.max_tokens"]))


def attribute_readout() -> Readout:
    """The pinned attribute classifier as a :data:`Readout`."""
    net = load_attribute_classifier()
    return lambda images: readout(net, images)


def run_prompts(model: TextToImage, prompts: Sequence[str], z: torch.Tensor, *, batch: int = 500) -> torch.Tensor:
    """uint8 images [len(prompts), 3, S, S], prompt i with z[i]."""
    tokens = model.tokens(prompts)
    return torch.cat([model.generate(z[i: i + batch], model.embed(tokens[i: i + batch]))
                      for i in track(range(0, len(prompts), batch), desc=f"generating {len(prompts)} images")])


def generate_for(model: TextToImage, combos: list[tuple[int, int]], n: int, *, held_out_phrasing: bool,
                 seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` images per combination from its prompts: (uint8 [M, 3, H, W], digit [M], colour [M])."""
    prompts, digits, colours = [], [], []
    for d, c in combos:
        if held_out_phrasing:
            prompts += heldout_prompts(d, c, n, seed=seed)
        else:
            rng = np.random.default_rng((seed, d, c, 3))
            prompts += [caption(d, c, rng, templates=TRAIN_TEMPLATES) for _ in range(n)]
        digits += [d] * n
        colours += [c] * n
    z = torch.randn(len(prompts), model.latent_dim, generator=torch.Generator().manual_seed(seed))
    return run_prompts(model, prompts, z), torch.tensor(digits), torch.tensor(colours)


def accuracy(read: Readout, images: torch.Tensor, digits: torch.Tensor, colours: torch.Tensor):
    feats, d, c = read(images)
    ok_d, ok_c = d.argmax(1) == digits, c.argmax(1) == colours
    return {"digit_acc": float(ok_d.float().mean()), "colour_acc": float(ok_c.float().mean()),
            "both_acc": float((ok_d & ok_c).float().mean()), "samples": len(images)}, feats


# ---------------------------------------------------------------- per-prompt diversity
def pixel_distance(images: torch.Tensor) -> float:
    """Mean over pairs of the mean absolute pixel difference of uint8 images, as a share of 255."""
    flat = images.flatten(1).float() / 255.0
    return float(torch.pdist(flat, p=1).mean()) / flat.shape[1]


def feature_distance(features: np.ndarray) -> float:
    """Mean pairwise L2 distance of feature vectors [N, F]."""
    return float(torch.pdist(torch.from_numpy(np.asarray(features, dtype=np.float64))).mean())


def prompt_diversity(model: TextToImage, read: Readout, combos: list[tuple[int, int]], real: torch.Tensor,
                     real_digits: torch.Tensor, real_colours: torch.Tensor, *, prompts_per_combo: int = 2,
                     seeds: int = 8, seed: int = 0) -> dict:
    """Mean pairwise distance between the images of one prompt under ``seeds`` seeds (held-out phrasings,
    ``prompts_per_combo`` prompts per combination), and between the real images of its combination
    (``real`` uint8 with their digits and colours); pixel and feature figures, averaged over prompts
    (combinations), and their ratios. ``collapsed_prompts``: the share of prompts whose pixel diversity
    is under a tenth of real (near-identical images whatever the seed)."""
    if seeds < 2:
        raise UsageError("per-prompt diversity needs at least 2 seeds per prompt")
    prompts = [p for d, c in combos for p in heldout_prompts(d, c, prompts_per_combo, seed=seed + 11)]
    z = torch.randn(len(prompts), seeds, model.latent_dim, generator=torch.Generator().manual_seed(seed + 12))
    images = run_prompts(model, [p for p in prompts for _ in range(seeds)], z.flatten(0, 1))
    feats = read(images)[0].reshape(len(prompts), seeds, -1)
    images = images.reshape(len(prompts), seeds, *images.shape[1:])
    real_feats = read(real)[0]
    gen_px, gen_ft, real_px, real_ft = [], [], [], []
    for i, (d, c) in enumerate((d, c) for d, c in combos for _ in range(prompts_per_combo)):
        mine = ((real_digits == d) & (real_colours == c)).nonzero().flatten()
        if len(mine) < 2:
            raise UsageError(f"per-prompt diversity needs at least 2 real images of digit {d}, colour {c}")
        gen_px.append(pixel_distance(images[i]))
        gen_ft.append(feature_distance(feats[i]))
        real_px.append(pixel_distance(real[mine]))
        real_ft.append(feature_distance(real_feats[mine.numpy()]))
    px, ft, rpx, rft = (float(np.mean(v)) for v in (gen_px, gen_ft, real_px, real_ft))
    collapsed = float(np.mean(np.array(gen_px) < 0.1 * np.array(real_px)))
    return {"prompts": len(prompts), "seeds": seeds, "pixel": px, "pixel_real": rpx, "pixel_ratio": px / rpx,
            "feature": ft, "feature_real": rft, "feature_ratio": ft / rft, "collapsed_prompts": collapsed}


# ---------------------------------------------------------------- prompt-mix curve
def foreground(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> [N]: mean over pixels of the brightest channel, in [0, 1]."""
    return images.amax(1).float().mean((1, 2)) / 255.0


def ink_area(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> [N]: the share of pixels whose brightest channel reaches :data:`INK_LEVEL`."""
    return (images.amax(1) >= INK_LEVEL).float().mean((1, 2))


def mix_prompt(combo: tuple[int, int]) -> str:
    d, c = combo
    return f"a {COLOUR_NAMES[c]} {DIGIT_WORDS[d]}"


def mix_curve(model: TextToImage, read: Readout, *, real: torch.Tensor,
              pairs: Sequence[tuple[tuple[int, int], tuple[int, int]]] = MIX_PAIRS, steps: Sequence[float] = MIX_STEPS,
              seeds: int = 16, seed: int = 0) -> dict:
    """Images at each mix step of each pair of prompts, ``seeds`` seeds per step (each seed's z the same at
    every step): per step, the mean digit confidence, the foreground and the ink area relative to the real
    digits ``real`` (uint8), the shares classified as either end's digit and the share of blank frames;
    then the curve's worst step."""
    real_foreground, real_ink = float(foreground(real).mean()), float(ink_area(real).mean())
    z = torch.randn(seeds, model.latent_dim, generator=torch.Generator().manual_seed(seed + 21))
    out, blank, frames = [], 0, 0
    for a, b in pairs:
        e = model.embed(model.tokens([mix_prompt(a), mix_prompt(b)]))       # [2, E]
        w = torch.tensor(steps, dtype=e.dtype)[:, None]
        mixed = (1 - w) * e[0] + w * e[1]                                   # [steps, E]
        images = model.generate(z.repeat(len(steps), 1), mixed.repeat_interleave(seeds, 0))
        _, digit, _ = read(images)
        fg = (foreground(images) / real_foreground).reshape(len(steps), seeds)
        ink = (ink_area(images) / real_ink).reshape(len(steps), seeds)
        conf = digit.max(1).values.reshape(len(steps), seeds)
        pred = digit.argmax(1).reshape(len(steps), seeds)
        blank += int((ink < BLANK_INK).sum())
        frames += ink.numel()
        out.append({"a": mix_prompt(a), "b": mix_prompt(b), "steps": [
            {"mix": float(m), "confidence": float(conf[i].mean()), "foreground": float(fg[i].mean()),
             "ink": float(ink[i].mean()), "min_ink": float(ink[i].min()),
             "digit_a": float((pred[i] == a[0]).float().mean()), "digit_b": float((pred[i] == b[0]).float().mean()),
             "blank": float((ink[i] < BLANK_INK).float().mean())} for i, m in enumerate(steps)]})
    every = [s for p in out for s in p["steps"]]
    return {"pairs": out, "seeds": seeds, "real_foreground": real_foreground, "real_ink": real_ink,
            "min_confidence": min(s["confidence"] for s in every), "min_foreground": min(s["foreground"] for s in every),
            "min_ink": min(s["min_ink"] for s in every), "blank_frames": blank, "frames": frames}


# ---------------------------------------------------------------- targets
def diversity_met(diversity: dict) -> bool:
    """Per-prompt diversity at least :data:`DIVERSITY_TARGET` of real, in pixels and in features."""
    return min(diversity["pixel_ratio"], diversity["feature_ratio"]) >= DIVERSITY_TARGET


def mix_met(mix: dict) -> bool:
    """Every mix step a confident digit, and no blank frame."""
    return mix["min_confidence"] >= MIX_CONFIDENCE_TARGET and mix["blank_frames"] == 0


# ---------------------------------------------------------------- the whole evaluation
def measurable(model: TextToImage, data: str | Path | None) -> tuple[TextToImage, tuple[ImageSet, ImageSet]]:
    """The model as the attribute classifier reads it, with (reference, other) real grey digits to colour.
    A 28x28 model against MNIST test (and train); an 8x8 one (the tiny preset's colour digits) against
    scikit-learn's digits split in two, its images and those digits both scaled into MNIST's 20x20 box on
    a 28x28 frame, as the unconditional metrics do."""
    with torch.no_grad():
        probe = model.generate(torch.zeros(1, model.latent_dim), model.embed(model.tokens([mix_prompt((0, 0))])))
    shape = tuple(probe.shape[1:])
    if shape == (3, 28, 28):
        if data is None:
            raise UsageError("a 28x28 text-to-image model is measured against colour MNIST: pass --data DIR "
                             "(the MNIST IDX files)")
        return model, (load_mnist(data, split="test"), load_mnist(data, split="train"))
    if shape != (3, 8, 8):
        raise UsageError(f"these metrics need 3x28x28 colour-MNIST or 3x8x8 colour-digits images; the model makes {shape}")
    digits = load_sklearn_digits()
    framed, half = as_mnist_frame(digits.images), len(digits.images) // 2
    sets = tuple(ImageSet(framed[part], digits.labels[part], f"{digits.description}, {name} half")
                 for part, name in ((slice(None, half), "first"), (slice(half, None), "second")))
    inner = model.generate
    return TextToImage(model.embed, lambda z, e: as_mnist_frame(inner(z, e)), model.latent_dim, model.max_tokens), sets


def evaluate(model_path: str | Path, data: str | Path | None, *, per_seen: int = 50, per_heldout: int = 200,
             seeds: int = 8, seed: int = 0, encoder: str | Path | None = None) -> dict:
    """Attribute accuracy and FID per group (seen, held-out combinations) and prompt phrasing; per-prompt
    diversity per group; the prompt-mix curve."""
    if min(per_seen, per_heldout) < 10:
        raise UsageError("--per-seen and --per-heldout must be at least 10")
    if seeds < 2:
        raise UsageError("--seeds must be at least 2")
    read = attribute_readout()
    model, (test, train) = measurable(load_text_to_image(model_path, encoder=encoder), data)
    groups = {"seen": (seen_combos(), per_seen), "heldout": (sorted(HELDOUT_COMBOS), per_heldout)}
    report: dict = {"model": str(model_path), "groups": {}}
    reals = []
    for group, (combos, n) in groups.items():
        real, real_d, real_c = render_combos(test.images, test.labels, combos, n, seed=seed)
        reals.append(real)
        real_feats = read(real)[0]
        floor_imgs, _, _ = render_combos(train.images, train.labels, combos, n, seed=seed + 1)
        entry = {"combos": len(combos), "per_combo": n, "fid_floor_real_train": fid(read(floor_imgs)[0], real_feats)}
        for phrasing, held in (("heldout_prompts", True), ("train_prompts", False)):
            images, d, c = generate_for(model, combos, n, held_out_phrasing=held, seed=seed)
            acc, feats = accuracy(read, images, d, c)
            entry[phrasing] = {**acc, "fid": fid(feats, real_feats)}
        entry["diversity"] = prompt_diversity(model, read, combos, real, real_d, real_c, seeds=seeds, seed=seed)
        report["groups"][group] = entry
    report["mix"] = mix_curve(model, read, real=torch.cat(reals), seed=seed)
    return report


def format_report(report: dict) -> str:
    lines = [(f"{'combinations':<14} {'prompts':<16} {'digit':>7} {'colour':>7} {'both':>7} {'FID':>8} "
              f"{'FID floor':>10} {'images':>7}")]
    for group, e in report["groups"].items():
        for phrasing in ("heldout_prompts", "train_prompts"):
            r = e[phrasing]
            lines.append(f"{group + ' (' + str(e['combos']) + ')':<14} {phrasing.replace('_', ' '):<16} "
                         f"{r['digit_acc']:>7.3f} {r['colour_acc']:>7.3f} {r['both_acc']:>7.3f} {r['fid']:>8.2f} "
                         f"{e['fid_floor_real_train']:>10.2f} {r['samples']:>7d}")
    lines += ["", "per-prompt diversity (held-out prompts; mean pairwise distance between seeds of one prompt)",
              (f"{'combinations':<14} {'pixels':>8} {'real':>8} {'ratio':>6} {'features':>9} {'real':>8} {'ratio':>6} "
              f"{'collapsed':>9}")]
    for group, e in report["groups"].items():
        v = e.get("diversity")
        if v:
            lines.append(f"{group:<14} {v['pixel']:>8.4f} {v['pixel_real']:>8.4f} {v['pixel_ratio']:>6.2f} "
                         f"{v['feature']:>9.3f} {v['feature_real']:>8.3f} {v['feature_ratio']:>6.2f} "
                         f"{v['collapsed_prompts']:>9.2f}")
    mix = report.get("mix")
    if mix:
        lines += ["", f"prompt mix ({mix['seeds']} seeds per step): digit confidence / foreground vs real at mix "
                  + " ".join(f"{s['mix']:.1f}" for s in mix["pairs"][0]["steps"])]
        for p in mix["pairs"]:
            lines.append(f"{p['a'] + ' -> ' + p['b']:<34} conf " + " ".join(f"{s['confidence']:.2f}" for s in p["steps"]))
            lines.append(f"{'':<34} fg   " + " ".join(f"{s['foreground']:.2f}" for s in p["steps"]))
        lines.append(f"worst step: confidence {mix['min_confidence']:.3f}, foreground {mix['min_foreground']:.2f}; "
                     f"faintest frame: ink area {mix['min_ink']:.2f} of real; blank frames {mix['blank_frames']} "
                     f"of {mix['frames']}")
    return "\n".join(lines)


# ---------------------------------------------------------------- the sample sheet beside the model card
# one prompt per digit, colours varied; the starred ones are combinations never trained on
SHEET_PROMPTS = ("a red seven", "a blue three", "a green two", "a white zero", "a yellow one", "a purple eight",
                 "a cyan four", "a pink six", "an orange five", "a yellow nine", "a blue 2 *", "a pink 3 *")
SHEET_SEEDS = tuple(range(8))
SHEET_MIX_SEEDS = (0, 1)


def sample_sheet(model: TextToImage, path: str | Path, *, scale: int = 2) -> Path:
    """A PNG of the model: a row per prompt of :data:`SHEET_PROMPTS` with a column per seed of
    :data:`SHEET_SEEDS` (each image is what ``POST /generate`` returns for that prompt and seed), then
    the mix strips of :data:`MIX_PAIRS` (mix 0, 0.1, ..., 1) for the seeds of :data:`SHEET_MIX_SEEDS`."""
    from PIL import Image, ImageDraw, ImageFont

    prompts = [p.removesuffix(" *") for p in SHEET_PROMPTS]
    z = torch.from_numpy(seed_latents(SHEET_SEEDS, latent_dim=model.latent_dim))
    grid = run_prompts(model, [p for p in prompts for _ in SHEET_SEEDS], z.repeat(len(prompts), 1))
    strips, labels = [], []
    for a, b in MIX_PAIRS:
        e = model.embed(model.tokens([mix_prompt(a), mix_prompt(b)]))
        w = torch.tensor(MIX_STEPS, dtype=e.dtype)[:, None]
        mixed = (1 - w) * e[0] + w * e[1]
        for s in SHEET_MIX_SEEDS:
            zs = torch.from_numpy(seed_latents([s], latent_dim=model.latent_dim)).expand(len(MIX_STEPS), -1)
            strips.append(model.generate(zs, mixed))
            labels.append(f"{mix_prompt(a)} -> {mix_prompt(b)}, seed {s}")
    size = grid.shape[-1] * scale
    cell, pad, label_w, head = size + 2, 10, 200, 16
    font = ImageFont.load_default()
    rows_a, rows_b = len(prompts), len(strips)
    width = label_w + cell * max(len(SHEET_SEEDS), len(MIX_STEPS)) + pad
    height = head + rows_a * cell + pad + head + rows_b * cell + pad
    sheet = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(sheet)

    def paste(img: torch.Tensor, x: int, y: int) -> None:
        tile = Image.fromarray(img.permute(1, 2, 0).numpy()).resize((size, size), Image.NEAREST)
        sheet.paste(tile, (x, y))

    draw.text((4, 2), "prompt  (* never trained on)", fill=(200, 200, 200), font=font)
    for k, s in enumerate(SHEET_SEEDS):
        draw.text((label_w + k * cell + 2, 2), f"seed {s}", fill=(200, 200, 200), font=font)
    for r, prompt in enumerate(SHEET_PROMPTS):
        y = head + r * cell
        draw.text((4, y + size // 2 - 6), prompt, fill=(230, 230, 230), font=font)
        for k in range(len(SHEET_SEEDS)):
            paste(grid[r * len(SHEET_SEEDS) + k], label_w + k * cell, y)
    top = head + rows_a * cell + pad
    for k, m in enumerate(MIX_STEPS):
        draw.text((label_w + k * cell + 2, top + 2), f"mix {m:.1f}", fill=(200, 200, 200), font=font)
    for r, (strip, label) in enumerate(zip(strips, labels)):
        y = top + head + r * cell
        draw.text((4, y + size // 2 - 6), label, fill=(230, 230, 230), font=font)
        for k in range(len(MIX_STEPS)):
            paste(strip[k], label_w + k * cell, y)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)
    return path
