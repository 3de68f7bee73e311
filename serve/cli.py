"""``ganserve serve``: options generated from :class:`ganserve.serve.settings.Settings`, so every setting is
both ``--some-option`` and ``GANSERVE_SOME_OPTION`` (an option given on the command line wins)."""

from __future__ import annotations

import argparse
import asyncio
import types
import typing
from pathlib import Path

from pydantic import ValidationError

from ganserve.errors import UsageError
from ganserve.serve.access.log import configure_logging
from ganserve.serve.settings import Settings
from ganserve.usage import UsageParser as _Parser


def _option_type(annotation: object) -> tuple[type, tuple[str, ...] | None]:
    """(argparse type, choices) for a field's annotation: int, float, str, Path, Literal, X | None."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        (annotation,) = [a for a in args if a is not type(None)]
        args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return str, tuple(args)
    return annotation, None  # type: ignore[return-value]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ganserve serve", description="Run the HTTP + gRPC gateway over a model repository. Every "
        "option can also be set as an environment variable GANSERVE_<OPTION> (e.g. GANSERVE_HTTP_PORT).",
        argument_default=argparse.SUPPRESS)
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        env = "GANSERVE_" + name.upper()
        default = field.default
        help_ = f"{field.description} (env {env}; default: {default if default is not None else 'unset'})"
        if field.annotation is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, help=help_)
            continue
        kind, choices = _option_type(field.annotation)
        parser.add_argument(flag, dest=name, type=kind, choices=choices, help=help_,
                            metavar=name.upper() if choices is None else None)
    return parser


def load_settings(argv: list[str]) -> Settings:
    """Settings from the environment, overridden by ``argv``; :class:`UsageError` if invalid."""
    options = vars(build_parser().parse_args(argv))
    try:
        return Settings(**options)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            name = ".".join(str(p) for p in e["loc"])
            where = f"{name} (--{name.replace('_', '-')} / GANSERVE_{name.upper()})" if name else "settings"
            problems.append(f"{where}: {e['msg']}")
        raise UsageError("invalid setting: " + "; ".join(problems)) from None


def event_loop_factory() -> typing.Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's event loop when it is installed (the 'serve' extra): its socket and scheduling work
    in C cost less CPU per request than asyncio's; else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def main(argv: list[str]) -> int:
    """Entry point used by the ``ganserve`` dispatcher as ``main(["serve", *options])``."""
    args = argv[1:] if argv[:1] == ["serve"] else argv
    settings = load_settings(args)
    if not Path(settings.model_repository).is_dir():
        raise UsageError(f"model repository {str(settings.model_repository)!r} is not a directory "
                         f"(--model-repository / GANSERVE_MODEL_REPOSITORY)")
    configure_logging(settings.log_level, access_log=settings.access_log)
    from ganserve.serve.app import serve  # imported late: --help and usage errors stay fast

    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(serve(settings))
    except OSError as exc:  # a port in use, an address that does not exist
        raise UsageError(f"cannot listen on {settings.host} (HTTP {settings.http_port}, gRPC "
                         f"{settings.grpc_port}): {exc}") from None
    return 0
