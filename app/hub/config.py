"""Where the hub is, where files go, and how long to wait: read from the environment when used.

``huggingface_hub`` reads its variables once, at import; Rigfit reads them on every call so a window
that stays open, and tests that point ``HF_ENDPOINT`` at a local server, see the current values. The
names and defaults are ``huggingface_hub``'s own, so a user's settings for ``hf download`` apply here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_TIMEOUT_S = 10.0  # huggingface_hub's DEFAULT_ETAG_TIMEOUT and DEFAULT_DOWNLOAD_TIMEOUT
_TRUE = {"1", "on", "yes", "true"}


@dataclass(frozen=True)
class HubConfig:
    """What every hub call needs to know."""

    endpoint: str  # without a trailing slash
    offline: bool  # HF_HUB_OFFLINE: never contact the hub
    cache_dir: Path  # the Hugging Face hub cache (models--org--name/ folders)
    header_cache_dir: Path  # Rigfit's cache of remote GGUF headers
    timeout_s: float  # connecting, and waiting for an API answer
    stall_timeout_s: float  # a download that receives nothing for this long stops

    def repo_url(self, repo: str) -> str:
        """The repository's page on the hub (where a licence is accepted)."""
        return f"{self.endpoint}/{repo}"


def _float_env(env: Mapping[str, str], name: str, default: float) -> float:
    try:
        value = float(env.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


def hf_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """The Hugging Face hub cache, in huggingface_hub's order: HF_HUB_CACHE, HF_HOME/hub, XDG, ~/.cache."""
    e = os.environ if env is None else env
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if e.get(name, "").strip():
            return Path(e[name]).expanduser()
    if e.get("HF_HOME", "").strip():
        return Path(e["HF_HOME"]).expanduser() / "hub"
    xdg = e.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def rigfit_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Rigfit's own cache folder: RIGFIT_CACHE_DIR, else the platform's user cache folder."""
    e = os.environ if env is None else env
    override = e.get("RIGFIT_CACHE_DIR", "").strip()
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("rigfit", appauthor=False))


def hub_config(env: Mapping[str, str] | None = None) -> HubConfig:
    """The configuration from ``env`` (default: this process's environment, read now)."""
    e = os.environ if env is None else env
    endpoint = (e.get("HF_ENDPOINT", "").strip() or DEFAULT_ENDPOINT).rstrip("/")
    offline = any(
        e.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )
    return HubConfig(
        endpoint=endpoint,
        offline=offline,
        cache_dir=hf_cache_dir(e),
        header_cache_dir=rigfit_cache_dir(e) / "gguf-headers",
        timeout_s=_float_env(e, "HF_HUB_ETAG_TIMEOUT", DEFAULT_TIMEOUT_S),
        stall_timeout_s=_float_env(e, "HF_HUB_DOWNLOAD_TIMEOUT", DEFAULT_TIMEOUT_S),
    )
