"""``rigfit bench``: prompt and generation speed per split configuration, like llama-bench.

For each ``mode[:ratios]`` of ``--configs`` the model is loaded in the worker, warmed up, then run
``--repeat`` times: ``--pp`` random tokens decoded as one batch (prompt processing), then ``--tg``
single-token decodes (generation), timed by llama.cpp's own counters. A config the rig cannot run is
reported as such; one that fails to load or crashes the worker is reported and the next one runs.

Beside each measurement stands the speed model's prediction for the same run on this computer
(:func:`predicted_speeds`: the detected rig, its measured RAM bandwidth, the threads used): the JSON
adds ``pp_tok_s_predicted``, ``tg_tok_s_predicted`` and ``ram_read_gbps``; the table a "predicted"
column each. docs/speed-model.md compares them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app.commands.args import int_in
from app.commands.run import CPU_NOTE, RpcRun, add_model_arguments, rpc_run, settings_from_args, start_worker
from app.core import limits
from app.core.errors import RigfitError
from app.core.rules import RuleError
from app.runner import protocol as P
from app.runner.options import BenchConfig, parse_configs, resolve_model, unsupported_problem

if TYPE_CHECKING:
    from app.core.rig import Rig

STATUS_OK = "ok"
STATUS_UNSUPPORTED = "unsupported"
STATUS_FAILED = "failed"


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bench",
        help="prompt and generation tok/s per split configuration",
        description="Prompt and generation speed per split configuration, like llama-bench. A worker that "
        f"gives no sign of life for {P.SILENCE_LIMIT_S:g} s is ended and its configuration reported failed.",
    )
    add_model_arguments(p, ctx_default=None)
    p.add_argument(
        "--configs",
        default="layer",
        metavar="MODE[:R1,R2];...",
        help="split configurations, e.g. 'layer:1,1;layer:3,1;row:1,1' (default: layer, llama.cpp's own split)",
    )
    p.add_argument(
        "--pp", type=int_in(limits.PP_RANGE), default=512, metavar="N", help="prompt tokens per run (0: skip)"
    )
    p.add_argument(
        "--tg",
        type=int_in(limits.TG_RANGE),
        default=128,
        metavar="N",
        help="generated tokens per run (0: skip)",
    )
    p.add_argument(
        "--repeat", type=int_in(limits.REPEAT_RANGE), default=3, metavar="N", help="runs per configuration"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per configuration on stdout")


@dataclass
class ConfigResult:
    config: BenchConfig
    status: str = STATUS_OK
    reason: str | None = None
    code: str | None = None  # the rule (app.core.rules) or the worker's error kind behind ``reason``
    pp_tok_s: list[float] = field(default_factory=list)
    tg_tok_s: list[float] = field(default_factory=list)
    predicted: Prediction | None = None

    def to_message(self, pp: int, tg: int, repeat: int) -> dict[str, Any]:
        return {
            "type": "bench",
            "config": self.config.text,
            "split_mode": self.config.split_mode,
            "tensor_split": list(self.config.tensor_split) if self.config.tensor_split is not None else None,
            "status": self.status,
            "reason": self.reason,
            "code": self.code,
            "pp": pp,
            "tg": tg,
            "repeat": repeat,
            "pp_tok_s_mean": mean(self.pp_tok_s),
            "pp_tok_s_sd": spread(self.pp_tok_s),
            "pp_tok_s_runs": self.pp_tok_s,
            "tg_tok_s_mean": mean(self.tg_tok_s),
            "tg_tok_s_sd": spread(self.tg_tok_s),
            "tg_tok_s_runs": self.tg_tok_s,
            "pp_tok_s_predicted": self.predicted.pp_tok_s if self.predicted and pp else None,
            "tg_tok_s_predicted": self.predicted.tg_tok_s if self.predicted and tg else None,
            "ram_read_gbps": self.predicted.ram_read_gbps if self.predicted else None,
        }


@dataclass(frozen=True)
class Prediction:
    """The speed model's figures for one bench configuration on this computer."""

    pp_tok_s: float | None
    tg_tok_s: float | None
    ram_read_gbps: float | None  # the host figure the CPU part used (None: the model's default)


def predicted_speeds(
    model_ref: str, settings: Any, pp: int, tg: int, threads: int | None, rig: Rig | None = None
) -> Prediction | None:
    """What :mod:`app.core.perf` predicts for ``pp`` prompt tokens and ``tg`` generated ones from an
    empty cache (as the worker's bench runs them) on the detected rig, with ``threads`` CPU threads
    (default: the physical cores, as the worker). ``rig``: the run's rig when it has ``--rpc``
    devices (default: this computer's). None when the planner cannot say (a bonus, never a reason for
    the bench to fail)."""
    try:
        from dataclasses import replace

        from app.core.model_source import load_model_spec
        from app.core.perf import estimate_speed
        from app.core.placement import plan
        from app.hardware.probe import detect_rig

        if rig is None:
            rig = detect_rig()
        if threads:
            rig = replace(rig, host=replace(rig.host, cores_physical=threads))
        spec = load_model_spec(model_ref)
        est = estimate_speed(
            rig, spec, plan(rig, spec, settings), depth_tokens=tg // 2, prompt_tokens=max(pp, 1)
        )
    except Exception:  # see the docstring
        return None
    return Prediction(
        pp_tok_s=round(est.prompt_tok_s, 2) if est.prompt_tok_s is not None else None,
        tg_tok_s=round(est.decode_empty_tok_s if tg == 0 else est.decode_tok_s, 2)
        if est.decode_tok_s is not None and est.decode_empty_tok_s is not None
        else None,
        ram_read_gbps=rig.host.ram_bandwidth_gbps,
    )


