"""HTTP to the hub through huggingface_hub's own client, always with a timeout.

``huggingface_hub`` shares one ``httpx2`` client (proxies, the offline switch, its user agent), and
builds the headers (``HF_TOKEN`` or the saved token). Its client has no timeout of its own, and some
calls (``list_models``) take none, so every request Rigfit makes passes one: a hub that does not
answer costs ``HF_HUB_ETAG_TIMEOUT`` seconds, never a hang.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx2
from huggingface_hub import get_session, hf_raise_for_status
from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

from app.hub.config import HubConfig
from app.hub.errors import hub_error, offline_error

LIBRARY = "rigfit"


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("rigfit")
    except metadata.PackageNotFoundError:  # running from a source tree that was not installed
        return "unknown"


def hub_headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    """User agent and ``authorization`` (HF_TOKEN, or the token saved by ``hf auth login``)."""
    headers = build_hf_headers(token=None, library_name=LIBRARY, library_version=_version())
    if extra:
        headers.update(extra)
    return headers


def timeout(config: HubConfig, read_s: float | None = None) -> httpx2.Timeout:
    return httpx2.Timeout(config.timeout_s, read=read_s if read_s is not None else config.timeout_s)


def same_host(url: str, endpoint: str) -> bool:
    """True when ``url`` is on the hub's own host (a CDN location gets no token, as huggingface_hub does)."""
    return urlsplit(url).netloc == urlsplit(endpoint).netloc


def api_get_json(
    config: HubConfig, path: str, params: dict[str, Any], *, repo: str, filename: str | None = None
) -> Any:
    """``GET {endpoint}{path}`` and its JSON; failures become :class:`~app.hub.errors.HubError`."""
    if config.offline:
        raise offline_error()
    try:
        r = get_session().get(
            f"{config.endpoint}{path}", params=params, headers=hub_headers(), timeout=timeout(config)
        )
        hf_raise_for_status(r)
        return r.json()
    except ValueError as exc:  # not JSON: not a hub
        raise hub_error(
            RuntimeError(f"{config.endpoint} did not answer like a Hugging Face hub ({exc})"),
            endpoint=config.endpoint,
            repo=repo,
        ) from None
    except Exception as exc:
        raise hub_error(
            exc, endpoint=config.endpoint, repo=repo, filename=filename, timeout_s=config.timeout_s
        ) from None
