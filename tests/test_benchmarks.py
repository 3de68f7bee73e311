"""Every benchmark in benchmarks/ runs, for a few seconds each, so that none can rot between the runs
that measure (bench_triton.py was once broken unnoticed). Each runs as its users run it (a
subprocess, ``python benchmarks/X.py``) at its smallest settings and must write a report holding the
figures it exists for. The Triton ones skip only where the bundled Triton server is absent
(scripts/install-tools.sh installs it; CI has it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ganserve.dev.triton_cpu import (
    TritonNotInstalled,
    check_python_env,
    default_python_env,
    find_installation,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "model_repository"


def only(tmp_path: Path, *models: str) -> Path:
    """A repository holding only these shipped models (linked): a gateway on it starts in a fraction of
    the time the whole shipped repository takes."""
    repository = tmp_path / "repository"
    repository.mkdir()
    for name in models:
        (repository / name).symlink_to(SHIPPED / name)
    return repository


def run_benchmark(script: str, *args: str, tmp_path: Path, timeout_s: float = 180) -> dict:
    """Runs ``benchmarks/<script>`` with ``--json`` into ``tmp_path``; returns the report."""
    report = tmp_path / f"{script}.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args, "--json", str(report)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False,
                          env=os.environ | {"PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, f"{script} failed ({done.returncode}):\n{done.stderr[-4000:]}"
    return json.loads(report.read_text())


def _triton_or_skip() -> None:
    try:
        find_installation()
        check_python_env(default_python_env())
    except TritonNotInstalled as exc:
        pytest.skip(f"no Triton server here: {exc}")


def test_bench_gateway_runs(tmp_path: Path) -> None:
    report = run_benchmark("bench_gateway.py", "--duration", "0.3", "--requests", "10", "--rounds", "1",
                           "--concurrency", "4", tmp_path=tmp_path)
    for protocol in ("http", "grpc"):
        assert report["latency_n1"][protocol]["p50_ms"] > 0
        assert report["latency_n1"][protocol]["gateway_cpu_ms"] > 0
        assert report["batching_on"][protocol]["4"] > 0 and report["batching_off"][protocol]["4"] > 0
    assert report["framework_floor"]["throughput"]["http"]["32"] > 0


def test_bench_triton_runs(tmp_path: Path) -> None:
    _triton_or_skip()
    report = run_benchmark("bench_triton.py", "--duration", "0.3", "--requests", "10", "--rounds", "1",
                           "--concurrency", "2", tmp_path=tmp_path)
    assert report["direct"]["latency"]["p50_ms"] > 0 and report["direct"]["images_per_s"]["2"] > 0
    for protocol in ("http", "grpc"):
        assert report["gateway"]["latency"][protocol]["gateway_cpu_ms"] > 0
        assert report["overhead"][protocol]["latency_p50_ratio_1_client"] > 0


@pytest.mark.skipif(not (SHIPPED / "srresnet" / "1" / "model.onnx").is_file(), reason="srresnet is not shipped")
def test_bench_upscale_runs(tmp_path: Path) -> None:
    report = run_benchmark("bench_upscale.py", "--sizes", "64", "--repeats", "1", "--model-repository",
                           str(only(tmp_path, "srresnet")), tmp_path=tmp_path)
    (size,) = report["sizes"]
    assert size["output"] == "256x256" and size["output_mp_per_s"] > 0


# The upscale and shutdown storms are left out here: each waits ~12 s for 256x256 upscales to drain.
SMOKE_STORMS = ["disconnect", "bodies", "costly", "slow", "deadline", "soak"]


def test_bench_abuse_runs(tmp_path: Path) -> None:
    report = run_benchmark("bench_abuse.py", "--smoke", "--storms", *SMOKE_STORMS, "--model-repository",
                           str(only(tmp_path, "dcgan", "srresnet")), tmp_path=tmp_path, timeout_s=240)
    names = [storm["name"] for storm in report["storms"]]
    assert {"disconnect", "bodies", "costly", "slow", "idle-flood", "grpc-deadline", "soak"} <= set(names), names
    assert all(storm["still_serves"]["ok"] for storm in report["storms"] if storm["still_serves"])


MNIST = ROOT.parent / "shared" / "data" / "mnist"


@pytest.mark.skipif(not MNIST.is_dir(), reason="../shared/data/mnist is not here (the benchmark trains on MNIST)")
def test_bench_train_loop_runs(tmp_path: Path) -> None:
    report = run_benchmark("bench_train_loop.py", "--data", str(MNIST), "--batch-size", "8", "--blocks", "1",
                           "--steps-per-block", "2", tmp_path=tmp_path)
    assert report["plain_images_per_s"] > 0 and report["loop_images_per_s"] > 0


def test_bench_peers_runs(tmp_path: Path) -> None:
    """--quick, the systems that need no installing (BentoML and Ray Serve, installed on demand, are left
    out even where installed: Ray alone takes ~20 s to start); Triton ones where the server is here. Each
    gives the reference image for its check seed."""
    report = run_benchmark("bench_peers.py", "--quick", "--systems", "ganserve-http", "ganserve-grpc",
                           "plain-fastapi", "triton-direct", "ganserve-http->triton", tmp_path=tmp_path, timeout_s=240)
    summary = report["summary"]
    assert {"ganserve-http", "ganserve-grpc", "plain-fastapi"} <= summary.keys()
    assert all(diff <= 2 for diff in report["image_check_max_abs_diff"].values())
    for row in summary.values():
        assert row["images_per_s_4_clients"] > 0 and row["server_cpu_ms_per_request"] > 0
    assert ("triton-direct" in summary) == ("triton-direct" not in report["skipped"])
    assert report["load"] == ("wrk" if shutil.which("wrk") else "python")


@pytest.mark.parametrize("load", ["python", pytest.param("wrk", marks=pytest.mark.skipif(
    not shutil.which("wrk"), reason="wrk is not installed (scripts/install-tools.sh installs it as root)"))])
def test_bench_peers_loads_http_both_ways(tmp_path: Path, load: str) -> None:
    report = run_benchmark("bench_peers.py", "--quick", "--load", load, "--systems", "ganserve-http",
                           tmp_path=tmp_path, timeout_s=120)
    assert report["load"] == load
    rounds = report["rounds_raw"]["ganserve-http"]
    assert rounds[0]["c4"]["load"] == load and rounds[0]["c4"]["requests"] > 0


SRRESNET = SHIPPED / "srresnet" / "1" / "model.onnx"


@pytest.mark.skipif(not SRRESNET.is_file(), reason="srresnet is not shipped")
def test_bench_sr_cpu_runs(tmp_path: Path) -> None:
    report = run_benchmark("bench_sr_cpu.py", "--tiles", "16", "--threads", "1", "--levels", "all",
                           "--seconds", "0.05", tmp_path=tmp_path)
    (run,) = report["runs"]
    assert run["gflop_per_run"] > 0 and 0 < run["fraction_of_core_peak"] and report["peak"]["gflops_per_core"] > 0


@pytest.mark.skipif(not SRRESNET.is_file(), reason="srresnet is not shipped")
def test_sr_int8_runs(tmp_path: Path) -> None:
    out = tmp_path / "int8.onnx"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sr_int8.py"), "--out", str(out), "--crops", "2",
                           "--rounds", "1", "--side", "16"], cwd=ROOT, capture_output=True, text=True, timeout=180,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["cpu_ms_per_tile"]["int8"] > 0 and out.is_file()


def test_bench_gpu_runs_on_cpu_triton(tmp_path: Path) -> None:
    """benchmarks/gpu/bench_gpu.py --cpu: the GPU script's measurements against the CPU Triton."""
    _triton_or_skip()
    report = run_benchmark("gpu/bench_gpu.py", "--cpu", "--models", "dcgan", "--seconds", "0.3",
                           "--concurrency", "2", tmp_path=tmp_path)
    dcgan = report["precisions"]["fp32"]["dcgan"]
    for path in ("direct", "gateway-http", "gateway-grpc"):
        assert [p["clients"] for p in dcgan[path]] == [1, 2] and all(p["images_per_s"] > 0 for p in dcgan[path])
    assert "fp16" in report  # said why it is not measured


