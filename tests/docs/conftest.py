"""Prints, at the end of a run that collected the docs test, every documented gateway command it does
not run and why."""

from __future__ import annotations

import shutil

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.docs.commands import TOOLS, documented

    skipped = [(c.command, c.reason) for c in documented() if c.kind == "skip"]
    skipped += [(c.command, TOOLS[c.kind]) for c in documented() if c.kind in TOOLS and shutil.which(c.kind) is None]
    terminalreporter.section("documented gateway commands not run")
    for command, reason in sorted(skipped, key=lambda s: (s[0].doc, s[0].line)):
        terminalreporter.write_line(f"{command.where}: {command.text[:100]}\n    -> {reason}")
