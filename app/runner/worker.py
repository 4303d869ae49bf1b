"""The llama.cpp worker: a child process that holds the model, so a crash in llama.cpp stays here.

Started as ``python -m app.runner.worker`` (or ``rigfit --rigfit-worker`` in a frozen app) by
:class:`app.runner.client.RunnerClient`. It speaks the protocol in docs/protocol.md: requests, one JSON
object per line, on stdin; events on a private duplicate of the original stdout. Before anything can
print, fd 1 is pointed at stderr, so llama.cpp's C-level ``printf``/``fprintf(stdout)`` and stray Python
``print`` calls land in the log instead of corrupting the event stream.

Threads: the main thread runs llama.cpp (load, chat, bench, unload) one request at a time; a control
thread reads stdin and flags ``stop`` / ``shutdown`` at once, so generation stops within one token and
a load is cancelled through llama.cpp's progress callback.
"""

from __future__ import annotations

import codecs
import ctypes
import glob
import os
import queue
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from app.core import files
from app.core.errors import RigfitError
from app.runner import protocol as P
from app.runner.logparse import error_reason, parse_load_log
from app.runner.template_sandbox import TemplateSandbox
from app.runner.worker_io import LOG_ERROR, Channel, LogSink, claim_protocol_fd

# The worker says it is alive this often, whatever it is doing; the client ends a worker that is
# silent for much longer (a stopped or frozen process: app/runner/client.py).
HEARTBEAT_INTERVAL_S = 1.0
_PROGRESS_INTERVAL_S = 0.05
_GGUF_MAGIC = b"GGUF"


# ---------------------------------------------------------------------------------------------------
# Devices and VRAM


def _ggml_libraries(llama_cpp_module: Any) -> list[ctypes.CDLL]:
    lib_dir = Path(llama_cpp_module.__file__).parent / "lib"
    libs: list[ctypes.CDLL] = []
    for pattern in (
        "libggml.so",
        "libggml-base.so",
        "ggml.dll",
        "ggml-base.dll",
        "libggml.dylib",
        "libggml-base.dylib",
    ):
        for path in glob.glob(str(lib_dir / pattern)):
            try:
                libs.append(ctypes.CDLL(path))
            except OSError:
                continue
    return libs


