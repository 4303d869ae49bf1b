"""What went wrong with the hub, in the user's words: one line each, with what to do about it.

``huggingface_hub`` and its HTTP client raise many kinds of errors; :func:`hub_error` turns each into
one :class:`HubError` whose message names the repository (and file) and the remedy. The CLI prints it
as one line with exit code 2; the window shows it where the action was asked for.
"""

from __future__ import annotations

import errno

import httpx2
from huggingface_hub import errors as hf_errors

from app.core.errors import RigfitError


class HubError(RigfitError):
    """The hub could not answer what was asked (network, access, missing repository or file)."""


class HubUnreachable(HubError):
    """No answer: no network, an unreachable endpoint, a timeout, or offline mode."""


class HubAccessDenied(HubError):
    """401/403: a private or gated repository; a token or an accepted licence is needed."""


class HubNotFound(HubError):
    """No such repository, revision or file on the hub."""


class DownloadCancelled(HubError):
    """The user stopped a download (the part downloaded is kept for a resume)."""


class ChecksumMismatch(HubError):
    """The downloaded bytes are not the file the hub lists (its LFS SHA-256); the file was deleted."""


class NotEnoughDisk(HubError):
    """The download does not fit on the disk (before it starts, or when the disk filled up)."""


def offline_error() -> HubUnreachable:
    return HubUnreachable(
        "HF_HUB_OFFLINE is set, so Rigfit does not contact the Hugging Face hub "
        "(unset it to search, plan remote files or download)"
    )


def format_bytes(n: int | float) -> str:
    """``1536`` → ``1.5 KiB``: sizes in messages and lists."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover (the loop returns)


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    return str(headers.get("X-Error-Code", "")) if headers is not None else ""


def access_message(endpoint: str, repo: str, status: int) -> str:
    """The 401/403 message: private, gated or missing; what to set or accept."""
    return (
        f"the hub refused access to {repo} ({status}): it is gated or private (or does not exist); "
        f"set HF_TOKEN to a token that can read it, or accept its licence at {endpoint}/{repo}"
    )


def hub_error(
    exc: BaseException, *, endpoint: str, repo: str, filename: str | None = None, timeout_s: float = 0
) -> HubError:
    """One :class:`HubError` for anything a hub call raised (already-translated errors pass through)."""
    if isinstance(exc, HubError):
        return exc
    what = f"{repo}/{filename}" if filename else repo
    if isinstance(exc, hf_errors.OfflineModeIsEnabled):
        return offline_error()
    if isinstance(exc, httpx2.TimeoutException):
        wait = f" within {timeout_s:g} s" if timeout_s else ""
        return HubUnreachable(
            f"the Hugging Face hub at {endpoint} did not answer{wait} (asking for {what}); "
            "check the network, or set HF_ENDPOINT to a mirror"
        )
    if isinstance(exc, httpx2.ConnectError | httpx2.NetworkError | httpx2.RemoteProtocolError):
        reason = str(exc).strip() or type(exc).__name__
        return HubUnreachable(
            f"cannot reach the Hugging Face hub at {endpoint} ({reason}); "
            "check the network, or set HF_ENDPOINT to a mirror"
        )
    status = _status(exc)
    code = _error_code(exc)
    if status in (401, 403) or isinstance(exc, hf_errors.GatedRepoError):
        return HubAccessDenied(access_message(endpoint, repo, status or 403))
    if isinstance(exc, hf_errors.RevisionNotFoundError) or code == "RevisionNotFound":
        return HubNotFound(f"{repo} has no such revision on the hub ({endpoint})")
    if isinstance(exc, hf_errors.RemoteEntryNotFoundError) or code == "EntryNotFound":
        return HubNotFound(
            f"{repo} has no file {filename!r} on the hub" if filename else f"not found: {what}"
        )
    if isinstance(exc, hf_errors.RepositoryNotFoundError) or code == "RepoNotFound" or status == 404:
        if filename and code != "RepoNotFound" and not isinstance(exc, hf_errors.RepositoryNotFoundError):
            return HubNotFound(f"{repo} has no file {filename!r} on the hub")
        return HubNotFound(f"there is no repository {repo!r} on the Hugging Face hub ({endpoint})")
    if status is not None:
        return HubError(f"the Hugging Face hub answered {status} for {what}; try again later")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return NotEnoughDisk(f"the disk is full ({what})")
    return HubError(f"talking to the Hugging Face hub about {what} failed: {type(exc).__name__}: {exc}")
