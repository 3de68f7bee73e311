"""Super-resolution on the CPU against the CPU's limit: achieved GFLOP/s of the shipped SR model vs the
machine's fp32 peak, across ONNX Runtime settings and tile sizes.

    .venv/bin/python benchmarks/bench_sr_cpu.py [--model model_repository/srresnet/1/model.onnx]
        [--tiles 32 64 96 128] [--threads 1 2] [--seconds 3] [--json runs/bench_sr_cpu.json]

FLOPs are counted from the ONNX graph itself (shapes inferred for each tile size): a Conv is
2 x N x C_out x H_out x W_out x (C_in / groups) x k_h x k_w (+ the bias adds); elementwise ops (PRelu,
Add, Clip) one per output element; DepthToSpace none. The peak is derived from the CPU: /proc/cpuinfo's
family and model name the core (AMD family 25 model 0x10-0x1f: Zen 4; 2 x 256-bit FMA pipes, AVX-512
run as two halves: 32 fp32 FLOP per cycle per core), its "cpu MHz" the clock (a VM reports the nominal
clock; boost may be higher, so the peak is a lower bound of the real one and the fraction an upper bound).

Each configuration runs one tile batch again and again for --seconds and reports, per CPU second of the
process (what a shared machine still measures honestly): GFLOP/s, the fraction of one core's peak,
and output megapixels. Wall-clock figures are reported too, with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import check_extra  # noqa: F401 - first: one clear line when an extra is missing
import numpy as np
import onnx
import onnxruntime as ort
from onnx import shape_inference

ROOT = Path(__file__).resolve().parents[1]
LEVELS = {"disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
          "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() and key.strip() not in info:
            info[key.strip()] = value.strip()
    return info


def fp32_peak_per_core() -> dict:
    """fp32 FLOP per cycle per core from the CPU's vector units, and the GFLOP/s at its reported clock."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    vendor, family, model = info.get("vendor_id", ""), int(info.get("cpu family", 0)), int(info.get("model", 0))
    mhz = float(info.get("cpu MHz", 0))
    if vendor == "AuthenticAMD" and family == 25 and model >= 0x10:
        core, per_cycle = "AMD Zen 4", 32  # 2 FMA pipes x 8 fp32 lanes (256 bit) x 2 FLOP
    elif vendor == "AuthenticAMD" and family in (23, 25):
        core, per_cycle = "AMD Zen 2/3", 32
    elif "avx512f" in flags:
        core, per_cycle = "AVX-512 (2 FMA units assumed)", 64
    elif "fma" in flags and "avx2" in flags:
        core, per_cycle = "AVX2 + FMA (2 FMA units assumed)", 32
    else:
        core, per_cycle = "SSE (no FMA)", 8
    return {"core": core, "cpu_family": family, "cpu_model": model, "mhz": mhz, "fp32_flop_per_cycle": per_cycle,
            "gflops_per_core": round(per_cycle * mhz / 1000, 1),
            "vector_flags": sorted(f for f in flags if f.startswith(("avx", "fma")))}


def count_flops(model_path: Path, *, batch: int, side: int) -> tuple[int, tuple[int, ...]]:
    """FLOPs of one run on ``[batch, 3, side, side]``, and the output's shape."""
    model = onnx.load(str(model_path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for d, v in zip(dims, (batch, 3, side, side), strict=True):
        d.ClearField("dim_param")
        d.dim_value = v
    model = shape_inference.infer_shapes(model)
    shapes = {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim)
              for v in [*model.graph.value_info, *model.graph.output, *model.graph.input]}
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    flops = 0
    for node in model.graph.node:
        out = shapes.get(node.output[0])
        if out is None or not all(out):
            continue
        elements = int(np.prod(out))
        if node.op_type == "Conv":
            w = weights[node.input[1]]  # [C_out, C_in / groups, k_h, k_w]
            flops += 2 * elements * int(np.prod(w[1:])) + (elements if len(node.input) > 2 else 0)
        elif node.op_type in ("PRelu", "Add", "Clip", "Relu", "Mul", "Sigmoid"):
            flops += elements
    return flops, shapes[model.graph.output[0].name]


def session(model_path: Path, *, level: str, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = LEVELS[level]
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the gateway runs it
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def measure(sess: ort.InferenceSession, *, batch: int, side: int, seconds: float) -> dict:
    x = np.random.default_rng(0).random((batch, 3, side, side), dtype=np.float32)
    name = sess.get_inputs()[0].name
    sess.run(None, {name: x})
    runs, cpu0, wall0 = 0, time.process_time(), time.perf_counter()
    while time.perf_counter() - wall0 < seconds or runs < 2:
        sess.run(None, {name: x})
        runs += 1
    return {"runs": runs, "cpu_s": (time.process_time() - cpu0) / runs, "wall_s": (time.perf_counter() - wall0) / runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "model_repository" / "srresnet" / "1" / "model.onnx")
    parser.add_argument("--tiles", type=int, nargs="+", default=[32, 64, 96, 128], help="tile sides (LR pixels)")
    parser.add_argument("--batch-pixels", type=int, default=128 * 128,
                        help="LR pixels per run (tiles per batch = this / side^2, at least 1)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="intra-op threads")
    parser.add_argument("--levels", nargs="+", choices=list(LEVELS), default=list(LEVELS))
    parser.add_argument("--seconds", type=float, default=3.0, help="per configuration")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    peak = fp32_peak_per_core()
    report: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, onnxruntime {ort.__version__}",
                    "model": str(args.model), "peak": peak, "load_average_at_start": os.getloadavg(), "runs": []}
    print(json.dumps(peak))
    for side in args.tiles:
        batch = max(1, args.batch_pixels // (side * side))
        flops, out_shape = count_flops(args.model, batch=batch, side=side)
        out_mp = int(np.prod(out_shape[2:])) * batch / 1e6
        for level in args.levels:
            for threads in args.threads:
                m = measure(session(args.model, level=level, threads=threads), batch=batch, side=side,
                            seconds=args.seconds)
                row = {"tile": side, "batch": batch, "level": level, "threads": threads,
                       "gflop_per_run": round(flops / 1e9, 3), "cpu_ms": round(m["cpu_s"] * 1000, 2),
                       "wall_ms": round(m["wall_s"] * 1000, 2),
                       "gflops_per_cpu_s": round(flops / m["cpu_s"] / 1e9, 1),
                       "fraction_of_core_peak": round(flops / m["cpu_s"] / 1e9 / peak["gflops_per_core"], 3),
                       "output_mp_per_cpu_s": round(out_mp / m["cpu_s"], 3),
                       "output_mp_per_wall_s": round(out_mp / m["wall_s"], 3)}
                report["runs"].append(row)
                print(json.dumps(row), flush=True)
    report["load_average_at_end"] = os.getloadavg()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
