"""A real Triton Inference Server on a machine without a GPU: for tests, benchmarks and development
(a development tool: the gateway image does not carry it).

Production runs stock Triton (GPU container) on the committed ``model_repository/`` with its
``onnxruntime`` backend. The ``tritonserver`` binary bundled in the ``nvidia-pytriton`` wheel has only
the **python** backend, so :func:`derive_cpu_repository` writes a copy of a repository in which each
ONNX model is served by a small python-backend model (``triton_python_model.py`` beside this file) that
runs the same ONNX file with ONNX Runtime.
Everything else is kept: model names, versions and version policy, tensor names, dtypes and dims,
``max_batch_size``, dynamic batching and ensembles. :class:`LocalTriton` starts and stops that binary
(``../shared/guides/triton-cpu.md`` records how it was made to work here).

Command line: ``ganserve triton-cpu --model-repository model_repository`` derives the repository
and runs the server until Ctrl-C (``--out DIR`` only writes the derived repository).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import typing
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

log = logging.getLogger(__name__)

ONNX_BACKENDS = {"onnxruntime"}
ONNX_PLATFORMS = {"onnxruntime_onnx"}
DEFAULT_ONNX_FILENAME = "model.onnx"

# The python-backend model that stands in for Triton's onnxruntime backend, copied next to each ONNX
# file as model.py; it reads the ONNX file's name and its thread count from the config's parameters.
PYTHON_MODEL = Path(__file__).with_name("triton_python_model.py")


class TritonNotInstalled(RuntimeError):
    """The ``nvidia-pytriton`` wheel (which bundles the server binary) is not installed."""


class PortInUse(RuntimeError):
    """A port the server was given is taken by another process (another Triton, a gateway...)."""


def check_ports_free(ports: dict[str, int], *, host: str = "127.0.0.1") -> None:
    """Raises :class:`PortInUse` naming the first of ``ports`` (option name -> port; 0 means any free
    port) that cannot be bound on ``host``. Checked before starting: otherwise the readiness poll may
    find the other server ready while tritonserver itself exits on its bind error."""
    for option, port in ports.items():
        if not port:
            continue
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free
            try:
                probe.bind((host, port))
            except OSError:
                raise PortInUse(f"port {port} ({option}) is already in use on {host}; pick another with "
                                f"{option} PORT (0: any free port)") from None


def derive_cpu_repository(source: Path, target: Path, *, intra_op_threads: int = 1) -> list[str]:
    """Writes the CPU test repository for ``source`` into ``target`` (emptied first); returns the
    model names written. Folders without a readable ``config.pbtxt`` are copied as they are (Triton
    then reports them as it would the originals)."""
    source, target = Path(source), Path(target)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    names = []
    for model_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        out = target / model_dir.name
        try:
            config = text_format.Parse((model_dir / "config.pbtxt").read_text(), mc.ModelConfig())
        except (OSError, text_format.ParseError):
            shutil.copytree(model_dir, out)
            names.append(model_dir.name)
            continue
        if config.backend in ONNX_BACKENDS or config.platform in ONNX_PLATFORMS:
            _to_python_backend(model_dir, out, config, intra_op_threads=intra_op_threads)
        else:  # ensembles (and anything else) are served as they are
            shutil.copytree(model_dir, out)
        names.append(model_dir.name)
    return names


def _to_python_backend(source: Path, target: Path, config: mc.ModelConfig, *, intra_op_threads: int) -> None:
    onnx_file = config.default_model_filename or DEFAULT_ONNX_FILENAME
    config.backend, config.platform, config.default_model_filename = "python", "", ""
    config.ClearField("optimization")  # TensorRT / CUDA accelerators mean nothing here
    del config.instance_group[:]
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
    config.parameters["onnx_file"].string_value = onnx_file
    config.parameters["intra_op_threads"].string_value = str(intra_op_threads)
    target.mkdir(parents=True)
    (target / "config.pbtxt").write_text(
        "# Derived by ganserve (ganserve/dev/triton_cpu.py) for the CPU-only test server: python backend\n"
        "# running the same ONNX file with ONNX Runtime.\n" + text_format.MessageToString(config))
    for version in sorted(p for p in source.iterdir() if p.is_dir() and p.name.isdigit()):
        (target / version.name).mkdir()
        model = version / onnx_file
        if model.exists():
            _link_or_copy(model, target / version.name / onnx_file)
            shutil.copyfile(PYTHON_MODEL, target / version.name / "model.py")


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


@dataclass(frozen=True)
class _Install:
    binary: Path
    backends: Path
    caches: Path
    stub: Path
    libs: Path


def find_installation() -> _Install:
    """Where the ``nvidia-pytriton`` wheel keeps the server (found without importing PyTriton)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or spec.origin is None:
        raise TritonNotInstalled("nvidia-pytriton is not installed (it bundles the tritonserver binary): "
                                 "pip install --no-deps nvidia-pytriton==0.7.0")
    package = Path(spec.origin).parent
    server = package / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    install = _Install(binary=server / "bin" / "tritonserver", backends=server / "backends",
                       caches=server / "caches",
                       stub=server / "python_backend_stubs" / version / "triton_python_backend_stub",
                       libs=package.parent / "nvidia_pytriton.libs")
    for path in (install.binary, install.backends, install.stub):
        if not path.exists():
            raise TritonNotInstalled(f"nvidia-pytriton is incomplete: {path} is missing "
                                     f"(Python {version} needs its stub)")
    return install


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_python_env(python_env: Path) -> Path:
    """The ``python3`` of ``python_env`` (a virtualenv or prefix), checked to run the models.

    The bundled python-backend stub was built against NumPy 1: with NumPy 2 in the models' Python,
    every output tensor reaches the client empty (measured here). So the models run in their own
    environment with ``numpy<2`` and ``onnxruntime``: ``scripts/install-tools.sh`` makes
    ``.venv-triton``.
    """
    python = Path(python_env) / "bin" / "python3"
    if not python.exists():
        raise TritonNotInstalled(f"no python3 in {python_env} (the environment the Triton python models "
                                 f"run in; scripts/install-tools.sh creates .venv-triton)")
    probe = subprocess.run([str(python), "-c", "import numpy, onnxruntime; print(numpy.__version__)"],
                           capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        raise TritonNotInstalled(f"{python} cannot import numpy and onnxruntime: {probe.stderr.strip()[-300:]}")
    if int(probe.stdout.strip().split(".")[0]) >= 2:
        raise TritonNotInstalled(f"{python} has NumPy {probe.stdout.strip()}; the bundled Triton python "
                                 f"backend needs numpy<2 (its outputs come back empty otherwise)")
    return python


def default_python_env() -> Path:
    """``$GANSERVE_TRITON_PYTHON_ENV``, else ``.venv-triton`` in the working folder or the project."""
    if os.environ.get("GANSERVE_TRITON_PYTHON_ENV"):
        return Path(os.environ["GANSERVE_TRITON_PYTHON_ENV"])
    for candidate in (Path.cwd() / ".venv-triton", Path(__file__).resolve().parents[2] / ".venv-triton"):
        if candidate.exists():
            return candidate
    return Path(".venv-triton")


class LocalTriton:
    """One ``tritonserver`` process on loopback serving ``repository`` (a derived CPU repository).

    ``start()`` returns once ``/v2/health/ready`` answers 200 (every model loaded) and raises with
    the server's log otherwise; ``stop()`` sends SIGTERM, then kills the process group. Ports are
    free ones unless given; a stopped server can be started again on the same ports. The models run
    in ``python_env`` (see :func:`check_python_env`).
    """

    def __init__(self, repository: Path, *, python_env: Path | None = None, grpc_port: int | None = None,
                 http_port: int | None = None, metrics_port: int | None = None, log_verbose: int = 0) -> None:
        self.repository = Path(repository)
        self._python = check_python_env(python_env or default_python_env())
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.metrics_port = metrics_port or free_port()
        self._log_verbose = log_verbose
        self._install = find_installation()
        self._workdir = Path(tempfile.mkdtemp(prefix="ganserve-triton-"))
        self._shm_prefix = f"ganserve{uuid.uuid4().hex[:8]}_"
        self._process: subprocess.Popen[bytes] | None = None
        self.log_path = self._workdir / "tritonserver.log"
        backends = self._workdir / "backends"
        shutil.copytree(self._install.backends, backends)
        stub = backends / "python" / "triton_python_backend_stub"
        shutil.copy2(self._install.stub, stub)
        stub.chmod(0o755)
        self._backends = backends

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        return [str(self._install.binary), f"--model-repository={self.repository}",
                f"--backend-directory={self._backends}", f"--cache-directory={self._install.caches}",
                "--http-address=127.0.0.1", f"--http-port={self.http_port}",
                "--grpc-address=127.0.0.1", f"--grpc-port={self.grpc_port}",
                "--metrics-address=127.0.0.1", f"--metrics-port={self.metrics_port}",
                "--allow-gpu-metrics=false", "--pinned-memory-pool-byte-size=0",
                "--cuda-memory-pool-byte-size=0:0", "--exit-timeout-secs=5",
                f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
                "--disable-auto-complete-config", f"--log-verbose={self._log_verbose}"]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(self._install.libs), libdir, env.get("LD_LIBRARY_PATH", "")) if p)
        # The stub starts Python in isolated mode and finds its packages through the python3 first
        # on PATH: the models' environment.
        env["PATH"] = os.pathsep.join((str(self._python.parent), env.get("PATH", "")))
        env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def start(self, *, timeout_s: float = 60.0) -> typing.Self:
        """Raises :class:`PortInUse` when a port is taken, RuntimeError (with the log's tail) when the
        server exits or is not ready in time."""
        if self.running():
            return self
        check_ports_free({"--grpc-port": self.grpc_port, "--http-port": self.http_port,
                          "--metrics-port": self.metrics_port})
        log_file = self.log_path.open("ab")
        self._process = subprocess.Popen(self.command(), stdout=log_file, stderr=subprocess.STDOUT,
                                         env=self.environment(), start_new_session=True)
        log_file.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"tritonserver exited with {self._process.returncode}:\n{self.log_tail()}")
            if self.ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"tritonserver was not ready within {timeout_s:g} s:\n{self.log_tail()}")

    def ready(self) -> bool:
        """``GET /v2/health/ready`` answers 200 (a fresh connection each time: no keep-alive)."""
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, *, timeout_s: float = 15.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for leftover in Path("/dev/shm").glob(f"{self._shm_prefix}*"):
            with contextlib.suppress(OSError):
                leftover.unlink()

    def kill(self) -> None:
        """Ends the server at once (SIGKILL), as a crash would."""
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self.stop()

    def close(self, *, keep_log: bool = False) -> None:
        """Stops the server and removes its working folder (with ``keep_log``: all but the log)."""
        self.stop()
        if keep_log and self.log_path.exists():
            shutil.rmtree(self._backends, ignore_errors=True)
        else:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> typing.Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str]) -> int:
    """``ganserve triton-cpu``: derive the CPU repository and run Triton on it until Ctrl-C."""
    from ganserve.errors import UsageError
    from ganserve.usage import UsageParser as Parser

    parser = Parser(prog="ganserve triton-cpu", description=(
        "Run a real Triton Inference Server without a GPU (the tritonserver bundled in nvidia-pytriton) on "
        "a CPU copy of a model repository: each ONNX model served by a python-backend model running "
        "ONNX Runtime; names, tensors, batching and ensembles unchanged. Then: ganserve serve --backend "
        "triton --triton-url 127.0.0.1:GRPC_PORT."))
    parser.add_argument("--model-repository", type=Path, default=Path("model_repository"),
                        help="the repository to serve (default: ./model_repository)")
    parser.add_argument("--out", type=Path, default=None,
                        help="write the derived repository here and exit (default: run it from a temporary folder)")
    parser.add_argument("--grpc-port", type=int, default=8001, help="Triton gRPC port (default 8001; 0: any free port)")
    parser.add_argument("--http-port", type=int, default=8003,
                        help="Triton HTTP port (default 8003: the gateway's HTTP default is 8000; 0: any free port)")
    parser.add_argument("--metrics-port", type=int, default=8002,
                        help="Triton metrics port (default 8002; 0: any free port)")
    parser.add_argument("--python-env", type=Path, default=None,
                        help="environment the models run in (numpy<2, onnxruntime); default .venv-triton")
    args = parser.parse_args(argv[1:] if argv[:1] == ["triton-cpu"] else argv)
    if not args.model_repository.is_dir():
        raise UsageError(f"model repository {str(args.model_repository)!r} is not a directory")
    if args.out is not None:
        names = derive_cpu_repository(args.model_repository, args.out)
        print(f"wrote {args.out} ({', '.join(names)})")
        return 0
    ports = {"--grpc-port": args.grpc_port, "--http-port": args.http_port, "--metrics-port": args.metrics_port}
    try:
        check_ports_free(ports)  # before anything else: one line, nothing started or written
    except PortInUse as exc:
        raise UsageError(str(exc)) from None
    with tempfile.TemporaryDirectory(prefix="ganserve-cpu-repository-") as folder:
        repository = Path(folder) / "model_repository"
        names = derive_cpu_repository(args.model_repository, repository)
        try:
            server = LocalTriton(repository, python_env=args.python_env, grpc_port=args.grpc_port,
                                 http_port=args.http_port, metrics_port=args.metrics_port)
        except TritonNotInstalled as exc:
            raise UsageError(str(exc)) from None
        failed = True  # the log is kept unless the server ran and was stopped with Ctrl-C / SIGTERM
        try:
            server.start()
            print(f"Triton ready: gRPC {server.grpc_url}, HTTP {server.http_url}, metrics {server.metrics_url}; "
                  f"models {', '.join(names)}; log {server.log_path}. Ctrl-C stops it.", flush=True)
            signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C
            while server.running():
                time.sleep(0.5)
            print(f"tritonserver exited:\n{server.log_tail()}\n(log kept: {server.log_path})", file=sys.stderr)
            return 1
        except PortInUse as exc:  # taken between the check and the start
            raise UsageError(str(exc)) from None
        except RuntimeError as exc:
            raise UsageError(f"{exc}\n(log kept: {server.log_path})") from None
        except KeyboardInterrupt:
            failed = False
            return 0
        finally:
            server.close(keep_log=failed)
