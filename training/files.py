"""Reading the files users point training at (checkpoints, weights, ONNX models), with one clear
:class:`~ganserve.errors.UsageError` when a file is missing, unreadable or of the wrong kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ganserve.errors import UsageError


def torch_load(path: str | Path, *, what: str, expected: str) -> Any:
    """``torch.load`` (weights only, to CPU) of ``what`` at ``path``; ``expected`` describes the file."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{what} {path} does not exist (expected {expected})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- torch raises many types for a corrupt file
        raise UsageError(f"cannot read {what} {path}: {exc.__class__.__name__}: {exc}") from None


def onnx_pyramid(model_dir: str | Path):
    """A pyramid ensemble (LAPGAN, docs/model-contract.md) as one function: ``run(z)`` takes z
    ``float32 [n, latent_dim]``, splits it over the levels' z coarse level first, runs each level's ONNX
    model (the latest version folder of each step, beside ``model_dir`` in its repository) on the
    previous level's image, and returns every level's image, coarse to fine. Returns ``(run,
    latent_dim)``."""
    import numpy as np
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    model_dir = Path(model_dir)
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), mc.ModelConfig())
    if config.platform != "ensemble" or not config.ensemble_scheduling.step:
        raise UsageError(f"{model_dir} is not a Triton ensemble")
    levels = []  # (session, ensemble name of its z, of its coarse input or None, of its image)
    for step in config.ensemble_scheduling.step:
        step_dir = model_dir.parent / step.model_name
        versions = sorted((int(p.name) for p in step_dir.iterdir() if p.is_dir() and p.name.isdigit()),
                          reverse=True) if step_dir.is_dir() else []
        if not versions:
            raise UsageError(f"{model_dir}: its step {step.model_name!r} has no version folder in {step_dir}")
        session, meta = onnx_session(step_dir / str(versions[0]) / "model.onnx",
                                     kind=("pyramid-level" if "coarse" in step.input_map else "pyramid-coarse"))
        levels.append((session, int(meta["ganserve.latent_dim"]), step.input_map.get("coarse"),
                       step.output_map["image"]))
    dims = [dim for _, dim, _, _ in levels]

    def run(z: np.ndarray) -> list[np.ndarray]:
        images: dict[str, np.ndarray] = {}
        start = 0
        for session, dim, coarse, image in levels:  # the steps are written in data-flow order
            feed = {"z": np.ascontiguousarray(z[:, start:start + dim])}
            if coarse is not None:
                feed["coarse"] = images[coarse]
            images[image] = session.run(["image"], feed)[0]
            start += dim
        return list(images.values())

    return run, sum(dims)


def load_onnx(path: str | Path):
    """The ONNX model at ``path`` (its proto), or :class:`UsageError` naming why it cannot be read."""
    import onnx

    try:
        return onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 -- onnx raises several types for a file it cannot parse
        raise UsageError(f"cannot read ONNX model {path}: {exc.__class__.__name__}: {exc}") from None


def onnx_session(path: str | Path, *, kind: str):
    """An ONNX Runtime CPU session for a ganserve model of ``kind`` (from ``ganserve.kind``), and its metadata."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get("ganserve.kind") != kind:
        raise UsageError(f"{path} is a {meta.get('ganserve.kind')!r} model, not {kind}")
    return session, meta
