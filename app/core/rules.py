"""llama.cpp's load rules, written once: what it refuses, what it plans through, what it reports.

Every rule returns :class:`Problem` values with a stable ``code`` (a contract: the plan carries them,
the CLI's JSON prints them, the advice, the runner's checks and the window key on them; add codes,
never rename one). ``message`` is in the user's words, a fragment that reads well after
``rigfit: `` and as a note; :func:`sentence` makes it an advice sentence. ``severity`` is
``error`` (llama.cpp refuses the load, or the plan cannot load as set), ``warning`` or ``info``;
``concerns`` names the :class:`~app.core.settings.Settings` fields the problem is about (what a
window would highlight); ``gpu`` the rig GPU it is about, if one.

Load rules (:func:`settings_problems`: :func:`app.core.placement.plan` raises the first one;
:func:`runtime_problems` for the GPUs llama.cpp sees on this machine; the ``rpc-*`` rules for
llama.cpp RPC servers, checked where a run starts: the CLI, the window, the worker):

================================  ========  ====================================================
code                              severity  when
================================  ========  ====================================================
unknown-split-mode                error     not one of layer, row, tensor, none
ctx-too-small                     error     a context below 1 token
batch-too-small                   error     a batch or micro-batch below 1
seq-count-out-of-range            error     parallel sequences outside 1..LLAMA_MAX_SEQ
gpu-layers-negative               error     n_gpu_layers below -1
unknown-kv-type                   error     a K or V cache type other than f16, q8_0, q4_0
overhead-negative                 error     a negative or non-finite per-GPU overhead
split-empty                       error     a tensor split without ratios
split-ratio-negative              error     a negative or non-finite ratio
split-all-zero                    error     every ratio zero
split-length                      error     ratios and GPUs disagree (plan: one per GPU; a machine:
                                            no more than llama.cpp sees)
main-gpu-missing                  error     a main GPU the rig does not have
quantized-v-needs-flash-attn      error     a q8_0/q4_0 V cache without flash attention
kv-type-head-size                 error     a quantized K cache, flash attention, head size not a
                                            multiple of 32
mla-kv-types                      error     different K and V cache types for an MLA model
tensor-unsupported-arch           error     tensor split for an architecture llama.cpp lacks it for
tensor-needs-flash-attn           error     tensor split without flash attention
split-needs-gpu                   error     row or tensor split where llama.cpp sees no GPU
rpc-unavailable                   error     RPC servers asked for, but this llama.cpp build has
                                            no RPC backend (-DGGML_RPC=on)
rpc-unreachable                   error     an RPC server does not answer, or stopped answering
rpc-planned-device                error     running a rig with a planned remote device (one per
                                            device): planned machines can be planned, not run
================================  ========  ====================================================

Rules the planner plans through and reports on the plan (:func:`plan_rule_problems`):

================================  ========  ====================================================
row-split-unavailable             error     row split on NVIDIA/AMD: this llama.cpp has no split
                                            buffers there (the plan shows what one with them does)
ctx-beyond-training               warning   a context longer than the model was trained for
tensor-single-gpu                 info      tensor split on one GPU
rpc-tensor-split                  warning   tensor or row split over remote (RPC) devices: every
                                            layer's activations cross the network
================================  ========  ====================================================

The planner's findings about memory (made by :mod:`app.core.placement`, listed here so every code
lives in one table):

================================  ========  ====================================================
no-gpu                            info      no GPU: every layer runs on the CPU
host-ram-short                    error     what stays in system RAM does not fit it
layers-on-cpu                     warning   the settings keep layers on the CPU (and it fits)
vram-tight                        warning   a GPU keeps less than 10% of its VRAM free
gpu-over-capacity                 error     a GPU needs more than it has (one per GPU)
fits-with-offload                 warning   it fits with fewer GPU layers (plan.fit_n_gpu_layers)
does-not-fit                      error     nothing fits, not even with layers on the CPU
================================  ========  ====================================================
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from app.core.errors import RigfitError
from app.core.model_spec import ModelSpec, uses_mla_cache
from app.core.rig import VENDOR_AMD, VENDOR_NVIDIA, Rig
from app.core.settings import KV_TYPES, SPLIT_MODES, Settings

SEVERITY_ERROR = "error"
SEVERITY_WARNING = "warning"
SEVERITY_INFO = "info"

# llama.cpp's LLAMA_MAX_SEQ (llama-cparams.h): the most parallel sequences a context takes.
LLAMA_MAX_SEQ = 256
# q8_0 and q4_0 blocks: a quantized K cache with flash attention needs whole blocks per head.
KV_QUANT_BLOCK = 32

CODE_UNKNOWN_SPLIT_MODE = "unknown-split-mode"
CODE_CTX_TOO_SMALL = "ctx-too-small"
CODE_BATCH_TOO_SMALL = "batch-too-small"
CODE_SEQ_COUNT = "seq-count-out-of-range"
CODE_GPU_LAYERS_NEGATIVE = "gpu-layers-negative"
CODE_UNKNOWN_KV_TYPE = "unknown-kv-type"
CODE_OVERHEAD_NEGATIVE = "overhead-negative"
CODE_SPLIT_EMPTY = "split-empty"
CODE_SPLIT_NEGATIVE = "split-ratio-negative"
CODE_SPLIT_ALL_ZERO = "split-all-zero"
CODE_SPLIT_LENGTH = "split-length"
CODE_MAIN_GPU_MISSING = "main-gpu-missing"
CODE_QUANT_V_NEEDS_FA = "quantized-v-needs-flash-attn"
CODE_KV_HEAD_SIZE = "kv-type-head-size"
CODE_MLA_KV_TYPES = "mla-kv-types"
CODE_TENSOR_ARCH = "tensor-unsupported-arch"
CODE_TENSOR_NEEDS_FA = "tensor-needs-flash-attn"
CODE_SPLIT_NEEDS_GPU = "split-needs-gpu"
CODE_RPC_UNAVAILABLE = "rpc-unavailable"
CODE_RPC_UNREACHABLE = "rpc-unreachable"
CODE_RPC_PLANNED_DEVICE = "rpc-planned-device"
CODE_RPC_TENSOR_SPLIT = "rpc-tensor-split"
CODE_ROW_UNAVAILABLE = "row-split-unavailable"
CODE_CTX_BEYOND_TRAINING = "ctx-beyond-training"
CODE_TENSOR_SINGLE_GPU = "tensor-single-gpu"
CODE_NO_GPU = "no-gpu"
CODE_HOST_RAM_SHORT = "host-ram-short"
CODE_LAYERS_ON_CPU = "layers-on-cpu"
CODE_VRAM_TIGHT = "vram-tight"
CODE_GPU_OVER_CAPACITY = "gpu-over-capacity"
CODE_FITS_WITH_OFFLOAD = "fits-with-offload"
CODE_DOES_NOT_FIT = "does-not-fit"

# Findings about memory, not about what llama.cpp accepts: the figures show them.
MEMORY_CODES: frozenset[str] = frozenset(
    {
        CODE_NO_GPU,
        CODE_HOST_RAM_SHORT,
        CODE_LAYERS_ON_CPU,
        CODE_VRAM_TIGHT,
        CODE_GPU_OVER_CAPACITY,
        CODE_FITS_WITH_OFFLOAD,
        CODE_DOES_NOT_FIT,
    }
)

# llm_arch_supports_sm_tensor (llama-arch.cpp): architectures LLAMA_SPLIT_MODE_TENSOR refuses, by
# their GGUF names (llm_arch_name).
TENSOR_SPLIT_UNSUPPORTED_ARCHS: frozenset[str] = frozenset(
    {
        "grok",
        "mpt",
        "plamo2",
        "minicpm3",
        "gemma3n",
        "mamba",
        "mamba2",
        "jamba",
        "falcon-h1",
        "olmo2",
        "olmoe",
        "deepseek2",
        "deepseek32",
        "hy_v4",
        "dots3note",
        "glm-dsa",
        "bitnet",
        "t5",
        "nemotron_h",
        "nemotron_h_moe",
        "granitehybrid",
        "minimax-01",
        "minimax-m2",
        "minimax-m3",
        "mistral4",
        "kimi-linear",
        "bailingmoe3",
        "kimi-k3",
        "glm5-next",
        "qwen3tts",
        "qwen4exp",
    }
)

# Backends without split buffers in this llama.cpp (ggml_backend_split_buffer_type is exported only
# by SYCL and Hexagon): row split fails to load on them.
NO_ROW_SPLIT_VENDORS: frozenset[str] = frozenset({VENDOR_NVIDIA, VENDOR_AMD})


@dataclass(frozen=True)
class Problem:
    """One rule a load breaks, or one finding of the planner. See the module's table of codes."""

    code: str
    message: str
    severity: str
    concerns: tuple[str, ...] = ()  # Settings field names
    gpu: int | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == SEVERITY_ERROR


