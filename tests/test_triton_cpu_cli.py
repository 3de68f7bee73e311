"""``ganserve triton-cpu`` as a user runs it: a taken port is refused up front with one line (no
Triton binary needed for that), and a server that fails keeps its log."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("tritonclient", reason="tritonclient is not installed (the 'serve' extra)")

ROOT = Path(__file__).resolve().parents[1]
COMMAND = [sys.executable, "-m", "ganserve", "triton-cpu"]


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process listens on, as another Triton or a gateway would."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize("option", ["--grpc-port", "--http-port", "--metrics-port"])
def test_a_taken_port_is_refused_up_front_in_one_line(taken_port: int, option: str, tmp_path: Path) -> None:
    ports = {"--grpc-port": "0", "--http-port": "0", "--metrics-port": "0", option: str(taken_port)}
    out = subprocess.run([*COMMAND, "--model-repository", str(ROOT / "model_repository"),
                          *(x for pair in ports.items() for x in pair)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False)
    assert out.returncode == 2
    assert out.stdout == ""  # no "Triton ready": nothing was started
    assert out.stderr.splitlines() == [
        (f"ganserve triton-cpu: error: port {taken_port} ({option}) is already in use on 127.0.0.1; "
        f"pick another with {option} PORT (0: any free port)")]


def test_a_failing_server_keeps_its_log(tmp_path: Path) -> None:
    """A repository whose only model cannot load: tritonserver exits; the log it names is still there."""
    from ganserve.dev import triton_cpu

    try:
        triton_cpu.find_installation()
        triton_cpu.check_python_env(triton_cpu.default_python_env())
    except triton_cpu.TritonNotInstalled as exc:
        pytest.skip(f"no Triton here: {exc}")
    broken = tmp_path / "repository" / "broken"
    (broken / "1").mkdir(parents=True)
    (broken / "config.pbtxt").write_text('name: "broken"\nbackend: "python"\nmax_batch_size: banana\n')
    out = subprocess.run([*COMMAND, "--model-repository", str(tmp_path / "repository"), "--grpc-port", "0",
                          "--http-port", "0", "--metrics-port", "0"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert out.returncode == 2, out.stderr
    assert "Triton ready" not in out.stdout
    kept = re.search(r"\(log kept: (\S+)\)", out.stderr)
    assert kept, out.stderr
    log = Path(kept.group(1))
    try:
        assert "failed to load all models" in log.read_text()
        assert [p.name for p in log.parent.iterdir()] == ["tritonserver.log"]  # only the log is left
    finally:
        log.unlink()
        log.parent.rmdir()
