"""The ``bench`` fixture: ratio goals measured side by side, a miss measured again (tests/bench/harness.py)."""

from __future__ import annotations

import pytest

from tests.bench.harness import Bench


@pytest.fixture
def bench(request: pytest.FixtureRequest) -> Bench:
    return Bench(request.config)


# The fake hub (tests/hub/fake_hub.py) for the remote-header benchmark.
from tests.hub.conftest import fake_hub, hub_models_dir  # noqa: E402

__all__ = ["bench", "fake_hub", "hub_models_dir"]