class RuleError(RigfitError):
    """Settings llama.cpp refuses; ``problem`` says which rule (its ``code``) and why."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _error(code: str, message: str, *concerns: str) -> Problem:
    return Problem(code, message, SEVERITY_ERROR, concerns)


def _gpus(n: int) -> str:
    return f"{n} GPU{'' if n == 1 else 's'}"


# ------------------------------------------------------------------------------------------------
# rules on the settings alone
# ------------------------------------------------------------------------------------------------


def split_mode_problem(split_mode: str) -> Problem | None:
    """An unknown split mode (``None`` for layer, row, tensor and none)."""
    if split_mode in SPLIT_MODES:
        return None
    return _error(
        CODE_UNKNOWN_SPLIT_MODE,
        f"unknown split mode '{split_mode}': the split mode must be one of {', '.join(SPLIT_MODES)}",
        "split_mode",
    )


def ratio_problems(tensor_split: Sequence[float]) -> tuple[Problem, ...]:
    """What is wrong with the ratios themselves: none, a negative or non-finite one, all zero."""
    if not tensor_split:
        return (_error(CODE_SPLIT_EMPTY, "the tensor split needs at least one ratio", "tensor_split"),)
    for ratio in tensor_split:
        value = float(ratio)
        if not math.isfinite(value) or value < 0:
            return (
                _error(
                    CODE_SPLIT_NEGATIVE,
                    f"tensor split ratios must be zero or positive numbers, got {value:g}",
                    "tensor_split",
                ),
            )
    if sum(float(r) for r in tensor_split) <= 0:
        return (
            _error(
                CODE_SPLIT_ALL_ZERO,
                "the tensor split ratios are all zero: at least one must be above zero",
                "tensor_split",
            ),
        )
    return ()


def _split_length(n_entries: int, n_gpus: int, machine: bool) -> Problem:
    entries = f"{n_entries} entr{'y' if n_entries == 1 else 'ies'}"
    if machine and n_gpus == 0:
        text = f"the tensor split has {entries} but llama.cpp sees no GPU on this machine"
    else:
        text = f"the tensor split has {entries} but the rig has {_gpus(n_gpus)}: give one ratio per GPU"
    return _error(CODE_SPLIT_LENGTH, text, "tensor_split")


def _main_gpu_missing(main_gpu: int, n_gpus: int) -> Problem:
    if main_gpu < 0:
        text = f"main GPU {main_gpu} does not exist: GPUs are numbered from 0"
    elif n_gpus == 0:
        text = "the rig has no GPU, so there is no main GPU to choose"
    else:
        text = f"main GPU {main_gpu} does not exist: the rig has GPUs 0 to {n_gpus - 1}"
    return _error(CODE_MAIN_GPU_MISSING, text, "main_gpu")


def value_problems(settings: Settings) -> tuple[Problem, ...]:
    """Values llama.cpp rejects on any rig and for any model (the worker checks these too)."""
    s = settings
    out: list[Problem] = []
    mode = split_mode_problem(s.split_mode)
    if mode is not None:
        out.append(mode)
    if isinstance(s.ctx, bool) or not isinstance(s.ctx, int) or s.ctx < 1:
        out.append(_error(CODE_CTX_TOO_SMALL, f"the context must be at least 1 token (got {s.ctx})", "ctx"))
    if s.n_batch < 1 or s.n_ubatch < 1:
        out.append(
            _error(
                CODE_BATCH_TOO_SMALL,
                "the batch and micro-batch sizes must be at least 1",
                "n_batch",
                "n_ubatch",
            )
        )
    if not 1 <= s.n_seq_max <= LLAMA_MAX_SEQ:
        out.append(
            _error(
                CODE_SEQ_COUNT,
                f"the number of parallel sequences must be between 1 and {LLAMA_MAX_SEQ}",
                "n_seq_max",
            )
        )
    if s.n_gpu_layers < -1:
        out.append(
            _error(
                CODE_GPU_LAYERS_NEGATIVE,
                f"n_gpu_layers (the number of GPU layers) must be -1 (all) or 0 or more, got {s.n_gpu_layers}",
                "n_gpu_layers",
            )
        )
    for which, name, field in (("K", s.type_k, "type_k"), ("V", s.type_v, "type_v")):
        if name not in KV_TYPES:
            out.append(
                _error(
                    CODE_UNKNOWN_KV_TYPE,
                    f"unknown {which} cache type '{name}' (use one of {', '.join(KV_TYPES)})",
                    field,
                )
            )
    if s.overhead_mib is not None and (not math.isfinite(s.overhead_mib) or s.overhead_mib < 0):
        out.append(
            _error(
                CODE_OVERHEAD_NEGATIVE,
                "the per-GPU overhead must be a non-negative number of MiB",
                "overhead_mib",
            )
        )
    if s.main_gpu < 0:
        out.append(_main_gpu_missing(s.main_gpu, 0))
    if s.tensor_split:  # an empty split is a length problem (or none on a rig without GPUs)
        out.extend(ratio_problems(s.tensor_split))
    return tuple(out)


# ------------------------------------------------------------------------------------------------
# rules on the settings, the rig and the model
# ------------------------------------------------------------------------------------------------


def _rig_problems(rig: Rig, settings: Settings) -> list[Problem]:
    s = settings
    n = rig.n_gpus
    out: list[Problem] = []
    if s.tensor_split is not None and len(s.tensor_split) != n:
        out.append(_split_length(len(s.tensor_split), n, machine=False))
    if s.main_gpu >= 0 and ((n and s.main_gpu >= n) or (not n and s.main_gpu != 0)):
        out.append(_main_gpu_missing(s.main_gpu, n))
    return out


def _model_problems(spec: ModelSpec, settings: Settings, n_gpus: int) -> list[Problem]:
    s = settings
    out: list[Problem] = []
    if s.type_v in KV_TYPES and s.type_v != "f16" and not s.flash_attn:
        out.append(
            _error(
                CODE_QUANT_V_NEEDS_FA,
                f"a quantized V cache needs flash attention: llama.cpp refuses a {s.type_v} V cache without it "
                "(turn flash attention on, or keep the V cache f16)",
                "type_v",
                "flash_attn",
            )
        )
    if s.flash_attn and s.type_k in KV_TYPES and s.type_k != "f16" and spec.head_dim_k % KV_QUANT_BLOCK:
        out.append(
            _error(
                CODE_KV_HEAD_SIZE,
                f"a {s.type_k} K cache needs a head size that is a multiple of {KV_QUANT_BLOCK} with flash "
                f"attention; this model's is {spec.head_dim_k}: keep the K cache f16",
                "type_k",
            )
        )
    if spec.kv_lora_rank > 0 and s.type_k != s.type_v and uses_mla_cache(spec):
        out.append(
            _error(
                CODE_MLA_KV_TYPES,
                "this model caches a compressed latent (MLA attention): K and V need the same cache type",
                "type_k",
                "type_v",
            )
        )
    if s.split_mode == "tensor" and n_gpus:
        if spec.architecture in TENSOR_SPLIT_UNSUPPORTED_ARCHS:
            out.append(
                _error(
                    CODE_TENSOR_ARCH,
                    f"llama.cpp has no tensor split for the '{spec.architecture}' architecture: use the layer split",
                    "split_mode",
                )
            )
        if not s.flash_attn:
            out.append(
                _error(
                    CODE_TENSOR_NEEDS_FA,
                    "tensor split needs flash attention: llama.cpp refuses to load without it (turn it on, "
                    "or use the layer split)",
                    "split_mode",
                    "flash_attn",
                )
            )
    return out


def settings_problems(rig: Rig, spec: ModelSpec, settings: Settings) -> tuple[Problem, ...]:
    """Everything llama.cpp refuses for these settings on this rig and model, in the order
    :func:`app.core.placement.plan` checks them (it raises the first)."""
    return (
        value_problems(settings)
        + tuple(_rig_problems(rig, settings))
        + tuple(_model_problems(spec, settings, rig.n_gpus))
    )


def row_split_problem(rig: Rig) -> Problem | None:
    """Row split on a rig with NVIDIA or AMD GPUs: this llama.cpp has no split buffers there."""
    if not any(g.vendor in NO_ROW_SPLIT_VENDORS for g in rig.gpus):
        return None
    return _error(
        CODE_ROW_UNAVAILABLE,
        "row split does not load with llama-cpp-python 0.3.36 on NVIDIA and AMD GPUs: its llama.cpp has no "
        "split buffers there ('does not support split buffers'). Use the layer split, or tensor split over "
        "NVLink (a llama-server from an older build may still accept -sm row); the figures show what a "
        "llama.cpp with row split would place",
        "split_mode",
    )


def plan_rule_problems(rig: Rig, spec: ModelSpec, settings: Settings) -> tuple[Problem, ...]:
    """Rules the planner plans through and reports on the plan: row split where it cannot load, a
    context beyond the model's training, tensor split on one GPU."""
    s = settings
    out: list[Problem] = []
    if s.split_mode == "row":
        row = row_split_problem(rig)
        if row is not None:
            out.append(row)
    if spec.n_ctx_train and s.ctx > spec.n_ctx_train:
        out.append(
            Problem(
                CODE_CTX_BEYOND_TRAINING,
                f"the context ({s.ctx}) is longer than the model was trained for ({spec.n_ctx_train}): "
                "llama.cpp loads it, but answers may degrade",
                SEVERITY_WARNING,
                ("ctx",),
            )
        )
    if s.split_mode == "tensor" and rig.n_gpus == 1:
        out.append(
            Problem(
                CODE_TENSOR_SINGLE_GPU,
                "tensor split on one GPU loads like the layer split; llama.cpp does not recommend it",
                SEVERITY_INFO,
                ("split_mode",),
            )
        )
    remote = remote_split_problem(rig, s.split_mode)
    if remote is not None:
        out.append(remote)
    return tuple(out)


