"""Benchmark: llama.cpp's quantization rules for every catalog model at every file type.

The fit table asks for all of them on every change, so the warm path (a cache hit per spec and
mix) must be cheap. Prints the first (cold) pass, which computes every tensor type, and the warm
pass measured right after it; asserts only the ratio between the two.
"""

from __future__ import annotations

import time
from dataclasses import replace

from app.core.catalog import catalog_spec, load_model_catalog
from app.core.quant import COMMON_FILE_TYPES
from app.core.quantizer import apply_file_type
from tests.bench.harness import Bench


def test_all_catalog_models_at_all_file_types_cold_then_warm(bench: Bench) -> None:
    bench.ratio("quant rules, cold / warm pass", _measure, at_least=20)


def _measure() -> tuple[float, str]:
    # Fresh spec objects, so a repeated attempt starts cold too (the rules are cached per spec object).
    bases = [replace(catalog_spec(e.id, "F16")) for e in load_model_catalog()]
    n_tensors = sum(len(s.tensors) for s in bases)
    start = time.perf_counter()
    for spec in bases:
        for ftype in COMMON_FILE_TYPES:
            apply_file_type(spec, ftype)
    cold = time.perf_counter() - start
    warm_runs = []
    for _ in range(5):
        start = time.perf_counter()
        for spec in bases:
            for ftype in COMMON_FILE_TYPES:
                apply_file_type(spec, ftype)
        warm_runs.append(time.perf_counter() - start)
    warm = min(warm_runs)
    combos = len(bases) * len(COMMON_FILE_TYPES)
    return cold / warm, (
        f"{len(bases)} models ({n_tensors} tensors) x {len(COMMON_FILE_TYPES)} file types = {combos} specs: "
        f"cold {cold * 1e3:.0f} ms, warm {warm * 1e3:.2f} ms ({warm / combos * 1e6:.1f} us per spec), "
        f"{cold / warm:.0f}x"
    )
