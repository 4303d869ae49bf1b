"""``rigfit --self-test``: a headless end-to-end check of an installed Rigfit, one line per step.

It is what a packager (and the packaging test) runs on a freshly installed app, with no display and no
network: it forces Qt's offscreen platform, opens the main window, lets the window detect the rig,
plans the demo model (on the detected GPUs, or on the demo planned rig when there are none), runs a
few tokens of the demo model through the real worker process, and closes everything. Each step prints
``ok <step>: ...``; the first failing step prints ``FAIL <step>: ...`` (with the model process's last
log lines when it has any), the remaining steps are skipped and the exit code is 1.

Steps run in the order a user's session would, because each needs what the one before set up: a
window to detect in, a rig to plan on, a plan whose settings the run uses.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from app.core.plan import Plan
    from app.core.rig import Rig
    from app.core.settings import Settings

EXIT_OK = 0
EXIT_FAILED = 1

RUN_TOKENS = 8
# Small enough that the KV cache costs nothing, large enough for the chat template and 8 tokens.
SELF_TEST_CTX = 512
PROMPT = "Count from one to twenty, in words."
DETECT_TIMEOUT_S = 60.0
LOAD_TIMEOUT_S = 180.0
CHAT_TIMEOUT_S = 120.0
_LOG_LINES_ON_FAILURE = 6


class StepFailed(Exception):
    """A self-test step did not do what it should; ``details`` are extra lines (e.g. a log tail)."""

    def __init__(self, message: str, details: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.details = details


@dataclass
class _Session:
    """What the steps hand to each other, and what :func:`_cleanup` must close."""

    app: Any = None
    window: Any = None
    client: Any = None
    rig: Rig | None = None
    plan: Plan | None = None
    plan_on_detected: bool = False
    settings: Settings | None = None


def _versions(s: _Session) -> str:
    from app.ui.qtinfo import qt_version
    from app.versions import version_info

    info = version_info(qt_version())
    llama = info.get("llama_cpp")
    if not isinstance(llama, dict) or not llama.get("version"):
        error = llama.get("error") if isinstance(llama, dict) else None
        raise StepFailed(f"llama-cpp-python cannot be imported ({error or 'not installed'})")
    if not info.get("qt"):
        raise StepFailed("Qt (PySide6) cannot be imported")
    backend = "CUDA" if llama.get("gpu_offload") else "CPU only"
    nvml = f"NVML {info['nvml']}" if info.get("nvml") else "NVML not found"
    return (
        f"rigfit {info['rigfit']}, Python {info['python']}, Qt {info['qt']}, "
        f"llama-cpp-python {llama['version']} ({backend}), {nvml}"
    )


def _window(s: _Session) -> str:
    from PySide6 import QtCore, QtGui, QtWidgets

    from app.ui.app import _application
    from app.ui.main_window import MainWindow
    from app.ui.settings_store import SettingsStore

    # The application exactly as `rigfit` makes it (names, icon, PySide6 work-arounds).
    s.app = _application()
    # The icon is an SVG: a null pixmap means the bundle lacks Qt's SVG icon engine or image plugin.
    if s.app.windowIcon().pixmap(QtCore.QSize(64, 64)).isNull():
        raise StepFailed("the window icon (resources/icons/rigfit.svg) cannot be rendered")
    # A clean slate, like --screenshot: the check neither reads nor writes the user's remembered window.
    s.window = MainWindow(store=SettingsStore.memory(), restore=False)
    s.window.show()
    QtWidgets.QApplication.processEvents()
    if not s.window.isVisible():
        raise StepFailed("the main window did not open")
    tabs = s.window.tabs
    names = ", ".join(tabs.tabText(i) for i in range(tabs.count()))
    platform = QtGui.QGuiApplication.platformName()
    return f"main window open on the '{platform}' platform (tabs: {names})"


def _wait_for(signal: Any, busy: Callable[[], bool], timeout_s: float) -> bool:
    """Run the event loop until ``signal`` fires or ``timeout_s`` passes; True when it fired."""
    from PySide6 import QtCore

    if not busy():
        return True
    fired: list[bool] = []
    loop = QtCore.QEventLoop()

    def done(*_: object) -> None:
        fired.append(True)
        loop.quit()

    signal.connect(done)
    timer = QtCore.QTimer()
    timer.setSingleShot(True)
    timer.timeout.connect(loop.quit)
    timer.start(int(timeout_s * 1000))
    if busy():
        loop.exec()
    timer.stop()
    signal.disconnect(done)
    return bool(fired) or not busy()


def _detect(s: _Session) -> str:
    from app.core.rig import Rig

    window = s.window
    result: list[object] = []
    window.detection_finished.connect(result.append)
    window.start_detection()
    finished = _wait_for(window.detection_finished, lambda: not result, DETECT_TIMEOUT_S)
    window.detection_finished.disconnect(result.append)
    if not finished:
        raise StepFailed(f"detection did not finish within {DETECT_TIMEOUT_S:g} s")
    rig = result[0] if result else window.hardware.detected_rig
    if not isinstance(rig, Rig):
        raise StepFailed(f"detection failed: {window.status_text.text()}")
    s.rig = rig
    gpus = ", ".join(g.name for g in rig.gpus)
    count = f"{rig.n_gpus} GPU{'s' if rig.n_gpus != 1 else ''}" + (f" ({gpus})" if gpus else "")
    return f"{count}; {rig.status or rig.status_code or 'no status'}"


def _catalogs(s: _Session) -> str:
    from app.core.catalog import catalog_path, load_model_catalog
    from app.hardware.catalog import gpu_catalog_path, load_gpu_catalog

    # Both are read from resources/: in a frozen app this proves the bundle's resource lookup.
    models = load_model_catalog()
    gpus = load_gpu_catalog()
    if not models or not gpus:
        raise StepFailed(
            f"an empty catalog ({catalog_path()}: {len(models)}, {gpu_catalog_path()}: {len(gpus)})"
        )
    return f"{len(models)} models, {len(gpus)} GPUs"


def _plan(s: _Session) -> str:
    from app.core.model_source import load_model_spec
    from app.core.placement import plan
    from app.core.settings import Settings
    from app.hardware.catalog import parse_rig_expression
    from app.ui.hardware.view import DEMO_RIG_EXPRESSION

    assert s.rig is not None
    spec = load_model_spec("demo")
    s.settings = Settings(ctx=SELF_TEST_CTX)
    if s.rig.n_gpus:
        rig, where, s.plan_on_detected = s.rig, "this computer's GPUs", True
    else:
        rig, where = parse_rig_expression(DEMO_RIG_EXPRESSION), f"the planned rig {DEMO_RIG_EXPRESSION}"
    result = plan(rig, spec, s.settings)
    if not result.devices and rig.n_gpus:
        raise StepFailed(f"the plan for {where} has no GPU in it")
    s.plan = result
    per_gpu = ", ".join(f"GPU{d.index} {d.layers} layers {d.total_mib:.0f} MiB" for d in result.devices)
    return f"{spec.name} on {where}: {result.status}" + (f" ({per_gpu})" if per_gpu else "")


def _load(s: _Session) -> str:
    from app.runner import protocol as P
    from app.runner.client import RunnerClient
    from app.runner.options import resolve_model

    assert s.settings is not None
    path = resolve_model("demo")
    s.client = RunnerClient()
    try:
        ready = s.client.start()
        load = P.LoadSettings.from_settings(str(path), s.settings, seed=1)
        # Compare with the plan only when it was made for this computer's GPUs.
        plan = s.plan if s.plan_on_detected and ready.gpus else None
        loaded = s.client.load_sync(load, plan=plan, timeout=LOAD_TIMEOUT_S)
    except P.RunnerError as exc:
        raise StepFailed(str(exc), exc.event.log_tail or s.client.log_tail()) from None
    where = "on the CPU" if loaded.on_cpu_only or not ready.gpus else f"on {len(ready.gpus)} GPU(s)"
    model_mib = sum(b.mib for b in loaded.buffers if b.buffer == "model")
    return (
        f"demo model in {loaded.load_s:.2f} s {where} by llama.cpp {ready.llama_cpp_version} "
        f"(model buffers {model_mib:.1f} MiB, worker pid {ready.pid})"
    )


def _run(s: _Session) -> str:
    from app.runner import protocol as P

    request = P.ChatRequest(
        messages=(P.ChatMessage("user", PROMPT),),
        temperature=0.0,
        max_tokens=RUN_TOKENS,
        seed=1,
        # A fixed token count: the check must not depend on where the model ends its answer.
        ignore_eos=True,
    )
    tokens = 0
    done: P.DoneEvent | None = None
    try:
        for event in s.client.chat_stream(request, timeout=CHAT_TIMEOUT_S):
            if isinstance(event, P.TokenEvent):
                tokens += 1
            else:
                done = event
    except P.RunnerError as exc:
        raise StepFailed(str(exc), exc.event.log_tail or s.client.log_tail()) from None
    if done is None:
        raise StepFailed("the reply ended without a 'done' event")
    if done.completion_tokens != RUN_TOKENS or tokens == 0:
        raise StepFailed(
            f"asked for {RUN_TOKENS} tokens, got {done.completion_tokens} ({tokens} token events, stop: {done.stop_reason})"
        )
    speed = f"{done.gen_tok_s:.1f} tok/s" if done.gen_tok_s else "an unmeasured speed"
    return f"{done.completion_tokens} tokens at {speed}"


def _close(s: _Session) -> str:
    from PySide6 import QtWidgets

    code = None
    if s.client is not None:
        s.client.close()
        code = s.client.last_exit_code
        if s.client.alive:
            raise StepFailed("the model process is still running after close")
        s.client = None
    if s.window is not None:
        s.window.close()
        QtWidgets.QApplication.processEvents()
        if s.window.isVisible():
            raise StepFailed("the main window did not close")
        s.window.deleteLater()
        QtWidgets.QApplication.processEvents()
        s.window = None
    if code not in (None, 0):
        raise StepFailed(f"the model process exited with code {code} when asked to stop")
    return "window closed, model process stopped" + (f" (exit code {code})" if code is not None else "")


def _cleanup(s: _Session) -> None:
    """After a failure: stop what the steps started, without letting a second error hide the first."""
    try:
        if s.client is not None:
            s.client.kill()
    except Exception:  # best effort on the way out
        pass
    try:
        if s.window is not None:
            s.window.close()
    except Exception:  # best effort, as above
        pass


STEPS: tuple[tuple[str, Callable[[_Session], str]], ...] = (
    ("versions", _versions),
    ("window", _window),
    ("detect", _detect),
    ("catalogs", _catalogs),
    ("plan", _plan),
    ("load", _load),
    ("run", _run),
    ("close", _close),
)


def run_self_test(out: TextIO | None = None) -> int:
    """Run every step, print one line each, return 0 when all passed and 1 at the first failure."""
    stream = out if out is not None else sys.stdout
    # Headless on purpose: the check must pass on a server, in CI and over ssh alike.
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    session = _Session()
    started = time.monotonic()

    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    for name, step in STEPS:
        try:
            detail = step(session)
        except StepFailed as exc:
            say(f"FAIL {name}: {exc}")
            for line in exc.details[-_LOG_LINES_ON_FAILURE:]:
                say(f"    {line}")
        except Exception as exc:  # a bug is a failed step too, said in one line
            say(f"FAIL {name}: {type(exc).__name__}: {exc}")
        else:
            say(f"ok {name}: {detail}")
            continue
        _cleanup(session)
        say(f"self-test failed at step '{name}'")
        return EXIT_FAILED
    say(f"self-test passed: {len(STEPS)} steps in {time.monotonic() - started:.1f} s")
    return EXIT_OK
