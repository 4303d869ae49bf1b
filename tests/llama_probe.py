"""Load a GGUF with llama-cpp-python in a fresh process and read the buffer sizes llama.cpp logs.

Test helper (the runner's ``app.runner.logparse`` is the production parser; this one is kept
minimal so the memory tests do not depend on the runner). One subprocess per load: llama.cpp's C
logging goes to the child's stderr, and a fresh process keeps memory clean.

    result = probe_load(path, n_ctx=2048, flash_attn=True, type_k="q8_0")
    result.mib("CPU", "KV")          # 45.0
    result.mib("CPU", "compute")     # the 4-decimal figure from the context's destructor when logged
    result.layer_devices             # {0: "CPU", 1: "CPU", ...} from the debug lines, output slot included
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_GGML_KV_TYPES = {"f16": 1, "q8_0": 8, "q4_0": 2, "f32": 0}

# load_tensors:   CPU_Mapped model buffer size =    92.10 MiB
_BUFFER_RE = re.compile(r"^\S+:\s+(\S+)\s+(model|KV|output|compute) buffer size =\s+([0-9.]+) MiB")
# ~llama_context:        CPU compute buffer size is  99.3770 MiB, matches expectation of  99.3770 MiB
_PRECISE_COMPUTE_RE = re.compile(r"^~llama_context:\s+(\S+) compute buffer size is\s+([0-9.]+) MiB")
# load_tensors: layer   0 assigned to device CPU, is_swa = 0
_LAYER_RE = re.compile(r"layer\s+(\d+) assigned to device (\S+?),")

_CHILD = r"""
import json, sys
args = json.loads(sys.argv[1])
path = args.pop("model_path")
nvml = args.pop("measure_nvml", False)
def used():
    import pynvml
    pynvml.nvmlInit()
    return [pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(i)).used for i in range(pynvml.nvmlDeviceGetCount())]
if nvml:
    before = used()
import llama_cpp
llm = llama_cpp.Llama(model_path=path, verbose=True, **args)
if nvml:
    after = used()
    print("NVML_USED_DELTA_MIB " + json.dumps([(a - b) / 1048576 for a, b in zip(after, before)]), file=sys.stderr, flush=True)
del llm
"""
_NVML_RE = re.compile(r"^NVML_USED_DELTA_MIB (.*)$")


@dataclass(frozen=True)
class ProbeResult:
    """Buffer sizes in MiB keyed by (buffer name, kind), kind one of model/KV/output/compute."""

    buffers: dict[tuple[str, str], float]
    layer_devices: dict[int, str] = field(default_factory=dict)
    log: str = ""
    nvml_delta_mib: tuple[float, ...] = ()  # per GPU, used VRAM after the load minus before

    def mib(self, name: str, kind: str) -> float:
        """Size of one logged buffer; 0.0 when llama.cpp logged no such buffer."""
        return self.buffers.get((name, kind), 0.0)

    def total_mib(self, kind: str) -> float:
        return sum(v for (_, k), v in self.buffers.items() if k == kind)


def parse_log(text: str) -> ProbeResult:
    """Buffer sizes and layer devices from a llama.cpp load log."""
    buffers: dict[tuple[str, str], float] = {}
    precise: dict[tuple[str, str], float] = {}
    layers: dict[int, str] = {}
    nvml: tuple[float, ...] = ()
    for line in text.splitlines():
        if m := _NVML_RE.match(line):
            nvml = tuple(float(v) for v in json.loads(m.group(1)))
        elif m := _BUFFER_RE.match(line):
            key = (m.group(1), m.group(2))
            # Model and KV buffers of one type can appear more than once (several files, several caches).
            buffers[key] = buffers.get(key, 0.0) + float(m.group(3))
        elif m := _PRECISE_COMPUTE_RE.match(line):
            precise[(m.group(1), "compute")] = float(m.group(2))
        elif (m := _LAYER_RE.search(line)) and "load_tensors" in line:
            layers[int(m.group(1))] = m.group(2)
    buffers.update(precise)
    return ProbeResult(buffers=buffers, layer_devices=layers, log=text, nvml_delta_mib=nvml)


def probe_load(
    model_path: str | Path,
    *,
    n_ctx: int = 2048,
    n_batch: int = 512,
    n_ubatch: int = 512,
    flash_attn: bool = True,
    type_k: str = "f16",
    type_v: str = "f16",
    n_gpu_layers: int = 0,
    timeout_s: float = 300.0,
    **extra: object,
) -> ProbeResult:
    """Load ``model_path`` in a child process with these settings and parse what llama.cpp logged."""
    args: dict[str, object] = {
        "model_path": str(model_path),
        "n_ctx": n_ctx,
        "n_batch": n_batch,
        "n_ubatch": n_ubatch,
        "flash_attn": flash_attn,
        "type_k": _GGML_KV_TYPES[type_k],
        "type_v": _GGML_KV_TYPES[type_v],
        "n_gpu_layers": n_gpu_layers,
        **extra,
    }
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    text = out.stdout + out.stderr
    if out.returncode != 0:
        tail = "\n".join(text.splitlines()[-20:])
        raise RuntimeError(f"llama.cpp load failed (exit {out.returncode}):\n{tail}")
    return parse_log(text)
