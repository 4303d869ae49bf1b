"""The planner against real CUDA loads (GPU machine only): per-buffer sizes and NVML's VRAM increase.

Run on the GPU machine (see ../shared/DEVICE.md):

    source .device/build.sh && python3 -m pytest tests/gpu/test_placement_cuda.py -q -m gpu
    # or, to keep every measurement as JSON lines (docs/placement.md lists them):
    source .device/build.sh && python3 tests/gpu/test_placement_cuda.py $OUT/cuda_buffers.jsonl

Each case writes a synthetic llama GGUF (tests/synth_gguf.py) and loads it once in a fresh process.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.core.placement import plan  # noqa: E402
from app.core.plan import Plan  # noqa: E402
from app.core.rig import Gpu, Rig  # noqa: E402
from app.core.settings import Settings  # noqa: E402
from tests.llama_probe import ProbeResult, probe_load  # noqa: E402
from tests.synth_gguf import SynthShape, synth_model_spec, write_llama_gguf  # noqa: E402

SPLIT_MODE_IDS = {"none": 0, "layer": 1, "row": 2, "tensor": 3}

# llama-3-8B dimensions, 8 layers (weights per layer as in the real model).
L8B = SynthShape(
    n_layer=8, n_embd=4096, n_ff=14336, n_head=32, n_head_kv=8, n_vocab=128256, weight_type="Q4_0"
)
# Row length 2304 (not a multiple of 512: CUDA pads quantized rows), tied embeddings.
TIED = SynthShape(
    n_layer=6, n_embd=2304, n_ff=9216, n_head=8, n_head_kv=4, n_vocab=32000, weight_type="Q4_0", tied=True
)
F16 = SynthShape(n_layer=4, n_embd=2048, n_ff=8192, n_head=16, n_head_kv=16, n_vocab=49152, weight_type="F16")
Q8 = SynthShape(
    n_layer=4, n_embd=5120, n_ff=13824, n_head=40, n_head_kv=40, n_vocab=32000, weight_type="Q8_0"
)
# llama-3-70B layer dimensions, 4 layers: partial offload, where op_offload copies host weights to the GPU.
L70 = SynthShape(
    n_layer=4, n_embd=8192, n_ff=28672, n_head=64, n_head_kv=8, n_vocab=32000, weight_type="Q4_0"
)
L70F = replace(L70, n_ff=14336)


@dataclass(frozen=True)
class Case:
    name: str
    shape: SynthShape
    settings: Settings
    expect_error: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


CASES: tuple[Case, ...] = (
    Case("8b-fa-f16", L8B, Settings(ctx=8192)),
    Case("8b-fa-q8", L8B, Settings(ctx=8192, type_k="q8_0", type_v="q8_0")),
    Case("8b-fa-q4", L8B, Settings(ctx=8192, type_k="q4_0", type_v="q4_0")),
    Case("8b-nofa", L8B, Settings(ctx=8192, flash_attn=False)),
    Case("8b-ngl5", L8B, Settings(ctx=8192, n_gpu_layers=5)),
    Case("8b-ngl8", L8B, Settings(ctx=8192, n_gpu_layers=8)),
    Case("8b-ngl0", L8B, Settings(ctx=8192, n_gpu_layers=0)),
    Case("8b-32k", L8B, Settings(ctx=32768)),
    Case("8b-ub2048", L8B, Settings(ctx=8192, n_batch=2048, n_ubatch=2048)),
    Case("8b-nokqv", L8B, Settings(ctx=8192, offload_kqv=False)),
    Case("8b-none", L8B, Settings(ctx=8192, split_mode="none")),
    Case("8b-tensor", L8B, Settings(ctx=8192, split_mode="tensor")),
    Case("8b-row", L8B, Settings(ctx=8192, split_mode="row"), expect_error="split buffers"),
    Case("tied-2304", TIED, Settings(ctx=4096)),
    Case("f16-fa", F16, Settings(ctx=2048)),
    Case("f16-nofa", F16, Settings(ctx=2048, flash_attn=False)),
    Case("q8-13b-q8kv", Q8, Settings(ctx=4096, type_k="q8_0", type_v="q8_0")),
    Case("70b-full", L70, Settings(ctx=8192)),
    Case("70b-ngl4", L70, Settings(ctx=8192, n_gpu_layers=4)),
    Case("70b-ngl2", L70, Settings(ctx=8192, n_gpu_layers=2)),
    Case("70b-ngl1", L70, Settings(ctx=8192, n_gpu_layers=1)),
    Case("70b-ngl0", L70, Settings(ctx=8192, n_gpu_layers=0)),
    Case("70b-ngl2-32k", L70, Settings(ctx=32768, n_gpu_layers=2)),
    Case("70b-ngl2-nofa", L70, Settings(ctx=8192, n_gpu_layers=2, flash_attn=False)),
    Case("70b-ngl2-q8kv", L70, Settings(ctx=8192, n_gpu_layers=2, type_k="q8_0", type_v="q8_0")),
    Case("70b-ngl2-nooffload", L70, Settings(ctx=8192, n_gpu_layers=2, op_offload=False)),
    Case("70b-ub128", L70, Settings(ctx=8192, n_batch=128, n_ubatch=128)),
    Case("off-ff14k-8k", L70F, Settings(ctx=8192, n_gpu_layers=2)),
    Case("off-ff14k-2k", L70F, Settings(ctx=2048, n_gpu_layers=2)),
    Case("off-ff14k-16k", L70F, Settings(ctx=16384, n_gpu_layers=2)),
    Case("off-ff14k-8k-q8", L70F, Settings(ctx=8192, n_gpu_layers=2, type_k="q8_0", type_v="q8_0")),
    Case("off-ff28k-2k", L70, Settings(ctx=2048, n_gpu_layers=2)),
    Case("off-ff28k-16k", L70, Settings(ctx=16384, n_gpu_layers=2)),
    Case("off-ff28k-32k-q8", L70, Settings(ctx=32768, n_gpu_layers=2, type_k="q8_0", type_v="q8_0")),
    Case("off-ff28k-2k-nofa", L70, Settings(ctx=2048, n_gpu_layers=2, flash_attn=False)),
    Case("off-ff28k-8k-ub256", L70, Settings(ctx=8192, n_gpu_layers=2, n_batch=256, n_ubatch=256)),
    Case("off-ff28k-8k-kvq8k", L70, Settings(ctx=8192, n_gpu_layers=2, type_k="q8_0")),
)


def llama_kwargs(s: Settings) -> dict[str, object]:
    """Llama(...) keyword arguments for these settings (what the runner passes)."""
    kw: dict[str, object] = {
        "n_ctx": s.ctx,
        "n_batch": s.n_batch,
        "n_ubatch": s.n_ubatch,
        "flash_attn": s.flash_attn,
        "type_k": s.type_k,
        "type_v": s.type_v,
        "n_gpu_layers": s.n_gpu_layers,
        "split_mode": SPLIT_MODE_IDS[s.split_mode],
        "main_gpu": s.main_gpu,
        "offload_kqv": s.offload_kqv,
        "op_offload": s.op_offload,
    }
    if s.tensor_split is not None:
        kw["tensor_split"] = list(s.tensor_split)
    return kw


def h200_rig(n: int = 1) -> Rig:
    return Rig(gpus=tuple(Gpu(index=i, name="NVIDIA H200", vram_total_mib=143771.0) for i in range(n)))


def measure(case: Case, folder: Path) -> tuple[ProbeResult | None, str | None, Plan, Path]:
    # One file per shape, named by all of it: L70 and L70F differ only in n_ff, and a name without it
    # loaded the 28k-FFN file for the 14k-FFN cases (H200, 2026-12-05: four off-ff14k failures).
    shape = case.shape
    digest = hashlib.sha1(repr(asdict(shape)).encode()).hexdigest()[:10]
    path = folder / f"{shape.n_layer}x{shape.n_embd}-{shape.weight_type}-{digest}.gguf"
    if not path.exists():
        written = write_llama_gguf(path, case.shape)
    else:
        from tests.synth_gguf import SynthModel, tensor_layout

        written = SynthModel(path=path, shape=case.shape, tensors=tensor_layout(case.shape), data_offset=0)
    predicted = plan(h200_rig(), synth_model_spec(written), case.settings)
    try:
        result = probe_load(path, measure_nvml=True, **llama_kwargs(case.settings))  # type: ignore[arg-type]
    except RuntimeError as exc:
        return None, str(exc), predicted, path
    return result, None, predicted, path


def run_cases(out: Path, prefix: str = "") -> None:
    """Measure every case (whose name starts with ``prefix``) and append one JSON line each to ``out``."""
    with tempfile.TemporaryDirectory() as tmp, out.open("a", encoding="utf-8") as fh:
        for case in CASES:
            if not case.name.startswith(prefix):
                continue
            result, error, predicted, _ = measure(case, Path(tmp))
            row = {
                "case": case.name,
                "shape": asdict(case.shape),
                "settings": asdict(case.settings),
                "error": error,
                "measured": {f"{k[0]}/{k[1]}": v for k, v in (result.buffers.items() if result else [])},
                "nvml_delta_mib": list(result.nvml_delta_mib) if result else [],
                "predicted": {f"{b.name}/{b.kind}": round(b.mib, 3) for b in predicted.buffers},
                "predicted_total_mib": [round(d.total_mib, 1) for d in predicted.devices],
            }
            if result is not None:
                row["log_tail"] = [
                    line
                    for line in result.log.splitlines()
                    if "buffer size" in line
                    or "offload" in line
                    or "sched" in line
                    or "split" in line.lower()
                ][-40:]
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            print(
                json.dumps({k: row[k] for k in ("case", "error", "measured", "predicted", "nvml_delta_mib")})
            )


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_planner_matches_cuda_load(case: Case, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.getbasetemp() / "cuda-models"
    folder.mkdir(exist_ok=True)
    result, error, predicted, _ = measure(case, folder)
    if case.expect_error:
        assert error is not None and case.expect_error in error
        return
    assert result is not None, error
    for b in predicted.buffers:
        measured = result.mib(b.name, b.kind)
        if b.kind in ("model", "KV"):
            assert measured == pytest.approx(b.mib, rel=0.01, abs=0.01), (b, measured)
        elif b.kind == "compute":
            assert abs(measured - b.mib) <= max(0.10 * measured, 32.0), (b, measured)


if __name__ == "__main__":
    run_cases(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("cuda_buffers.jsonl"), *sys.argv[2:3])
