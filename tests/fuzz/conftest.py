"""Fuzzing profiles: a few dozen cases per test in ``make test``, the campaign on demand.

    RIGFIT_FUZZ=campaign nice -n 10 .venv/bin/python -m pytest tests/fuzz -p no:cacheprovider -q

runs the campaign (docs/robustness.md): ``RIGFIT_FUZZ_EXAMPLES`` cases per test (default 20,000),
each under a deadline of a few seconds (``RIGFIT_FUZZ_DEADLINE_S``). In both, a case whose own peak
memory is more than 300 MiB fails (tests/fuzz/harness.py measures each case on Linux).
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.fuzz.harness import CASES

CAMPAIGN = os.environ.get("RIGFIT_FUZZ") == "campaign"
_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

# make test: a modest number of cases, no deadline (a busy machine must not fail a correctness test).
settings.register_profile("rigfit-quick", max_examples=30, deadline=None, suppress_health_check=_HEALTH)
settings.register_profile(
    "rigfit-campaign",
    max_examples=int(os.environ.get("RIGFIT_FUZZ_EXAMPLES", "20000")),
    deadline=timedelta(seconds=float(os.environ.get("RIGFIT_FUZZ_DEADLINE_S", "5"))),
    suppress_health_check=_HEALTH,
    database=None,
)
PROFILE = settings.get_profile("rigfit-campaign" if CAMPAIGN else "rigfit-quick")


def scaled(n: int, deadline_s: float | None = None) -> settings:
    """The profile with ``n`` examples in make test (campaign: its own count, scaled by n / 30).

    ``deadline_s`` replaces the campaign's deadline (subprocess cases start a Python each).
    """
    if CAMPAIGN:
        deadline = PROFILE.deadline if deadline_s is None else timedelta(seconds=deadline_s)
        return settings(PROFILE, max_examples=max(1, PROFILE.max_examples * n // 30), deadline=deadline)
    return settings(PROFILE, max_examples=n)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not CASES:
        return
    terminalreporter.section("fuzz cases")
    tests = sorted({k.split(":", 1)[0] for k in CASES})
    for test in tests:
        outcomes = {k.split(":", 1)[1]: v for k, v in CASES.items() if k.startswith(test + ":")}
        total = sum(outcomes.values())
        detail = ", ".join(f"{v} {k}" for k, v in sorted(outcomes.items(), key=lambda kv: -kv[1]))
        terminalreporter.write_line(f"{test}: {total} cases ({detail})")
    grand = sum(CASES.values())
    from tests.fuzz.harness import MEMORY, peak_rss_mib

    terminalreporter.write_line(
        f"total: {grand} cases; the largest case took {MEMORY['largest_case_mib']:.0f} MiB at its peak; "
        f"the process peaked at {peak_rss_mib():.0f} MiB"
    )
    out = os.environ.get("RIGFIT_FUZZ_REPORT")
    if out:
        from tests.fuzz.harness import FINDINGS

        report = {
            "cases": dict(CASES),
            "fit_vs_plan_examples": FINDINGS,
            "largest_case_mib": MEMORY["largest_case_mib"],
            "peak_rss_mib": peak_rss_mib(),
        }
        Path(out).write_text(json.dumps(report, indent=1, sort_keys=True, default=str))
