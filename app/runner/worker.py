"""The llama.cpp worker: a child process that holds the model, so a crash in llama.cpp stays here.

Started as ``python -m app.runner.worker`` (or ``rigfit --rigfit-worker`` in a frozen app) by
:class:`app.runner.client.RunnerClient`. It speaks the protocol in docs/protocol.md: requests, one JSON
object per line, on stdin; events on a private duplicate of the original stdout. Before anything can
print, fd 1 is pointed at stderr, so llama.cpp's C-level ``printf``/``fprintf(stdout)`` and stray Python
``print`` calls land in the log instead of corrupting the event stream.

Threads: the main thread runs llama.cpp (load, chat, bench, unload) one request at a time; a control
thread reads stdin and flags ``stop`` / ``shutdown`` at once, so generation stops within one token and
a load is cancelled through llama.cpp's progress callback.

The worker owns the requests and the model; a chat's prompt comes from chat_template.py, its reply from
generation.py (decode, sampling, streaming), the pipes and llama.cpp's log from worker_io.py.
"""

from __future__ import annotations

import ctypes
import os
import queue
import random
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from app.core import files, rules
from app.core.errors import RigfitError
from app.runner import ggml
from app.runner import protocol as P
from app.runner.chat_template import render_prompt
from app.runner.generation import GenerationFailed, generate, tokenize
from app.runner.logparse import error_reason, parse_load_log, used_devices
from app.runner.template_sandbox import TemplateSandbox
from app.runner.worker_io import LOG_ERROR, Channel, LogSink, claim_protocol_fd

# The worker says it is alive this often, whatever it is doing; the client ends a worker that is
# silent for much longer (a stopped or frozen process: app/runner/client.py).
HEARTBEAT_INTERVAL_S = 1.0
_PROGRESS_INTERVAL_S = 0.05
_GGUF_MAGIC = b"GGUF"


# ---------------------------------------------------------------------------------------------------
# Devices and VRAM


def list_devices(llama_cpp_module: Any) -> tuple[P.Device, ...]:
    """The devices ggml registered (CPU, CUDA0, RPC0...). Empty when the ggml library cannot be reached.

    llama-cpp-python does not bind ggml's device registry, so this reads it through ctypes
    (:mod:`app.runner.ggml`). Memory is not queried: on CUDA that would create a context on every
    GPU before the load chooses any.
    """
    del llama_cpp_module  # imported first by the caller, so ggml's libraries are the ones libllama uses
    try:
        found = ggml.load().devices()
    except (RigfitError, OSError):
        return ()
    return tuple(
        P.Device(name=d.name, description=d.description, kind="rpc" if d.is_rpc else d.kind) for d in found
    )


def vram_used() -> dict[int, float] | None:
    """Used VRAM per NVML index (MiB), or ``None`` where NVML does not work or is not written yet."""
    try:
        from app.hardware.probe import vram_used_mib
    except ImportError:
        return None
    try:
        used = vram_used_mib()
    except Exception:  # a measurement, never a reason to fail a load
        return None
    if used is None:
        return None
    return {int(k): float(v) for k, v in dict(used).items()}


def default_threads() -> int:
    """Physical cores: llama.cpp's own default; hyper-threads slow the matrix work down."""
    try:
        import psutil

        cores = psutil.cpu_count(logical=False)
    except Exception:
        cores = None
    return max(1, cores or os.cpu_count() or 1)


# ---------------------------------------------------------------------------------------------------
# The worker