def busy_note() -> str | None:
    """A line for stderr when other programs keep every core busy: the measurements will fall below
    the predicted columns, which are for a machine the model has to itself (docs/speed-model.md:
    on a busy two-core machine two-thread decode fell to a tenth of its quiet speed)."""
    import os

    from app.hardware.membw import machine_busy

    if not machine_busy():
        return None
    try:
        load = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count() or 1} CPUs"
    except (AttributeError, OSError):
        load = "every CPU busy"
    return (
        f"rigfit: other programs keep this computer busy ({load}): the measurements will fall below "
        "the predicted columns, which are for an idle machine"
    )


def mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 2) if values else None


def spread(values: list[float]) -> float | None:
    """Sample standard deviation, as llama-bench prints after ±; 0 for a single run."""
    if not values:
        return None
    return round(statistics.stdev(values), 2) if len(values) > 1 else 0.0


def _cell(values: list[float]) -> str:
    m, s = mean(values), spread(values)
    return "-" if m is None else f"{m:.2f} ± {s:.2f}"


def _predicted_cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def run(args: argparse.Namespace) -> int:
    from app.hub.cache import local_model_ref
    from app.runner.client import RunnerClient

    path = resolve_model(local_model_ref(args.model))
    configs = parse_configs(args.configs)
    if args.pp < 0 or args.tg < 0 or args.pp == 1:
        raise RigfitError("--pp must be 0 or at least 2, --tg 0 or more")
    if args.pp == 0 and args.tg == 0:
        raise RigfitError("nothing to measure: --pp and --tg are both 0")
    if args.repeat < 1:
        raise RigfitError("--repeat must be at least 1")
    if args.ctx is None:
        args.ctx = max(args.pp + args.tg, 16)  # as llama-bench: the context holds one run
    if args.ctx < max(args.pp, args.tg + 1):
        raise RigfitError(f"--ctx {args.ctx} is too small for --pp {args.pp} and --tg {args.tg}")

    remote = rpc_run(args)
    client = RunnerClient()
    try:
        ready = start_worker(client)
        n_gpus = len(ready.gpus) + remote.n_remote
        if n_gpus == 0:
            print(CPU_NOTE, file=sys.stderr, flush=True)
        note = busy_note()
        if note is not None:
            print(note, file=sys.stderr, flush=True)
        results: list[ConfigResult] = []
        if not args.json:
            print(
                f"{'config':<24} {'pp' + str(args.pp) + ' tok/s':>20} {'predicted':>10} "
                f"{'tg' + str(args.tg) + ' tok/s':>20} {'predicted':>10}",
                flush=True,
            )
        for config in configs:
            result = _bench_config(client, args, str(path), config, n_gpus, remote)
            results.append(result)
            if args.json:
                print(json.dumps(result.to_message(args.pp, args.tg, args.repeat)), flush=True)
            elif result.status == STATUS_OK:
                pp_cell = _cell(result.pp_tok_s) if args.pp else "-"
                tg_cell = _cell(result.tg_tok_s) if args.tg else "-"
                p = result.predicted
                pp_pred = _predicted_cell(p.pp_tok_s if p and args.pp else None)
                tg_pred = _predicted_cell(p.tg_tok_s if p and args.tg else None)
                print(
                    f"{config.text:<24} {pp_cell:>20} {pp_pred:>10} {tg_cell:>20} {tg_pred:>10}", flush=True
                )
            else:
                word = "cannot run" if result.status == STATUS_UNSUPPORTED else "failed"
                print(f"{config.text:<24} {word}: {result.reason}", flush=True)
    finally:
        client.close()
    return 0 if any(r.status == STATUS_OK for r in results) else 1


def _bench_config(
    client: Any, args: argparse.Namespace, model_path: str, config: BenchConfig, n_gpus: int, remote: RpcRun
) -> ConfigResult:
    result = ConfigResult(config)
    refused = unsupported_problem(config.split_mode, config.tensor_split, args.main_gpu, n_gpus)
    if refused is not None:
        result.status, result.reason, result.code = STATUS_UNSUPPORTED, refused.message, refused.code
        return result
    settings = settings_from_args(args, config.split_mode, config.tensor_split)
    try:
        load = remote.load_settings(model_path, settings, args.threads)
    except RuleError as exc:
        result.status, result.reason, result.code = STATUS_UNSUPPORTED, exc.problem.message, exc.problem.code
        return result
    except RigfitError as exc:
        result.status, result.reason = STATUS_UNSUPPORTED, str(exc)
        return result
    result.predicted = predicted_speeds(
        args.model if args.model == "demo" else model_path,
        settings,
        args.pp,
        args.tg,
        args.threads,
        remote.rig,
    )
    try:
        client.load_sync(load)
        # One short untimed run first, as llama-bench does: the first decode of each shape pays for
        # allocation and thread start-up.
        client.bench_sync(min(args.pp, 32) if args.pp else 0, min(args.tg, 2))
        for i in range(args.repeat):
            event = client.bench_sync(args.pp, args.tg, seed=1234 + i)
            if event.pp_tok_s is not None:
                result.pp_tok_s.append(event.pp_tok_s)
            if event.tg_tok_s is not None:
                result.tg_tok_s.append(event.tg_tok_s)
        client.unload_sync()
    except P.RunnerError as exc:
        result.status, result.reason = STATUS_FAILED, exc.event.message
        result.code = exc.event.code or exc.event.kind
    return result