# ------------------------------------------------------------------------------------------------
# llama.cpp RPC devices
# ------------------------------------------------------------------------------------------------


def remote_split_problem(rig: Rig, split_mode: str) -> Problem | None:
    """Tensor or row split over a rig with remote (RPC) devices: it loads, but every layer's
    activations go through an RPC server (measured: 30x slower than one GPU)."""
    if (
        split_mode not in ("tensor", "row")
        or rig.n_gpus < 2
        or not any(g.remote is not None for g in rig.gpus)
    ):
        return None
    return Problem(
        CODE_RPC_TENSOR_SPLIT,
        "tensor split over a network sends every layer's activations through the RPC server twice per token: "
        "on one H200 over loopback it ran 30x slower than on one GPU (11 against 324 tok/s). Use the layer "
        "split with remote devices",
        SEVERITY_WARNING,
        ("split_mode",),
    )


def rpc_unavailable() -> Problem:
    """RPC servers asked for where this llama.cpp build has no RPC backend."""
    return _error(
        CODE_RPC_UNAVAILABLE,
        "this llama.cpp build has no RPC backend (make setup builds it with -DGGML_RPC=on)",
    )


def rpc_unreachable(reason: str) -> Problem:
    """An RPC server that does not answer; ``reason`` starts with its ``HOST:PORT`` (``10.0.0.5:50052:
    nothing is listening there ...``)."""
    return _error(CODE_RPC_UNREACHABLE, f"the RPC server {reason}")


