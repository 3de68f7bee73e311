"""The work every peer does per image, written as a user of that framework would: seed -> z (NumPy
PCG64, the rule of docs/model-contract.md) -> the ONNX model in ONNX Runtime -> a PNG (Pillow).

Self-contained (NumPy, ONNX Runtime, Pillow): the peers run in their own virtualenvs, without ganserve.
The model is the shipped dcgan (``z`` [n, 100] -> ``image`` [n, 1, 28, 28] in [-1, 1])."""

from __future__ import annotations

import io
import os

import numpy as np
import onnxruntime as ort
from PIL import Image

LATENT_DIM = 100


class Generator:
    """One ONNX Runtime session with its default options (what a user writes first)."""

    def __init__(self, model_path: str | None = None) -> None:
        path = model_path or os.environ["GANSERVE_BENCH_MODEL"]
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

    def pngs(self, seeds: list[int]) -> list[bytes]:
        """One PNG per seed, the seeds run as one batch."""
        z = np.stack([np.random.Generator(np.random.PCG64(s)).standard_normal(LATENT_DIM, dtype=np.float32)
                      for s in seeds])
        (images,) = self.session.run(["image"], {"z": z})  # [n, 1, 28, 28] in [-1, 1]
        pixels = np.clip(np.rint((images[:, 0] + 1) * 127.5), 0, 255).astype(np.uint8)
        out = []
        for p in pixels:
            buffer = io.BytesIO()
            Image.fromarray(p, mode="L").save(buffer, format="PNG")
            out.append(buffer.getvalue())
        return out
