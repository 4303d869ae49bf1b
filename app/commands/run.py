"""``rigfit run``: load a GGUF with llama.cpp in the worker process and stream a reply.

Progress and measurements go to stderr, the reply to stdout; with ``--json`` stdout carries one JSON
object per event (``type``: progress, loaded, token, done, error).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from app.commands.args import float_in, int_in
from app.commands.rpc_args import add_rpc_argument, rpc_specs
from app.core import limits
from app.core.errors import RigfitError
from app.core.rig import Rig
from app.core.rules import RuleError, rpc_unavailable
from app.core.settings import KV_TYPES, SPLIT_MODES, Settings
from app.runner import protocol as P
from app.runner.compare import compare_load, format_table
from app.runner.options import parse_split, resolve_model, unsupported_problem

if TYPE_CHECKING:
    from pathlib import Path

    from app.core.plan import Plan
    from app.runner.client import RunnerClient

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
CPU_NOTE = "rigfit: no GPU that llama.cpp can use here; running on the CPU"


def add_model_arguments(p: argparse.ArgumentParser, *, ctx_default: int | None) -> None:
    """The load options ``run`` and ``bench`` share, named as in llama.cpp's tools."""
    defaults = Settings()
    p.add_argument(
        "--model",
        required=True,
        metavar="FILE.gguf|demo|hf:REPO/FILE.gguf",
        help="GGUF file, 'demo' (SmolLM2-135M), or a model downloaded with 'rigfit pull' (hf:OWNER/REPO/FILE.gguf)",
    )
    p.add_argument(
        "--ngl",
        type=int_in(limits.NGL_RANGE),
        default=defaults.n_gpu_layers,
        metavar="N",
        help="layers on the GPUs (-1: all)",
    )
    p.add_argument(
        "--ctx",
        type=int_in(limits.CTX_RANGE),
        default=ctx_default,
        metavar="N",
        help=f"context in tokens (default {ctx_default if ctx_default else 'pp + tg'})",
    )
    p.add_argument("--kv-type", choices=KV_TYPES, default=defaults.type_k, help="K and V cache type")
    p.add_argument("--flash-attn", choices=("on", "off"), default="on" if defaults.flash_attn else "off")
    p.add_argument("--main-gpu", type=int_in(limits.MAIN_GPU_RANGE), default=defaults.main_gpu, metavar="N")
    p.add_argument(
        "--threads",
        type=int_in(limits.THREADS_RANGE),
        default=None,
        metavar="N",
        help="CPU threads (default: physical cores)",
    )
    p.add_argument(
        "--batch",
        type=int_in(limits.BATCH_RANGE),
        default=defaults.n_batch,
        metavar="N",
        help="logical batch (n_batch)",
    )
    p.add_argument(
        "--ubatch",
        type=int_in(limits.UBATCH_RANGE),
        default=defaults.n_ubatch,
        metavar="N",
        help="micro-batch (n_ubatch)",
    )
    add_rpc_argument(p)


@dataclass(frozen=True)
class RpcRun:
    """The rig of a run with ``--rpc`` (this computer's GPUs plus the servers' devices) and what
    the worker needs for it, in llama.cpp's device order."""

    rig: Rig | None
    servers: tuple[str, ...]
    n_remote: int

    def load_settings(
        self, path: str, settings: Settings, n_threads: int | None, seed: int | None = None
    ) -> P.LoadSettings:
        return P.LoadSettings.for_rig(self.rig, path, settings, n_threads=n_threads, seed=seed)

    def refusal(self, load: P.LoadSettings, ready: P.ReadyEvent) -> P.ErrorEvent | None:
        """The error for load settings the devices the worker found (and the servers') cannot take."""
        refused = unsupported_problem(
            load.split_mode, load.tensor_split, load.main_gpu, len(ready.gpus) + self.n_remote
        )
        if refused is None:
            return None
        return P.ErrorEvent(message=refused.message, kind=P.ERR_BAD_REQUEST, code=refused.code)


def rpc_run(args: argparse.Namespace) -> RpcRun:
    """Ask the ``--rpc`` servers for their devices (a clear error when one does not answer)."""
    specs = rpc_specs(args)
    if not specs:
        return RpcRun(None, (), 0)
    from app.hardware.probe import detect_rig
    from app.hardware.rpc import add_rpc_servers
    from app.runner.ggml import rpc_available

    if not rpc_available():
        raise RuleError(rpc_unavailable())
    rig = add_rpc_servers(detect_rig(), specs)
    return RpcRun(rig, rig.rpc_endpoints(), len(rig.remote_gpus))