def planned_remote_problems(rig: Rig) -> tuple[Problem, ...]:
    """A run on a rig with planned remote devices: llama.cpp needs a real server for each (one
    problem per planned device, the first names what to do)."""
    out: list[Problem] = []
    for i, gpu in enumerate(rig.gpus):
        if gpu.remote is None or gpu.remote.endpoint is not None:
            continue
        out.append(
            Problem(
                CODE_RPC_PLANNED_DEVICE,
                f"GPU {gpu.index} ({gpu.name}) is planned on another machine: it can be planned but not run. "
                "Run rigfit rpc-server there and add it as a remote machine (HOST:PORT)",
                SEVERITY_ERROR,
                gpu=i,
            )
        )
    return tuple(out)


def load_problems(rig: Rig, spec: ModelSpec, settings: Settings) -> tuple[Problem, ...]:
    """Every rule these settings break on this rig and model: :func:`settings_problems` (plan()
    refuses them) then :func:`plan_rule_problems` (the plan reports them)."""
    return settings_problems(rig, spec, settings) + plan_rule_problems(rig, spec, settings)


def split_mode_problems(
    rig: Rig, spec: ModelSpec | None, settings: Settings, mode: str
) -> tuple[Problem, ...]:
    """Why split mode ``mode`` cannot work for this rig (and model, when given) with the other
    settings as they are: the errors that concern the split mode. Empty when it can."""
    if rig.n_gpus == 0:
        return (no_gpu(),)
    if spec is not None:
        found = load_problems(rig, spec, replace(settings, split_mode=mode))
    else:
        unknown = split_mode_problem(mode)
        row = row_split_problem(rig) if mode == "row" else None
        found = tuple(p for p in (unknown, row) if p is not None)
    return tuple(p for p in found if p.is_error and "split_mode" in p.concerns)


