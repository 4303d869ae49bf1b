"""The ``bench`` fixture: ratio goals measured side by side, a miss measured again (tests/bench/harness.py)."""

from __future__ import annotations

import pytest

from tests.bench.harness import Bench


@pytest.fixture
def bench(request: pytest.FixtureRequest) -> Bench:
    return Bench(request.config)
