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
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ganserve import text
from ganserve.errors import UsageError
from ganserve.training.checkpoint import load_generator
from ganserve.training.data.captions import (
    HELDOUT_COMBOS,
    TRAIN_TEMPLATES,
    caption,
    heldout_prompts,
    render_combos,
    seen_combos,
)
from ganserve.training.data.images import load_mnist, to_uint8
from ganserve.training.metrics.classifiers import classify, load_attribute_classifier
from ganserve.training.metrics.distances import fid


def generator_from(model_path: str | Path):
    """(tokens int64 [B, L], z [B, Z]) -> uint8 images, and the latent size, from a checkpoint."""
    loaded = load_generator(model_path)
    G = loaded.model

    @torch.no_grad()
    def run(tokens: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return to_uint8(G(z, G.embed(tokens)))

    return run, loaded.family.cfg.model.latent_dim, loaded.family.cfg.model.max_tokens


def generate_for(run, latent: int, length: int, combos: list[tuple[int, int]], n: int, *, held_out_phrasing: bool,
                 seed: int, batch: int = 500) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
    tokens = torch.from_numpy(text.encode_batch(prompts, length=length))
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(len(prompts), latent, generator=g)
    images = torch.cat([run(tokens[i: i + batch], z[i: i + batch]) for i in range(0, len(prompts), batch)])
    return images, torch.tensor(digits), torch.tensor(colours)


def accuracy(net, images: torch.Tensor, digits: torch.Tensor, colours: torch.Tensor) -> dict[str, float]:
    feats, d, c = classify(net, images)
    ok_d, ok_c = d == digits, c == colours
    return {"digit_acc": float(ok_d.float().mean()), "colour_acc": float(ok_c.float().mean()),
            "both_acc": float((ok_d & ok_c).float().mean()), "samples": len(images)}, feats


def evaluate(model_path: str | Path, data: str | Path, *, per_seen: int = 50, per_heldout: int = 200,
             seed: int = 0) -> dict:
    """Attribute accuracy and FID per group (seen, held-out combinations) and prompt phrasing."""
    if min(per_seen, per_heldout) < 10:
        raise UsageError("--per-seen and --per-heldout must be at least 10")
    net = load_attribute_classifier()
    run, latent, length = generator_from(model_path)
    test, train = load_mnist(data, split="test"), load_mnist(data, split="train")
    groups = {"seen": (seen_combos(), per_seen), "heldout": (sorted(HELDOUT_COMBOS), per_heldout)}
    report: dict = {"model": str(model_path), "groups": {}}
    for group, (combos, n) in groups.items():
        real, _, _ = render_combos(test.images, test.labels, combos, n, seed=seed)
        real_feats, _, _ = classify(net, real)
        floor_imgs, _, _ = render_combos(train.images, train.labels, combos, n, seed=seed + 1)
        floor_feats, _, _ = classify(net, floor_imgs)
        entry = {"combos": len(combos), "per_combo": n, "fid_floor_real_train": fid(floor_feats, real_feats)}
        for phrasing, held in (("heldout_prompts", True), ("train_prompts", False)):
            images, d, c = generate_for(run, latent, length, combos, n, held_out_phrasing=held, seed=seed)
            acc, feats = accuracy(net, images, d, c)
            entry[phrasing] = {**acc, "fid": fid(feats, real_feats)}
        report["groups"][group] = entry
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
    return "\n".join(lines)