def runtime_problems(
    split_mode: str, tensor_split: Sequence[float] | None, main_gpu: int, n_gpus: int
) -> tuple[Problem, ...]:
    """What this machine's llama.cpp, which sees ``n_gpus`` GPUs, cannot run. A split shorter than
    the GPUs is fine there (llama.cpp gives the rest nothing)."""
    out: list[Problem] = []
    if n_gpus == 0 and split_mode in ("row", "tensor"):
        out.append(
            _error(
                CODE_SPLIT_NEEDS_GPU,
                f"split mode '{split_mode}' needs GPUs; llama.cpp sees none on this machine",
                "split_mode",
            )
        )
    if tensor_split is not None and len(tensor_split) > n_gpus:
        out.append(_split_length(len(tensor_split), n_gpus, machine=True))
    if n_gpus and main_gpu >= n_gpus:
        out.append(_main_gpu_missing(main_gpu, n_gpus))
    return tuple(out)


# ------------------------------------------------------------------------------------------------
# the planner's findings about memory
# ------------------------------------------------------------------------------------------------


def no_gpu() -> Problem:
    """A rig without GPUs: the model runs on the CPU."""
    return Problem(CODE_NO_GPU, "no GPU: every layer runs on the CPU", SEVERITY_INFO)


def host_ram_short(need_mib: float, available_mib: float, cpu_only: bool) -> Problem:
    """What stays in system RAM (everything, on a rig without GPUs) does not fit it."""
    if cpu_only:
        text = f"needs {need_mib:.0f} MiB of system RAM; {available_mib:.0f} MiB are available"
    else:
        text = (
            f"the layers left on the CPU need {need_mib:.0f} MiB of system RAM; "
            f"{available_mib:.0f} MiB are available"
        )
    return Problem(CODE_HOST_RAM_SHORT, text, SEVERITY_ERROR)


