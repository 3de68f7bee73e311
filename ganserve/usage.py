"""The argument parser of every ``ganserve`` command (training's, the gateway's, the CPU Triton's)."""

from __future__ import annotations

import argparse
from typing import NoReturn

from ganserve.errors import UsageError


class UsageParser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of printing usage and exiting, so the
    ``ganserve`` dispatcher reports every user error the same way: one line, exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)
