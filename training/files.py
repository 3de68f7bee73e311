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


def onnx_session(path: str | Path, *, kind: str):
    """An ONNX Runtime CPU session for a ganserve model of ``kind`` (from ``ganserve.kind``), and its metadata."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get("ganserve.kind") != kind:
        raise UsageError(f"{path} is a {meta.get('ganserve.kind')!r} model, not {kind}")
    return session, meta