def test_the_gpu_fp16_repository_adds_tensorrt_fp16_to_onnx_models_only(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks" / "gpu"))
    from bench_gpu import precision_repository
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    before = {p: p.read_bytes() for p in SHIPPED.glob("*/config.pbtxt")
              if subprocess.run(["git", "ls-files", "--error-unmatch", str(p)], cwd=ROOT, capture_output=True,
                                check=False).returncode == 0}  # the committed ones
    copy = precision_repository(SHIPPED, tmp_path / "fp16", "fp16")
    for path in before:
        config = text_format.Parse((copy / path.parent.name / "config.pbtxt").read_text(), mc.ModelConfig())
        accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
        if config.backend == "onnxruntime":
            assert [a.name for a in accelerators] == ["tensorrt"]
            assert accelerators[0].parameters["precision_mode"] == "FP16"
        else:  # ensembles run their steps' accelerators
            assert not accelerators
    assert {p: p.read_bytes() for p in before} == before  # the committed files untouched


def _can_attach() -> str | None:
    """Why py-spy cannot attach to a process that is not its child here, or None."""
    if not (Path(sys.executable).with_name("py-spy")).exists():
        return "py-spy is not installed (the bench extra)"
    scope = Path("/proc/sys/kernel/yama/ptrace_scope")
    if scope.exists() and scope.read_text().strip() != "0" and os.geteuid() != 0:
        return f"kernel.yama.ptrace_scope is {scope.read_text().strip()}: py-spy cannot attach without root"
    return None


def test_profile_gateway_runs() -> None:
    if (reason := _can_attach()) is not None:
        pytest.skip(reason)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "profile_gateway.py"), "--seconds", "1",
                           "--top", "5", "--rate", "200"], cwd=ROOT, capture_output=True, text=True, timeout=180,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    head = json.loads(done.stdout.splitlines()[0])
    assert head["requests"] > 0 and head["samples"] > 0 and "serve/" in done.stdout
