"""Downloads the window runs: their states, progress and outcome, off the GUI thread.

:class:`DownloadManager` runs each download (:func:`app.hub.download.download_model`) on a pool of
its own (two at a time, so a long download never holds up the fit table or a GGUF read), and reports
every change as a :class:`DownloadEntry`, a frozen value the views show. Progress comes from the pool
thread through a queued signal; cancel sets an event the download checks at least once a second.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, replace

from PySide6 import QtCore

from app.hub.download import DownloadProgress, DownloadResult, download_model
from app.hub.listing import RemoteModel, RepoListing
from app.ui.tasks import TaskRunner

WAITING, DOWNLOADING, DONE, FAILED, CANCELLED = "waiting", "downloading", "done", "failed", "cancelled"
STATE_LABELS = {
    WAITING: "Waiting",
    DOWNLOADING: "Downloading",
    DONE: "Downloaded",
    FAILED: "Failed",
    CANCELLED: "Stopped (resumable)",
}


@dataclass(frozen=True)
class DownloadEntry:
    """One download as the list shows it."""

    id: int
    repo: str
    file: str  # the first part's path in the repository
    quant: str | None
    parts: int
    size_bytes: int
    state: str = WAITING
    done_bytes: int = 0
    speed_bps: float = 0.0
    eta_s: float | None = None
    message: str = ""  # why it failed, or what happened
    path: str = ""  # the first part's path in the HF cache, once done

    @property
    def active(self) -> bool:
        return self.state in (WAITING, DOWNLOADING)

    @property
    def title(self) -> str:
        return f"{self.repo}/{self.file}"


class _Progress(QtCore.QObject):
    """Lives on the GUI thread; the pool thread emits, so the slot runs on the GUI thread (queued)."""

    reported = QtCore.Signal(int, object)  # entry id, DownloadProgress


class DownloadManager(QtCore.QObject):
    """Starts, cancels and retries downloads; ``changed`` carries every new :class:`DownloadEntry`."""

    changed = QtCore.Signal(object)  # DownloadEntry
    finished = QtCore.Signal(object)  # DownloadEntry, state DONE, path set

    def __init__(self, parent: QtCore.QObject | None = None, max_parallel: int = 2) -> None:
        super().__init__(parent)
        pool = QtCore.QThreadPool(self)
        pool.setObjectName("downloads")
        pool.setMaxThreadCount(max_parallel)
        self.tasks = TaskRunner(pool, self)
        self._ids = itertools.count(1)
        self._entries: dict[int, DownloadEntry] = {}
        self._jobs: dict[int, tuple[RepoListing, RemoteModel]] = {}
        self._cancels: dict[int, threading.Event] = {}
        self._progress = _Progress(self)
        self._progress.reported.connect(self._on_progress)

    # -- reading ---------------------------------------------------------------------------------
    def entries(self) -> list[DownloadEntry]:
        return list(self._entries.values())

    def entry(self, entry_id: int) -> DownloadEntry:
        return self._entries[entry_id]

    def active_count(self) -> int:
        return sum(1 for e in self._entries.values() if e.active)

    # -- acting ----------------------------------------------------------------------------------
    def start(self, listing: RepoListing, model: RemoteModel) -> int:
        """Queue a download; a model already downloading is not started twice (its id is returned)."""
        for e in self._entries.values():
            if e.active and e.repo == listing.repo and e.file == model.first.path:
                return e.id
        entry_id = next(self._ids)
        entry = DownloadEntry(
            entry_id, listing.repo, model.first.path, model.quant, model.n_parts, model.size_bytes
        )
        self._entries[entry_id] = entry
        self._jobs[entry_id] = (listing, model)
        self.changed.emit(entry)
        self._run(entry_id)
        return entry_id

    def cancel(self, entry_id: int) -> None:
        """Stop a download; what arrived is kept, :meth:`retry` resumes it."""
        event = self._cancels.get(entry_id)
        if event is not None:
            event.set()

    def retry(self, entry_id: int) -> None:
        entry = self._entries.get(entry_id)
        if entry is None or entry.active:
            return
        self._set(replace(entry, state=WAITING, message="", speed_bps=0.0, eta_s=None))
        self._run(entry_id)

    def shutdown(self, timeout_ms: int = 15000) -> bool:
        """Stop every download (each keeps its part for next time) and wait for the threads."""
        for event in self._cancels.values():
            event.set()
        return self.tasks.shutdown(timeout_ms)

    # -- internals -------------------------------------------------------------------------------
    def _set(self, entry: DownloadEntry) -> None:
        self._entries[entry.id] = entry
        self.changed.emit(entry)

    def _run(self, entry_id: int) -> None:
        listing, model = self._jobs[entry_id]
        cancel = threading.Event()
        self._cancels[entry_id] = cancel
        progress = self._progress.reported

        def work() -> DownloadResult:
            return download_model(
                listing, model, progress=lambda p: progress.emit(entry_id, p), cancel=cancel
            )

        def done(result: object) -> None:
            assert isinstance(result, DownloadResult)
            entry = self._entries[entry_id]
            message = "already downloaded" if result.already_there else "SHA-256 checked"
            finished = replace(
                entry,
                state=DONE,
                done_bytes=entry.size_bytes,
                speed_bps=0.0,
                eta_s=None,
                message=message,
                path=str(result.path),
            )
            self._set(finished)
            self.finished.emit(finished)

        def failed(message: str) -> None:
            entry = self._entries[entry_id]
            state = CANCELLED if cancel.is_set() else FAILED
            self._set(
                replace(
                    entry,
                    state=state,
                    speed_bps=0.0,
                    eta_s=None,
                    message="" if state == CANCELLED else message,
                )
            )

        self._set(replace(self._entries[entry_id], state=DOWNLOADING))
        self.tasks.submit(work, done, failed)

    def _on_progress(self, entry_id: int, p: object) -> None:
        assert isinstance(p, DownloadProgress)
        entry = self._entries.get(entry_id)
        if entry is None or entry.state != DOWNLOADING:
            return
        self._set(replace(entry, done_bytes=p.done_bytes, speed_bps=p.speed_bps, eta_s=p.eta_s))


__all__ = ["DownloadEntry", "DownloadManager"]
