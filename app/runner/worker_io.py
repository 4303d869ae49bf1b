"""The worker's side of its pipes: the event channel on a private fd, and llama.cpp's log.

:func:`claim_protocol_fd` moves the real stdout away before anything can print, so llama.cpp's C-level
writes land in the log; :class:`Channel` writes protocol events there from any thread;
:class:`LogSink` receives llama.cpp's log (``llama_log_set``) for the error reports and load reports.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from app.runner import protocol as P

# ggml's log levels (ggml.h): DEBUG carries the per-layer device assignment, CONT continues a line.
LOG_DEBUG = 1
LOG_ERROR = 4
LOG_CONT = 5
_RING_LINES = 400
_PENDING_MAX = 2000


# ---------------------------------------------------------------------------------------------------
# Event channel


class Channel:
    """Writes events to the protocol fd, one JSON line each, from any thread."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self.broken = False

    def send(self, message: Mapping[str, Any]) -> None:
        data = P.encode(message)
        with self._lock:
            if self.broken:
                return
            view = memoryview(data)
            try:
                while view:
                    written = os.write(self._fd, view)
                    view = view[written:]
            except OSError:
                # The parent is gone; the control thread sees stdin close and shuts the worker down.
                self.broken = True

    def event(self, event: P.Event) -> None:
        self.send(P.event_to_message(event))


def claim_protocol_fd() -> int:
    """Move the real stdout away for the protocol and point fd 1 (C and Python) at stderr."""
    sys.stdout.flush()
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    if hasattr(os, "set_inheritable"):
        os.set_inheritable(proto_fd, False)
    return proto_fd


# ---------------------------------------------------------------------------------------------------
# llama.cpp's log


class LogSink:
    """Receives llama.cpp's log through llama_log_set: a ring of recent lines, lines not yet sent,
    and, during a load, the lines that describe it (buffers, layer placement, errors)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._partial = ""
        self._partial_level = 2
        self.ring: deque[str] = deque(maxlen=_RING_LINES)
        self._pending: list[str] = []
        self._capture: list[tuple[int, str]] | None = None
        self.keep_debug = False
        self.callback: Any = None  # the ctypes function object; kept referenced while installed

    def on_log(self, level: int, text: bytes | None, _user_data: Any) -> None:
        # Generation must not pay for DEBUG chatter (hundreds of graph lines per reservation).
        if level == LOG_DEBUG and not self.keep_debug:
            return
        try:
            piece = (text or b"").decode("utf-8", "replace")
        except Exception:  # a log callback must never raise into C
            return
        with self._lock:
            if level == LOG_CONT:
                level = self._partial_level
            elif self._partial:
                self._add(self._partial_level, self._partial)
                self._partial = ""
            self._partial_level = level
            self._partial += piece
            while "\n" in self._partial:
                line, _, self._partial = self._partial.partition("\n")
                self._add(level, line)

    def _add(self, level: int, line: str) -> None:
        if level == LOG_DEBUG:
            if self._capture is not None and "assigned to device" in line:
                self._capture.append((level, line))
            return
        self.ring.append(line)
        if len(self._pending) >= _PENDING_MAX:
            del self._pending[: _PENDING_MAX // 2]
        self._pending.append(line)
        if self._capture is not None:
            self._capture.append((level, line))

    def note(self, line: str) -> None:
        """A line of the worker's own, kept with llama.cpp's so error reports show it in order."""
        with self._lock:
            self._add(2, line)

    def take_pending(self) -> list[str]:
        with self._lock:
            lines, self._pending = self._pending, []
        return lines

    def tail(self, n: int = P.LOG_TAIL_LINES) -> tuple[str, ...]:
        with self._lock:
            return tuple(list(self.ring)[-n:])

    @contextmanager
    def capture(self, keep_debug: bool = False) -> Iterator[list[tuple[int, str]]]:
        lines: list[tuple[int, str]] = []
        with self._lock:
            self._capture = lines
        self.keep_debug = keep_debug
        try:
            yield lines
        finally:
            self.keep_debug = False
            with self._lock:
                self._capture = None
