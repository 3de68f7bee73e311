"""Docs that run: every command of README.md and docs/*.md that talks to a gateway is run, as written,
against a live gateway on the shipped models, and must work (``tests/docs/commands.py`` finds and
classifies them; the skipped ones and why are printed at the end of the run).

The gateway is the documented ``ganserve serve`` line itself, started with ``--http-port 0 --grpc-port
0`` (free ports: a gateway a developer runs on 8000 does not get in the way); each command's
``localhost:8000`` / ``localhost:50051`` are pointed at those ports and ``GANSERVE_URL`` at its HTTP
port (the clients' documented default otherwise). The commands of one document run in order in one
fresh folder (a later command may use an earlier one's files, as a reader's would), where ``.venv``
and ``model_repository`` lead to this environment and the shipped models.

A command fails on: a non-zero exit; an HTTP error (``curl`` runs through a shim adding
``--fail-with-body``); an output it names (``-o``, ``>``) missing or empty; any image it wrote that
does not decode as its suffix says; an answer that differs from the output its comment shows
(``# {"status":"ready"}``); and what the command implies: ``--seeds 1,2,3 -o dir/`` writes
``dir/1.png`` ... , ``upscale`` writes each input scaled up, ``n`` images in a JSON answer.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.docs.commands import DOCS, ROOT, TOOLS, Classified, documented

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF", ".webp": "WEBP"}
COMMAND_TIMEOUT_S = 180
CLASSIFIED = documented()


def _environment_bin() -> Path:
    return Path(sys.prefix) / "bin"


pytestmark = pytest.mark.skipif(not (_environment_bin() / "ganserve").exists(),
                                reason="the ganserve command is not installed in this environment")


def test_every_gateway_command_is_run_or_knowingly_skipped() -> None:
    unclassified = [c for c in CLASSIFIED if c.kind == "unclassified"]
    assert not unclassified, (
        "documented gateway commands this test can neither run nor knowingly skip (add a rule to "
        "tests/docs/commands.py: RUNS, or SKIPS with a reason):\n"
        + "\n".join(f"  {c.command.where}: {c.command.text}" for c in unclassified))
    assert sum(c.kind not in ("skip", "unclassified") for c in CLASSIFIED) >= 15  # the extraction works
    assert {c.kind for c in CLASSIFIED} >= {"serve", "curl", "client", "python", "python-block"}


def _workspace(folder: Path) -> Path:
    """A reader's working folder: ``.venv`` is this environment, ``model_repository`` the shipped one."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".venv").symlink_to(Path(sys.prefix))
    (folder / "model_repository").symlink_to(ROOT / "model_repository")
    return folder


def _shims(folder: Path) -> Path:
    """``curl`` that fails on an HTTP error (exit 22), as the real one with ``--fail-with-body``."""
    folder.mkdir()
    real = shutil.which("curl")
    if real:
        shim = folder / "curl"
        shim.write_text(f'#!/bin/sh\nexec {shlex.quote(real)} --fail-with-body "$@"\n')
        shim.chmod(0o755)
    return folder


class Gateway:
    def __init__(self, process: subprocess.Popen[bytes], log: Path, http_port: int, grpc_port: int) -> None:
        self.process, self.log, self.http_port, self.grpc_port = process, log, http_port, grpc_port


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    serve = [c for c in CLASSIFIED if c.kind == "serve"]
    assert serve, "no documented `ganserve serve` line on the embedded backend"
    command = serve[0].command
    cwd = _workspace(tmp_path_factory.mktemp("serve"))
    log = cwd / "gateway.log"
    with log.open("wb") as out:
        process = subprocess.Popen(["bash", "-c", f"exec {command.text} --http-port 0 --grpc-port 0"], cwd=cwd,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, "PATH": f"{_environment_bin()}{os.pathsep}{os.environ['PATH']}"})
    try:
        deadline = time.monotonic() + 120
        while not (ready := re.search(r"ready: HTTP on port (\d+), gRPC on port (\d+)", log.read_text())):
            assert process.poll() is None, f"{command.where} `{command.text}` exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{command.where} not ready in 120 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.1)
        yield Gateway(process, log, int(ready.group(1)), int(ready.group(2)))
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _rewrite(text: str, gw: Gateway) -> str:
    text = re.sub(r"\b(localhost|127\.0\.0\.1):8000\b", f"127.0.0.1:{gw.http_port}", text)
    return re.sub(r"\b(localhost|127\.0\.0\.1):50051\b", f"127.0.0.1:{gw.grpc_port}", text)


