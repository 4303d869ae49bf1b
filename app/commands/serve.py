"""``rigfit serve``: load a GGUF in the worker process and answer OpenAI's API on a local port.

Chat apps (Open WebUI, SillyTavern, editor plugins) and scripts point at the printed URL. The port
is bound before the model loads, so a taken port is one line at once; requests that come during the
load get a 503 until the model is ready. Runs until Ctrl+C (or SIGTERM): the socket closes, open
requests end, the worker shuts down. Human lines go to stderr, the URL to stdout; with ``--json``
stdout carries one JSON object per event (``listening``, ``progress``, ``loaded``, ``serving``,
``request``, ``notice``, ``error``, ``stopped``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from dataclasses import asdict
from typing import Any

from app.commands.args import int_in
from app.commands.run import (
    CPU_NOTE,
    Progress,
    RpcRun,
    add_model_arguments,
    describe_loaded,
    rpc_run,
    settings_from_args,
)
from app.core import limits
from app.core.errors import RigfitError
from app.core.settings import SPLIT_MODES, Settings
from app.runner import protocol as P
from app.runner.options import parse_split, resolve_model
from app.serve.dispatch import DEFAULT_MAX_WAITING, RequestRecord
from app.serve.host import ModelHost, Stopped
from app.serve.server import DEFAULT_HOST, DEFAULT_PORT, OpenAIServer, exposure_warning

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
API_KEY_ENV = "RIGFIT_API_KEY"


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve a model over an OpenAI-compatible HTTP API (Open WebUI, SillyTavern, scripts)",
        description="Load a model with llama.cpp and answer OpenAI's API (/v1/chat/completions, "
        "/v1/completions, /v1/models) on this computer until Ctrl+C.",
    )
    add_model_arguments(p, ctx_default=Settings().ctx)
    p.add_argument(
        "--split", metavar="R1,R2,...", help="tensor split, one ratio per GPU (default: by free VRAM)"
    )
    p.add_argument("--split-mode", choices=SPLIT_MODES, default="layer")
    p.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on (default {DEFAULT_HOST}: this computer only; 0.0.0.0 opens it to the network)",
    )
    p.add_argument(
        "--port",
        type=int_in(limits.LISTEN_PORT_RANGE),
        default=DEFAULT_PORT,
        metavar="N",
        help=f"port (default {DEFAULT_PORT}; 0: any free one)",
    )
    p.add_argument(
        "--api-key",
        default=None,
        metavar="KEY",
        help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV}, else no key)",
    )
    p.add_argument(
        "--queue",
        type=int_in(limits.QUEUE_RANGE),
        default=DEFAULT_MAX_WAITING,
        metavar="N",
        help=f"requests that may wait behind the running one; more get 503 (default {DEFAULT_MAX_WAITING})",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per event on stdout")


class _Output:
    """Lines from the main thread, the HTTP threads and the worker's reader thread, never interleaved."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self._lock = threading.Lock()

    def human(self, line: str) -> None:
        with self._lock:
            print(line, file=sys.stderr, flush=True)

    def event(self, message: dict[str, Any]) -> None:
        if self.as_json:
            with self._lock:
                print(json.dumps(message, ensure_ascii=False), flush=True)

    def record(self, record: RequestRecord) -> None:
        self.event({"type": "request", **asdict(record)})

    def notice(self, line: str) -> None:
        self.human(line)
        self.event({"type": "notice", "message": line.removeprefix("rigfit: ")})


def run(args: argparse.Namespace) -> int:
    out = _Output(bool(args.json))
    try:
        from app.hub.cache import local_model_ref

        path = resolve_model(local_model_ref(args.model))
        split = parse_split(args.split) if args.split is not None else None
        settings = settings_from_args(args, args.split_mode, split)
        remote = rpc_run(args)
        load = remote.load_settings(str(path), settings, args.threads)
        load.validate()
        if args.queue < 0:
            raise RigfitError(f"--queue must be 0 or more, got {args.queue}")
        api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None
        host = ModelHost(load, max_waiting=args.queue, on_record=out.record, on_notice=out.notice)
        server = OpenAIServer(host.dispatcher, host=args.host, port=args.port, api_key=api_key, log=out.human)
        server.start()
    except RigfitError as exc:
        out.event({"type": "error", "message": str(exc), "kind": P.ERR_BAD_REQUEST})
        raise

    stop = _StopFlag()

    def on_signal(_signum: int, _frame: Any) -> None:
        # A signal handler runs between two bytecodes of the main thread, which may hold a lock this
        # would need (setting an Event the main thread waits on deadlocks): plain flags only.
        stop.set = True
        host.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        warning = exposure_warning(args.host, api_key)
        if warning:
            out.human(f"rigfit: warning: {warning}")
        out.human(f"rigfit: listening on {server.url} (loading {path.name})")
        out.event({"type": "listening", "host": args.host, "port": server.port, "url": server.url})
        return _serve(host, server, out, stop, path.name, remote)
    finally:
        server.close()
        host.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        out.human("rigfit: stopped")
        out.event({"type": "stopped"})


class _StopFlag:
    set = False


def _serve(
    host: ModelHost, server: OpenAIServer, out: _Output, stop: _StopFlag, name: str, remote: RpcRun
) -> int:
    def fail(event: P.ErrorEvent, code: int) -> int:
        out.event(P.event_to_message(event))
        if code == EXIT_USAGE:
            raise RigfitError(event.message)
        out.human(f"rigfit: {event.message}")
        return code

    try:
        ready = host.start()
    except P.RunnerError as exc:
        return fail(exc.event, EXIT_FAILED)
    refused = remote.refusal(host.settings, ready)
    if refused is not None:
        return fail(refused, EXIT_USAGE)
    if not ready.gpus and not remote.n_remote:
        out.human(CPU_NOTE)

    progress = None if out.as_json else Progress(name)

    def on_progress(event: P.ProgressEvent) -> None:
        if progress is not None:
            progress(event)
        out.event(P.event_to_message(event))

    try:
        loaded = host.load(on_progress)
    except Stopped:
        return EXIT_OK
    except P.RunnerError as exc:
        return fail(exc.event, EXIT_USAGE)
    finally:
        if progress is not None:
            progress.finish()
    out.human(describe_loaded(loaded))
    out.event(P.event_to_message(loaded))
    model = host.dispatcher.model
    out.event(
        {
            "type": "serving",
            "url": server.url,
            "model": host.model_id,
            "n_ctx": model.n_ctx if model else None,
        }
    )
    with out._lock:
        print(
            f"Serving {host.model_id} at {server.url} (OpenAI API; Ctrl+C stops)",
            file=sys.stderr if out.as_json else sys.stdout,
            flush=True,
        )
    while not stop.set:
        time.sleep(0.2)
    return EXIT_OK
