"""The worker protocol: requests the parent sends, events the worker answers with (docs/protocol.md).

One JSON object per line, UTF-8. Requests go to the worker's stdin; events come back on a private
copy of the worker's original stdout, which llama.cpp's own C-level writes cannot reach (the worker
points fd 1 at stderr before it imports llama_cpp). Everything here is plain data: no llama_cpp, no
Qt, so the parent, the GUI adapter and the tests share it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from app.core import limits, rules
from app.core.errors import RigfitError
from app.core.rig import Rig
from app.core.settings import Settings
from app.runner.logparse import BufferSize, UsedDevice

PROTOCOL_VERSION = 1
LOG_TAIL_LINES = 50
# The test-only "abort" request is honoured only when the worker's environment sets this to "1".
TEST_SWITCH_ENV = "RIGFIT_WORKER_TEST"

# Requests (parent → worker)
REQ_LOAD = "load"
REQ_CHAT = "chat"
REQ_BENCH = "bench"
REQ_STOP = "stop"
REQ_UNLOAD = "unload"
REQ_SHUTDOWN = "shutdown"
REQ_ABORT = "abort"
REQ_CANCEL = "cancel"  # stops one request by id (running or still queued); ``stop`` stops all before it
REQUESTS: tuple[str, ...] = (
    REQ_LOAD,
    REQ_CHAT,
    REQ_BENCH,
    REQ_STOP,
    REQ_UNLOAD,
    REQ_SHUTDOWN,
    REQ_ABORT,
    REQ_CANCEL,
)

# The worker's sign of life: sent every second from its own thread, consumed by the client (never
# delivered as an event). A worker silent for SILENCE_LIMIT_S is stopped or frozen.
EVENT_HEARTBEAT = "heartbeat"
HEARTBEAT_LINE_PREFIX = b'{"type":"heartbeat"'
SILENCE_LIMIT_S = 30.0
SILENCE_ENV = "RIGFIT_WORKER_SILENCE_S"  # another limit, in seconds (tests; a very slow machine)
# How long a new worker may take to say it is ready (import llama.cpp, list devices) on a busy machine.
START_LIMIT_S = 120.0


def silence_limit_s() -> float:
    """The silence after which a worker counts as stopped: ``RIGFIT_WORKER_SILENCE_S`` or 30 s."""
    text = os.environ.get(SILENCE_ENV, "")
    try:
        value = float(text) if text else SILENCE_LIMIT_S
    except ValueError:
        return SILENCE_LIMIT_S
    return value if math.isfinite(value) and 1.0 <= value <= 3600.0 else SILENCE_LIMIT_S


# Error kinds
ERR_BAD_REQUEST = "bad_request"
ERR_BAD_MODEL = "bad_model"  # missing file, not a GGUF, truncated, unsupported architecture
ERR_LOAD_FAILED = "load_failed"  # llama.cpp refused the model with these settings (e.g. out of memory)
ERR_CONTEXT_FAILED = "context_failed"  # the model loaded but the context could not be allocated
ERR_CANCELLED = "cancelled"  # a load stopped by a stop request
ERR_NOT_LOADED = "not_loaded"
ERR_GENERATION = "generation_failed"
ERR_CONTEXT_EXCEEDED = "context_exceeded"  # the prompt alone fills the context
ERR_CRASHED = "crashed"  # made by the client: the worker process died
ERR_START_FAILED = "start_failed"  # made by the client: the worker did not come up
ERR_RPC = "rpc_unreachable"  # an RPC server could not be reached, or stopped answering
ERR_SHUT_DOWN = "shut_down"  # made by the client: the worker was shut down with the request unanswered

# Stop sequences: as many as a chat front end sends (SillyTavern adds its own to OpenAI's 4), each short.
MAX_STOP_STRINGS = 32
MAX_STOP_CHARS = 512


class RunnerError(RigfitError):
    """The model process reported an error or stopped; ``event`` holds the details and the log tail."""

    def __init__(self, event: ErrorEvent) -> None:
        super().__init__(event.message)
        self.event = event


def encode(message: Mapping[str, Any]) -> bytes:
    """One message as a protocol line (compact JSON + newline; never contains a raw newline).

    Text that is not valid Unicode (a file name that is not UTF-8 reaches Python with surrogate
    escapes) is sent as JSON ``\\u`` escapes, which read back to the same string.
    """
    text = json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n"
    try:
        return text.encode()
    except UnicodeEncodeError:
        return (json.dumps(message, separators=(",", ":"), allow_nan=False) + "\n").encode()


def decode(line: bytes | str) -> dict[str, Any]:
    """A protocol line back into a message; raises ValueError for anything that is not a JSON object."""
    message = json.loads(line)
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ValueError("a protocol message is a JSON object with a string 'type'")
    return message


# ---------------------------------------------------------------------------------------------------
# Request payloads


@dataclass(frozen=True)
class LoadSettings:
    """Everything the worker needs to load a model, in llama.cpp's terms.

    ``tensor_split`` is ``None`` for llama.cpp's default split; ``n_gpu_layers`` of ``-1`` offloads
    every layer; ``n_threads`` of ``None`` uses the machine's physical cores; ``seed`` is the default
    for chats that give none.
    """

    model_path: str
    split_mode: str = "layer"
    tensor_split: tuple[float, ...] | None = None
    main_gpu: int = 0
    n_gpu_layers: int = -1
    n_ctx: int = 4096
    n_batch: int = 512
    n_ubatch: int = 512
    flash_attn: bool = True
    type_k: str = "f16"
    type_v: str = "f16"
    n_threads: int | None = None
    seed: int | None = None
    offload_kqv: bool = True
    # llama.cpp RPC servers ("HOST:PORT") registered before the load, in this order; their devices
    # come first in llama.cpp's device list, so tensor_split and main_gpu count them first.
    rpc_servers: tuple[str, ...] = ()

    @classmethod
    def from_settings(
        cls,
        model_path: str,
        settings: Settings,
        *,
        n_threads: int | None = None,
        seed: int | None = None,
        rpc_servers: Sequence[str] = (),
        tensor_split: tuple[float, ...] | None = None,
        main_gpu: int | None = None,
    ) -> LoadSettings:
        """The worker's load settings for the planner's :class:`Settings` (the same run the plan describes).

        ``tensor_split`` and ``main_gpu``, when given, replace the settings' own: callers pass them
        in llama.cpp's device order when the rig's order differs (RPC devices).
        """
        return cls(
            model_path=model_path,
            split_mode=settings.split_mode,
            tensor_split=settings.tensor_split if tensor_split is None else tensor_split,
            main_gpu=settings.main_gpu if main_gpu is None else main_gpu,
            n_gpu_layers=settings.n_gpu_layers,
            n_ctx=settings.ctx,
            n_batch=settings.n_batch,
            n_ubatch=settings.n_ubatch,
            flash_attn=settings.flash_attn,
            type_k=settings.type_k,
            type_v=settings.type_v,
            n_threads=n_threads,
            seed=seed,
            offload_kqv=settings.offload_kqv,
            rpc_servers=tuple(rpc_servers),
        )

    @classmethod
    def for_rig(
        cls,
        rig: Rig | None,
        model_path: str,
        settings: Settings,
        *,
        n_threads: int | None = None,
        seed: int | None = None,
    ) -> LoadSettings:
        """:meth:`from_settings` for a rig that may hold remote (RPC) devices: their servers, and the
        split and main GPU in llama.cpp's device order. A planned remote device cannot run."""
        if rig is None or not rig.remote_gpus:
            return cls.from_settings(model_path, settings, n_threads=n_threads, seed=seed)
        from app.core.rpc import to_llama_main_gpu, to_llama_split

        rules.raise_first_error(rules.planned_remote_problems(rig))
        split = settings.tensor_split
        if split is not None and len(split) != rig.n_gpus:
            raise RigfitError(f"the split has {len(split)} ratios for {rig.n_gpus} devices")
        return cls.from_settings(
            model_path,
            settings,
            n_threads=n_threads,
            seed=seed,
            rpc_servers=rig.rpc_endpoints(),
            tensor_split=to_llama_split(rig, settings.split_mode, split),
            main_gpu=to_llama_main_gpu(rig, settings.split_mode, settings.main_gpu),
        )

    def to_settings(self) -> Settings:
        """The planner's :class:`Settings` for this load (what the plan of this run describes)."""
        return Settings(
            ctx=self.n_ctx,
            split_mode=self.split_mode,
            tensor_split=self.tensor_split,
            main_gpu=self.main_gpu,
            n_gpu_layers=self.n_gpu_layers,
            n_batch=self.n_batch,
            n_ubatch=self.n_ubatch,
            flash_attn=self.flash_attn,
            type_k=self.type_k,
            type_v=self.type_v,
            offload_kqv=self.offload_kqv,
        )

    def problems(self) -> tuple[rules.Problem, ...]:
        """The values llama.cpp would reject or misread (:func:`app.core.rules.value_problems`; the
        split is checked against the GPUs by :func:`app.core.rules.runtime_problems`)."""
        found = rules.value_problems(self.to_settings())
        if self.tensor_split is not None and not self.tensor_split:
            found += rules.ratio_problems(self.tensor_split)
        return found

    def validate(self) -> None:
        """Raise :class:`RigfitError` for values llama.cpp would reject or misread.

        The ranges are :data:`app.core.limits.SETTING_RANGES`: the CLI and the window check the same
        ones, and nothing outside them reaches llama.cpp's C integers, where it would wrap.
        """
        if not self.model_path:
            raise RigfitError("no model file given")
        if len(self.model_path) > 32768:
            raise RigfitError("the model file's path is too long")
        rules.raise_first_error(self.problems())
        # Then the upper ends, where llama.cpp's C integers would wrap (app/core/limits.py).
        if self.tensor_split is not None:
            limits.check_split(self.tensor_split)
        limits.MAIN_GPU_RANGE.check(self.main_gpu)
        limits.NGL_RANGE.check(self.n_gpu_layers)
        limits.CTX_RANGE.check(self.n_ctx)
        limits.BATCH_RANGE.check(self.n_batch)
        limits.UBATCH_RANGE.check(self.n_ubatch)
        if self.n_threads is not None:
            limits.THREADS_RANGE.check(self.n_threads)
        if self.seed is not None:
            limits.SEED_RANGE.check(self.seed)
        from app.hardware.rpc import parse_endpoint

        for endpoint in self.rpc_servers:
            parse_endpoint(endpoint)
        if len(set(self.rpc_servers)) != len(self.rpc_servers):
            raise RigfitError("each RPC server may be given once")

    def to_message(self) -> dict[str, Any]:
        data = asdict(self)
        data["tensor_split"] = list(self.tensor_split) if self.tensor_split is not None else None
        data["rpc_servers"] = list(self.rpc_servers)
        return data

    @classmethod
    def from_message(cls, data: Mapping[str, Any]) -> LoadSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RigfitError(f"unknown load setting(s): {', '.join(unknown)}")
        values = dict(data)
        split = values.get("tensor_split")
        if split is not None:
            values["tensor_split"] = tuple(float(x) for x in split)
        if "rpc_servers" in values:
            servers = values["rpc_servers"]
            if not isinstance(servers, list) or not all(isinstance(x, str) for x in servers):
                raise RigfitError("rpc_servers must be a list of HOST:PORT strings")
            values["rpc_servers"] = tuple(servers)
        try:
            settings = cls(**values)
        except TypeError as exc:
            raise RigfitError(f"bad load settings: {exc}") from None
        return settings


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str


