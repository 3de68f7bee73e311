"""Super-resolution benchmark: output megapixels/s and the gateway's peak RSS per input size.

    .venv/bin/python benchmarks/bench_upscale.py [--model-repository model_repository]
        [--sizes 256 1024 2048] [--repeats 3] [--budget-s 150] [--json out.json]

For each square input size a fresh ``python -m ganserve serve --backend onnxruntime`` is started on
free loopback ports (a separate process, as benchmarks/bench_gateway.py does) and warmed up with one
small upscale; then a synthetic photo-like RGB PNG (smooth random field + fine noise, fixed seed) is
POSTed to ``/upscale`` as the raw body (``Accept: image/png``), the answer checked to decode to
exactly ``scale`` times the size, and recorded:

  * wall seconds per request (upload, tiling, inference, stitching, PNG encoding, download; median
    over the repetitions) and output megapixels/s, plus the gateway's CPU seconds per request and
    output megapixels per gateway CPU second (on a shared CPU, wall time mostly measures the others);
  * the gateway's RSS after the warm-up (``VmRSS``: the baseline), its peak during the size's
    requests (``VmHWM`` of /proc/<pid>/status, reset after the warm-up by writing ``5`` to
    /proc/<pid>/clear_refs), and ``beyond output`` = peak - baseline - the output image's own bytes
    (uint8 H x W x 3 plus the PNG file). That last figure should not grow with the input size when
    the work is done tile by tile.

A fresh process per size, because one process keeps what earlier sizes allocated (ONNX Runtime's CPU
memory arena stays at its largest batch), which would move the baseline from size to size;
``--one-gateway`` measures that way anyway (VmHWM reset before each size).
Repetitions per size: up to ``--repeats``, fewer where another one would take the size past
``--budget-s`` (at least one), so the whole run stops by itself in a few minutes on a small CPU.
The gateway's upload and pixel limits and its request deadline are raised through the environment
(GANSERVE_MAX_PIXELS, GANSERVE_MAX_UPLOAD_BYTES, GANSERVE_REQUEST_TIMEOUT_S) so that the largest
size is accepted; the defaults (1024 x 1024 pixels, 8 MiB, 30 s) would reject 2048 x 2048.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from pathlib import Path

import check_extra  # noqa: F401 - first: one clear line when an extra is missing
import httpx
import numpy as np
import onnxruntime as ort
from harness import cpu_seconds, gateway, peak_rss_mib, reset_peak, rss_mib
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
MODEL = "srresnet"
TILE: dict[str, int] = {}  # --tile-size: the request's tile_size (default: the model's)
SCALE = 4
MIB = 1024 * 1024


def synthetic_png(size: int, *, seed: int = 0) -> bytes:
    """A deterministic photo-like RGB image: a smooth random colour field, a gentle gradient and
    fine noise (so that the PNG neither compresses to nothing nor is pure noise)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(max(size // 32, 4), max(size // 32, 4), 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse, "RGB").resize((size, size), Image.Resampling.BICUBIC),
                        dtype=np.float32)
    ramp = np.linspace(-20, 20, size, dtype=np.float32)
    image = smooth + ramp[None, :, None] + rng.normal(0, 6, size=(size, size, 3)).astype(np.float32)
    out = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB").save(out, format="PNG")
    return out.getvalue()


def upscale(client: httpx.Client, png: bytes, size: int) -> tuple[float, bytes]:
    """One POST /upscale; wall seconds and the PNG answer, checked to be ``SCALE`` x the size."""
    start = time.perf_counter()
    response = client.post("/upscale", params={"model": MODEL, **TILE}, content=png,
                           headers={"Content-Type": "image/png", "Accept": "image/png"})
    seconds = time.perf_counter() - start
    if response.status_code != 200:
        raise RuntimeError(f"POST /upscale {size}x{size}: HTTP {response.status_code}: {response.text[:300]}")
    with Image.open(io.BytesIO(response.content)) as image:
        if image.size != (SCALE * size, SCALE * size) or image.mode != "RGB":
            raise RuntimeError(f"{size}x{size}: expected RGB {SCALE * size}x{SCALE * size}, "
                               f"got {image.mode} {image.size[0]}x{image.size[1]}")
    return seconds, response.content


def measure_size(client: httpx.Client, pid: int, size: int, *, repeats: int, budget_s: float,
                 reset: bool) -> dict:
    png = synthetic_png(size)
    baseline = rss_mib(pid)
    if reset and not reset_peak(pid):
        raise RuntimeError("could not reset the peak RSS")
    cpu = cpu_seconds(pid)
    samples: list[float] = []
    answer = b""
    while len(samples) < repeats:
        seconds, answer = upscale(client, png, size)
        samples.append(seconds)
        # another repetition only if it still fits in the size's time budget
        if sum(samples) + float(np.median(samples)) > budget_s:
            break
    peak = peak_rss_mib(pid)
    gateway_cpu = (cpu_seconds(pid) - cpu) / len(samples)
    out_px = (SCALE * size) ** 2
    output_mib = (out_px * 3 + len(answer)) / MIB
    median = float(np.median(samples))
    return {"input": f"{size}x{size}", "input_png_mib": round(len(png) / MIB, 2),
            "output": f"{SCALE * size}x{SCALE * size}", "output_mp": round(out_px / 1e6, 2),
            "repeats": len(samples), "seconds": [round(s, 2) for s in samples],
            "median_s": round(median, 2), "output_mp_per_s": round(out_px / 1e6 / median, 3),
            "gateway_cpu_s_per_request": round(gateway_cpu, 1),
            # what the gateway gets done per CPU second: steadier than MP/s on a shared CPU
            "output_mp_per_cpu_s": round(out_px / 1e6 / gateway_cpu, 3) if gateway_cpu > 0 else None,
            "baseline_rss_mib": round(baseline, 1), "peak_rss_mib": round(peak, 1),
            "output_image_mib": round(output_mib, 1), "output_png_mib": round(len(answer) / MIB, 2),
            "beyond_output_mib": round(peak - baseline - output_mib, 1)}


def warm_up(client: httpx.Client) -> None:
    upscale(client, synthetic_png(64, seed=1), 64)


def table(rows: list[dict]) -> str:
    head = ("| input | output MP | s (median) | output MP/s | gateway CPU s | output MP per CPU s "
            "| baseline RSS MiB | peak RSS MiB | output image MiB | beyond output MiB |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    lines = [f"| {r['input']} | {r['output_mp']} | {r['median_s']} | {r['output_mp_per_s']} "
             f"| {r['gateway_cpu_s_per_request']} | {r['output_mp_per_cpu_s']} "
             f"| {r['baseline_rss_mib']} | {r['peak_rss_mib']} | {r['output_image_mib']} "
             f"| {r['beyond_output_mib']} |" for r in rows]
    return "\n".join([head, *lines])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=3, help="most requests per size (median)")
    parser.add_argument("--budget-s", type=float, default=150.0,
                        help="no further repetition of a size once it would pass this many seconds")
    parser.add_argument("--one-gateway", action="store_true",
                        help="all sizes on one gateway process (its baseline then includes whatever the "
                             "smaller sizes left allocated, e.g. ONNX Runtime's memory arena)")
    parser.add_argument("--tile-size", type=int, help="tile_size of every request (default: the model's)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.tile_size:
        TILE["tile_size"] = args.tile_size

    if not (args.model_repository / MODEL / "1" / "model.onnx").is_file():
        sys.exit(f"{args.model_repository / MODEL} not found: this benchmark needs the shipped x4 model")
    largest = max(args.sizes)
    env = {"GANSERVE_MAX_PIXELS": str(largest * largest),
           "GANSERVE_MAX_UPLOAD_BYTES": str(max(64 * MIB, 4 * largest * largest * 4)),
           "GANSERVE_REQUEST_TIMEOUT_S": "1800"}
    report: dict = {
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores, "
                   f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, "
                   f"Python {platform.python_version()}, onnxruntime {ort.__version__}",
        "model": f"{args.model_repository}/{MODEL}", "command": " ".join(["python", *sys.argv]),
        "gateway_env": env, "sizes": [],
    }
    timeout = httpx.Timeout(1800.0, connect=10.0)
    sizes = sorted(args.sizes)
    with gateway(args.model_repository, args=["--backend", "onnxruntime"], env=env) as (url, _, pid):
        resets = reset_peak(pid)
    if not resets and args.one_gateway:
        sys.exit("this kernel does not reset VmHWM through clear_refs: run without --one-gateway")
    report["peak_reset"] = ("one gateway, VmHWM reset (clear_refs 5) before each size" if args.one_gateway
                            else "fresh gateway per size" + (", VmHWM reset (clear_refs 5) after its warm-up"
                                                             if resets else " (VmHWM not resettable)"))

    def run(client: httpx.Client, pid: int, size: int) -> None:
        report["sizes"].append(measure_size(client, pid, size, repeats=args.repeats,
                                            budget_s=args.budget_s, reset=resets))
        print(json.dumps(report["sizes"][-1]), file=sys.stderr, flush=True)

    if args.one_gateway:
        with gateway(args.model_repository, args=["--backend", "onnxruntime"], env=env) as (url, _, pid), \
                httpx.Client(base_url=url, timeout=timeout) as client:
            warm_up(client)
            for size in sizes:
                run(client, pid, size)
    else:
        for size in sizes:
            with gateway(args.model_repository, args=["--backend", "onnxruntime"], env=env) as (url, _, pid), \
                    httpx.Client(base_url=url, timeout=timeout) as client:
                warm_up(client)
                run(client, pid, size)
    print(json.dumps(report, indent=2))
    print(table(report["sizes"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
