"""The gateway Dockerfile: hadolint clean, and what the image must be (serve extra only, non-root,
HEALTHCHECK on /healthz, ports, labels, the model repository at /models). No Docker engine runs
here, so the instructions are checked as written, and the HEALTHCHECK command is run for real."""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import subprocess
import sys
import threading
from fnmatch import fnmatch

import yaml

from tests.deploy.helpers import CHART, REPO, require_tool

DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[int, str, str]]:
    """(stage index, INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, stage, pending = [], -1, ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        pending += " " + line.removesuffix("\\").strip() if pending else line.removesuffix("\\").strip()
        if line.endswith("\\"):
            continue
        keyword, _, args = pending.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append((stage, keyword, args.strip()))
        pending = ""
    return out


def final_stage() -> list[tuple[str, str]]:
    items = instructions()
    last = max(s for s, _, _ in items)
    return [(k, a) for s, k, a in items if s == last]


def one(stage: list[tuple[str, str]], keyword: str) -> str:
    found = [a for k, a in stage if k == keyword]
    assert len(found) == 1, f"expected one {keyword} in the runtime stage, got {found}"
    return found[0]


def test_hadolint():
    hadolint = require_tool("hadolint")
    result = subprocess.run([hadolint, "--config", str(REPO / ".hadolint.yaml"), "--no-color", str(DOCKERFILE)],
                            check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_missing_label(tmp_path):
    """The label schema in .hadolint.yaml is live: an image without its licence label fails."""
    hadolint = require_tool("hadolint")
    broken = tmp_path / "Dockerfile"
    broken.write_text("\n".join(line for line in DOCKERFILE.read_text().splitlines()
                                 if "org.opencontainers.image.licenses" not in line) + "\n")
    result = subprocess.run([hadolint, "--config", str(REPO / ".hadolint.yaml"), "--no-color", str(broken)],
                            check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DL3049" in result.stdout, result.stdout


def test_multi_stage_with_only_the_serve_extra():
    items = instructions()
    froms = [a for _, k, a in items if k == "FROM"]
    assert len(froms) >= 2, "a build stage and a runtime stage"
    assert all(re.search(r"\bAS\s+\w+", a, re.IGNORECASE) for a in froms), "named stages"
    installs = [a for _, k, a in items if k == "RUN" and "pip install" in a]
    assert installs and all('".[serve]"' in a and "--no-cache-dir" in a for a in installs), installs
    everything = " ".join(a for _, _, a in items)
    assert "torch" not in everything.replace("find_spec('torch')", ""), "the gateway image carries no PyTorch"
    assert ".[train" not in everything and "training/" not in " ".join(a for _, k, a in items if k == "COPY")
    runtime = final_stage()
    assert not [a for k, a in runtime if k == "RUN" and "pip install" in a], "the runtime stage installs nothing"
    assert any(k == "COPY" and a.startswith("--from=build") for k, a in runtime)


def test_runtime_stage_runs_as_the_charts_non_root_user():
    runtime = final_stage()
    user = one(runtime, "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) >= 1000, f"USER must be a fixed numeric non-root UID, got {user}"
    chart = yaml.safe_load((CHART / "values.yaml").read_text())["gateway"]["podSecurityContext"]
    assert chart["runAsUser"] == int(uid) and chart["runAsGroup"] == int(gid or uid)
    assert any(k == "RUN" and f"--uid {uid}" in a for k, a in runtime), "the user exists in /etc/passwd"
    assert [k for k, _ in runtime][-1] == "ENTRYPOINT" and [k for k, _ in runtime].index("USER") < len(runtime) - 1


def test_entrypoint_ports_and_environment():
    runtime = final_stage()
    assert json.loads(one(runtime, "ENTRYPOINT")) == ["ganserve", "serve"]
    assert one(runtime, "EXPOSE").split() == ["8000", "50051"]
    env = " ".join(a for k, a in runtime if k == "ENV")
    for setting in ("GANSERVE_MODEL_REPOSITORY=/models", "GANSERVE_HOST=0.0.0.0", "GANSERVE_HTTP_PORT=8000",
                    "GANSERVE_GRPC_PORT=50051", "PYTHONDONTWRITEBYTECODE=1"):
        assert setting in env, setting
    assert "COPY model_repository/ /models/" in [f"{k} {a}" for k, a in runtime]


def test_oci_labels():
    labels = " ".join(a for k, a in final_stage() if k == "LABEL")
    for key in ("title", "description", "version", "revision", "licenses", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels, key


def healthcheck_command() -> list[str]:
    health = one(final_stage(), "HEALTHCHECK")
    options, _, command = health.partition(" CMD ")
    assert "--interval=" in options and "--timeout=" in options and "--start-period=" in options
    return json.loads(command)


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, *args):
        pass


def test_healthcheck_command_probes_healthz():
    """The HEALTHCHECK's own command (python + urllib, no curl) against a stand-in gateway: exit 0
    when /healthz answers, non-zero when nothing listens."""
    command = healthcheck_command()
    assert command[0] == "python" and "/healthz" in command[-1]
    command = [sys.executable, *command[1:]]
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        ok = subprocess.run(command, env={**os.environ, "GANSERVE_HTTP_PORT": str(port)},
                            check=False, capture_output=True, timeout=30)
        assert ok.returncode == 0, ok.stderr
    finally:
        server.shutdown()
        server.server_close()
    down = subprocess.run(command, env={**os.environ, "GANSERVE_HTTP_PORT": str(port)},
                          check=False, capture_output=True, timeout=30)
    assert down.returncode != 0


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch(p, pattern) or fnmatch(p, pattern.removeprefix("**/"))
               or (pattern.startswith("**/") and fnmatch(p.rsplit("/", 1)[-1], pattern[3:])) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_sends_only_what_the_build_copies():
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    copied = []
    for _, keyword, args in instructions():
        if keyword == "COPY" and not args.startswith("--from"):
            copied += [s for s in shlex.split(args)[:-1] if not s.startswith("--")]
    assert copied, "no COPY from the build context"
    for source in copied:
        assert (REPO / source).exists() or source == "model_repository/", f"COPY {source}: not in the repository"
        assert not _ignored(source.rstrip("/") + ("/x.py" if source.endswith("/") else ""), patterns), \
            f"{source} is excluded by .dockerignore"
    for heavy in (".venv/bin/python", "runs/x/ckpt.pt", "tools/bin/helm", ".git/HEAD", "training/loop.py",
                  "ganserve/dev/triton_cpu.py", "ganserve/dev/triton_python_model.py",
                  "tests/deploy/test_dockerfile.py", "serve/__pycache__/app.cpython-311.pyc"):
        assert _ignored(heavy, patterns), f"{heavy} would be sent to the build"


def test_serve_extra_has_no_torch():
    """The image installs `.[serve]`: that extra (and the base dependencies) must not pull PyTorch."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["serve"]
    assert not [r for r in requirements if re.match(r"torch\b", r)], requirements
