"""Fixtures: a fake hub on 127.0.0.1 serving the test models, and an environment pointed at it.

The environment is what a user sets: ``HF_ENDPOINT`` (the fake hub), ``HF_HUB_CACHE`` and
``RIGFIT_CACHE_DIR`` (temp folders), short timeouts, ``HF_HUB_DISABLE_XET=1`` (no local server speaks
Xet), and no token or offline switch from the machine running the tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub.fake_hub import FakeHub
from tests.hub.models import populate


@pytest.fixture(scope="session")
def hub_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic models, written once per test session."""
    folder = tmp_path_factory.mktemp("hub-models")
    populate(FakeHub(), folder)
    return folder


@pytest.fixture
def fake_hub(hub_models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    hub = FakeHub().start()
    try:
        populate(hub, hub_models_dir)
        for name in (
            "HF_TOKEN",
            "HUGGING_FACE_HUB_TOKEN",
            "HF_HUB_OFFLINE",
            "TRANSFORMERS_OFFLINE",
            "HF_HOME",
        ):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        monkeypatch.setenv("RIGFIT_CACHE_DIR", str(tmp_path / "rigfit-cache"))
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "5")
        monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "5")
        monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        yield hub
    finally:
        hub.stop()