@dataclass(frozen=True)
class ChatRequest:
    """One generation: the whole conversation so far (or a raw prompt) and the sampling knobs.

    ``temperature`` of 0 samples greedily. ``min_p`` of 0 and ``repeat_penalty`` of 1 are off (as
    llama.cpp's samplers take them); the penalty looks at the last ``repeat_last_n`` tokens, prompt
    included. ``ignore_eos`` keeps generating past the end-of-turn token (benchmarks need a fixed
    token count). ``prompt``, when given instead of ``messages``, is the text itself, tokenized as it
    is (no chat template): OpenAI's ``/v1/completions``. ``stop`` ends the generation where one of
    these strings appears; the string itself is neither streamed nor kept.
    """

    messages: tuple[ChatMessage, ...]
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 256
    seed: int | None = None
    ignore_eos: bool = False
    prompt: str | None = None
    stop: tuple[str, ...] = ()
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64

    def validate(self) -> None:
        """Raise :class:`RigfitError` for an empty chat, text that is not UTF-8, or knobs out of range."""
        if self.prompt is None and not self.messages:
            raise RigfitError("a chat needs at least one message")
        if self.prompt is not None and self.messages:
            raise RigfitError("give either messages or a prompt, not both")
        texts = [self.prompt] if self.prompt is not None else []
        for m in self.messages:
            texts += [m.content, m.role]
        total = 0
        for text in texts:
            total += len(text)
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                # Command-line bytes that are not UTF-8 arrive as surrogate escapes.
                raise RigfitError(
                    "the message holds bytes that are not UTF-8 text (is the terminal set to UTF-8?)"
                ) from None
        if total > limits.MAX_PROMPT_CHARS:
            raise RigfitError(
                f"the conversation is {total:,} characters; at most {limits.MAX_PROMPT_CHARS:,} can be sent"
            )
        limits.MAX_TOKENS_RANGE.check(self.max_tokens)
        limits.TEMPERATURE_RANGE.check(self.temperature)
        if not (0 < self.top_p <= 1):
            raise RigfitError(f"top-p must be above 0 and at most 1, got {self.top_p:g}")
        if self.seed is not None:
            limits.SEED_RANGE.check(self.seed)
        if len(self.stop) > MAX_STOP_STRINGS:
            raise RigfitError(f"at most {MAX_STOP_STRINGS} stop sequences, got {len(self.stop)}")
        for s in self.stop:
            if not s or len(s) > MAX_STOP_CHARS:
                raise RigfitError(f"a stop sequence must have 1 to {MAX_STOP_CHARS} characters")
            try:
                s.encode("utf-8")
            except UnicodeEncodeError:
                raise RigfitError("a stop sequence holds bytes that are not UTF-8 text") from None
        if not (0 <= self.min_p < 1):
            raise RigfitError(f"min-p must be 0 or more and below 1, got {self.min_p:g}")
        if not math.isfinite(self.repeat_penalty) or self.repeat_penalty <= 0:
            raise RigfitError(f"the repeat penalty must be above 0 (1 is off), got {self.repeat_penalty:g}")
        if not 0 <= self.repeat_last_n <= limits.MAX_CTX:  # a C int in llama.cpp's penalties sampler
            raise RigfitError(
                f"the repeat penalty's window must be from 0 to {limits.MAX_CTX:,} tokens, got {self.repeat_last_n}"
            )

    def to_message(self) -> dict[str, Any]:
        data = asdict(self)
        data["messages"] = [{"role": m.role, "content": m.content} for m in self.messages]
        data["stop"] = list(self.stop)
        return data

    @classmethod
    def from_message(cls, data: Mapping[str, Any]) -> ChatRequest:
        prompt = data.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise RigfitError("a prompt must be a string")
        raw = data.get("messages", [] if prompt is not None else None)
        if not isinstance(raw, list):
            raise RigfitError("a chat request needs a list of messages")
        messages = []
        for m in raw:
            if (
                not isinstance(m, dict)
                or not isinstance(m.get("role"), str)
                or not isinstance(m.get("content"), str)
            ):
                raise RigfitError("each chat message needs a string 'role' and 'content'")
            messages.append(ChatMessage(role=m["role"], content=m["content"]))
        stop = data.get("stop") or []
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise RigfitError("stop sequences must be a list of strings")
        return cls(
            messages=tuple(messages),
            temperature=float(data.get("temperature", 0.8)),
            top_p=float(data.get("top_p", 0.95)),
            max_tokens=int(data.get("max_tokens", 256)),
            seed=None if data.get("seed") is None else int(data["seed"]),
            ignore_eos=bool(data.get("ignore_eos", False)),
            prompt=prompt,
            stop=tuple(stop),
            min_p=float(data.get("min_p", 0.0)),
            repeat_penalty=float(data.get("repeat_penalty", 1.0)),
            repeat_last_n=int(data.get("repeat_last_n", 64)),
        )