# What `rigfit run --help` (and bench, serve) say about a worker that stops answering.
SILENCE_HELP = f"""\
A silent model process: the worker sends a sign of life every second. One silent for
{P.SILENCE_LIMIT_S:g} s (suspended with Ctrl+Z or kill -STOP, frozen, or stalled by a machine out of
memory) is ended, the command says so and exits with code 1; it never waits longer (a worker that
never starts is given {P.START_LIMIT_S:g} s). Then: resume or end whatever stopped it, close other
programs or pick a smaller model or context, and run again. On a very slow or busy machine set
another limit in seconds (1 to 3600): {P.SILENCE_ENV}=120 rigfit run ..."""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "run",
        help="run a model with llama.cpp and stream its reply",
        description="Load a GGUF with llama.cpp in a worker process and stream its reply.",
        epilog=SILENCE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(p, ctx_default=Settings().ctx)
    p.add_argument(
        "--split", metavar="R1,R2,...", help="tensor split, one ratio per GPU (default: by free VRAM)"
    )
    p.add_argument("--split-mode", choices=SPLIT_MODES, default="layer")
    p.add_argument("--prompt", required=True, help="the user message")
    p.add_argument("--system", default=None, help="an optional system message")
    p.add_argument("--max-tokens", type=int_in(limits.MAX_TOKENS_RANGE), default=256, metavar="N")
    p.add_argument("--temperature", type=float_in(limits.TEMPERATURE_RANGE), default=0.8, metavar="T")
    p.add_argument("--top-p", type=float_in(limits.TOP_P_RANGE), default=0.95, metavar="P")
    p.add_argument("--seed", type=int_in(limits.SEED_RANGE), default=None, metavar="S")
    p.add_argument("--json", action="store_true", help="one JSON object per event on stdout")


def settings_from_args(
    args: argparse.Namespace, split_mode: str, tensor_split: tuple[float, ...] | None
) -> Settings:
    return Settings(
        ctx=args.ctx,
        split_mode=split_mode,
        tensor_split=tensor_split,
        main_gpu=args.main_gpu,
        n_gpu_layers=args.ngl,
        n_batch=args.batch,
        n_ubatch=args.ubatch,
        flash_attn=args.flash_attn == "on",
        type_k=args.kv_type,
        type_v=args.kv_type,
    )


def predict(model_ref: str, settings: Settings, rig: Rig | None = None) -> tuple[Plan | None, str | None]:
    """The planner's prediction for this run and, when there is none, why.

    The comparison is a bonus to the run: a missing piece or a planner problem never stops it.
    """
    try:
        from app.core.model_source import load_model_spec
        from app.core.placement import plan
        from app.hardware.probe import detect_rig
    except ImportError as exc:
        return None, f"the planner is not available ({exc})"
    try:
        return plan(rig if rig is not None else detect_rig(), load_model_spec(model_ref), settings), None
    except Exception as exc:  # see the docstring
        return None, str(exc)


class PlanInBackground:
    """Plans while the model loads; the GGUF read and NVML probe overlap with llama.cpp's load."""

    def __init__(self, model_ref: str, settings: Settings, rig: Rig | None = None) -> None:
        self.plan: Plan | None = None
        self.problem: str | None = None
        self._thread = threading.Thread(target=self._run, args=(model_ref, settings, rig), daemon=True)
        self._thread.start()

    def _run(self, model_ref: str, settings: Settings, rig: Rig | None) -> None:
        self.plan, self.problem = predict(model_ref, settings, rig)

    def result(self, timeout_s: float = 60.0) -> Plan | None:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self.problem = f"the planner took longer than {timeout_s:g} s"
        return self.plan


def emit_json(event: P.Event) -> None:
    print(json.dumps(P.event_to_message(event), ensure_ascii=False), flush=True)