def layers_on_cpu(host_layers: int, n_layer: int, output_on_cpu: bool, n_gpu_layers: int) -> Problem:
    """The requested n_gpu_layers keeps layers on the CPU (and everything fits)."""
    return Problem(
        CODE_LAYERS_ON_CPU,
        f"{host_layers} of {n_layer} layers{' and the output layer' if output_on_cpu else ''} run on the CPU "
        f"(n_gpu_layers={n_gpu_layers}): those run at system-RAM speed",
        SEVERITY_WARNING,
        ("n_gpu_layers",),
    )


def vram_tight(gpus: Sequence[int], free_fraction: float) -> Problem:
    """Some GPUs keep less than ``free_fraction`` of their VRAM free."""
    names = ", ".join(f"GPU {i}" for i in gpus)
    return Problem(
        CODE_VRAM_TIGHT,
        f"{names} keep{'s' if len(gpus) == 1 else ''} less than {free_fraction:.0%} of VRAM free",
        SEVERITY_WARNING,
        gpu=gpus[0] if len(gpus) == 1 else None,
    )


def gpu_over_capacity(index: int, name: str, need_mib: float, capacity_mib: float) -> Problem:
    """One GPU needs more memory than it has."""
    return Problem(
        CODE_GPU_OVER_CAPACITY,
        f"GPU {index} ({name}) needs {need_mib:.0f} MiB but has {capacity_mib:.0f} MiB",
        SEVERITY_ERROR,
        gpu=index,
    )