# ---------------------------------------------------------------------------------------------------
# Events (worker → parent)


@dataclass(frozen=True)
class Device:
    """A device llama.cpp can use, as ggml lists it."""

    name: str
    description: str  # for an RPC device: its server's HOST:PORT
    kind: str  # "cpu", "gpu", "igpu", "accel", "rpc"
    memory_total_mib: float | None = None
    memory_free_mib: float | None = None


@dataclass(frozen=True)
class ReadyEvent:
    """The worker is up: its llama.cpp build and the devices it sees."""

    pid: int
    llama_cpp_version: str
    gpu_offload: bool  # a local GPU backend (RPC devices do not count)
    devices: tuple[Device, ...] = ()
    system_info: str = ""
    rpc: bool = False  # this llama.cpp build has the RPC backend
    protocol: int = PROTOCOL_VERSION
    type: str = "ready"

    @property
    def gpus(self) -> tuple[Device, ...]:
        return tuple(d for d in self.devices if d.kind == "gpu")


@dataclass(frozen=True)
class ProgressEvent:
    percent: int
    id: int | None = None
    type: str = "progress"


@dataclass(frozen=True)
class LogEvent:
    lines: tuple[str, ...]
    source: str = "llama.cpp"  # or "stderr": the worker's raw standard error
    type: str = "log"


