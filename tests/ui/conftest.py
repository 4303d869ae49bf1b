"""The fake hub's fixtures for the window's "Get this model" tests."""

from tests.hub.conftest import fake_hub, hub_models_dir

__all__ = ["fake_hub", "hub_models_dir"]