def fits_with_offload(n_gpu_layers: int, n_slots_left: int, n_layer: int) -> Problem:
    """The settings overflow a GPU, but ``n_gpu_layers`` fits (with ``n_slots_left`` on the CPU)."""
    return Problem(
        CODE_FITS_WITH_OFFLOAD,
        f"fits with n_gpu_layers={n_gpu_layers}: {min(n_slots_left, n_layer)} of {n_layer} layers"
        f"{' and the output layer' if n_slots_left > n_layer else ''} would stay on the CPU "
        f"and run at system-RAM speed",
        SEVERITY_WARNING,
        ("n_gpu_layers",),
    )


def does_not_fit() -> Problem:
    """Nothing fits, not even with layers on the CPU."""
    return Problem(CODE_DOES_NOT_FIT, "does not fit even with layers moved to the CPU", SEVERITY_ERROR)


# ------------------------------------------------------------------------------------------------
# reading problems
# ------------------------------------------------------------------------------------------------


def first_error(problems: Iterable[Problem]) -> Problem | None:
    """The first problem of severity ``error``, or ``None``."""
    return next((p for p in problems if p.is_error), None)


def raise_first_error(problems: Iterable[Problem]) -> None:
    """Raise :class:`RuleError` for the first error among ``problems`` (nothing when there is none)."""
    problem = first_error(problems)
    if problem is not None:
        raise RuleError(problem)


def refusals(problems: Iterable[Problem]) -> tuple[Problem, ...]:
    """The errors that are llama.cpp refusing the settings, not memory running short: reasons a
    load fails that the memory figures cannot show."""
    return tuple(p for p in problems if p.is_error and p.code not in MEMORY_CODES)


def codes(problems: Iterable[Problem]) -> tuple[str, ...]:
    """The codes of ``problems``, in order."""
    return tuple(p.code for p in problems)


def sentence(message: str) -> str:
    """A problem's message as a sentence: capitalised, ending with a full stop."""
    text = message.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


__all__ = [
    "LLAMA_MAX_SEQ",
    "MEMORY_CODES",
    "NO_ROW_SPLIT_VENDORS",
    "SEVERITY_ERROR",
    "SEVERITY_INFO",
    "SEVERITY_WARNING",
    "TENSOR_SPLIT_UNSUPPORTED_ARCHS",
    "Problem",
    "RuleError",
    "codes",
    "does_not_fit",
    "first_error",
    "fits_with_offload",
    "gpu_over_capacity",
    "host_ram_short",
    "layers_on_cpu",
    "load_problems",
    "no_gpu",
    "plan_rule_problems",
    "planned_remote_problems",
    "raise_first_error",
    "ratio_problems",
    "refusals",
    "remote_split_problem",
    "row_split_problem",
    "rpc_unavailable",
    "rpc_unreachable",
    "runtime_problems",
    "sentence",
    "settings_problems",
    "split_mode_problem",
    "split_mode_problems",
    "value_problems",
    "vram_tight",
]
