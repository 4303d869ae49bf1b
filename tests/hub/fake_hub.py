"""A local stand-in for the Hugging Face hub: the API calls and downloads Rigfit makes, and their faults.

Two ``http.server`` servers on 127.0.0.1 (ports chosen by the OS): the hub (``/api/models``,
``/api/models/OWNER/NAME[/revision/REV]?blobs=true``, ``/OWNER/NAME/resolve/REV/PATH``) and a "CDN" on
another port that the hub redirects LFS files to, as huggingface.co redirects to its CDN (a different
origin, so huggingface_hub treats it as one: no token sent there, the file's metadata read from the
redirect). Both answer HEAD and GET with ``Range`` (206 and ``Content-Range``), keep connections alive
(HTTP/1.1), and log every request with the bytes sent.

Faults, set on :class:`FakeHub` by a test:

* ``cut_after[sha256] = [n, ...]``: the next GETs of that blob send ``n`` bytes, then drop the connection;
* ``advertised_sha256[(repo, path)]``: the API lists a wrong SHA-256 for a file;
* ``Repo.deny = 401 | 403`` (every request about the repository), ``Repo.token`` (files need
  ``Authorization: Bearer TOKEN``; without it 401 GatedRepo, as the hub answers for a gated model);
* ``stall_blobs`` / ``stall_api``: answer after headers (blobs) or before anything (API) only when
  ``release`` is set (or the server stops).

Run it by hand for the window or the CLI (prints the endpoint; Ctrl+C stops it)::

    python -m tests.hub.fake_hub --demo [--port 8765]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

_CHUNK = 256 << 10


@dataclass
class Hosted:
    """A file of a repository."""

    path: str
    file: Path
    size: int
    sha256: str
    blob_id: str
    lfs: bool = True


@dataclass
class Repo:
    id: str
    commit: str
    files: dict[str, Hosted] = field(default_factory=dict)
    gated: bool = False
    deny: int | None = None  # 401/403 for everything about this repository
    token: str | None = None  # files need this bearer token
    downloads: int = 0


@dataclass
class Logged:
    role: str  # "hub" or "cdn"
    method: str
    path: str
    range: str | None
    status: int
    bytes_sent: int = 0
    authorized: bool = False  # an Authorization header came with the request


_HASHES: dict[tuple[str, int, int], tuple[str, str]] = {}


def _hashes(path: Path) -> tuple[str, str]:
    """SHA-256 and git blob id (sha1 of "blob SIZE\\0" + content) of a file, cached by path, size and mtime."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        sha256 = hashlib.sha256()
        sha1 = hashlib.sha1(f"blob {st.st_size}\0".encode())
        with path.open("rb") as f:
            while block := f.read(8 << 20):
                sha256.update(block)
                sha1.update(block)
        _HASHES[key] = (sha256.hexdigest(), sha1.hexdigest())
    return _HASHES[key]


class FakeHub:
    """The hub and its CDN; see the module's docstring."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.log: list[Logged] = []
        self.cut_after: dict[str, list[int]] = {}
        self.advertised_sha256: dict[tuple[str, str], str] = {}
        self.stall_blobs: set[str] = set()
        self.stall_api = False
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._servers: list[ThreadingHTTPServer] = []
        self._threads: list[threading.Thread] = []
        self.endpoint = ""
        self.cdn = ""

    # -- content ---------------------------------------------------------------------------------
    def add_repo(
        self, repo_id: str, files: dict[str, Path], *, lfs: bool = True, commit: str | None = None, **kw: Any
    ) -> Repo:
        commit = commit or hashlib.sha1(repo_id.encode()).hexdigest()
        repo = Repo(repo_id, commit, **kw)
        for path, file in files.items():
            sha256, blob_id = _hashes(Path(file))
            repo.files[path] = Hosted(path, Path(file), Path(file).stat().st_size, sha256, blob_id, lfs)
        self.repos[repo_id] = repo
        return repo

    def blob(self, repo_id: str, path: str) -> Hosted:
        return self.repos[repo_id].files[path]

    # -- running ---------------------------------------------------------------------------------
    def start(self) -> FakeHub:
        for role in ("hub", "cdn"):
            server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, role))
            # Handler threads are joined when the server closes: a test leaves no thread behind.
            server.daemon_threads = False
            server.block_on_close = True
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        self.endpoint = f"http://127.0.0.1:{self._servers[0].server_address[1]}"
        self.cdn = f"http://127.0.0.1:{self._servers[1].server_address[1]}"
        return self

    def stop(self) -> None:
        self.release.set()
        # huggingface_hub's shared client keeps connections to this server alive; closing them ends
        # the handler threads that wait on them.
        from huggingface_hub import close_session

        close_session()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def record(self, entry: Logged) -> None:
        with self._lock:
            self.log.append(entry)

    def requests_for(self, repo_id: str, path: str) -> list[Logged]:
        """Every request about one file: its resolve URL and its blob on the CDN."""
        hosted = self.repos[repo_id].files[path]
        resolve = f"/{repo_id}/resolve/"
        return [
            e
            for e in self.log
            if (e.role == "hub" and e.path.startswith(resolve) and unquote(e.path).endswith("/" + path))
            or (e.role == "cdn" and e.path.startswith(f"/blob/{hosted.sha256}"))
        ]

    def bytes_sent_for(self, repo_id: str, path: str) -> int:
        return sum(e.bytes_sent for e in self.requests_for(repo_id, path))


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``bytes=a-`` → (start, end inclusive); None for no or an unusable range."""
    if not header or not header.startswith("bytes="):
        return None
    first, _, last = header[len("bytes=") :].split(",")[0].partition("-")
    if not first:
        return None
    start = int(first)
    end = int(last) if last else size - 1
    return start, min(end, size - 1)


