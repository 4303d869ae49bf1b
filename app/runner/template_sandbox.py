"""Chat templates rendered in a helper process with a memory cap and a time limit.

A GGUF's ``tokenizer.chat_template`` is a Jinja2 program written by whoever made the file. jinja2's
``ImmutableSandboxedEnvironment`` (which llama-cpp-python's ``Jinja2ChatFormatter`` uses) keeps it
away from Python internals and files, but not from the machine's memory or time:
``{{ ('x' * 1500000000) | length }}`` is one C-level operation that allocates 1.5 GB, and a signal
cannot interrupt it. So templates render in a helper process:

* the helper imports the formatter, then caps its own address space at what it uses plus
  :data:`TEMPLATE_MEMORY_MIB` (``RLIMIT_AS``, Linux): an allocation past it fails with
  ``MemoryError``, which comes back as a template error;
* the worker waits at most :data:`TEMPLATE_TIME_LIMIT_S` for an answer, then kills the helper (a
  loop of cheap steps or a stuck allocation alike) and reports that;
* a helper that dies is replaced on the next render.

On systems without ``RLIMIT_AS`` (macOS does not enforce it, Windows has no ``resource`` module)
the time limit and the separate process still hold, not the memory cap.

The helper speaks one JSON object per line: ``{"template", "messages", "bos", "eos"}`` in,
``{"prompt": ...}`` or ``{"error": ...}`` out; its first line is ``{"ready": true}``.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

TEMPLATE_MEMORY_MIB = 256
TEMPLATE_TIME_LIMIT_S = 5.0
# The helper's own start (Python, jinja2, llama-cpp-python's formatter) on a busy machine.
_START_LIMIT_S = 30.0
SWITCH = "--rigfit-template-sandbox"


class TemplateError(Exception):
    """The template failed, ran too long or needed too much memory (the message says which)."""


def helper_command() -> list[str]:
    """How to start the helper: this interpreter with ``-m``, or the frozen binary with a switch."""
    if getattr(sys, "frozen", False):
        return [sys.executable, SWITCH]
    return [sys.executable, "-m", "app.runner.template_sandbox"]


class TemplateSandbox:
    """The worker's side: starts the helper (once, or again after it died) and asks it to render."""

    def __init__(
        self,
        command: Sequence[str] | None = None,
        time_limit_s: float = TEMPLATE_TIME_LIMIT_S,
        memory_mib: int = TEMPLATE_MEMORY_MIB,
    ) -> None:
        self._command = list(command) if command else helper_command()
        self.time_limit_s = time_limit_s
        self.memory_mib = memory_mib
        self._proc: subprocess.Popen[bytes] | None = None
        self._lines: queue.Queue[bytes] = queue.Queue()
        self._ready = False
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the helper now, without waiting for it (hides its start-up behind a model load)."""
        with self._lock:
            self._ensure_started()

    def _ensure_started(self) -> subprocess.Popen[bytes]:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            return proc
        self._close(proc)
        env = dict(os.environ)
        env["RIGFIT_TEMPLATE_MEMORY_MIB"] = str(self.memory_mib)
        if not getattr(sys, "frozen", False):
            root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        proc = subprocess.Popen(
            self._command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            close_fds=True,
        )
        lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=_pump, args=(proc, lines), name="rigfit-template-reader", daemon=True).start()
        self._proc, self._lines, self._ready = proc, lines, False
        return proc

    def render(self, template: str, messages: Sequence[Mapping[str, str]], bos: str, eos: str) -> str:
        """The prompt ``template`` makes of ``messages``; raises :class:`TemplateError` when it fails,
        needs more than :data:`TEMPLATE_MEMORY_MIB` or runs longer than the time limit."""
        with self._lock:
            try:
                proc = self._ensure_started()
            except OSError as exc:
                raise TemplateError(f"the template renderer could not start: {exc}") from None
            if not self._ready:
                first = self._next_line(proc, _START_LIMIT_S, "start")
                if json.loads(first).get("ready") is not True:
                    self._kill()
                    raise TemplateError("the template renderer did not start")
                self._ready = True
            request = {"template": template, "messages": list(messages), "bos": bos, "eos": eos}
            data = (json.dumps(request) + "\n").encode()
            try:
                assert proc.stdin is not None
                proc.stdin.write(data)
                proc.stdin.flush()
            except (OSError, ValueError):
                self._kill()
                raise TemplateError("the template renderer stopped") from None
            reply = json.loads(self._next_line(proc, self.time_limit_s, "render"))
        if "error" in reply:
            raise TemplateError(str(reply["error"]))
        return str(reply.get("prompt", ""))

    def _next_line(self, proc: subprocess.Popen[bytes], limit_s: float, phase: str) -> bytes:
        try:
            line = self._lines.get(timeout=limit_s)
        except queue.Empty:
            self._kill()
            if phase == "start":
                raise TemplateError(f"the template renderer did not start within {limit_s:g} s") from None
            raise TemplateError(f"the chat template ran longer than {limit_s:g} s") from None
        if not line:  # the helper's output closed: it died
            code = proc.wait()
            self._proc = None
            if phase == "render":
                raise TemplateError(
                    f"the chat template needed more than {self.memory_mib} MiB of memory or crashed "
                    f"the renderer (exit code {code})"
                )
            raise TemplateError(f"the template renderer did not start (exit code {code})")
        return line

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            self._close(proc)

    @staticmethod
    def _close(proc: subprocess.Popen[bytes] | None) -> None:
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        if proc.poll() is None:
            try:
                proc.wait(1.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        """End the helper (closing its input ends it; a stuck one is killed)."""
        with self._lock:
            proc, self._proc = self._proc, None
            self._close(proc)

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None


def _pump(proc: subprocess.Popen[bytes], lines: queue.Queue[bytes]) -> None:
    assert proc.stdout is not None
    for raw in iter(proc.stdout.readline, b""):
        lines.put(raw)
    lines.put(b"")


# ---------------------------------------------------------------------------------------------------
# The helper process


def _cap_memory(extra_mib: int) -> None:
    """Limit this process's address space to what it maps now plus ``extra_mib`` (Linux)."""
    try:
        import resource

        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[0])
        now = pages * os.sysconf("SC_PAGE_SIZE")
        limit = now + extra_mib * (1 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, OSError, ValueError):
        pass  # no /proc or no RLIMIT_AS: the parent's time limit still holds


