"""``rigfit pull``: download a GGUF model from the Hugging Face hub into the Hugging Face cache.

    rigfit pull OWNER/REPO [--quant Q4_K_M | --file NAME.gguf] [--revision REV] [--json]
    rigfit pull hf:OWNER/REPO/FILE.gguf

The file goes where huggingface_hub puts it (``HF_HUB_CACHE``, ``HF_HOME/hub`` or
``~/.cache/huggingface/hub``), so Rigfit's Run tab, llama.cpp's ``-hf`` and ``hf cache`` find it. A
progress bar shows bytes, speed and time left; Ctrl+C stops and keeps what arrived: the same command
resumes. The SHA-256 of every file is checked against the hub's; split models come whole.

``--json`` prints one object per line: ``{"event": "start", ...}``, ``{"event": "progress", ...}``
(about once a second) and ``{"event": "done", "path": ..., ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from app.core.errors import RigfitError
from app.hub.config import hub_config
from app.hub.download import DownloadProgress, download_model, plan_download
from app.hub.errors import DownloadCancelled, format_bytes
from app.hub.refs import HubRef, check_repo_id, is_hub_ref, parse_hub_ref
from app.hub.remote import resolve

EXIT_OK = 0
EXIT_INTERRUPTED = 130
BAR_WIDTH = 30


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "pull",
        help="download a GGUF model from the Hugging Face hub (resumable, SHA-256 checked)",
        description="Download a GGUF model from the Hugging Face hub into the Hugging Face cache, with "
        "progress, resume after an interruption, a free-disk check and the SHA-256 checked.",
    )
    p.add_argument("repo", metavar="OWNER/REPO", help="a repository id, or hf:OWNER/REPO/FILE.gguf")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--quant", metavar="Q4_K_M", help="the file of this quant")
    which.add_argument("--file", metavar="NAME.gguf", help="this file (any part of a split model)")
    p.add_argument("--revision", metavar="REV", help="a branch, tag or commit (default main)")
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a progress bar")
    p.set_defaults(command="pull")


def _ref(args: argparse.Namespace) -> HubRef:
    text = args.repo.strip()
    if is_hub_ref(text):
        ref = parse_hub_ref(text)
        if ref.path and args.file:
            raise RigfitError("give the file once: in hf:OWNER/REPO/FILE.gguf or with --file")
        return HubRef(ref.repo, ref.path or args.file, args.revision or ref.revision, ref.quant)
    return HubRef(check_repo_id(text), args.file, args.revision, None)


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    return (
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 3600
        else f"{seconds // 60:02d}:{seconds % 60:02d}"
    )


def progress_line(p: DownloadProgress) -> str:
    """``[█████░░░░] 42%  1.2 GiB / 2.9 GiB  35.1 MiB/s  00:48 left``."""
    filled = min(BAR_WIDTH, int(p.fraction * BAR_WIDTH))
    part = f"  part {p.part}/{p.parts}" if p.parts > 1 else ""
    return (
        f"[{'█' * filled}{'░' * (BAR_WIDTH - filled)}] {p.fraction:4.0%}  {format_bytes(p.done_bytes)} / "
        f"{format_bytes(p.total_bytes)}  {format_bytes(p.speed_bps)}/s  {_eta(p.eta_s)} left{part}"
    )


class _Reporter:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        self.last_fraction = -1.0

    def __call__(self, p: DownloadProgress) -> None:
        now = time.monotonic()
        if self.as_json:
            if now - self.last >= 1.0 or p.done_bytes == p.total_bytes:
                self.last = now
                _emit(
                    event="progress",
                    done_bytes=p.done_bytes,
                    total_bytes=p.total_bytes,
                    speed_bps=round(p.speed_bps),
                    eta_s=None if p.eta_s is None else round(p.eta_s, 1),
                    file=p.file,
                    part=p.part,
                    parts=p.parts,
                )
        elif self.tty:
            sys.stderr.write("\r" + progress_line(p) + "   ")
            sys.stderr.flush()
        elif p.fraction - self.last_fraction >= 0.1 or p.done_bytes == p.total_bytes:
            # Not a terminal (a log, a pipe): a line every 10%.
            self.last_fraction = p.fraction
            print(progress_line(p), file=sys.stderr, flush=True)

    def end(self) -> None:
        if self.tty and not self.as_json:
            sys.stderr.write("\n")


def _emit(**data: Any) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    ref = _ref(args)
    cfg = hub_config()
    listing, model = resolve(ref, args.quant, config=cfg)
    plan = plan_download(listing, model, config=cfg)
    start = {
        "repo": listing.repo,
        "commit": listing.commit,
        "file": model.first.path,
        "quant": model.quant,
        "parts": model.n_parts,
        "size_bytes": model.size_bytes,
        "on_disk_bytes": plan.on_disk_bytes,
        "free_bytes": plan.free_bytes,
        "cache_dir": str(cfg.cache_dir),
    }
    if args.json:
        _emit(event="start", **start)
    else:
        parts = f" in {model.n_parts} parts" if model.n_parts > 1 else ""
        resume = f"; {format_bytes(plan.on_disk_bytes)} already here" if plan.on_disk_bytes else ""
        print(
            f"{listing.repo}: {model.first.path} ({model.quant or 'quant unknown'}, {format_bytes(model.size_bytes)}{parts}) "
            f"into {cfg.cache_dir} ({format_bytes(plan.free_bytes)} free{resume})",
            flush=True,
        )
    reporter = _Reporter(args.json)
    try:
        result = download_model(listing, model, config=cfg, progress=reporter)
    except (KeyboardInterrupt, DownloadCancelled):
        reporter.end()
        kept = plan_download(listing, model, config=cfg).on_disk_bytes
        print(
            f"rigfit: stopped; {format_bytes(kept)} of {format_bytes(model.size_bytes)} are kept, "
            "run the same command to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    finally:
        reporter.end()
    done = {
        "path": str(result.path),
        "paths": [str(p) for p in result.paths],
        "downloaded_bytes": result.downloaded_bytes,
        "resumed_bytes": result.resumed_bytes,
        "already_there": result.already_there,
        "sha256_checked": not result.already_there,
        "ref": model.ref,
    }
    if args.json:
        _emit(event="done", **done)
    elif result.already_there:
        print(f"Already downloaded: {result.path}")
    else:
        print(f"Saved (SHA-256 checked): {result.path}")
        print(f"Run it: rigfit run --model {result.path}   Plan it: rigfit plan --model {model.ref}")
    return EXIT_OK
