"""An int8 (QDQ) copy of the shipped SR model, calibrated on training crops, timed against the fp32 one.
It ships only if it is faster and costs <= 0.1 dB PSNR on the held-out photos: check with
``ganserve evaluate OUT --compare model_repository/srresnet/1/model.onnx``.

    .venv/bin/python benchmarks/sr_int8.py [--out runs/srresnet-int8/model.onnx] [--crops 48]

Calibration: ``--crops`` LR crops of 64 x 64 from the sr-builtin training photos (never the held-out
ones), bicubic-downscaled x4 as in training; per-channel int8 weights, uint8 activations, MinMax
ranges (onnxruntime.quantization.quantize_static). Timing: one --side tile (128), one intra-op thread,
CPU seconds per run, fp32 and int8 alternating.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import check_extra  # noqa: F401 - first: one clear line when an extra is missing
import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from ganserve.training.data.sr import SR_BUILTIN_TRAIN, _builtin_photo, make_pair

ROOT = Path(__file__).resolve().parents[1]


class Crops(CalibrationDataReader):
    def __init__(self, name: str, *, count: int, side: int = 64, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        lrs = [lr for n in SR_BUILTIN_TRAIN if min((lr := make_pair(n, _builtin_photo(n), 4).lr).shape[:2]) > side]
        self._feeds = []
        for i in range(count):
            lr = lrs[i % len(lrs)]
            y, x = rng.integers(0, lr.shape[0] - side), rng.integers(0, lr.shape[1] - side)
            crop = lr[y:y + side, x:x + side].transpose(2, 0, 1)[None].astype(np.float32) / 255
            self._feeds.append({name: crop})
        self._it = iter(self._feeds)

    def get_next(self):
        return next(self._it, None)


def cpu_per_run(path: Path, *, side: int, runs: int) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = {sess.get_inputs()[0].name: np.random.default_rng(1).random((1, 3, side, side), dtype=np.float32)}
    sess.run(None, x)
    start = time.process_time()
    for _ in range(runs):
        sess.run(None, x)
    return (time.process_time() - start) / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "model_repository" / "srresnet" / "1" / "model.onnx")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "srresnet-int8" / "model.onnx")
    parser.add_argument("--crops", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--side", type=int, default=128, help="timed tile side (LR pixels)")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(args.model), str(prepared), skip_symbolic_shape=True)
        name = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"]).get_inputs()[0].name
        quantize_static(str(prepared), str(args.out), Crops(name, count=args.crops), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    times: dict[str, list[float]] = {"fp32": [], "int8": []}
    for _ in range(args.rounds):
        times["fp32"].append(cpu_per_run(args.model, side=args.side, runs=3))
        times["int8"].append(cpu_per_run(args.out, side=args.side, runs=3))
    result = {k: round(float(np.median(v)) * 1000, 1) for k, v in times.items()}
    result["speedup"] = round(result["fp32"] / result["int8"], 2)
    print(json.dumps({"cpu_ms_per_tile": result, "tile": args.side, "out": str(args.out)}))


if __name__ == "__main__":
    main()