@dataclass(frozen=True)
class VramDelta:
    """One GPU's used memory (NVML index) before and after a load, in MiB."""

    gpu: int
    before_mib: float
    after_mib: float  # after the load and llama.cpp's warm-up decode: what a running model holds
    after_load_mib: float | None = None  # before that first decode (cuBLAS and friends start lazily)

    @property
    def increase_mib(self) -> float:
        return round(self.after_mib - self.before_mib, 2)


@dataclass(frozen=True)
class CompareRow:
    """A measured figure beside the planner's prediction for the same settings.

    ``error_pct`` is ``(predicted - measured) / measured × 100``; ``None`` when either side is missing
    or the measured value is zero.
    """

    device: str  # "CUDA0", "host", or a llama.cpp buffer type that spans GPUs
    buffer: str  # "weights", "kv", "compute", "output", "total", "nvml_total"
    predicted_mib: float | None
    measured_mib: float | None
    error_pct: float | None


@dataclass(frozen=True)
class LoadedEvent:
    """The model is loaded: the buffers llama.cpp logged, where the layers went, what NVML saw."""

    model_path: str
    buffers: tuple[BufferSize, ...]
    load_s: float
    n_ctx: int
    n_layer: int
    layers: Mapping[str, int] = field(default_factory=dict)  # device → layers (output layer included)
    offloaded_layers: int | None = None
    offloadable_layers: int | None = None
    vram: tuple[VramDelta, ...] = ()
    on_cpu_only: bool = False
    chat_template: bool = False
    compare: tuple[CompareRow, ...] = ()  # filled in by the client when it has a plan
    # Every device the model uses, in llama.cpp's order, host last: names, buffers, layers.
    devices: tuple[UsedDevice, ...] = ()
    id: int | None = None
    type: str = "loaded"


