"""What both command-line clients share: the connection options, output formats, one-line errors."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ganserve.client._client import DEFAULT_TIMEOUT_S, DEFAULT_URL, endpoint
from ganserve.client.errors import GanserveError, Unauthenticated
from ganserve.errors import UsageError
from ganserve.usage import UsageParser

SUFFIX_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}  # output file suffix -> --format
FORMAT_SUFFIXES = {"png": ".png", "jpeg": ".jpg"}


def parser(prog: str, description: str) -> UsageParser:
    """The command's parser, with the options that say where the gateway is."""
    parser = UsageParser(prog=prog, description=description)
    parser.add_argument("--url", metavar="URL", default=os.environ.get("GANSERVE_URL", DEFAULT_URL),
                        help="the gateway: http://HOST:PORT or grpc://HOST:PORT (env GANSERVE_URL; "
                             "default %(default)s)")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", default=DEFAULT_TIMEOUT_S,
                        help="seconds one request may take (default %(default)s)")
    parser.add_argument("--api-key", metavar="KEY", default=os.environ.get("GANSERVE_API_KEY"),
                        help="the API key, for a gateway with keys on (env GANSERVE_API_KEY, which keeps it "
                             "out of the process list)")
    parser.add_argument("--retries", type=int, metavar="N", default=0,
                        help="send a request refused with 429 queue_full / 503 not_ready again, up to this "
                             "many times, after the gateway's Retry-After (default %(default)s)")
    return parser


def describe(exc: GanserveError) -> str:
    """A failure as the command reports it: the gateway's message, and how to give a key when one is
    missing or wrong."""
    if isinstance(exc, Unauthenticated):
        return f"{exc.message} (this command takes the key from --api-key or GANSERVE_API_KEY)"
    return exc.message


def client_options(args: Any) -> dict[str, Any]:
    """The keyword arguments of ``Client`` / ``AsyncClient`` from the parsed options."""
    try:
        endpoint(args.url)
    except ValueError as exc:
        raise UsageError(f"--url: {exc}") from None
    if args.retries < 0 or args.timeout <= 0:
        raise UsageError("--retries must be >= 0 and --timeout > 0")
    return {"url": args.url, "timeout": args.timeout, "retries": args.retries, "api_key": args.api_key}


def output_format(path: Path | None, requested: str | None) -> str | None:
    """The image format of an output file: ``--format``, else the file's suffix; they must agree."""
    implied = SUFFIX_FORMATS.get(path.suffix.lower()) if path is not None else None
    if requested and implied and requested != implied:
        raise UsageError(f"--format {requested} does not match the output file {str(path)!r}")
    return requested or implied


def names_a_file(path: Path) -> bool:
    """Whether ``-o PATH`` names an image file (an image suffix, and not an existing folder)."""
    return path.suffix.lower() in SUFFIX_FORMATS and not path.is_dir()


def error(prog: str, message: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)
