"""Benchmark harness behind the ``bench`` fixture: goals are ratios measured side by side, a miss is measured again.

A benchmark hands :meth:`Bench.ratio` a function that measures both sides once and returns the ratio
and a line describing the figures. A ratio that misses its goal is measured again, up to ``ATTEMPTS``
times, because on a shared machine another program's burst only ever makes one side look worse. The
best attempt is recorded. A miss after every attempt is reported, not raised: every attempt's figures
are printed, and the session ends with a table of every ratio, its goal and ``ok`` or ``MISS``
(``make bench``). ``--bench-strict`` (``make bench STRICT=1``) turns a miss into a failure, for a quiet
machine where a miss means a regression. Errors inside a benchmark (an exception, a wrong result)
always fail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

ATTEMPTS = 3


@dataclass(frozen=True)
class BenchResult:
    name: str
    ratio: float
    goal: str
    met: bool
    attempts: int
    detail: str


RESULTS = pytest.StashKey[list[BenchResult]]()


class Bench:
    """Records ratio goals for one benchmark test (the ``bench`` fixture)."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config

    def ratio(
        self,
        name: str,
        measure: Callable[[], tuple[float, str]],
        *,
        at_least: float | None = None,
        below: float | None = None,
        attempts: int = ATTEMPTS,
    ) -> float:
        """Measure ``ratio, detail = measure()`` until the goal is met or ``attempts`` are used.

        The goal is ``ratio >= at_least`` or ``ratio < below``. Returns the best ratio seen.
        """
        if (at_least is None) == (below is None):
            raise ValueError("give exactly one of at_least and below")
        goal = f">= {at_least:g}" if at_least is not None else f"< {below:g}"

        def met(r: float) -> bool:
            return r >= at_least if at_least is not None else r < below  # type: ignore[operator]

        def better(a: float, b: float) -> bool:
            return a > b if at_least is not None else a < b

        best: tuple[float, str] | None = None
        used = 0
        for used in range(1, attempts + 1):
            r, detail = measure()
            ok = met(r)
            print(
                f"\n[{name}] attempt {used}: {detail}\n[{name}] ratio {r:.4g} (goal {goal}): {'ok' if ok else 'miss'}"
            )
            if best is None or better(r, best[0]):
                best = (r, detail)
            if ok:
                break
        assert best is not None
        result = BenchResult(name, best[0], goal, met(best[0]), used, best[1])
        self._config.stash.setdefault(RESULTS, []).append(result)
        if not result.met and self._config.getoption("--bench-strict"):
            pytest.fail(f"{name}: ratio {result.ratio:.4g} misses its goal {goal} after {used} attempts")
        return result.ratio