def _files(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and ".venv" not in p.parts}


def _check_image(path: Path) -> Image.Image:
    expected = IMAGE_FORMATS[path.suffix.lower()]
    try:
        with Image.open(path) as image:
            image.load()
            assert image.format == expected, f"{path.name} is {image.format}, not {expected}"
            return image.copy()
    except OSError as exc:
        head = path.read_bytes()[:120]
        raise AssertionError(f"{path.name} is not a {expected} image ({exc}); it starts with {head!r}") from exc


def _outputs(words: list[str], cwd: Path) -> list[Path]:
    """What the command says it writes: ``-o X``, ``--output X``, ``> X``."""
    found = [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-o", "--output", ">")]
    return [cwd / name for name in found]


def _implied(classified: Classified, words: list[str], cwd: Path, stdout: str) -> None:
    """What the command implies beyond running: the outputs it names, and their contents."""
    command = classified.command
    for out in _outputs(words, cwd):
        if str(out).endswith("/") or out.is_dir():
            written = sorted(p for p in out.iterdir() if p.is_file()) if out.is_dir() else []
            assert written, f"wrote nothing into {out.name}/"
        else:
            assert out.is_file() and out.stat().st_size > 0, f"did not write {out.name}"
    if classified.kind == "client" and words[1] == "generate" and "--seeds" in words:
        seeds = words[words.index("--seeds") + 1].split(",")
        out = _outputs(words, cwd)[0]
        if out.is_dir():
            assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.png" for s in seeds)
    if classified.kind == "client" and words[1] == "upscale":
        out = _outputs(words, cwd)[0]
        for written in out.iterdir():
            matches = [p for p in cwd.rglob(written.name) if out not in p.parents and p.parent != out]
            assert matches, f"{written.name}: no input of that name"
            small, big = _check_image(matches[0]), _check_image(written)
            scale = big.width // small.width
            assert scale >= 2 and big.size == (small.width * scale, small.height * scale), (
                f"{written.name}: {small.size} -> {big.size} is not an upscale")
    if classified.kind in ("curl", "grpcurl") and not _outputs(words, cwd):
        answer = json.loads(stdout)  # the gateway answers JSON
        shown = re.search(r"\{.*\}", command.comment)
        if shown:
            expected = json.loads(shown.group(0))
            assert {k: answer.get(k) for k in expected} == expected, (
                f"answered {stdout[:200]}, the doc shows {shown.group(0)}")
        body = words[words.index("-d") + 1] if "-d" in words else ""
        if classified.kind == "curl" and body and "images" in answer:
            assert len(answer["images"]) == json.loads(body).get("n", 1)


def _run(classified: Classified, gw: Gateway, cwd: Path, shims: Path) -> str | None:
    """Runs one command; None when it worked, else what went wrong."""
    command = classified.command
    env = {**os.environ, "PATH": os.pathsep.join((str(shims), str(_environment_bin()), os.environ["PATH"])),
           "GANSERVE_URL": f"http://127.0.0.1:{gw.http_port}", "NO_COLOR": "1"}
    text = _rewrite(command.text, gw)
    argv = [sys.executable, "-"] if classified.kind == "python-block" else ["bash", "-c", text]
    before = _files(cwd)
    try:
        out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
                             input=text if classified.kind == "python-block" else None, check=False)
    except subprocess.TimeoutExpired:
        return f"did not finish in {COMMAND_TIMEOUT_S} s"
    words = [] if classified.kind == "python-block" else shlex.split(text)
    if out.returncode != 0:
        written = "".join(f"\n{p.name} holds: {p.read_bytes()[:300]!r}" for p in _outputs(words, cwd)
                          if p.is_file())  # e.g. curl's error body
        return f"exit status {out.returncode}\n{(out.stdout + out.stderr)[-2000:]}{written}"
    try:
        _implied(classified, words, cwd, out.stdout)
        for path, mtime in _files(cwd).items():  # every image it wrote decodes as its name says
            if path.suffix.lower() in IMAGE_FORMATS and before.get(path) != mtime:
                _check_image(path)
    except (AssertionError, ValueError) as exc:
        return f"{exc}\nstdout: {out.stdout[-500:]}\nstderr: {out.stderr[-500:]}"
    return None


