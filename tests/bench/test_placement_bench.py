"""How fast placement is: plan() per call, the per-model profile, and a context sweep.

Prints absolute times (for docs/placement.md) and asserts only a ratio measured in the same run:
sweeping 512 contexts in one vectorised call costs far less than 512 plan() calls.
"""

from __future__ import annotations

import time
from dataclasses import replace

from app.core.memory import PROFILE_CACHE, profile
from app.core.placement import context_sweep, plan
from app.core.rig import Gpu, Host, Rig
from app.core.settings import Settings
from tests.bench.harness import Bench
from tests.synth_gguf import SynthShape, shape_model_spec

SPEC_70B = shape_model_spec(
    SynthShape(
        n_layer=80, n_embd=8192, n_ff=28672, n_head=64, n_head_kv=8, n_vocab=128256, weight_type="Q4_0"
    ),
    model_id="llama-70b-shape",
)
RIG = Rig(
    gpus=(
        Gpu(index=0, name="RTX 3090", vram_total_mib=24576.0),
        Gpu(index=1, name="RTX 3090", vram_total_mib=24576.0),
    ),
    host=Host(ram_available_mib=65536.0),
)


def _per_call_us(fn: object, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()  # type: ignore[operator]
    return (time.perf_counter() - start) / n * 1e6


def test_plan_and_sweep_speed(bench: Bench) -> None:
    PROFILE_CACHE.clear()
    start = time.perf_counter()
    prof = profile(SPEC_70B)
    profile_ms = (time.perf_counter() - start) * 1e3
    rows = []
    for name, settings in [
        ("layer 2 GPUs", Settings(ctx=8192)),
        ("layer, offload search", Settings(ctx=32768)),
        ("partial offload", Settings(ctx=8192, n_gpu_layers=40)),
        ("tensor split", Settings(ctx=8192, split_mode="tensor")),
    ]:
        rows.append((name, _per_call_us(lambda s=settings: plan(RIG, SPEC_70B, s), 20)))
    print(f"\nprofile (80 layers, 723 tensors): {profile_ms:.2f} ms")
    for name, us in rows:
        print(f"plan() {name}: {us:.0f} us per call")
    contexts = list(range(256, 131072 + 1, 256))

    def measure() -> tuple[float, str]:
        sweep_us = _per_call_us(lambda: context_sweep(RIG, prof, Settings(), contexts), 20)
        plans_us = _per_call_us(
            lambda: [plan(RIG, SPEC_70B, replace(Settings(), ctx=c)) for c in contexts[:32]], 2
        )
        plans_us *= len(contexts) / 32
        return plans_us / sweep_us, (
            f"context_sweep of {len(contexts)} contexts: {sweep_us:.0f} us; "
            f"{len(contexts)} plan() calls: {plans_us:.0f} us"
        )

    bench.ratio("context sweep speed-up over plan() per context", measure, at_least=20)