@dataclass(frozen=True)
class TokenEvent:
    text: str
    index: int
    id: int | None = None
    type: str = "token"


@dataclass(frozen=True)
class DoneEvent:
    """A chat turn ended. Speeds come from llama.cpp's own counters (llama_perf_context)."""

    text: str
    stop_reason: str  # "eos", "max_tokens", "context", "stopped", "stop_sequence"
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float | None
    prompt_ms: float
    gen_ms: float
    prompt_tok_s: float | None
    gen_tok_s: float | None
    wall_s: float
    template: str = "gguf"  # "gguf", "chatml", "plain", or "none" for a raw prompt
    template_error: str | None = None
    id: int | None = None
    type: str = "done"


@dataclass(frozen=True)
class BenchEvent:
    """One llama-bench style repetition: pp tokens in one batch, then tg single-token decodes."""

    pp: int
    tg: int
    pp_ms: float
    tg_ms: float
    pp_tok_s: float | None
    tg_tok_s: float | None
    id: int | None = None
    type: str = "bench"


@dataclass(frozen=True)
class UnloadedEvent:
    id: int | None = None
    type: str = "unloaded"


@dataclass(frozen=True)
class ErrorEvent:
    """Something failed: a plain message for the user and the last lines llama.cpp logged."""

    message: str
    kind: str
    log_tail: tuple[str, ...] = ()
    code: str | None = None  # the rule's code (app.core.rules) when a rule refused the request
    exit_code: int | None = None  # for "crashed": the process's exit code (negative: the signal)
    pid: int | None = None  # for "crashed": which worker process it was
    id: int | None = None
    type: str = "error"