class Progress:
    """Load progress on stderr, on a terminal only (a log file gets the one 'loaded' line)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tty = sys.stderr.isatty()

    def __call__(self, event: P.ProgressEvent) -> None:
        if self.tty:
            print(f"\rrigfit: loading {self.name} {event.percent:3d}%", end="", file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self.tty:
            print(file=sys.stderr, flush=True)


def describe_loaded(event: P.LoadedEvent) -> str:
    where = "on the CPU" if event.on_cpu_only or not any(d != "CPU" for d in event.layers) else ""
    buffers = ", ".join(f"{b.device} {b.buffer} {b.mib:.2f} MiB" for b in event.buffers)
    text = f"rigfit: loaded in {event.load_s:.2f} s {where}".rstrip() + f" ({buffers})"
    if any(d.kind == "rpc" for d in event.devices):
        text += "; devices " + ", ".join(
            f"{d.name}{f' ({d.endpoint})' if d.endpoint else ''} {d.layers} layers {d.total_mib:.2f} MiB"
            for d in event.devices
        )
    elif event.layers:
        text += "; layers " + ", ".join(f"{d}: {n}" for d, n in event.layers.items())
    if event.vram:
        text += "; VRAM increase " + ", ".join(f"GPU{v.gpu} {v.increase_mib:.0f} MiB" for v in event.vram)
    return text


def describe_done(event: P.DoneEvent) -> str:
    parts = [f"{event.prompt_tokens} prompt tokens"]
    if event.prompt_tok_s is not None:
        parts[-1] += f" at {event.prompt_tok_s:.1f} tok/s"
    gen = f"{event.completion_tokens} generated"
    if event.gen_tok_s is not None:
        gen += f" at {event.gen_tok_s:.1f} tok/s"
    parts.append(gen)
    if event.ttft_s is not None:
        parts.append(f"first token after {event.ttft_s:.2f} s")
    parts.append(f"stop: {event.stop_reason}")
    text = "rigfit: " + ", ".join(parts)
    if event.template_error:
        text += f"\nrigfit: the model's chat template failed ({event.template_error}); used the {event.template} layout"
    return text


def start_worker(client: RunnerClient) -> P.ReadyEvent:
    try:
        return client.start()
    except P.RunnerError as exc:
        raise RigfitError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from app.runner.client import RunnerClient

    as_json = bool(args.json)
    try:
        from app.hub.cache import local_model_ref

        path = resolve_model(local_model_ref(args.model))
        split = parse_split(args.split) if args.split is not None else None
        settings = settings_from_args(args, args.split_mode, split)
        remote = rpc_run(args)
        load = remote.load_settings(str(path), settings, args.threads, args.seed)
        load.validate()
        chat = P.ChatRequest(
            messages=(
                *((P.ChatMessage("system", args.system),) if args.system else ()),
                P.ChatMessage("user", args.prompt),
            ),
            temperature=args.temperature,
            top_p=args.top_p,
            max_tokens=args.max_tokens,
            seed=args.seed,
        )
        chat.validate()
    except RigfitError as exc:
        if as_json:
            emit_json(P.ErrorEvent(message=str(exc), kind=P.ERR_BAD_REQUEST))
        raise

    client = RunnerClient()
    try:
        return _run_with(client, args, path, settings, load, chat, remote)
    finally:
        client.close()


def _run_with(
    client: RunnerClient,
    args: argparse.Namespace,
    path: Path,
    settings: Settings,
    load: P.LoadSettings,
    chat: P.ChatRequest,
    remote: RpcRun,
) -> int:
    as_json = bool(args.json)

    def fail(event: P.ErrorEvent, code: int) -> int:
        if as_json:
            emit_json(event)
        if code == EXIT_USAGE:
            raise RigfitError(event.message)
        print(f"rigfit: {event.message}", file=sys.stderr)
        return code

    try:
        ready = start_worker(client)
    except RigfitError as exc:
        return fail(P.ErrorEvent(message=str(exc), kind=P.ERR_START_FAILED), EXIT_FAILED)
    refused = remote.refusal(load, ready)
    if refused is not None:
        return fail(refused, EXIT_USAGE)
    if not ready.gpus and not remote.n_remote:
        print(CPU_NOTE, file=sys.stderr, flush=True)

    planner = PlanInBackground(args.model if args.model == "demo" else str(path), settings, remote.rig)
    progress = None if as_json else Progress(path.name)
    try:
        loaded = client.load_sync(load, on_progress=emit_json if as_json else progress)
    except P.RunnerError as exc:
        if progress:
            progress.finish()
        # The worker dying or falling silent is not bad input; llama.cpp refusing the file is.
        crashed = exc.event.kind in (P.ERR_CRASHED, P.ERR_START_FAILED)
        return fail(exc.event, EXIT_FAILED if crashed else EXIT_USAGE)
    if progress:
        progress.finish()
    plan = planner.result()
    if plan is not None:
        loaded = replace(loaded, compare=compare_load(loaded, plan))
    if as_json:
        emit_json(loaded)
    else:
        print(describe_loaded(loaded), file=sys.stderr, flush=True)
        if loaded.compare:
            print(format_table(loaded.compare), file=sys.stderr, flush=True)
    if planner.problem:
        print(f"rigfit: no prediction to compare with: {planner.problem}", file=sys.stderr, flush=True)

    try:
        for event in client.chat_stream(chat):
            if as_json:
                emit_json(event)
            elif isinstance(event, P.TokenEvent):
                sys.stdout.write(event.text)
                sys.stdout.flush()
            else:
                sys.stdout.write("\n")
                sys.stdout.flush()
                print(describe_done(event), file=sys.stderr, flush=True)
    except P.RunnerError as exc:
        if not as_json:
            sys.stdout.write("\n")
        return fail(exc.event, EXIT_FAILED)
    except KeyboardInterrupt:
        client.stop()
        raise
    return EXIT_OK
