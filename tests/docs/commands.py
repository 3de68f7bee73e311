"""The commands README.md and docs/*.md show, and which of them talk to a gateway.

A *command* is a line of a fenced block that is not Python (continuation lines joined, a ``$ `` prompt
dropped), an inline code span in prose that starts with a command word, or a whole ```python block.
A command *talks to a gateway* when it matches :data:`GATEWAY`. Each such command is classified by
the first rule that matches it: :data:`SKIPS` (knowingly not run, with the reason), else
:data:`RUNS` (run against a live gateway). A gateway command that no rule matches is *unclassified*:
the test fails on it, so a new kind of documented command cannot go untested by accident.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# What marks a command as one that talks to a gateway (or starts one, or a Triton for one).
GATEWAY = re.compile(r"\bcurl\b|\bgrpcurl\b|\bganserve (serve|generate|upscale|triton-cpu)\b|ganserve\.client"
                     r"|\bmake serve\b|scripts/serve\.sh|\b(localhost|127\.0\.0\.1):(8000|50051)\b")
# Inline code spans considered as commands at all: those starting with a command word.
_INLINE_COMMAND = re.compile(r"^((curl|grpcurl|wget|http|https)\s|\.venv/bin/|ganserve |python|make |docker |helm "
                             r"|kubectl |scripts/)")
_GANSERVE = r"^(\.venv/bin/)?ganserve"

# Knowingly not run: (pattern, reason). Checked before RUNS.
SKIPS: list[tuple[re.Pattern[str], str]] = [(re.compile(p), reason) for p, reason in [
    (r"^(inline: )(\.venv/bin/|python -m )?ganserve (serve|generate|upscale|triton-cpu)$",
     "a command's name in prose, not a command line"),
    (r"[│─┌└┐┘▶▼◀▲]", "a line of a diagram, not a command"),
    (r": error: ", "an example of an error message, not a command"),
    (r"HOST:PORT|<[a-z-]+>", "holds a placeholder to fill in"),
    (r"--backend triton", ("needs a Triton server (the gateway on Triton is run by tests/serve/test_triton.py "
                          "and tests/deploy/test_gateway_on_triton.py)")),
    (r"(localhost|127\.0\.0\.1):80(01|02|03|10)\b|/v2/",
     "talks to Triton itself, not to the gateway"),
    (_GANSERVE + r" triton-cpu\b", ("runs (or prepares) a Triton server, not a gateway (tests/test_triton_cpu_cli.py "
                                   "and tests/serve/test_triton.py run it)")),
    (r"^make serve\b|^scripts/serve\.sh\b",
     ("installs into ./.venv and starts a gateway on the fixed ports 8000 / 50051, which may be taken "
     "(tests/test_scripts.py runs make serve); the gateway here is started by the documented "
     "`ganserve serve` line")),
    (r"^docker\b", "needs a Docker engine"),
    (r"^(helm|kubectl)\b|-ganserve-(gateway|triton)\b", "needs a Kubernetes cluster"),
]]


@dataclass(frozen=True)
class Command:
    doc: str    # README.md, docs/gateway.md
    line: int   # 1-based line of the command's first line
    text: str   # the command, continuation lines joined, comment dropped (Python: the whole block)
    comment: str = ""  # a shell line's trailing comment (it often shows the expected output)
    python: bool = False  # a ```python block
    inline: bool = False  # an inline code span in prose

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    def words(self) -> list[str]:
        return shlex.split(self.text)


# What is run, by kind: (kind, pattern). A gateway command matching no skip must match one of these.
RUNS: list[tuple[str, re.Pattern[str]]] = [(kind, re.compile(p)) for kind, p in [
    ("serve", _GANSERVE + r" serve\b"),
    ("curl", r"^curl\b.*\b(localhost|127\.0\.0\.1):8000\b"),
    ("grpcurl", r"^grpcurl\b.*\b(localhost|127\.0\.0\.1):50051\b"),
    ("client", _GANSERVE + r" (generate|upscale) "),
    ("python", r"^(\.venv/bin/)?python3? -c .*\bganserve\.client\b"),
]]


# Kinds of command that need a tool this machine may lack: (kind -> why it is fine to skip them).
TOOLS = {"curl": "curl is not installed here (tests/serve/test_http.py makes the same calls with httpx)",
         "grpcurl": "grpcurl is not installed here (tests/serve/test_grpc.py makes the same calls, one "
                    "from server reflection alone)"}


def split_comment(line: str) -> tuple[str, str]:
    """``cmd args  # comment`` -> (``cmd args``, ``comment``): the first ``#`` after whitespace
    outside quotes."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


def extract(path: Path) -> list[Command]:
    """Every command of one Markdown file, in the order they appear."""
    doc = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
    lines = path.read_text().splitlines()
    commands: list[Command] = []
    fence: str | None = None  # the open fence's language ("" when none); None outside blocks
    block: list[tuple[int, str]] = []
    for number, raw in enumerate(lines, 1):
        opening = re.match(r"^\s*(```|~~~)\s*([\w+-]*)", raw)
        if opening and fence is None:
            fence, block = opening.group(2).lower(), []
            continue
        if opening and fence is not None:
            commands.extend(_block_commands(doc, fence, block))
            fence = None
            continue
        if fence is not None:
            block.append((number, raw))
            continue
        for span in re.findall(r"`([^`]+)`", raw):
            if _INLINE_COMMAND.match(span.strip()):
                commands.append(Command(doc, number, span.strip(), inline=True))
    return commands


def _block_commands(doc: str, language: str, block: list[tuple[int, str]]) -> list[Command]:
    if language in ("python", "py"):
        source = "\n".join(text for _, text in block)
        return [Command(doc, block[0][0] - 1, source, python=True)] if block else []
    if language not in ("", "sh", "bash", "shell", "console"):
        return []  # dockerfile, yaml, ...: not shell
    commands, pending, start = [], "", 0
    for number, raw in block:
        text = raw.strip()
        if language == "console":
            if not text.startswith("$ "):
                continue  # output
            text = text[2:]
        if not pending:
            start = number
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        text, pending = pending + text, ""
        command, comment = split_comment(text)
        if command:
            commands.append(Command(doc, start, command, comment))
    return commands


@dataclass(frozen=True)
class Classified:
    command: Command
    kind: str    # a RUNS kind, "skip", or "unclassified"
    reason: str = ""


def classify(command: Command) -> Classified | None:
    """None when the command does not talk to a gateway."""
    if not GATEWAY.search(command.text):
        return None
    if command.python:
        return Classified(command, "python-block")
    for pattern, reason in SKIPS:  # a rule starting with "^(inline: )" is for inline spans only
        if pattern.search(command.text) or (command.inline and pattern.search("inline: " + command.text)):
            return Classified(command, "skip", reason)
    for kind, pattern in RUNS:
        if pattern.search(command.text):
            return Classified(command, kind)
    return Classified(command, "unclassified")


def documented() -> list[Classified]:
    """Every gateway command of README.md and docs/*.md, classified."""
    return [c for path in DOCS for command in extract(path) if (c := classify(command)) is not None]
