"""``rigfit rpc-server``: serve this machine's devices to llama.cpp on other machines.

    rigfit rpc-server [--host 127.0.0.1] [--port 50052] [--device CUDA0,CUDA1|CPU] [--cache]
                      [--threads N] [--allow-network]

llama.cpp's own RPC server (libggml-rpc) runs in a child process; Ctrl+C stops it. It listens on
127.0.0.1 unless told otherwise: the protocol has no password and no encryption, so any other
address needs ``--allow-network`` and prints llama.cpp's warning.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any

from app.commands.args import int_in
from app.core import limits
from app.core.errors import RigfitError
from app.core.rules import RuleError, rpc_unavailable
from app.hardware.rpc import DEFAULT_PORT

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "rpc-server",
        help="serve this machine's GPUs (or CPU) to llama.cpp on other machines",
        description="Run llama.cpp's RPC server for this machine's devices. Never on an untrusted "
        "network: anyone who can reach the port can use the devices and read what they hold.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port", type=int_in(limits.PORT_RANGE), default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})"
    )
    p.add_argument(
        "--device",
        default="",
        metavar="CUDA0,CUDA1|CPU",
        help="devices to serve (default: every GPU, else the CPU)",
    )
    p.add_argument(
        "--cache", action="store_true", help="keep received tensors on disk, so the next load sends less"
    )
    p.add_argument(
        "--threads",
        type=int_in(limits.THREADS_RANGE),
        default=None,
        metavar="N",
        help="CPU threads (CPU device)",
    )
    p.add_argument(
        "--allow-network",
        action="store_true",
        help="allow listening on an address other machines can reach (no password: a trusted network only)",
    )
    p.set_defaults(command="rpc_server")


def run(args: argparse.Namespace) -> int:
    from app.runner.ggml import rpc_available
    from app.runner.rpc import PREFIX_FROM_SERVER, ServerOptions, ServerProcess

    if not rpc_available():
        raise RuleError(rpc_unavailable())
    options = ServerOptions(
        host=args.host,
        port=args.port,
        devices=tuple(d.strip() for d in args.device.split(",") if d.strip()),
        cache=args.cache,
        threads=args.threads,
        allow_network=args.allow_network,
    )

    def show(line: str) -> None:
        if not line.startswith(PREFIX_FROM_SERVER):
            print(line, flush=True)

    server = ServerProcess(options, on_line=show)
    # `kill PID` (SIGTERM, what service managers and scripts send) stops the server like Ctrl+C: by
    # default it ended this process at once and left the server it started running, orphaned.
    previous = _stop_on_sigterm()
    server.start()
    try:
        try:
            server.wait_serving(timeout_s=60.0)
        except RigfitError:
            code = server.stop()
            if code == -signal.SIGINT:  # Ctrl+C reached the server first, while it was starting
                print("\nrigfit: RPC server stopped", file=sys.stderr)
                return EXIT_OK
            if code == EXIT_USAGE:
                raise RigfitError(server.failure_text()) from None
            print(f"rigfit: {server.failure_text()}", file=sys.stderr)
            return EXIT_FAILED
        print(
            f"rigfit: serving on {server.endpoint}; use it with: rigfit run --rpc {server.endpoint} ..."
            f" (or llama-server --rpc {server.endpoint}); Ctrl+C stops it",
            file=sys.stderr,
            flush=True,
        )
        while server.running:
            time.sleep(0.2)
        server.join_output()
        print(f"rigfit: {server.failure_text()}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        server.stop()
        print("\nrigfit: RPC server stopped", file=sys.stderr)
        return EXIT_OK
    finally:
        server.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminated(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _stop_on_sigterm() -> Any:
    """Turn SIGTERM into KeyboardInterrupt while the server runs; the handler it replaced, or None
    where none can be set (not the main thread, or no SIGTERM)."""
    try:
        return signal.signal(signal.SIGTERM, _terminated)
    except (ValueError, AttributeError, OSError):
        return None
