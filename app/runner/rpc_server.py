"""The RPC server process: llama.cpp's ``ggml_backend_rpc_start_server`` for this machine's devices.

Started by :class:`app.runner.rpc.ServerProcess` as ``python -m app.runner.rpc_server --host H
--port P [--device CUDA0,CPU] [--cache] [--threads N] [--allow-network]`` (``rigfit
--rigfit-rpc-server ...`` in a frozen app). The server blocks in C until the process ends; SIGINT
and SIGTERM end it at once (there is nothing to save). Its own problems are one line starting
``rigfit rpc-server:`` and exit code 2, so the parent can show them in the user's words.
"""

from __future__ import annotations

import argparse
import ctypes
import signal
import sys
from collections.abc import Sequence

from app.core.errors import RigfitError
from app.core.rules import RuleError, rpc_unavailable
from app.runner.rpc import PREFIX_FROM_SERVER as PREFIX

EXIT_USAGE = 2


def _line_buffered_c_stdout() -> None:
    """llama.cpp prints its server's status with printf; through a pipe, C's stdout would hold it back."""
    try:
        libc = ctypes.CDLL(None)
        stdout = ctypes.c_void_p.in_dll(libc, "stdout")
        libc.setvbuf(stdout, None, 1, 0)  # _IOLBF
    except (OSError, ValueError, AttributeError):
        pass  # not glibc: output may come late, the server still works


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rigfit rpc-server", add_help=False)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=50052)
    p.add_argument("--device", default="")
    p.add_argument("--cache", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--allow-network", action="store_true")
    return p


def serve(argv: Sequence[str]) -> int:
    from app.hardware.rpc import is_loopback
    from app.runner import ggml
    from app.runner.rpc import (
        NETWORK_WARNING,
        ServerOptions,
        check_port_free,
        llama_cache_dir,
        resolve_bind_host,
    )

    args = _parser().parse_args(list(argv))
    devices = tuple(d.strip() for d in args.device.split(",") if d.strip())
    options = ServerOptions(
        host=args.host,
        port=args.port,
        devices=devices,
        cache=args.cache,
        threads=args.threads,
        allow_network=args.allow_network,
    )
    options.validate()
    host = resolve_bind_host(options.host)
    if not is_loopback(host):
        # First, as llama.cpp's rpc-server does: the warning is said even when the start then fails.
        print("\n" + NETWORK_WARNING.format(host=host) + "\n", file=sys.stderr, flush=True)
    if not ggml.rpc_available():
        raise RuleError(rpc_unavailable())
    check_port_free(host, options.port)
    lib = ggml.load()
    if devices:
        handles = lib.resolve_devices(devices)
    else:
        # llama.cpp's rpc-server: every accelerator, else the CPU.
        found = lib.devices()
        chosen = [d.name for d in found if d.kind not in ("cpu", "accel") and not d.is_rpc]
        if not chosen:
            chosen = [d.name for d in found if d.kind == "cpu"][:1]
        if not chosen:
            raise RigfitError("llama.cpp found no device to serve")
        handles = lib.resolve_devices(chosen)
    cache_dir = None
    if options.cache:
        path = llama_cache_dir()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RigfitError(f"cannot create the cache folder {path}: {exc.strerror or exc}") from None
        cache_dir = str(path).encode()
    threads = options.threads or ggml.default_server_threads()
    array = (ctypes.c_void_p * len(handles))(*handles)
    sys.stdout.flush()
    assert lib.rpc_start_server is not None
    lib.rpc_start_server(f"{host}:{options.port}".encode(), cache_dir, threads, len(handles), array)
    # start_server returns only when it could not listen or accept.
    raise RigfitError(f"llama.cpp's RPC server on {host}:{options.port} stopped: it could not listen there")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the server process."""
    # Ctrl+C in a terminal reaches the whole process group: this process just ends, as llama.cpp's does.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _line_buffered_c_stdout()
    try:
        return serve(sys.argv[1:] if argv is None else argv)
    except RigfitError as exc:
        print(PREFIX + str(exc), flush=True)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