def list_devices(llama_cpp_module: Any) -> tuple[P.Device, ...]:
    """The devices ggml registered (CPU, CUDA0, ...). Empty when the ggml library cannot be reached.

    llama-cpp-python does not bind ggml's device registry, so this reads it through ctypes. Memory is
    not queried: on CUDA that would create a context on every GPU before the load chooses any.
    """
    libs = _ggml_libraries(llama_cpp_module)

    def fn(name: str, restype: Any, argtypes: list[Any]) -> Callable[..., Any] | None:
        for lib in libs:
            try:
                f = getattr(lib, name)
            except AttributeError:
                continue
            f.restype = restype
            f.argtypes = argtypes
            return f  # type: ignore[no-any-return]
        return None

    count = fn("ggml_backend_dev_count", ctypes.c_size_t, [])
    get = fn("ggml_backend_dev_get", ctypes.c_void_p, [ctypes.c_size_t])
    name = fn("ggml_backend_dev_name", ctypes.c_char_p, [ctypes.c_void_p])
    desc = fn("ggml_backend_dev_description", ctypes.c_char_p, [ctypes.c_void_p])
    dtype = fn("ggml_backend_dev_type", ctypes.c_int, [ctypes.c_void_p])
    if not (count and get and name and desc and dtype):
        return ()
    kinds = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel", 4: "meta"}
    devices = []
    for i in range(int(count())):
        dev = get(i)
        devices.append(
            P.Device(
                name=(name(dev) or b"").decode(errors="replace"),
                description=(desc(dev) or b"").decode(errors="replace"),
                kind=kinds.get(int(dtype(dev)), "other"),
            )
        )
    return tuple(devices)


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

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class Worker:
    def __init__(self, channel: Channel, vram_baseline: dict[int, float] | None) -> None:
        self.channel = channel
        self.vram_baseline = vram_baseline
        self.log = LogSink()
        self.requests: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()
        self._seq = 0
        self._stop_upto = 0  # requests with a sequence number up to this one are to stop
        self._seq_lock = threading.Lock()
        self.test_switch = os.environ.get(P.TEST_SWITCH_ENV) == "1"

        import llama_cpp  # only ever imported here, in the worker process

        self.ll = llama_cpp
        # llama-cpp-python installs its own log callback on import; ours replaces it for the whole process.
        self.log.callback = llama_cpp.llama_log_callback(self.log.on_log)
        llama_cpp.llama_log_set(self.log.callback, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()

        self.templates = TemplateSandbox()
        self.devices: tuple[P.Device, ...] = ()
        self.model: Any = None
        self.ctx: Any = None
        self.vocab: Any = None
        self.settings: P.LoadSettings | None = None
        self.chat_template: str | None = None

    # -- control ------------------------------------------------------------------------------

    def _stopped(self, seq: int) -> bool:
        return self._stop_upto >= seq

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
            with self._seq_lock:
                if kind == P.REQ_STOP:
                    self._stop_upto = self._seq
                    continue
                self._seq += 1
                seq = self._seq
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
                self._error(failure.kind, failure.message, req_id)
            except RigfitError as exc:
                self._error(P.ERR_BAD_REQUEST, str(exc), req_id)
            except Exception as exc:  # report and keep serving; the parent decides
                self._error(P.ERR_GENERATION, f"{type(exc).__name__}: {exc}", req_id)

    def _ready(self) -> P.ReadyEvent:
        ll = self.ll
        try:
            devices = list_devices(ll)
        except Exception:
            devices = ()
        self.devices = devices
        return P.ReadyEvent(
            pid=os.getpid(),
            llama_cpp_version=str(getattr(ll, "__version__", "")),
            gpu_offload=bool(ll.llama_supports_gpu_offload()),
            devices=devices,
            system_info=ll.llama_print_system_info().decode(errors="replace").strip(),
        )

    def _cpu_only(self) -> bool:
        # llama_supports_gpu_offload() is true for the RPC backend alone (always built): a GPU device
        # in ggml's registry is what says a layer can leave the CPU here.
        if self.devices:
            return not any(d.kind in ("gpu", "igpu") for d in self.devices)
        return not bool(self.ll.llama_supports_gpu_offload())

    def _flush_log(self) -> None:
        lines = self.log.take_pending()
        if lines:
            self.channel.event(P.LogEvent(lines=tuple(lines)))

    def _error(self, kind: str, message: str, req_id: Any) -> None:
        self._flush_log()
        self.channel.event(P.ErrorEvent(message=message, kind=kind, log_tail=self.log.tail(), id=req_id))

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
                on_cpu_only=self._cpu_only(),
                chat_template=self.chat_template is not None,
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

    def _tokenize(self, text: str, add_special: bool, parse_special: bool) -> list[int]:
        ll = self.ll
        data = text.encode("utf-8")
        n_max = len(data) + 16
        buf = (ll.llama_token * n_max)()
        n = ll.llama_tokenize(self.vocab, data, len(data), buf, n_max, add_special, parse_special)
        if n < 0:
            n_max = -n
            buf = (ll.llama_token * n_max)()
            n = ll.llama_tokenize(self.vocab, data, len(data), buf, n_max, add_special, parse_special)
        if n < 0:
            raise _Failure(P.ERR_GENERATION, "the prompt could not be tokenized")
        return list(buf[:n])

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        raw = self.ll.llama_vocab_get_text(self.vocab, token)
        return raw.decode("utf-8", "replace") if raw else ""

    def render_prompt(self, messages: Sequence[P.ChatMessage]) -> tuple[str, bool, str, str | None]:
        """The prompt text, whether llama.cpp should add BOS, the template used and why the GGUF's failed.

        The GGUF's template runs in llama-cpp-python's Jinja2ChatFormatter, whose environment is
        jinja2's ImmutableSandboxedEnvironment with a loader that finds no files: a template cannot
        reach Python internals, call unsafe methods or include a file. A template that tries, fails to
        compile, renders nothing or runs too long falls back to ChatML (when the vocabulary has its
        tokens) or a plain "role: content" layout.
        """
        chat = [{"role": m.role, "content": m.content} for m in messages]
        problem: str | None = None
        if self.chat_template:
            try:
                prompt = self._render_gguf_template(self.chat_template, chat)
                if prompt.strip():
                    return prompt, False, "gguf", None
                problem = "the chat template rendered an empty prompt"
            except Exception as exc:  # any template failure means: use the fallback
                problem = f"{type(exc).__name__}: {exc}"
        if self._has_chatml():
            parts = [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in chat]
            return "".join(parts) + "<|im_start|>assistant\n", True, "chatml", problem
        parts = [f"{m['role']}: {m['content']}\n" for m in chat]
        return "".join(parts) + "assistant:", True, "plain", problem

    def _render_gguf_template(self, template: str, chat: list[dict[str, str]]) -> str:
        # In a helper process with a memory cap and a time limit (app/runner/template_sandbox.py): a
        # template is a program from the model file, and one C-level operation of it can allocate
        # gigabytes where no signal interrupts it.
        eos = self._token_text(int(self.ll.llama_vocab_eos(self.vocab)))
        bos = self._token_text(int(self.ll.llama_vocab_bos(self.vocab)))
        return self.templates.render(template, chat, bos=bos, eos=eos)

    def _has_chatml(self) -> bool:
        return len(self._tokenize("<|im_start|>", add_special=False, parse_special=True)) == 1

    def _chat(self, seq: int, req_id: Any, message: Mapping[str, Any]) -> None:
        ll = self.ll
        self._require_loaded()
        request = P.ChatRequest.from_message(message)
        request.validate()
        assert self.settings is not None
        t0 = time.perf_counter()
        prompt, add_special, template, template_error = self.render_prompt(request.messages)
        if template_error:
            self.log.note(f"rigfit: chat template not used ({template_error}); using the {template} layout")
        tokens = self._tokenize(prompt, add_special=add_special, parse_special=True)
        n_ctx = int(ll.llama_n_ctx(self.ctx))
        if not tokens:
            raise _Failure(P.ERR_BAD_REQUEST, "the conversation is empty after formatting")
        if len(tokens) >= n_ctx:
            raise _Failure(
                P.ERR_BAD_REQUEST,
                f"the conversation is {len(tokens)} tokens, more than the context of {n_ctx} tokens allows",
            )
        ctx = self.ctx
        ll.llama_memory_clear(ll.llama_get_memory(ctx), True)
        ll.llama_perf_context_reset(ctx)
        n_batch = self.settings.n_batch
        arr = (ll.llama_token * len(tokens))(*tokens)
        for start in range(0, len(tokens), n_batch):
            if self._stopped(seq):
                break
            n = min(n_batch, len(tokens) - start)
            ptr = ctypes.cast(
                ctypes.addressof(arr) + start * ctypes.sizeof(ll.llama_token), ctypes.POINTER(ll.llama_token)
            )
            rc = ll.llama_decode(ctx, ll.llama_batch_get_one(ptr, n))
            if rc != 0:
                raise _Failure(
                    P.ERR_GENERATION, f"llama.cpp could not process the prompt (llama_decode returned {rc})"
                )

        seed = request.seed if request.seed is not None else self.settings.seed
        sampler = self._sampler(request, seed)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        piece_buf = ctypes.create_string_buffer(256)
        one = (ll.llama_token * 1)()
        text_parts: list[str] = []
        ttft: float | None = None
        n_past = len(tokens)
        n_out = 0
        reason = "stopped" if self._stopped(seq) else ""
        try:
            while not reason:
                token = ll.llama_sampler_sample(sampler, ctx, -1)
                if not request.ignore_eos and ll.llama_vocab_is_eog(self.vocab, token):
                    reason = "eos"
                    break
                n = ll.llama_token_to_piece(self.vocab, token, piece_buf, len(piece_buf), 0, False)
                if n < 0:
                    piece_buf = ctypes.create_string_buffer(-n)
                    n = ll.llama_token_to_piece(self.vocab, token, piece_buf, len(piece_buf), 0, False)
                text = decoder.decode(piece_buf.raw[: max(n, 0)])
                if self._stopped(seq):
                    reason = "stopped"
                    break
                # The per-token path skips the dataclass round trip; the line is a TokenEvent all the same.
                self.channel.send({"type": "token", "text": text, "index": n_out, "id": req_id})
                if ttft is None:
                    ttft = time.perf_counter() - t0
                text_parts.append(text)
                n_out += 1
                if n_out >= request.max_tokens:
                    reason = "max_tokens"
                    break
                if n_past >= n_ctx:
                    reason = "context"
                    break
                one[0] = token
                rc = ll.llama_decode(ctx, ll.llama_batch_get_one(one, 1))
                if rc != 0:
                    raise _Failure(
                        P.ERR_GENERATION, f"llama.cpp stopped generating (llama_decode returned {rc})"
                    )
                n_past += 1
                if self._stopped(seq):
                    reason = "stopped"
        finally:
            ll.llama_sampler_free(sampler)
        text_parts.append(decoder.decode(b"", final=True))
        perf = ll.llama_perf_context(ctx)
        # llama.cpp reports at least 1 for each count; with no time spent there was no such pass.
        prompt_ms = float(perf.t_p_eval_ms)
        gen_ms = float(perf.t_eval_ms)
        self._flush_log()
        self.channel.event(
            P.DoneEvent(
                text="".join(text_parts),
                stop_reason=reason,
                prompt_tokens=len(tokens),
                completion_tokens=n_out,
                ttft_s=None if ttft is None else round(ttft, 4),
                prompt_ms=round(prompt_ms, 3),
                gen_ms=round(gen_ms, 3),
                prompt_tok_s=round(perf.n_p_eval * 1000.0 / prompt_ms, 2) if prompt_ms > 0 else None,
                gen_tok_s=round(perf.n_eval * 1000.0 / gen_ms, 2) if gen_ms > 0 else None,
                wall_s=round(time.perf_counter() - t0, 4),
                template=template,
                template_error=template_error,
                id=req_id,
            )
        )

    def _sampler(self, request: P.ChatRequest, seed: int | None) -> Any:
        ll = self.ll
        chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        if request.temperature <= 0:
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
        else:
            # llama.cpp's common order: truncate first, then temperature, then draw.
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_p(request.top_p, 1))
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(request.temperature))
            draw_seed = ll.LLAMA_DEFAULT_SEED if seed is None else seed & 0xFFFFFFFF
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_dist(draw_seed))
        return chain

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