@dataclass(frozen=True)
class ExitedEvent:
    """Made by the client: the worker process is gone and reaped. ``expected`` when it was asked to go."""

    exit_code: int | None
    expected: bool
    pid: int | None = None
    type: str = "exited"


Event = (
    ReadyEvent
    | ProgressEvent
    | LogEvent
    | LoadedEvent
    | TokenEvent
    | DoneEvent
    | BenchEvent
    | UnloadedEvent
    | ErrorEvent
    | ExitedEvent
)

_EVENT_TYPES: dict[str, type[Any]] = {
    "ready": ReadyEvent,
    "progress": ProgressEvent,
    "log": LogEvent,
    "loaded": LoadedEvent,
    "token": TokenEvent,
    "done": DoneEvent,
    "bench": BenchEvent,
    "unloaded": UnloadedEvent,
    "error": ErrorEvent,
    "exited": ExitedEvent,
}


def event_to_message(event: Event) -> dict[str, Any]:
    """An event as the JSON object the protocol (and ``rigfit run --json``) carries."""
    data: dict[str, Any] = _plain(asdict(event))
    if isinstance(event, LoadedEvent):
        data["layers"] = dict(event.layers)
        data["devices"] = [
            {**_plain(asdict(d)), "buffers": dict(d.buffers), "total_mib": d.total_mib} for d in event.devices
        ]
        data["vram"] = [
            {
                "gpu": v.gpu,
                "before_mib": v.before_mib,
                "after_mib": v.after_mib,
                "after_load_mib": v.after_load_mib,
                "increase_mib": v.increase_mib,
            }
            for v in event.vram
        ]
    return data


def _plain(value: Any) -> Any:
    """Tuples as lists, so the dict equals what comes back from JSON."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _tuple_of(cls: type[Any], items: Sequence[Mapping[str, Any]] | None) -> tuple[Any, ...]:
    names = {f.name for f in fields(cls)}
    return tuple(cls(**{k: v for k, v in item.items() if k in names}) for item in items or ())


_TOKEN_PREFIX = b'{"type":"token",'


def parse_event_line(line: bytes) -> Event:
    """A protocol line straight to its event; token lines, the bulk of a chat, take a short cut."""
    if line.startswith(_TOKEN_PREFIX):
        message = json.loads(line)
        return TokenEvent(text=message["text"], index=message["index"], id=message.get("id"))
    return parse_event(decode(line))


def parse_event(message: Mapping[str, Any]) -> Event:
    """A protocol message back into its event dataclass; unknown keys are ignored (newer workers)."""
    kind = message.get("type")
    cls = _EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown event type {kind!r}")
    names = {f.name for f in fields(cls)}
    data = {k: v for k, v in message.items() if k in names}
    if cls is ReadyEvent:
        data["devices"] = _tuple_of(Device, data.get("devices"))
    elif cls is LogEvent:
        data["lines"] = tuple(data.get("lines", ()))
    elif cls is LoadedEvent:
        data["buffers"] = _tuple_of(BufferSize, data.get("buffers"))
        data["vram"] = _tuple_of(VramDelta, data.get("vram"))
        data["compare"] = _tuple_of(CompareRow, data.get("compare"))
        data["layers"] = dict(data.get("layers") or {})
        data["devices"] = tuple(
            UsedDevice(
                name=d["name"],
                kind=d.get("kind", ""),
                buffers=dict(d.get("buffers") or {}),
                layers=int(d.get("layers", 0)),
                endpoint=d.get("endpoint"),
                members=tuple(d.get("members") or ()),
            )
            for d in data.get("devices") or ()
        )
    elif cls is ErrorEvent:
        data["log_tail"] = tuple(data.get("log_tail", ()))
    event: Event = cls(**data)
    return event
