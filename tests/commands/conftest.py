"""The fake hub's fixtures for the CLI tests of ``rigfit search``, ``rigfit pull`` and ``plan --model hf:``."""

from tests.hub.conftest import fake_hub, hub_models_dir

__all__ = ["fake_hub", "hub_models_dir"]
