"""What the gateway benchmarks share: free ports, a real ``ganserve serve`` process to load, and its
CPU time and memory (Linux /proc)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def gateway(repository: Path, *, args: Sequence[str] = (), env: dict[str, str] | None = None,
            ready_timeout_s: float = 120) -> Iterator[tuple[str, str, int]]:
    """A ``ganserve serve`` process on free loopback ports, ready: yields (HTTP URL, gRPC target, pid).
    Stopped with SIGTERM afterwards (killed if it does not stop within a minute)."""
    with _serving(lambda http_port, grpc_port: [
            sys.executable, "-m", "ganserve", "serve", "--model-repository", str(repository), "--host", "127.0.0.1",
            "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--log-level", "warning", *args],
            env=env, ready_timeout_s=ready_timeout_s, what="gateway") as served:
        yield served


@contextmanager
def floor_app() -> Iterator[tuple[str, str, int]]:
    """benchmarks/floor_app.py (the frameworks without a model) the same way as :func:`gateway`."""
    with _serving(lambda http_port, grpc_port: [
            sys.executable, str(ROOT / "benchmarks" / "floor_app.py"),
            "--http-port", str(http_port), "--grpc-port", str(grpc_port)],
            env=None, ready_timeout_s=60, what="floor_app") as served:
        yield served


@contextmanager
def _serving(command: Callable[[int, int], list[str]], *, env: dict[str, str] | None, ready_timeout_s: float,
             what: str) -> Iterator[tuple[str, str, int]]:
    """Runs ``command(http_port, grpc_port)`` until its ``GET /readyz`` answers 200; SIGTERM afterwards."""
    http_port, grpc_port = free_port(), free_port()
    # Its output (the access log: a line per request) goes to a file, not the benchmark's terminal;
    # the end of it is shown when it does not start.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command(http_port, grpc_port), cwd=ROOT, env=os.environ | (env or {}),
                                   stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{http_port}"
        try:
            deadline = time.monotonic() + ready_timeout_s
            while True:
                try:
                    if httpx.get(f"{url}/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"{what} did not start:\n{log.read().decode(errors='replace')[-3000:]}")
                time.sleep(0.1)
            yield url, f"127.0.0.1:{grpc_port}", process.pid
        finally:
            process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def rss_mib(pid: int) -> float:
    """The process's resident memory now (VmRSS), MiB."""
    return _status_kib(pid, "VmRSS") / 1024


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (VmHWM) since it started or since reset_peak, MiB."""
    return _status_kib(pid, "VmHWM") / 1024


def reset_peak(pid: int) -> bool:
    """Resets the process's peak RSS (VmHWM) to its current RSS; False where the kernel refuses."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    # A working reset leaves VmHWM at (about) the current RSS.
    return _status_kib(pid, "VmHWM") <= _status_kib(pid, "VmRSS") + 4096
