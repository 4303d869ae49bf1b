"""Command lines that reproduce a plan in llama.cpp's tools, Ollama, vLLM and ExLlamaV2.

Pure functions of ``(rig, spec, plan)``; every argument is in the exported argv, so tests pin exact
command lines. Flags were checked against each tool's documentation (and llama.cpp's own argument
parser in the vendored source, ``common/arg.cpp`` and ``tools/llama-bench``):

* llama-server: ``-m``, ``-c``, ``-ngl``, ``-sm none|layer|row|tensor``, ``-ts`` (comma-separated
  proportions), ``-mg``, ``-fa on|off``, ``-ctk``/``-ctv``, ``-b``/``-ub``, ``-np``, ``--swa-full``.
* llama-bench: the same names, but ``-ts`` separates GPUs with ``/`` (a comma starts another test
  value), ``-fa`` takes ``1``/``0`` in old and new builds, and there is no ``-c`` (its context is
  ``-p`` + ``-n`` (+ ``-d``) tokens).
* Ollama: environment variables of ``ollama serve`` (``CUDA_VISIBLE_DEVICES``,
  ``OLLAMA_SCHED_SPREAD``, ``OLLAMA_FLASH_ATTENTION``, ``OLLAMA_KV_CACHE_TYPE``) and Modelfile
  parameters (``num_ctx``, ``num_gpu`` = layers on the GPUs).
* vLLM: ``vllm serve MODEL --tensor-parallel-size N`` / ``--pipeline-parallel-size N``
  (``VLLM_PP_LAYER_PARTITION`` for uneven layer counts), ``--max-model-len``.
* ExLlamaV2: ``-m`` (an EXL2 model folder), ``-gs`` (GB of weights per GPU), ``-l`` (max sequence
  length), as its ``model_init`` arguments define them.

The llama.cpp commands set every option that decides the placement (``-ngl``, ``-ts``, ``-c``,
``-fa``, KV types, batch sizes, parallel sequences, the SWA cache), because llama-server's defaults
differ from llama-cpp-python's and newer builds re-fit unset options to free memory (``--fit``).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from app.core.catalog import find_entry
from app.core.errors import RigfitError
from app.core.model_spec import ModelSpec
from app.core.offload import loading_plan
from app.core.plan import STATUS_NO, Plan
from app.core.rig import VENDOR_AMD, VENDOR_NVIDIA, Rig
from app.core.rpc import (
    rpc_endpoints_for_commands,
    rpc_notes,
    slot_split_llama_order,
    to_llama_main_gpu,
    to_llama_split,
)
from app.core.rules import CODE_ROW_UNAVAILABLE, TENSOR_SPLIT_UNSUPPORTED_ARCHS, codes

TOOLS: tuple[str, ...] = ("llama-server", "llama-bench", "ollama", "vllm", "exllamav2")
RIGFIT_BATCH = 512  # Settings' n_batch/n_ubatch defaults (llama-cpp-python's); other values are passed
EQUAL_VRAM_TOLERANCE = 0.02


@dataclass(frozen=True)
class ExportedCommand:
    """One tool's command for a plan.

    ``argv`` is the program and its arguments; ``env`` the environment variables it needs (for Ollama
    those of ``ollama serve``); ``files`` files to write first (Ollama's Modelfile); ``refused`` why the
    tool cannot run the plan as planned (the command then shows the closest thing it can do).
    """

    tool: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    files: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()
    refused: str | None = None
    steps: tuple[tuple[str, ...], ...] = ()  # commands to run after argv (ollama create/run)

    @property
    def command_line(self) -> str:
        """The main command as one shell line, environment first, every word quoted where needed."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env)
        cmd = shlex.join(self.argv)
        return f"{env} {cmd}" if env else cmd

    @property
    def text(self) -> str:
        """What to paste into a shell: files as here-documents, the command, the follow-up steps, and
        the notes as comments."""
        lines: list[str] = []
        if self.refused:
            lines.append(f"# {self.refused}")
        for name, content in self.files:
            lines.append(f"cat > {shlex.quote(name)} <<'EOF'")
            lines.extend(content.rstrip("\n").split("\n"))
            lines.append("EOF")
        lines.append(self.command_line)
        lines.extend(shlex.join(step) for step in self.steps)
        lines.extend(f"# {note}" for note in self.notes)
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# what the plan runs with
# ------------------------------------------------------------------------------------------------


def _ngl(plan: Plan, rig: Rig) -> int:
    if not rig.gpus:
        return 0
    if plan.fit_n_gpu_layers is not None:
        return plan.fit_n_gpu_layers
    n = plan.settings.n_gpu_layers
    return plan.n_layer + 1 if n < 0 or n > plan.n_layer else n


def _slot_split(p: Plan) -> tuple[int, ...]:
    """Per GPU, slots held (layers plus the output layer): as -ts, llama.cpp gives back these counts."""
    return tuple(d.layers + int(d.has_output) for d in p.devices)


def _num(v: float) -> str:
    text = f"{v:.4f}".rstrip("0").rstrip(".")
    return text or "0"


def model_path(spec: ModelSpec) -> str:
    """The GGUF to load: the file planned, or a placeholder named after the model and quant."""
    if spec.paths:
        return spec.paths[0]
    return f"{spec.id}-{spec.file_type or 'MODEL'}.gguf"


# Letters whose English names start with a vowel sound: "an IQ3_M", "an F16", "an MXFP4" but "a Q4_K_M".
_VOWEL_SOUND_LETTERS = frozenset("AEFHILMNORSX")


def with_article(word: str) -> str:
    """``word`` after "a" or "an" as it is read aloud; quant names are spelled letter by letter."""
    if not word:
        return "a"
    first = word[0]
    vowel = first.upper() in _VOWEL_SOUND_LETTERS if first.isupper() else first.lower() in "aeiou"
    return f"{'an' if vowel else 'a'} {word}"


def _path_note(spec: ModelSpec) -> tuple[str, ...]:
    if spec.remote:  # planned from its header on the hub: the file is known, only not here yet
        return (
            f"{model_path(spec)} is {spec.remote}: 'rigfit pull {spec.remote}' downloads it to that path",
        )
    if spec.paths:
        return ()
    kind = f"{with_article(spec.file_type)} GGUF" if spec.file_type else "a GGUF"
    return (f"{model_path(spec)} stands for {kind} of {spec.name}: {_how_to_get(spec)}",)


def _how_to_get(spec: ModelSpec) -> str:
    """Where a catalog model's file comes from: its first GGUF repository and ``rigfit pull``."""
    try:
        repos = find_entry(spec.id).gguf_repos
    except RigfitError:  # not a catalog model (a config.json, a test spec)
        repos = ()
    if not repos or not spec.file_type:
        return "download one and put its path there"
    return (
        f"download one ('rigfit pull {repos[0].repo} --quant {spec.file_type}'; "
        f"'rigfit search {spec.id}' lists the other repositories) and put its path there"
    )


def _split_args(rig: Rig, p: Plan, sep: str) -> list[str]:
    s = p.settings
    args: list[str] = []
    if not rig.gpus:
        return args
    if s.split_mode == "none":
        return ["-sm", "none", "-mg", str(to_llama_main_gpu(rig, "none", s.main_gpu))]
    if rig.n_gpus > 1 or s.split_mode != "layer":
        args += ["-sm", s.split_mode]
    # -ts and -mg count devices in llama.cpp's order: RPC devices first (app/core/rpc.py).
    if rig.n_gpus > 1:
        if s.split_mode == "layer":
            args += [
                "-ts",
                sep.join(str(c) for c in slot_split_llama_order(rig, _slot_split(p), s.split_mode)),
            ]
        elif s.tensor_split is not None:
            split = to_llama_split(rig, s.split_mode, s.tensor_split) or s.tensor_split
            args += ["-ts", sep.join(_num(r) for r in split)]
    if s.split_mode == "row" or s.main_gpu != 0:
        args += ["-mg", str(to_llama_main_gpu(rig, s.split_mode, s.main_gpu))]
    return args


def _rpc_args(rig: Rig) -> list[str]:
    endpoints = rpc_endpoints_for_commands(rig)
    return ["--rpc", ",".join(endpoints)] if endpoints else []


def _local_only(rig: Rig, tool: str) -> tuple[str, ...]:
    if not rig.remote_gpus:
        return ()
    return (
        f"{tool} cannot use llama.cpp RPC devices on other machines: this runs on this computer's GPUs only",
    )


def _cache_args(p: Plan) -> list[str]:
    s = p.settings
    args: list[str] = []
    if s.type_k != "f16":
        args += ["-ctk", s.type_k]
    if s.type_v != "f16":
        args += ["-ctv", s.type_v]
    if s.n_batch != RIGFIT_BATCH:
        args += ["-b", str(s.n_batch)]
    if s.n_ubatch != RIGFIT_BATCH:
        args += ["-ub", str(s.n_ubatch)]
    return args


def _common_notes(rig: Rig, p: Plan) -> list[str]:
    notes: list[str] = []
    if p.status == STATUS_NO:
        notes.append("the plan does not fit: this command will fail to load as it stands")
    if CODE_ROW_UNAVAILABLE in codes(p.problems):
        notes.append(
            "-sm row does not load with llama-cpp-python 0.3.36's llama.cpp on CUDA/ROCm (no split buffers); "
            "only another build may accept it"
        )
    if p.settings.split_mode == "tensor":
        notes.append(
            "-sm tensor is recent and marked experimental: it needs a llama.cpp at least as new as the one in "
            "llama-cpp-python 0.3.36"
        )
    return notes


# ------------------------------------------------------------------------------------------------
# llama.cpp
# ------------------------------------------------------------------------------------------------


def llama_server_command(rig: Rig, spec: ModelSpec, plan: Plan) -> ExportedCommand:
    """llama-server with every option that decides the placement set explicitly."""
    p = loading_plan(rig, spec, plan)
    s = p.settings
    argv = ["llama-server", "-m", model_path(spec), "-c", str(s.ctx), "-ngl", str(_ngl(plan, rig))]
    argv += _rpc_args(rig)
    argv += _split_args(rig, p, ",")
    argv += ["-fa", "on" if s.flash_attn else "off"]
    argv += _cache_args(p)
    argv += ["-np", str(s.n_seq_max)]
    if s.kv_unified:
        argv += ["--kv-unified"]
    if s.swa_full and any(spec.swa_layers):
        # llama-cpp-python defaults to a full-size sliding-window cache, llama-server does not.
        argv += ["--swa-full"]
    if not s.offload_kqv:
        argv += ["-nkvo"]
    notes = _common_notes(rig, p) + list(_path_note(spec)) + list(rpc_notes(rig))
    if plan.fit_n_gpu_layers is not None:
        notes.append(f"-ngl {plan.fit_n_gpu_layers}: the offload that fits (the rest runs on the CPU)")
    notes.append("older llama-server builds take -fa without a value (on) and have no -sm tensor")
    return ExportedCommand("llama-server", tuple(argv), notes=tuple(notes))


def llama_bench_command(rig: Rig, spec: ModelSpec, plan: Plan) -> ExportedCommand:
    """llama-bench for the plan's placement (prompt 512, generation 128 tokens)."""
    p = loading_plan(rig, spec, plan)
    s = p.settings
    argv = ["llama-bench", "-m", model_path(spec), "-ngl", str(_ngl(plan, rig))]
    argv += _rpc_args(rig)
    argv += _split_args(rig, p, "/")
    argv += ["-fa", "1" if s.flash_attn else "0"]
    argv += _cache_args(p)
    if not s.offload_kqv:
        argv += ["-nkvo", "1"]
    argv += ["-p", "512", "-n", "128"]
    notes = [*_common_notes(rig, p), *_path_note(spec), *rpc_notes(rig)]
    notes.append(
        f"llama-bench has no -c: its context is -p + -n (+ -d) tokens; add -d {s.ctx // 2} to measure "
        "at half the planned context"
    )
    return ExportedCommand("llama-bench", tuple(argv), notes=tuple(notes))


# ------------------------------------------------------------------------------------------------
# Ollama
# ------------------------------------------------------------------------------------------------


def ollama_command(rig: Rig, spec: ModelSpec, plan: Plan) -> ExportedCommand:
    """``ollama serve`` with the environment the plan needs, a Modelfile, and create/run steps."""
    p = loading_plan(rig, spec, plan)
    s = p.settings
    used = [rig.gpus[i].index for i, d in enumerate(p.devices) if d.layers > 0 or d.has_output]
    env: list[tuple[str, str]] = []
    notes: list[str] = []
    if rig.gpus and used and len(used) < rig.n_gpus:
        env.append(("CUDA_VISIBLE_DEVICES", ",".join(str(i) for i in used)))
    if len(used) > 1:
        env.append(("OLLAMA_SCHED_SPREAD", "1"))
        notes.append(
            "Ollama puts a model on one GPU when it fits there; OLLAMA_SCHED_SPREAD=1 spreads it over every "
            "visible GPU as planned"
        )
    if s.flash_attn:
        env.append(("OLLAMA_FLASH_ATTENTION", "1"))
    if s.type_k != "f16" or s.type_v != "f16":
        kv = s.type_k if s.type_k == s.type_v else s.type_v
        env.append(("OLLAMA_KV_CACHE_TYPE", kv))
        if s.type_k != s.type_v:
            notes.append(f"Ollama has one KV cache type for K and V: {kv} is used for both")
    name = f"{spec.id}-{(spec.file_type or 'gguf').lower()}".replace("_", "-").lower()
    modelfile = "\n".join(
        [
            f"FROM {model_path(spec)}",
            f"PARAMETER num_ctx {s.ctx}",
            f"PARAMETER num_gpu {_ngl(plan, rig)}",
        ]
    )
    notes += list(_path_note(spec))
    if rig.n_gpus > 1:
        notes.append(
            "Ollama cannot take a tensor split, a split mode or a main GPU: it divides the layers by its own "
            "memory estimate, which may differ from this plan's"
        )
    if s.n_seq_max > 1:
        notes.append(f"set OLLAMA_NUM_PARALLEL={s.n_seq_max} for {s.n_seq_max} parallel sequences")
    return ExportedCommand(
        "ollama",
        ("ollama", "serve"),
        env=tuple(env),
        files=(("Modelfile", modelfile + "\n"),),
        notes=(*_local_only(rig, "Ollama"), *notes),
        steps=(("ollama", "create", name, "-f", "Modelfile"), ("ollama", "run", name)),
    )


# ------------------------------------------------------------------------------------------------
# vLLM
# ------------------------------------------------------------------------------------------------


def _hf_repo(spec: ModelSpec) -> str | None:
    if spec.source != "catalog":
        return None
    from app.core.catalog import find_entry

    try:
        return find_entry(spec.id).hf_repo
    except Exception:  # a spec named like no catalog entry
        return None


def vllm_command(rig: Rig, spec: ModelSpec, plan: Plan) -> ExportedCommand:
    """``vllm serve`` over the plan's GPUs: tensor parallel when they are equal, pipeline parallel
    (with the plan's layer counts) when their VRAM differs."""
    p = loading_plan(rig, spec, plan)
    s = p.settings
    used = [i for i, d in enumerate(p.devices) if d.layers > 0 or d.has_output]
    repo = _hf_repo(spec)
    model = repo or model_path(spec)
    argv = ["vllm", "serve", model]
    env: list[tuple[str, str]] = []
    notes: list[str] = []
    refused: str | None = None
    if spec.paths:
        # No quote in the placeholder: shlex would print it as '<…'"'"'…>' on the command line.
        argv += ["--tokenizer", "<Hugging Face repository of the base model>"]
        notes.append(
            "vLLM reads GGUF experimentally (single files only, via its GGUF plugin in new releases)"
        )
        if len(spec.paths) > 1:
            notes.append("merge the split GGUF into one file first (llama-gguf-split --merge)")
    elif repo:
        notes.append(
            f"vLLM serves the Hugging Face weights of {repo} (BF16), not the {spec.file_type} GGUF planned here: "
            "they take more memory; pick an AWQ/GPTQ/FP8 repository of the model for a quantized load"
        )
    if rig.gpus and used and len(used) < rig.n_gpus:
        env.append(("CUDA_VISIBLE_DEVICES", ",".join(str(rig.gpus[i].index) for i in used)))
    n = len(used)
    if n > 1:
        vram = [rig.gpus[i].vram_total_mib for i in used]
        equal = max(vram) - min(vram) <= EQUAL_VRAM_TOLERANCE * max(vram)
        heads = spec.n_head[0] if spec.n_head else 0
        kv_heads = spec.n_head_kv[0] if spec.n_head_kv else 0
        if not equal:
            refused = (
                "vLLM tensor parallelism refused: it gives every GPU the same share, so with unequal VRAM "
                f"({', '.join(f'{v / 1024:.0f}' for v in vram)} GiB) the smallest card limits the others; "
                "pipeline parallelism with the plan's layer counts instead"
            )
        elif heads and heads % n:
            refused = (
                f"vLLM tensor parallelism refused: {heads} attention heads do not divide over {n} GPUs; "
                "pipeline parallelism instead"
            )
        if refused is None:
            argv += ["--tensor-parallel-size", str(n)]
            if kv_heads and kv_heads < n:
                notes.append(f"{kv_heads} KV heads over {n} GPUs: vLLM replicates KV heads")
        else:
            argv += ["--pipeline-parallel-size", str(n)]
            layers = [p.devices[i].layers for i in used]
            if sum(layers) == spec.n_layer and len(set(layers)) > 1:
                env.append(("VLLM_PP_LAYER_PARTITION", ",".join(str(x) for x in layers)))
    argv += ["--max-model-len", str(s.ctx)]
    if s.type_k != "f16" or s.type_v != "f16":
        notes.append(
            "vLLM has no q8_0/q4_0 KV cache: --kv-cache-dtype fp8 is its closest (about q8_0's size)"
        )
    if any(rig.gpus[i].vendor not in (VENDOR_NVIDIA, VENDOR_AMD) for i in used):
        notes.append("vLLM runs on NVIDIA (CUDA) and AMD (ROCm) GPUs")
    if p.host.layers > 0:
        notes.append("vLLM keeps every layer on the GPUs: this plan's CPU layers have no vLLM equivalent")
    return ExportedCommand(
        "vllm", tuple(argv), env=tuple(env), notes=(*_local_only(rig, "vLLM"), *notes), refused=refused
    )


# ------------------------------------------------------------------------------------------------
# ExLlamaV2
# ------------------------------------------------------------------------------------------------


def exllamav2_command(rig: Rig, spec: ModelSpec, plan: Plan) -> ExportedCommand:
    """ExLlamaV2's test_inference.py with ``-gs``: the plan's weights per GPU in GB (GiB, as ExLlamaV2
    counts them), rounded up to a tenth."""
    p = loading_plan(rig, spec, plan)
    s = p.settings
    notes = [
        f"ExLlamaV2 loads EXL2 (or GPTQ) quantizations, not GGUF: use an EXL2 folder of {spec.name}; -gs is "
        "the weights budget per GPU from this plan's GGUF sizes, scale it for an EXL2 of another bit rate",
    ]
    argv = ["python", "test_inference.py", "-m", f"<EXL2 folder of {spec.name}>"]
    used = [d for d in p.devices if d.layers > 0 or d.has_output]
    refused = None
    if not rig.gpus:
        refused = "ExLlamaV2 needs a GPU: it has no CPU backend"
    elif p.host.layers > 0:
        refused = "ExLlamaV2 keeps every layer on the GPUs: this plan leaves layers on the CPU"
    if len(used) > 1 or (rig.n_gpus > 1 and used):
        gs = [
            (-(-int(d.weights_mib * 10) // 1024)) / 10 if (d.layers or d.has_output) else 0.0
            for d in p.devices
        ]
        argv += ["-gs", ",".join(_num(v) for v in gs)]
    argv += ["-l", str(s.ctx), "-p", "Once upon a time"]
    if spec.architecture in TENSOR_SPLIT_UNSUPPORTED_ARCHS and spec.uses_mla:
        notes.append("ExLlamaV2 does not support this architecture (MLA)")
    return ExportedCommand(
        "exllamav2", tuple(argv), notes=(*_local_only(rig, "ExLlamaV2"), *notes), refused=refused
    )


def export_commands(rig: Rig, spec: ModelSpec, plan: Plan) -> dict[str, ExportedCommand]:
    """Every tool's command for ``plan``, keyed by :data:`TOOLS` names."""
    return {
        "llama-server": llama_server_command(rig, spec, plan),
        "llama-bench": llama_bench_command(rig, spec, plan),
        "ollama": ollama_command(rig, spec, plan),
        "vllm": vllm_command(rig, spec, plan),
        "exllamav2": exllamav2_command(rig, spec, plan),
    }


__all__ = [
    "TOOLS",
    "ExportedCommand",
    "exllamav2_command",
    "export_commands",
    "llama_bench_command",
    "llama_server_command",
    "model_path",
    "ollama_command",
    "vllm_command",
    "with_article",
]
