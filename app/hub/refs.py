"""Names the user types for the hub: repository ids and ``hf:`` model references.

``hf:OWNER/REPO/FILE.gguf`` (any part of a split model names the model), ``hf:OWNER/REPO`` with a
quant (``--quant Q4_K_M``, or ``hf:OWNER/REPO:Q4_K_M`` as llama.cpp's ``-hf`` writes it); ``@REVISION``
after the repository picks a branch, tag or commit. Parsing needs no network and no
``huggingface_hub``, so commands can tell a hub reference from a file cheaply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.core.errors import RigfitError

HF_PREFIX = "hf:"
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_repo_id(repo: str) -> str:
    """``owner/name`` as the hub spells repository ids; anything else is refused with a hint."""
    text = repo.strip().strip("/")
    if not _REPO_RE.match(text) or ".." in text or text.endswith((".git", ".")):
        raise RigfitError(f"'{repo}' is not a Hugging Face repository id: write it as OWNER/NAME")
    return text


def normalize_quant_name(quant: str) -> str:
    """``q4-k-m`` → ``Q4_K_M``: how quants are compared with what file names say."""
    return re.sub(r"[.\-\s]", "_", quant.strip()).upper()


@dataclass(frozen=True)
class HubRef:
    """A parsed ``hf:`` reference."""

    repo: str
    path: str | None = None  # a .gguf file in the repository
    revision: str | None = None
    quant: str | None = None  # from ``hf:OWNER/REPO:QUANT``

    @property
    def text(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        tail = f"/{self.path}" if self.path else (f":{self.quant}" if self.quant else "")
        return f"{HF_PREFIX}{self.repo}{rev}{tail}"


def is_hub_ref(text: str) -> bool:
    """True for ``hf:…`` model references."""
    return text.strip().lower().startswith(HF_PREFIX)


def parse_hub_ref(text: str) -> HubRef:
    """``hf:OWNER/REPO[@REV][/PATH.gguf | :QUANT]`` → :class:`HubRef`; bad spelling gets a hint."""
    body = text.strip()[len(HF_PREFIX) :].lstrip("/")
    usage = "write hf:OWNER/REPO/FILE.gguf, or hf:OWNER/REPO with --quant Q4_K_M"
    segments = body.split("/")
    if len(segments) < 2 or not segments[0] or not segments[1]:
        raise RigfitError(f"'{text.strip()}' is not a hub model reference: {usage}")
    owner, name, rest = segments[0], segments[1], "/".join(segments[2:])
    quant = None
    if not rest and ":" in name:
        name, quant = name.split(":", 1)
    revision = None
    if "@" in name:
        name, revision = name.split("@", 1)
        if not revision:
            raise RigfitError(f"'{text.strip()}': nothing after '@' (a branch, tag or commit)")
    repo = check_repo_id(f"{owner}/{name}")
    if rest and not rest.lower().endswith(".gguf"):
        raise RigfitError(f"'{text.strip()}': {rest!r} is not a .gguf file; {usage}")
    return HubRef(repo, rest or None, revision, normalize_quant_name(quant) if quant else None)
