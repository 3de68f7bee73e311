"""Imported first by every benchmark: stops with one clear line when what the benchmarks need is missing.

The benchmarks drive a real gateway with real clients: they need the gateway (the ``serve`` extra) and
the load generators' packages (the ``bench`` extra: httpx, uvloop, scikit-image's photos). A fresh
``pip install ganserve`` has neither; ``scripts/bootstrap.sh`` installs both.
"""

from __future__ import annotations

import importlib.util
import sys

# import name -> the extra that installs it
NEEDS = {"httpx": "bench", "uvloop": "bench", "skimage": "bench", "numpy": "serve", "onnxruntime": "serve",
         "fastapi": "serve", "uvicorn": "serve", "grpc": "serve", "tritonclient": "serve"}


def missing() -> dict[str, str]:
    """The needed modules that cannot be imported here, with the extra that installs each."""
    return {name: extra for name, extra in NEEDS.items() if importlib.util.find_spec(name) is None}


def check() -> None:
    absent = missing()
    if absent:
        extras = ",".join(sorted(set(absent.values())))
        sys.exit(f"the benchmarks need {', '.join(sorted(absent))}, missing here: "
                 f"pip install -e '.[{extras}]' (scripts/bootstrap.sh installs it)")


check()
