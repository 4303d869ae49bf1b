"""``rigfit search``: GGUF repositories on the Hugging Face hub, with their files, quants and sizes.

    rigfit search TEXT|OWNER/REPO [--limit N] [--json]

The catalog's own GGUF repositories for a model that TEXT names come first (with their source: the
model maker's repository or a well-known quantizer), then the hub's search results, most downloaded
first. Each repository is listed with one API call (sizes included); a repository that cannot be
listed (gated, gone) says why and the others are still shown.

``--json`` prints ``query`` and ``repos``: per repository ``repo``, ``source``, ``downloads``,
``gated``, ``commit``, ``models`` (``name``, ``quant``, ``size_bytes``, ``parts``, ``files``, ``ref``),
``projectors`` and ``error``.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from app.core.errors import RigfitError
from app.hub.catalog import catalog_gguf_repos
from app.hub.config import hub_config
from app.hub.errors import HubUnreachable, format_bytes
from app.hub.listing import RepoListing, list_repo, search_repos

EXIT_OK = 0
_LISTERS = 4


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "search",
        help="find GGUF models on the Hugging Face hub: repositories, files, quants, sizes",
        description="Search the Hugging Face hub for GGUF repositories (the catalog's own first) and list "
        "each one's models with their quant and exact size.",
    )
    p.add_argument("text", metavar="TEXT|OWNER/REPO", help="part of a model name, or a repository id")
    p.add_argument("--limit", type=int, default=8, metavar="N", help="repositories to list (default 8)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(command="search")


def _listing_json(listing: RepoListing) -> dict[str, Any]:
    return {
        "commit": listing.commit,
        "gated": listing.gated,
        "models": [
            {
                "name": m.name,
                "quant": m.quant,
                "size_bytes": m.size_bytes,
                "parts": m.n_parts,
                "complete": m.complete,
                "files": [f.path for f in m.files],
                "ref": m.ref,
            }
            for m in listing.models
        ],
        "projectors": [{"file": f.path, "size_bytes": f.size_bytes} for f in listing.projectors],
    }


def search(text: str, limit: int) -> dict[str, Any]:
    """What ``rigfit search`` prints, as data."""
    if limit < 1:
        raise RigfitError(f"--limit must be at least 1 (got {limit})")
    cfg = hub_config()
    query = text.strip()
    repos: list[dict[str, Any]] = []
    if "/" in query and " " not in query:  # a repository id: list just that one
        repos.append({"repo": query.removeprefix("hf:"), "source": "asked for", "downloads": None})
    else:
        for repo, source in catalog_gguf_repos(query):
            repos.append({"repo": repo, "source": source, "downloads": None})
        seen = {r["repo"].lower() for r in repos}
        for hit in search_repos(query, limit, config=cfg):
            if hit.repo.lower() not in seen:
                repos.append({"repo": hit.repo, "source": "hub search", "downloads": hit.downloads})
                seen.add(hit.repo.lower())
    repos = repos[:limit]

    def fill(entry: dict[str, Any]) -> dict[str, Any]:
        try:
            entry.update(_listing_json(list_repo(entry["repo"], config=cfg)), error=None)
        except HubUnreachable:
            raise
        except RigfitError as exc:
            entry.update(commit=None, gated=None, models=[], projectors=[], error=str(exc))
        return entry

    with ThreadPoolExecutor(max_workers=_LISTERS) as pool:
        filled = list(pool.map(fill, repos))
    if len(filled) == 1 and filled[0]["source"] == "asked for" and filled[0]["error"]:
        raise RigfitError(filled[0]["error"])
    return {"query": query, "repos": filled}


def format_search(data: dict[str, Any]) -> str:
    """The text report: a block per repository, a line per model."""
    if not data["repos"]:
        return f"No GGUF repository on the hub matches '{data['query']}'."
    lines: list[str] = []
    for r in data["repos"]:
        extra = [r["source"]]
        if r.get("downloads") is not None:
            extra.append(f"{r['downloads']:,} downloads")
        if r.get("gated"):
            extra.append("gated: needs HF_TOKEN and the licence accepted")
        lines.append(f"{r['repo']}  ({', '.join(extra)})")
        if r["error"]:
            lines.append(f"  {r['error']}")
        elif not r["models"]:
            lines.append("  no GGUF model in this repository")
        for m in r["models"]:
            parts = f"  ({m['parts']} parts)" if m["parts"] > 1 else ""
            missing = "  INCOMPLETE" if not m["complete"] else ""
            lines.append(
                f"  {m['quant'] or '?':<9} {format_bytes(m['size_bytes']):>10}  {m['files'][0]}{parts}{missing}"
            )
        lines.append("")
    lines.append(
        "Plan one with: rigfit plan --model hf:REPO/FILE.gguf; download it with: rigfit pull REPO --file FILE.gguf"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    data = search(args.text, args.limit)
    if args.json:
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_search(data))
    return EXIT_OK
