"""How fast the fit table recomputes: the whole catalog x every quant, under 10 ms.

After a one-time warm-up (model specs, per-spec memory profiles and the per-model matrices of
app.core.fit), each run recomputes the full table for a rig and context it has not seen in that
combination: a new layer split, new statuses, the offload search, the largest context and the
speed of every cell. Side by side, in the same run, the same cells planned one by one with plan()
(plus largest_fitting_ctx and estimate_speed, which the table also gives) on a sample of cells,
scaled to the table's size.

The assertion is on the median CPU time of the process (time.process_time): the development
machine's two cores are shared with other test runs, and a neighbour's burst makes the wall clock
of a 5 ms computation jump by several times; the CPU time counts only this process's work. The
wall-clock median is printed beside it.

    .venv/bin/python -m pytest tests/bench/test_fit_bench.py -s
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace

from app.core.catalog import catalog_spec
from app.core.fit import fit_table, warm_up
from app.core.perf import estimate_speed
from app.core.placement import largest_fitting_ctx, plan
from app.core.settings import Settings
from app.hardware.catalog import parse_rig_expression
from tests.bench.harness import Bench

BUDGET_MS = 10.0
RIGS = (
    "2x RTX 3090",
    "RTX 3060",
    "RTX 3090 + RTX 3060",
    "4x RTX 4090",
    "RTX 4090 + RTX 3060@x4",
    "2x RTX 3090 nvlink + RTX 3060",
    "RTX 5090",
    "8x H100 nvlink",
)
CONTEXTS = (8192, 4096, 32768, 16384, 12000, 131072)


def _time(fn: object) -> tuple[float, float]:
    wall = time.perf_counter()
    cpu = time.process_time()
    fn()  # type: ignore[operator]
    return (time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3


def test_full_fit_table_recomputes_in_under_10_ms(bench: Bench) -> None:
    start = time.perf_counter()
    warm_up()
    warm_s = time.perf_counter() - start
    rigs = [parse_rig_expression(r) for r in RIGS]
    fit_table(rigs[0], 8192)  # first call: imports, batch matrices
    print(f"\nwarm-up (profiles and matrices of the catalog): {warm_s:.2f} s")
    figures: dict[str, float] = {}

    def measure() -> tuple[float, str]:
        median_cpu, text = _measure(rigs)
        figures["median_cpu"] = median_cpu
        return median_cpu / BUDGET_MS, text

    bench.ratio("fit table CPU time / 10 ms budget", measure, below=1.0)

    def speedup() -> tuple[float, str]:
        plan_cpu_table, cells = _per_cell_cpu_ms(rigs[0])
        median_cpu = figures["median_cpu"]
        return plan_cpu_table / median_cpu, (
            f"per-cell plan() + estimate_speed + largest_fitting_ctx for {cells} cells: {plan_cpu_table:.0f} ms "
            f"CPU against {median_cpu:.2f} ms for the vectorised table"
        )

    bench.ratio("fit table speed-up over per-cell plan()", speedup, at_least=1.0)


def _measure(rigs: list) -> tuple[float, str]:  # type: ignore[type-arg]

    walls: list[float] = []
    cpus: list[float] = []
    cells = 0
    for i, rig in enumerate(rigs):
        for j in range(2):
            ctx = CONTEXTS[(i + j) % len(CONTEXTS)]
            table = None

            def run(rig=rig, ctx=ctx) -> None:  # type: ignore[no-untyped-def]
                nonlocal table
                table = fit_table(rig, ctx)

            wall, cpu = _time(run)
            walls.append(wall)
            cpus.append(cpu)
            assert table is not None
            cells = len(table.rows)
    median_cpu = statistics.median(cpus)
    median_wall = statistics.median(walls)
    return median_cpu, (
        f"fit table, {cells} cells, {len(cpus)} recomputes over {len(RIGS)} rigs x contexts: median CPU time "
        f"{median_cpu:.2f} ms, median wall time {median_wall:.2f} ms (min {min(walls):.2f}, max {max(walls):.2f})"
    )


def _per_cell_cpu_ms(rig) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """The same kind of cells through plan() one at a time (a sample, scaled to the table)."""
    cells = len(fit_table(rig, 8192).rows)
    sample = [(r.model, r.quant) for r in fit_table(rig, 8192).rows[::10]]
    settings = Settings(ctx=8192)

    def per_cell() -> None:
        for model, quant in sample:
            spec = catalog_spec(model, quant)
            p = plan(rig, spec, settings)
            estimate_speed(rig, spec, p)
            largest_fitting_ctx(rig, spec, replace(settings, n_gpu_layers=-1), limit=spec.n_ctx_train or None)

    per_cell()
    _, plan_cpu = _time(per_cell)
    return plan_cpu / len(sample) * cells, cells