def _render(formatter_cls: Any, request: Mapping[str, Any]) -> str:
    formatter = formatter_cls(
        template=str(request["template"]), eos_token=str(request["eos"]), bos_token=str(request["bos"])
    )
    return str(formatter(messages=list(request["messages"])).prompt)


def main() -> int:
    """The helper: render requests from stdin until it closes."""
    out = sys.stdout.buffer
    # llama-cpp-python's formatter: the same sandboxed environment and Jinja extensions as before.
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    memory_mib = int(os.environ.get("RIGFIT_TEMPLATE_MEMORY_MIB", TEMPLATE_MEMORY_MIB))
    _cap_memory(memory_mib)
    out.write(b'{"ready": true}\n')
    out.flush()
    for raw in iter(sys.stdin.buffer.readline, b""):
        reply: dict[str, str]
        try:
            request = json.loads(raw)
            reply = {"prompt": _render(Jinja2ChatFormatter, request)}
        except MemoryError:
            reply = {"error": f"the chat template needed more than {memory_mib} MiB of memory"}
        except RecursionError:
            reply = {"error": "the chat template recursed too deeply"}
        except Exception as exc:  # any template failure is reported, the helper goes on
            reply = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        try:
            line = json.dumps(reply, ensure_ascii=False).encode("utf-8", "replace") + b"\n"
        except MemoryError:
            line = b'{"error": "the chat template rendered more text than it may"}\n'
        out.write(line)
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