@pytest.mark.parametrize("doc", [str(p.relative_to(ROOT)) for p in DOCS])
def test_documented_gateway_commands_work(doc: str, gateway: Gateway, tmp_path: Path) -> None:
    runnable = [c for c in CLASSIFIED if c.command.doc == doc and c.kind not in ("skip", "unclassified", "serve")]
    if not runnable:
        pytest.skip(f"{doc} shows no gateway command to run")
    cwd, shims = _workspace(tmp_path / "reader"), _shims(tmp_path / "shims")
    failures = []
    for classified in runnable:
        command = classified.command
        if classified.kind in TOOLS and shutil.which(classified.kind) is None:
            continue  # listed among the skips (conftest.py)
        problem = _run(classified, gateway, cwd, shims)
        if problem:
            failures.append(f"{command.where}: {command.text[:300]}\n  {problem}")
    assert gateway.process.poll() is None, f"the gateway exited:\n{gateway.log.read_text()[-3000:]}"
    assert not failures, "documented commands that do not work:\n\n" + "\n\n".join(failures)


def test_the_extraction_reads_blocks_inline_spans_and_python(tmp_path: Path) -> None:
    from tests.docs.commands import classify, extract

    page = tmp_path / "page.md"
    page.write_text("Run `curl -s localhost:8000/healthz` or `ganserve serve`, then open `http://localhost:8000/`.\n\n"
                    "```sh\ncurl -s -X POST localhost:8000/generate \\\n  -d '{\"seed\": 1}'  # {\"a\": 1}\n"
                    "# a comment line\nganserve train --preset dcgan-mnist\n```\n\n"
                    "```console\n$ grpcurl -plaintext localhost:50051 list\nganserve.v1.Gateway\n```\n\n"
                    "```python\nfrom ganserve.client import Client\nClient('http://localhost:8000')\n```\n\n"
                    "```yaml\nurl: localhost:8000\n```\n")
    commands = extract(page)
    assert [(c.line, c.text, c.inline, c.python) for c in commands] == [
        (1, "curl -s localhost:8000/healthz", True, False), (1, "ganserve serve", True, False),
        (4, "curl -s -X POST localhost:8000/generate  -d '{\"seed\": 1}'", False, False),
        (7, "ganserve train --preset dcgan-mnist", False, False),
        (11, "grpcurl -plaintext localhost:50051 list", False, False),
        (15, "from ganserve.client import Client\nClient('http://localhost:8000')", False, True)]
    assert commands[2].comment == '{"a": 1}'
    kinds = [(c.kind if (c := classify(command)) else None) for command in commands]
    assert kinds == ["curl", "skip", "curl", None, "grpcurl", "python-block"]


@pytest.mark.parametrize("text", ["wget -qO- localhost:8000/healthz", "http POST localhost:8000/generate seed:=1",
                                  "curl -s gateway.example.com:8000/generate", "ganserve generate"])
def test_a_new_kind_of_gateway_command_is_unclassified(text: str) -> None:
    from tests.docs.commands import Command, classify

    assert classify(Command("new.md", 1, text)).kind == "unclassified"
