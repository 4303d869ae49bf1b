"""The fit table: every catalog model at every quantization on one rig, fast enough to redo on every change.

For a rig and a context (default 8192) each row gives the total memory, the status (``fits``,
``tight``, ``offload``, ``no`` — the same answer :func:`app.core.placement.plan` gives for that cell),
the largest context that fits with every layer on the GPUs (up to the model's trained context) and
the predicted decode speed (:mod:`app.core.perf`). The best quantization of a model follows the
user's preference (:func:`~app.core.fit.quality.pick_best`): ``balanced`` (the default: the fastest
of the quants as good as the highest-quality one that fits, so Q8_0 rather than F16), ``quality`` or
``speed``; quants that fit on the GPUs come before those that need CPU offload.

This is a second implementation of the planner, vectorised for speed; it shares the planner's rules
through :mod:`app.core.layout` and ``tests/core/test_fit.py`` checks that it agrees with ``plan()``
cell by cell. The modules:

* :mod:`~app.core.fit.groups`: a one-time warm-up builds, per model, the per-quant layer arrays
  (weights per layer on a GPU and on the host, bytes and FLOPs one token reads) as cumulative sums,
  from the cached :func:`~app.core.memory.profile` of each spec, and stacks all models' rows into
  one batch;
* :mod:`~app.core.fit.assign`: llama.cpp's layer rule for every possible ``n_gpu_layers`` of a layer
  count at once;
* :mod:`~app.core.fit.evaluator`: the KV cache from per-layer row sums and the compute buffers from
  :func:`~app.core.compute.compute_bytes_cells`, memoised by what they depend on (the layers' widest
  dimensions, output, pipeline copies, op_offload) and computed over all candidate contexts at once;
* :mod:`~app.core.fit.table_run`: every row's GPU weights with one gather for the whole table; the
  status exactly as ``plan()`` decides it, including its binary search for the largest
  ``n_gpu_layers`` that fits, for all overflowing rows at once; the largest context per row with one
  ``searchsorted`` per GPU (memory grows with the context, so the fitting contexts are a prefix); the
  decode speed with :mod:`app.core.perf`'s functions on the same arrays;
* :mod:`~app.core.fit.table`: :func:`fit_table` and :func:`warm_up`.

Split modes ``layer`` and ``none`` take that path; ``row`` and ``tensor`` are planned cell by cell
with ``plan()`` (correct, but about a hundred times slower). ``make bench`` measures the speed
(tests/bench/test_fit_bench.py).
"""

from __future__ import annotations

from app.core.fit.groups import catalog_groups
from app.core.fit.quality import (
    DEFAULT_PREFERENCE,
    PREFERENCES,
    QUALITY_ORDER,
    BestPick,
    QuantOption,
    check_preference,
    pick_best,
    quality_rank,
)
from app.core.fit.results import FitRow, FitTable, Unreadable
from app.core.fit.table import DEFAULT_FIT_CTX, fit_table, plan_for_row, warm_up

__all__ = [
    "DEFAULT_FIT_CTX",
    "DEFAULT_PREFERENCE",
    "PREFERENCES",
    "QUALITY_ORDER",
    "BestPick",
    "FitRow",
    "FitTable",
    "QuantOption",
    "Unreadable",
    "catalog_groups",
    "check_preference",
    "fit_table",
    "pick_best",
    "plan_for_row",
    "quality_rank",
    "warm_up",
]