def _handler(hub: FakeHub, role: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 20  # an idle kept-alive connection (a client in another process) ends after this

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:
            self._route(head=True)

        def do_GET(self) -> None:
            self._route(head=False)

        # -- plumbing ----------------------------------------------------------------------------
        def _send(
            self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False
        ) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body and not head:
                self.wfile.write(body)
            hub.record(
                Logged(
                    role,
                    self.command,
                    self.path,
                    self.headers.get("Range"),
                    status,
                    0 if head else len(body),
                    "Authorization" in self.headers,
                )
            )

        def _json(self, data: object, head: bool = False) -> None:
            self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json"}, head)

        def _error(
            self,
            status: int,
            code: str,
            message: str,
            head: bool = False,
            extra: dict[str, str] | None = None,
        ) -> None:
            headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}
            headers.update(extra or {})
            self._send(status, json.dumps({"error": message}).encode(), headers, head)

        def _route(self, head: bool) -> None:
            url = urlsplit(self.path)
            path = unquote(url.path)
            try:
                if role == "cdn":
                    if path.startswith("/blob/"):
                        return self._blob(path[len("/blob/") :], head)
                    return self._error(404, "NotFound", "no such blob", head)
                if path == "/api/models":
                    return self._search(parse_qs(url.query), head)
                if path.startswith("/api/models/"):
                    return self._info(path[len("/api/models/") :], parse_qs(url.query), head)
                parts = path.lstrip("/").split("/")
                if len(parts) >= 5 and parts[2] == "resolve":
                    return self._resolve("/".join(parts[:2]), parts[3], "/".join(parts[4:]), head)
                self._error(404, "NotFound", "not a route of this hub", head)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _repo(self, repo_id: str, head: bool, files: bool) -> Repo | None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._error(404, "RepoNotFound", "Repository not found", head)
                return None
            if repo.deny is not None:
                code = "GatedRepo" if repo.deny == 403 else "RepoNotFound"
                self._error(repo.deny, code, "Access to this repository is restricted", head)
                return None
            if (
                files
                and repo.token is not None
                and self.headers.get("Authorization") != f"Bearer {repo.token}"
            ):
                self._error(
                    401,
                    "GatedRepo",
                    f"Access to model {repo_id} is restricted and you are not in the authorized list.",
                    head,
                )
                return None
            return repo

        def _stall_api(self) -> None:
            if hub.stall_api:
                hub.release.wait(60)

        # -- API ---------------------------------------------------------------------------------
        def _search(self, query: dict[str, list[str]], head: bool) -> None:
            self._stall_api()
            text = (query.get("search") or [""])[0].lower()
            limit = int((query.get("limit") or ["20"])[0])
            terms = text.replace("-", " ").split()
            found = [
                r
                for r in hub.repos.values()
                if all(t in r.id.lower() for t in terms) and any(p.endswith(".gguf") for p in r.files)
            ]
            found.sort(key=lambda r: -r.downloads)
            self._json(
                [
                    {
                        "id": r.id,
                        "downloads": r.downloads,
                        "likes": 0,
                        "gated": r.gated,
                        "private": False,
                        "tags": ["gguf"],
                    }
                    for r in found[:limit]
                ],
                head,
            )

        def _info(self, rest: str, query: dict[str, list[str]], head: bool) -> None:
            self._stall_api()
            bits = rest.split("/")
            repo_id = "/".join(bits[:2])
            revision = bits[3] if len(bits) >= 4 and bits[2] == "revision" else "main"
            repo = self._repo(repo_id, head, files=False)
            if repo is None:
                return
            if revision not in ("main", repo.commit):
                return self._error(404, "RevisionNotFound", "Invalid rev id", head)
            blobs = (query.get("blobs") or ["false"])[0] == "true"
            siblings = []
            for h in repo.files.values():
                entry: dict[str, Any] = {"rfilename": h.path}
                if blobs:
                    entry["size"] = h.size
                    entry["blobId"] = h.blob_id
                    if h.lfs:
                        sha = hub.advertised_sha256.get((repo.id, h.path), h.sha256)
                        entry["lfs"] = {"sha256": sha, "size": h.size, "pointerSize": 134}
                siblings.append(entry)
            self._json(
                {
                    "id": repo.id,
                    "modelId": repo.id,
                    "sha": repo.commit,
                    "private": False,
                    "gated": repo.gated or False,
                    "downloads": repo.downloads,
                    "tags": ["gguf"],
                    "siblings": siblings,
                },
                head,
            )

        # -- files -------------------------------------------------------------------------------
        def _resolve(self, repo_id: str, revision: str, path: str, head: bool) -> None:
            repo = self._repo(repo_id, head, files=True)
            if repo is None:
                return
            if revision not in ("main", repo.commit):
                return self._error(404, "RevisionNotFound", "Invalid rev id", head)
            hosted = repo.files.get(path)
            commit = {"X-Repo-Commit": repo.commit}
            if hosted is None:
                return self._error(404, "EntryNotFound", "Entry not found", head, commit)
            if hosted.lfs:
                sha = hub.advertised_sha256.get((repo.id, path), hosted.sha256)
                headers = {
                    **commit,
                    "Location": f"{hub.cdn}/blob/{hosted.sha256}?name={quote(path)}",
                    "X-Linked-Etag": f'"{sha}"',
                    "X-Linked-Size": str(hosted.size),
                    "ETag": f'"{hosted.blob_id}"',
                }
                return self._send(302, b"", headers, head)
            self._serve(hosted, head, {**commit, "ETag": f'"{hosted.blob_id}"'})

        def _blob(self, name: str, head: bool) -> None:
            sha = name.split("?")[0]
            for repo in hub.repos.values():
                for hosted in repo.files.values():
                    if hosted.sha256 == sha:
                        return self._serve(hosted, head, {"ETag": f'"{sha}"'})
            self._error(404, "NotFound", "no such blob", head)

        def _serve(self, hosted: Hosted, head: bool, headers: dict[str, str]) -> None:
            size = hosted.size
            rng = _parse_range(self.headers.get("Range"), size)
            if rng is not None and rng[0] >= size:
                return self._send(416, b"", {"Content-Range": f"bytes */{size}"}, head)
            start, end = rng if rng is not None else (0, size - 1)
            length = end - start + 1
            self.send_response(206 if rng is not None else 200)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(length))
            if rng is not None:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            entry = Logged(
                role,
                self.command,
                self.path,
                self.headers.get("Range"),
                206 if rng else 200,
                0,
                "Authorization" in self.headers,
            )
            hub.record(entry)
            if head:
                return
            cut = None
            with hub._lock:
                cuts = hub.cut_after.get(hosted.sha256)
                if role == "cdn" and cuts:
                    cut = cuts.pop(0)
            # A pending cut comes first, so "cut, then stall on the reconnection" can be staged.
            if cut is None and role == "cdn" and hosted.sha256 in hub.stall_blobs:
                self.wfile.flush()
                hub.release.wait(60)
                self.close_connection = True
                return
            limit = length if cut is None else min(cut, length)
            with hosted.file.open("rb") as f:
                f.seek(start)
                left = limit
                while left > 0:
                    block = f.read(min(_CHUNK, left))
                    if not block:
                        break
                    self.wfile.write(block)
                    entry.bytes_sent += len(block)
                    left -= len(block)
            if cut is not None and cut < length:
                self.wfile.flush()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

    return Handler


def main() -> None:  # pragma: no cover (a manual helper)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--demo", action="store_true", help="serve the demo model and the synthetic test models"
    )
    parser.add_argument(
        "--dir", default=None, help="where to write the synthetic models (default: a temp folder)"
    )
    args = parser.parse_args()
    import tempfile

    from tests.hub.models import populate

    folder = Path(args.dir or tempfile.mkdtemp(prefix="rigfit-fake-hub-"))
    hub = FakeHub().start()
    populate(hub, folder)
    print(f"HF_ENDPOINT={hub.endpoint}", flush=True)
    for repo in hub.repos.values():
        print(f"  {repo.id}: {', '.join(repo.files)}", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        hub.stop()


if __name__ == "__main__":
    main()