class _Failure(Exception):
    """Ends a request with an error event."""

    def __init__(self, kind: str, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.code = code  # the rule's code (app.core.rules) when a rule refused the request

    @classmethod
    def of(cls, kind: str, problem: rules.Problem) -> _Failure:
        return cls(kind, problem.message, problem.code)


class Worker:
    def __init__(self, channel: Channel, vram_baseline: dict[int, float] | None) -> None:
        self.channel = channel
        self.vram_baseline = vram_baseline
        self.log = LogSink()
        self.requests: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()
        self._seq = 0
        self._stop_upto = 0  # requests with a sequence number up to this one are to stop
        self._seq_by_id: dict[int | str, int] = {}  # requests not finished yet, for ``cancel``
        self._cancelled: set[int] = set()  # sequence numbers cancelled one by one
        self._waiting_chats: set[int] = set()  # chats received and not started
        self._answered: set[int] = set()  # chats cancelled while they waited, answered already
        self._seq_lock = threading.Lock()
        self.test_switch = os.environ.get(P.TEST_SWITCH_ENV) == "1"

        import llama_cpp  # only ever imported here, in the worker process

        self.ll = llama_cpp
        # llama-cpp-python installs its own log callback on import; ours replaces it for the whole process.
        self.log.callback = llama_cpp.llama_log_callback(self.log.on_log)
        llama_cpp.llama_log_set(self.log.callback, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()

        self.templates = TemplateSandbox()
        self.model: Any = None
        self.ctx: Any = None
        # RPC servers registered with ggml in this process, in order; ggml cannot unregister them.
        self.rpc_servers: tuple[str, ...] = ()
        self.rpc_names: dict[tuple[str, int], str] = {}
        self.vocab: Any = None
        self.settings: P.LoadSettings | None = None
        self.chat_template: str | None = None

    # -- control ------------------------------------------------------------------------------

    def _stopped(self, seq: int) -> bool:
        return self._stop_upto >= seq or seq in self._cancelled

    def _finished(self, seq: int, req_id: Any) -> None:
        with self._seq_lock:
            self._cancelled.discard(seq)
            self._waiting_chats.discard(seq)
            if isinstance(req_id, (int, str)) and self._seq_by_id.get(req_id) == seq:
                del self._seq_by_id[req_id]

    def read_control(self, stream: Any) -> None:
        """Runs on its own thread: stop and shutdown act at once, the rest waits its turn."""
        for raw in iter(stream.readline, b""):
            if not raw.strip():
                continue
            try:
                message = P.decode(raw)
            except ValueError as exc:
                self.channel.event(P.ErrorEvent(message=f"bad request: {exc}", kind=P.ERR_BAD_REQUEST))
                continue
            kind = message["type"]
            if kind == P.REQ_ABORT:
                if self.test_switch:
                    os.abort()
                self.channel.event(
                    P.ErrorEvent(
                        message="the abort request is for tests only",
                        kind=P.ERR_BAD_REQUEST,
                        id=message.get("id"),
                    )
                )
                continue
            req_id = message.get("id")
            with self._seq_lock:
                if kind == P.REQ_STOP:
                    self._stop_upto = self._seq
                    continue
                if kind == P.REQ_CANCEL:
                    # Several programs may share this worker (the window's chat, the server's
                    # requests): one cancels its own request and nobody else's.
                    cancel = self._seq_by_id.get(req_id) if isinstance(req_id, (int, str)) else None
                    if cancel is not None:
                        self._cancelled.add(cancel)
                    if cancel in self._waiting_chats:
                        # Answered now, not when its turn comes: a chat waiting behind a long one
                        # (the server's, or the window's) is off its user's screen at once.
                        self._waiting_chats.discard(cancel)
                        self._answered.add(cancel)
                        self.channel.event(_nothing_done(req_id))
                    continue
                self._seq += 1
                seq = self._seq
                if isinstance(req_id, (int, str)):
                    self._seq_by_id[req_id] = seq
                    if kind == P.REQ_CHAT:
                        self._waiting_chats.add(seq)
                if kind == P.REQ_SHUTDOWN:
                    self._stop_upto = seq
            self.requests.put((seq, message))
        # stdin closed: the parent is gone or done with us.
        with self._seq_lock:
            self._seq += 1
            self._stop_upto = self._seq
            self.requests.put((self._seq, {"type": P.REQ_SHUTDOWN}))

    # -- main loop ----------------------------------------------------------------------------

    def serve(self) -> None:
        self.channel.event(self._ready())
        while True:
            seq, message = self.requests.get()
            kind = message.get("type")
            req_id = message.get("id")
            with self._seq_lock:
                self._waiting_chats.discard(seq)
                skip = seq in self._answered
                self._answered.discard(seq)
            if skip:
                self._finished(seq, req_id)
                continue
            if kind == P.REQ_SHUTDOWN:
                self._free()
                self.templates.close()
                self._flush_log()
                return
            try:
                if kind == P.REQ_LOAD:
                    self._load(seq, req_id, message.get("settings") or {})
                elif kind == P.REQ_CHAT:
                    self._chat(seq, req_id, message)
                elif kind == P.REQ_BENCH:
                    self._bench(seq, req_id, message)
                elif kind == P.REQ_UNLOAD:
                    self._free()
                    self._flush_log()
                    self.channel.event(P.UnloadedEvent(id=req_id))
                else:
                    raise _Failure(P.ERR_BAD_REQUEST, f"unknown request type {kind!r}")
            except _Failure as failure:
                self._error(failure.kind, failure.message, req_id, failure.code)
            except rules.RuleError as exc:
                self._error(P.ERR_BAD_REQUEST, str(exc), req_id, exc.problem.code)
            except RigfitError as exc:
                self._error(P.ERR_BAD_REQUEST, str(exc), req_id)
            except Exception as exc:  # report and keep serving; the parent decides
                self._error(P.ERR_GENERATION, f"{type(exc).__name__}: {exc}", req_id)
            finally:
                self._finished(seq, req_id)

    def _ready(self) -> P.ReadyEvent:
        ll = self.ll
        try:
            devices = list_devices(ll)
        except Exception:
            devices = ()
        return P.ReadyEvent(
            pid=os.getpid(),
            llama_cpp_version=str(getattr(ll, "__version__", "")),
            gpu_offload=self._has_gpu(),
            devices=devices,
            system_info=ll.llama_print_system_info().decode(errors="replace").strip(),
            rpc=ggml.rpc_available(),
        )

    @staticmethod
    def _has_gpu() -> bool:
        # llama_supports_gpu_offload() is true in every RPC build, with or without a local GPU.
        try:
            return ggml.load().has_gpu()
        except (RigfitError, OSError):
            return False

    def _use_rpc(self, endpoints: Sequence[str]) -> None:
        """Make sure the RPC servers answer, then register those this process has not registered yet.

        llama.cpp aborts the process when a server it connects to is gone, so each one is asked
        first, with a timeout, and a silent one fails the load in plain words instead.
        """
        from app.hardware.rpc import RpcError, query_server

        wanted = tuple(endpoints)
        if self.rpc_servers and wanted[: len(self.rpc_servers)] != self.rpc_servers:
            raise _Failure(
                P.ERR_BAD_REQUEST,
                f"this model process already uses the RPC servers {', '.join(self.rpc_servers)}; "
                "a new model process is needed for others",
            )
        if wanted and not ggml.rpc_available():
            raise _Failure.of(P.ERR_BAD_REQUEST, rules.rpc_unavailable())
        for endpoint in wanted:
            try:
                info = query_server(endpoint)
            except RpcError as exc:
                raise _Failure.of(P.ERR_RPC, rules.rpc_unreachable(str(exc))) from None
            if endpoint in self.rpc_servers:
                continue
            lib = ggml.load()
            before = {d.name for d in lib.devices()}
            try:
                lib.add_rpc_server(endpoint)
            except RigfitError as exc:
                raise _Failure(P.ERR_RPC, str(exc)) from None
            added = [d.name for d in lib.devices() if d.name not in before]
            for index, name in enumerate(added[: len(info.devices)]):
                self.rpc_names[(endpoint, index)] = name
            self.rpc_servers = (*self.rpc_servers, endpoint)
            self.log.note(f"rigfit: RPC server {endpoint} registered: {', '.join(added)}")

    def _flush_log(self) -> None:
        lines = self.log.take_pending()
        if lines:
            self.channel.event(P.LogEvent(lines=tuple(lines)))

    def _error(self, kind: str, message: str, req_id: Any, code: str | None = None) -> None:
        self._flush_log()
        self.channel.event(
            P.ErrorEvent(message=message, kind=kind, log_tail=self.log.tail(), code=code, id=req_id)
        )

    def _free(self) -> None:
        ll = self.ll
        if self.ctx is not None:
            ll.llama_free(self.ctx)
            self.ctx = None
        if self.model is not None:
            ll.llama_model_free(self.model)
            self.model = None
        self.vocab = None
        self.settings = None
        self.chat_template = None

    # -- load ---------------------------------------------------------------------------------

    def _load(self, seq: int, req_id: Any, raw_settings: Mapping[str, Any]) -> None:
        ll = self.ll
        settings = P.LoadSettings.from_message(raw_settings)
        settings.validate()
        self._free()
        path = Path(settings.model_path)
        check_model_file(path)
        self._use_rpc(settings.rpc_servers)
        if settings.tensor_split is not None and len(settings.tensor_split) > int(ll.LLAMA_MAX_DEVICES):
            raise _Failure(
                P.ERR_BAD_REQUEST,
                f"the split has {len(settings.tensor_split)} entries; this llama.cpp build takes at most "
                f"{ll.LLAMA_MAX_DEVICES}",
            )
        before = vram_used()
        t0 = time.perf_counter()

        mparams = ll.llama_model_default_params()
        mparams.n_gpu_layers = settings.n_gpu_layers  # negative: all layers (llama_model::n_gpu_layers)
        mparams.split_mode = {
            "none": ll.LLAMA_SPLIT_MODE_NONE,
            "layer": ll.LLAMA_SPLIT_MODE_LAYER,
            "row": ll.LLAMA_SPLIT_MODE_ROW,
            "tensor": ll.LLAMA_SPLIT_MODE_TENSOR,
        }[settings.split_mode]
        mparams.main_gpu = settings.main_gpu
        split_array = None
        if settings.tensor_split is not None:
            split_array = (ctypes.c_float * int(ll.LLAMA_MAX_DEVICES))(*settings.tensor_split)
            mparams.tensor_split = split_array
        last = [-1, 0.0]  # percent sent, when

        def on_progress(progress: float, _user_data: Any) -> bool:
            try:
                if self._stopped(seq):
                    return False
                percent = max(0, min(100, int(progress * 100)))
                now = time.monotonic()
                # llama.cpp calls this per tensor; a few updates a second are plenty for a progress bar.
                if percent != last[0] and (percent in (0, 100) or now - last[1] >= _PROGRESS_INTERVAL_S):
                    last[0], last[1] = percent, now
                    self._flush_log()
                    self.channel.event(P.ProgressEvent(percent=percent, id=req_id))
                return True
            except Exception:  # an exception here would return False and cancel the load
                return True

        progress_cb = ll.llama_progress_callback(on_progress)
        mparams.progress_callback = progress_cb

        with self.log.capture(keep_debug=True) as captured:
            model = ll.llama_model_load_from_file(os.fsencode(path), mparams)
            if not model:
                if self._stopped(seq):
                    raise _Failure(P.ERR_CANCELLED, "loading was cancelled")
                errors = [line for level, line in captured if level >= LOG_ERROR]
                reason = error_reason(errors) or "llama.cpp gave no reason"
                kind = P.ERR_BAD_MODEL if _is_file_problem(reason) else P.ERR_LOAD_FAILED
                if "does not support split buffers" in reason:
                    # Seen on CUDA with llama-cpp-python 0.3.36: its row split is gone, tensor mode replaced it.
                    reason += " (this llama.cpp has no row split for this GPU; try split mode 'tensor')"
                raise _Failure(kind, f"llama.cpp could not load {path.name}: {reason}")
            self.log.keep_debug = False
            try:
                ctx = self._new_context(model, settings, captured)
            except BaseException:
                ll.llama_model_free(model)
                raise
            lines = [line for _level, line in captured]
        self.model, self.ctx, self.settings = model, ctx, settings
        self.vocab = ll.llama_model_get_vocab(model)
        after_load = vram_used()
        self._warm_up()
        template = ll.llama_model_chat_template(model, None)
        self.chat_template = template.decode("utf-8", "replace") if template else None
        if self.chat_template:
            self.templates.start()  # its start-up overlaps the rest of the load
        after = vram_used()
        report = parse_load_log(lines)
        vram: tuple[P.VramDelta, ...] = ()
        baseline = self.vram_baseline if self.vram_baseline is not None else before
        if baseline is not None and after is not None:
            vram = tuple(
                P.VramDelta(
                    gpu=i,
                    before_mib=baseline[i],
                    after_mib=after[i],
                    after_load_mib=after_load.get(i) if after_load else None,
                )
                for i in sorted(after)
                if i in baseline
            )
        self._flush_log()
        self.channel.event(
            P.LoadedEvent(
                model_path=str(path),
                buffers=report.buffers,
                load_s=round(time.perf_counter() - t0, 3),
                n_ctx=int(ll.llama_n_ctx(ctx)),
                n_layer=int(ll.llama_model_n_layer(model)),
                layers=report.layers_per_device(),
                offloaded_layers=report.offloaded_layers,
                offloadable_layers=report.offloadable_layers,
                vram=vram,
                on_cpu_only=not self._has_gpu() and not settings.rpc_servers,
                chat_template=self.chat_template is not None,
                devices=used_devices(lines, report, self.rpc_names),
                id=req_id,
            )
        )

    def _warm_up(self) -> None:
        """One tiny decode, as llama.cpp's own tools do after a load: it pages the weights in and starts
        the threads, so the first chat's time to first token and the first benchmark run are real."""
        ll = self.ll
        ctx = self.ctx
        tokens = [t for t in (ll.llama_vocab_bos(self.vocab), ll.llama_vocab_eos(self.vocab)) if t >= 0] or [
            0
        ]
        arr = (ll.llama_token * len(tokens))(*tokens)
        ll.llama_set_warmup(ctx, True)
        try:
            ll.llama_decode(ctx, ll.llama_batch_get_one(arr, len(tokens)))
            ll.llama_synchronize(ctx)
        finally:
            ll.llama_set_warmup(ctx, False)
            ll.llama_memory_clear(ll.llama_get_memory(ctx), True)
            ll.llama_perf_context_reset(ctx)

    def _new_context(self, model: Any, settings: P.LoadSettings, captured: list[tuple[int, str]]) -> Any:
        ll = self.ll
        from app.core.quant import type_id

        cparams = ll.llama_context_default_params()
        cparams.n_ctx = settings.n_ctx
        cparams.n_batch = settings.n_batch
        cparams.n_ubatch = min(settings.n_ubatch, settings.n_batch)
        threads = settings.n_threads or default_threads()
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        cparams.flash_attn_type = (
            ll.LLAMA_FLASH_ATTN_TYPE_ENABLED if settings.flash_attn else ll.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        cparams.type_k = type_id(settings.type_k)
        cparams.type_v = type_id(settings.type_v)
        cparams.offload_kqv = settings.offload_kqv
        # llama.cpp's default is no_perf = true, which leaves the counters the speeds come from at zero.
        cparams.no_perf = False
        ctx = ll.llama_init_from_model(model, cparams)
        if not ctx:
            errors = [line for level, line in captured if level >= LOG_ERROR]
            reason = error_reason(errors) or "llama.cpp gave no reason"
            raise _Failure(
                P.ERR_CONTEXT_FAILED,
                f"llama.cpp could not create a context of {settings.n_ctx} tokens: {reason}",
            )
        return ctx

    # -- chat ---------------------------------------------------------------------------------

    def _require_loaded(self) -> None:
        if self.ctx is None:
            raise _Failure(P.ERR_NOT_LOADED, "no model is loaded")

    def _chat(self, seq: int, req_id: Any, message: Mapping[str, Any]) -> None:
        ll = self.ll
        self._require_loaded()
        request = P.ChatRequest.from_message(message)
        request.validate()
        assert self.settings is not None
        t0 = time.perf_counter()
        if self._stopped(seq):  # cancelled while it waited for its turn
            self.channel.event(_nothing_done(req_id))
            return
        what = "conversation"
        try:
            if request.prompt is not None:
                # A raw prompt (/v1/completions): special tokens in it are parsed, as llama-server does.
                prompt, add_special, template, template_error = request.prompt, True, "none", None
                what = "prompt"
            else:
                prompt, add_special, template, template_error = render_prompt(
                    ll, self.vocab, self.chat_template, request.messages, self.templates
                )
            if template_error:
                self.log.note(
                    f"rigfit: chat template not used ({template_error}); using the {template} layout"
                )
            tokens = tokenize(ll, self.vocab, prompt, add_special=add_special, parse_special=True)
            n_ctx = int(ll.llama_n_ctx(self.ctx))
            if not tokens:
                raise _Failure(P.ERR_BAD_REQUEST, f"the {what} is empty after formatting")
            if len(tokens) >= n_ctx:
                raise _Failure(
                    P.ERR_CONTEXT_EXCEEDED,
                    f"the {what} is {len(tokens)} tokens, more than the context of {n_ctx} tokens allows",
                )
            reply = generate(
                ll,
                self.ctx,
                self.vocab,
                tokens,
                request,
                n_batch=self.settings.n_batch,
                seed=request.seed if request.seed is not None else self.settings.seed,
                started_s=t0,
                stopped=lambda: self._stopped(seq),
                send=self.channel.send,
                req_id=req_id,
            )
        except GenerationFailed as exc:
            raise _Failure(P.ERR_GENERATION, str(exc)) from None
        self._flush_log()
        self.channel.event(
            P.DoneEvent(
                text=reply.text,
                stop_reason=reply.stop_reason,
                prompt_tokens=len(tokens),
                completion_tokens=reply.completion_tokens,
                ttft_s=reply.ttft_s,
                prompt_ms=reply.prompt_ms,
                gen_ms=reply.gen_ms,
                prompt_tok_s=reply.prompt_tok_s,
                gen_tok_s=reply.gen_tok_s,
                wall_s=round(time.perf_counter() - t0, 4),
                template=template,
                template_error=template_error,
                id=req_id,
            )
        )

    # -- bench --------------------------------------------------------------------------------

    def _bench(self, seq: int, req_id: Any, message: Mapping[str, Any]) -> None:
        ll = self.ll
        self._require_loaded()
        assert self.settings is not None
        pp = int(message.get("pp", 512))
        tg = int(message.get("tg", 128))
        n_ctx = int(ll.llama_n_ctx(self.ctx))
        if pp < 0 or tg < 0 or pp == 1:
            raise _Failure(P.ERR_BAD_REQUEST, "pp must be 0 or at least 2 tokens, tg 0 or more")
        if pp > n_ctx or tg + 1 > n_ctx:
            raise _Failure(
                P.ERR_BAD_REQUEST, f"pp {pp} and tg {tg} need a context of at least {max(pp, tg + 1)}"
            )
        ctx = self.ctx
        memory = ll.llama_get_memory(ctx)
        n_vocab = int(ll.llama_vocab_n_tokens(self.vocab))
        rng = random.Random(message.get("seed", 1234))
        pp_ms = tg_ms = 0.0
        n_pp = n_tg = 0
        if pp:
            # As llama-bench: random tokens, decoded n_batch at a time; llama.cpp times them as prompt.
            tokens = [rng.randrange(n_vocab) for _ in range(pp)]
            arr = (ll.llama_token * pp)(*tokens)
            ll.llama_memory_clear(memory, True)
            ll.llama_perf_context_reset(ctx)
            for start in range(0, pp, self.settings.n_batch):
                if self._stopped(seq):
                    raise _Failure(P.ERR_CANCELLED, "the benchmark was stopped")
                n = min(self.settings.n_batch, pp - start)
                ptr = ctypes.cast(
                    ctypes.addressof(arr) + start * ctypes.sizeof(ll.llama_token),
                    ctypes.POINTER(ll.llama_token),
                )
                if ll.llama_decode(ctx, ll.llama_batch_get_one(ptr, n)) != 0:
                    raise _Failure(P.ERR_GENERATION, "llama.cpp could not decode the benchmark prompt")
                ll.llama_synchronize(ctx)
            perf = ll.llama_perf_context(ctx)
            pp_ms, n_pp = float(perf.t_p_eval_ms), int(perf.n_p_eval)
        if tg:
            one = (ll.llama_token * 1)(rng.randrange(n_vocab))
            ll.llama_memory_clear(memory, True)
            ll.llama_perf_context_reset(ctx)
            for _ in range(tg):
                if self._stopped(seq):
                    raise _Failure(P.ERR_CANCELLED, "the benchmark was stopped")
                if ll.llama_decode(ctx, ll.llama_batch_get_one(one, 1)) != 0:
                    raise _Failure(P.ERR_GENERATION, "llama.cpp could not decode a benchmark token")
                # Each single-token decode must be synchronised on its own, or llama.cpp books the
                # queued tokens together as prompt processing.
                ll.llama_synchronize(ctx)
                one[0] = rng.randrange(n_vocab)
            perf = ll.llama_perf_context(ctx)
            tg_ms, n_tg = float(perf.t_eval_ms), int(perf.n_eval)
        self._flush_log()
        self.channel.event(
            P.BenchEvent(
                pp=pp,
                tg=tg,
                pp_ms=round(pp_ms, 3),
                tg_ms=round(tg_ms, 3),
                pp_tok_s=round(n_pp * 1000.0 / pp_ms, 2) if pp and pp_ms > 0 else None,
                tg_tok_s=round(n_tg * 1000.0 / tg_ms, 2) if tg and tg_ms > 0 else None,
                id=req_id,
            )
        )


def _nothing_done(req_id: Any) -> P.DoneEvent:
    """The answer to a request cancelled before it started: no tokens, no time."""
    return P.DoneEvent(
        text="",
        stop_reason="stopped",
        prompt_tokens=0,
        completion_tokens=0,
        ttft_s=None,
        prompt_ms=0.0,
        gen_ms=0.0,
        prompt_tok_s=None,
        gen_tok_s=None,
        wall_s=0.0,
        id=req_id,
    )


def check_model_file(path: Path) -> None:
    """Fail the request, in plain words, for a missing file, one that is not a regular file (a FIFO
    would block llama.cpp's open), or one that is not a GGUF."""
    try:
        fd, _size = files.open_regular(path, "model file", RigfitError)
    except RigfitError as exc:
        raise _Failure(P.ERR_BAD_MODEL, str(exc)) from None
    try:
        magic = os.read(fd, 4)
    except OSError as exc:
        raise _Failure(
            P.ERR_BAD_MODEL, f"cannot read {files.show_path(path)}: {files.os_problem(exc)}"
        ) from None
    finally:
        os.close(fd)
    if magic != _GGUF_MAGIC:
        raise _Failure(P.ERR_BAD_MODEL, f"{files.show_path(path.name)} is not a GGUF file")


def _is_file_problem(reason: str) -> bool:
    words = (
        "magic",
        "corrupted",
        "incomplete",
        "architecture",
        "exceeds remaining",
        "failed to read",
        "GGUF",
        "version",
    )
    return any(w in reason for w in words)


def start_heartbeat(channel: Channel, interval_s: float = HEARTBEAT_INTERVAL_S) -> threading.Thread:
    """Send a heartbeat every ``interval_s`` from a thread of its own.

    llama.cpp releases the GIL while it computes, so this runs through a long load or prompt; it stops
    when the whole process does (SIGSTOP, a debugger, a machine out of memory), which is what the
    client watches for.
    """

    def beat() -> None:
        message = {"type": P.EVENT_HEARTBEAT}
        while not channel.broken:
            channel.send(message)
            time.sleep(interval_s)

    thread = threading.Thread(target=beat, name="rigfit-heartbeat", daemon=True)
    thread.start()
    return thread


def main() -> int:
    """Entry point of the worker process."""
    proto_fd = claim_protocol_fd()
    # Ctrl-C in a terminal reaches the whole process group; the parent decides when the worker ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A failed GGML_ASSERT would attach gdb for a backtrace: slow, and it would push the assert
    # message out of the log tail the user sees.
    os.environ.setdefault("GGML_NO_BACKTRACE", "1")
    channel = Channel(proto_fd)
    start_heartbeat(channel)
    # Before llama.cpp creates any CUDA context, so a load's increase includes the context itself.
    baseline = vram_used()
    try:
        worker = Worker(channel, baseline)
    except Exception as exc:  # no llama_cpp, broken build: say so, then exit
        channel.event(P.ErrorEvent(message=f"llama.cpp is not usable here: {exc}", kind="start_failed"))
        return 1
    control = threading.Thread(
        target=worker.read_control, args=(sys.stdin.buffer,), name="rigfit-control", daemon=True
    )
    control.start()
    worker.serve()
    # Leave without interpreter teardown: llama.cpp's static destructors (CUDA among them) may still
    # log, and a log callback into a half-finalised interpreter can crash a worker that finished well.
    # A NULL callback (the prototype called with no argument): llama.cpp falls back to stderr.
    worker.ll.llama_log_set(worker.ll.llama_log_callback(), ctypes.c_void_p(0))
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
