"""``rigfit serve`` in a subprocess, as a user starts it, on an ephemeral port of 127.0.0.1."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[2]


class ServeProcess:
    """Starts ``python -m app serve --json --port 0 ...`` and waits until it serves (or fails)."""

    def __init__(self, *args: str, timeout_s: float = 180) -> None:
        argv = [sys.executable, "-m", "app", "serve", "--json", "--port", "0", *args]
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.all_events: list[dict[str, Any]] = []
        self.stderr_lines: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for t in self._readers:
            t.start()
        self.url = ""
        self.model = ""
        serving = self.wait_for("serving", timeout_s)
        self.url = serving["url"]
        self.model = serving["model"]

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            self.all_events.append(event)
            self.events.put(event)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.append(line.rstrip("\n"))

    def wait_for(self, kind: str, timeout_s: float = 60) -> dict[str, Any]:
        """The next stdout event of ``kind``; fails with the server's stderr if it exits first."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                event = self.events.get(timeout=max(0.05, min(0.5, deadline - time.monotonic())))
            except queue.Empty:
                if self.proc.poll() is not None and self.events.empty():
                    raise AssertionError(
                        f"rigfit serve exited {self.proc.returncode} before '{kind}':\n"
                        + "\n".join(self.stderr_lines)
                    ) from None
                if time.monotonic() > deadline:
                    raise AssertionError(f"no '{kind}' event within {timeout_s:g} s") from None
                continue
            if event["type"] == kind:
                return event

    @property
    def root(self) -> str:
        return self.url.removesuffix("/v1")

    @property
    def port(self) -> int:
        return int(self.root.rsplit(":", 1)[1])

    def worker(self) -> psutil.Process:
        children = psutil.Process(self.proc.pid).children()
        assert len(children) == 1, children
        return children[0]

    def health(self) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(self.root + "/health", timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def wait_health(self, status: int, timeout_s: float = 120, **fields: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            code, body = self.health()
            if code == status and all(body.get(k) == v for k, v in fields.items()):
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"/health is {code} {body}, not {status} {fields}")
            time.sleep(0.1)

    def stop(self, timeout_s: float = 60) -> int:
        """Ctrl+C, as a user stops it; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        for t in self._readers:
            t.join(10)
        return code
