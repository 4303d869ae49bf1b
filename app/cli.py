"""Command line: ``rigfit [COMMAND] ...``; with no command it opens the window.

Each sub-command lives in ``app/commands/<name>.py`` with ``add_parser(subparsers)`` and
``run(args) -> int``. Qt is imported only when the window is opened, so every command works on a
headless rig. Bad input raises :class:`~app.core.errors.RigfitError`; it is printed as one line and
the exit code is 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from app.core.errors import RigfitError, one_line

COMMAND_NAMES: tuple[str, ...] = (
    "detect",
    "plan",
    "fit",
    "run",
    "bench",
    "serve",
    "monitor",
    "rpc_server",
    "search",
    "pull",
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line in the user's words, exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"rigfit: {one_line(message)} (see 'rigfit --help')\n")


def _command_modules() -> dict[str, ModuleType]:
    modules: dict[str, ModuleType] = {}
    for name in COMMAND_NAMES:
        try:
            modules[name] = importlib.import_module(f"app.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"app.commands.{name}":
                raise
    return modules


def build_parser(with_commands: bool = True) -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    parser = _Parser(
        prog="rigfit",
        description="See how a local LLM fits across your GPUs, tune the split, and run it with llama.cpp. "
        "With no command, opens the window.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument(
        "--long", action="store_true", help="with --version: also Python, Qt, llama.cpp and NVML versions"
    )
    parser.add_argument(
        "--self-test", action="store_true", help="headless check: window, detection, planning, a short run"
    )
    parser.add_argument(
        "--screenshot", metavar="FILE.png", help="render the window offscreen to a PNG and exit"
    )
    parser.add_argument("--rig", dest="gui_rig", metavar="EXPR", help="open the window on a planned rig")
    parser.add_argument(
        "--tab",
        choices=("hardware", "fit", "split", "run", "monitor"),
        help="open the window on this tab (with --screenshot: the tab to render)",
    )
    parser.add_argument(
        "--model",
        dest="gui_model",
        metavar="REF",
        help="open the window with this model selected (catalog id, .gguf file, config.json or 'demo')",
    )
    parser.add_argument("--quant", dest="gui_quant", metavar="QUANT", help="with --model: the quantization")
    if not with_commands:
        return parser, {}
    modules = _command_modules()
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in modules.values():
        module.add_parser(sub)
    return parser, modules


def _parse(argv: list[str]) -> tuple[argparse.Namespace, dict[str, ModuleType]]:
    # Without a sub-command (the window, --version) the sub-commands' modules are not imported: they
    # import the planner (numpy, gguf) and would hold the window back by a few hundred milliseconds.
    if not any(a in ("-h", "--help") for a in argv):
        top, _ = build_parser(with_commands=False)
        args, rest = top.parse_known_args(argv)
        if not rest:
            args.command = None
            return args, {}
    parser, modules = build_parser()
    return parser.parse_args(argv), modules


def _printable_streams() -> None:
    # Names from files and paths that are not UTF-8 reach Python with surrogate escapes; printing one
    # must show it escaped, not end the command with a UnicodeEncodeError.
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if callable(reconfigure):
            # A closed or unusual stream stays as it is.
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    _printable_streams()
    try:
        args, modules = _parse(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2, already printed as one line)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        if args.version:
            from app.versions import describe_versions

            qt = None
            if args.long:
                from app.ui.qtinfo import qt_version  # Qt only for the long report

                qt = qt_version()
            print(describe_versions(long=args.long, qt_version=qt))
            return EXIT_OK
        if args.self_test:
            from app.ui.selftest import run_self_test

            return run_self_test()
        if args.command is None:
            from app.ui.app import run_gui

            return run_gui(args)
        return int(modules[args.command].run(args))
    except RigfitError as exc:
        print(f"rigfit: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
