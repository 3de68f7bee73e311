"""Model card (``<repository>/<model>/README.md``) from a checkpoint, its export and its metrics."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from training.loop import load_checkpoint_file


def _hms(seconds: float) -> str:
    return str(dt.timedelta(seconds=round(seconds)))


def write_model_card(checkpoint: str | Path, *, metrics_path: str | Path, result) -> Path:
    ckpt = load_checkpoint_file(checkpoint)
    meta, cfg = ckpt.get("meta", {}), ckpt["config"]
    reports = json.loads(Path(metrics_path).read_text())
    model, refs = reports[0], reports[1:]
    shift = next((r for r in refs if "shifted" in r["source"]), None)
    passes_fid = shift is not None and model["fid"] <= shift["fid"]
    passes_modes = model["classes_covered"] == 10 and model["min_class_share"] >= 0.05
    rows = "\n".join(
        f"| {r['source'] if r is not model else 'this model (EMA generator, ONNX, uint8 output)'} | "
        f"{r['fid']:.2f} | {r['kid'] * 1e3:.2f} ± {r['kid_std'] * 1e3:.2f} | {r['classes_covered']} | "
        f"{r['min_class_share']:.3f} | {r['kl_to_uniform']:.4f} |" for r in reports)
    name = result.onnx_path.parent.parent.name
    card = f"""# {name} — DCGAN generator trained on MNIST

Unconditional DCGAN (Radford et al. 2015) generator, 28x28 grey digits, trained and exported by
ganserve. Input `z` FP32 `[batch, {cfg['model']['latent_dim']}]` ~ N(0, 1); output `image` FP32
`[batch, 1, 28, 28]` in [-1, 1]. The weights are the exponential moving average of the generator
(decay {cfg['train']['ema_decay']}) with standing BatchNorm statistics; see `docs/model-contract.md`.

## Reproduce
```
{meta.get('argv', 'ganserve train ...')}
ganserve evaluate {checkpoint} --data ../shared/data/mnist --json metrics.json
ganserve export --checkpoint {checkpoint} --repository model_repository --name {name} --metrics metrics.json
```

| | |
| --- | --- |
| data | {meta.get('data', cfg['data']['name'])} |
| generator steps | {ckpt['step']} (batch {cfg['train']['batch_size']}, loss `{cfg['train']['loss']}`, Adam lr G {cfg['train']['lr_g']} / D {cfg['train']['lr_d']}, beta1 {cfg['train']['beta1']}) |
| wall time | {_hms(ckpt['wall_time'])} |
| machine | {meta.get('machine', 'unknown')} ({meta.get('world_size', 1)} process(es)) |
| training commit | `{meta.get('commit', 'unknown')}` |
| ONNX | opset 17, {result.size_bytes / 1e6:.2f} MB, max abs diff vs PyTorch {result.parity_max_abs_diff:.1e} |

## Quality
`ganserve evaluate` with {model['samples']} samples, features from ganserve's own MNIST classifier
(`training/assets/mnist_classifier.pt`, sha256-pinned) against the MNIST test set. Reference points
are computed the same way; a classifier's feature space is very sensitive, so compare with them
rather than with Inception-based FIDs from papers.

| source | FID | KID x1e3 | classes (>= 1%) | min class share | KL to uniform |
| --- | --- | --- | --- | --- | --- |
{rows}

Class shares of the samples (digits 0-9): {model['class_shares']}.

Bar (issue 2): all 10 digits with none under 5% — **{'met' if passes_modes else 'not met'}**;
FID no worse than the one-pixel-shift reference — **{'met' if passes_fid else 'not met'}**.
"""
    path = result.onnx_path.parent.parent / "README.md"
    path.write_text(card)
    return path
