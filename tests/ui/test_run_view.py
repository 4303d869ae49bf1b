"""The Run tab, offscreen, with real llama.cpp on the CPU and the demo model.

Covers what a user does: pick the demo model, load it, chat (streamed, Ctrl+Enter, Esc stops), cancel
a load, open a bad file, lose the model process (SIGKILL) and load again, and close the window
without leaving a process, a thread or a timer behind. The demo model is loaded as few times as
the scenarios allow; the GPU-side comparison runs against a fake client on a fake two-GPU rig.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest
from pytestqt.qtbot import QtBot

import shiboken6
from PySide6 import QtCore, QtGui, QtWidgets

from app.core.model_source import load_model_spec
from app.core.rig import Gpu, Rig
from app.core.settings import Settings
from app.hardware.nvml import load_fake
from app.hardware.probe import detect_rig
from app.runner import protocol as P
from app.runner.compare import compare_load
from app.runner.discovery import SOURCE_OLLAMA, ScanResult, SearchRoot, discover_models
from app.runner.logparse import BufferSize
from app.ui.run.load_panel import describe_settings
from app.ui.run.memory import predicted_vram
from app.ui.run.picker import DEMO_LABEL
from app.ui.run.view import RunView
from app.ui.runner_adapter import STATE_CLOSED, STATE_GENERATING, STATE_IDLE, STATE_LOADED, RunnerAdapter
from app.ui.state import AppState, ModelChoice
from tests.synth_gguf import SynthShape, write_llama_gguf
from tests.ui.ui_guard import assert_quiet

pytestmark = pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints\(\)")

TINY = SynthShape(n_layer=2, n_embd=64, n_ff=128, n_head=2, n_head_kv=1, n_vocab=300, weight_type="Q4_0")
NO_SCAN: Callable[..., ScanResult] = lambda folders, stop: ScanResult(models=())  # noqa: E731


def _cpu_rig(tmp_path: Path) -> Rig:
    return detect_rig(backend=load_fake("zero-gpus"), sysfs_root=tmp_path / "sys")


def _rigfit_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("rigfit-") and t.is_alive()]


@pytest.fixture
def make_view(qtbot: QtBot, tmp_path: Path) -> Iterator[Callable[..., RunView]]:
    """Run tabs as windows; at teardown each is closed like the app closes, and nothing may be left:
    no worker process, no rigfit thread, no busy pool thread, no active timer."""
    views: list[RunView] = []

    def make(state: AppState | None = None, **kw: Any) -> RunView:
        if state is None:
            state = AppState()
            state.set_rig(_cpu_rig(tmp_path))
        kw.setdefault("discover", NO_SCAN)
        kw.setdefault("n_threads", 1)
        view = RunView(state, **kw)
        view.resize(1200, 800)
        views.append(view)
        return view

    yield make
    for view in views:
        if not shiboken6.isValid(view):
            continue  # deleted with the window it was in (the process checks below still apply)
        pid = view.adapter.pid
        view.close()  # a top-level Run tab shuts down on close, as the window makes it do
        assert view.adapter.state == STATE_CLOSED
        assert pid is None or not psutil.pid_exists(pid)
        assert view.tasks.pool.activeThreadCount() == 0
        timers = [t for t in view.findChildren(QtCore.QTimer) if t.isActive()]
        assert not timers, timers
        view.deleteLater()
    assert QtCore.QThreadPool.globalInstance().activeThreadCount() == 0
    app_timers = [t for t in QtWidgets.QApplication.instance().findChildren(QtCore.QTimer) if t.isActive()]
    assert not app_timers, app_timers
    assert not psutil.Process().children(recursive=True)
    assert not _rigfit_threads()


def _pick_demo(view: RunView, qtbot: QtBot) -> ModelChoice:
    qtbot.mouseClick(view.picker.demo_button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.state.model is not None, timeout=30000)
    choice = view.state.model
    assert choice is not None
    return choice


def _load(view: RunView, qtbot: QtBot) -> P.LoadedEvent:
    with qtbot.waitSignal(view.adapter.loaded, timeout=60000) as blocker:
        qtbot.mouseClick(view.load_panel.load_button, QtCore.Qt.MouseButton.LeftButton)
    event = blocker.args[0]
    assert isinstance(event, P.LoadedEvent)
    return event


def _type_and_send(view: RunView, qtbot: QtBot, text: str) -> None:
    view.chat.input.setFocus()
    view.chat.input.setPlainText(text)
    qtbot.keyClick(view.chat.input, QtCore.Qt.Key.Key_Return, QtCore.Qt.KeyboardModifier.ControlModifier)


# -- the demo model, end to end ----------------------------------------------------------------------


def test_the_demo_model_loads_streams_a_reply_keeps_the_history_and_stops(
    make_view: Callable[..., RunView], qtbot: QtBot
) -> None:
    view = make_view()
    view.show()
    qtbot.waitExposed(view)
    view.activateWindow()
    choice = _pick_demo(view, qtbot)
    assert choice.label == DEMO_LABEL and choice.is_file
    assert "SmolLM2-135M-Instruct (demo)" in view.picker.model_label.text()
    assert view.state.plan is not None and view.load_panel.load_button.isEnabled()
    assert "No NVIDIA GPU here: llama.cpp runs the model on the CPU." in view.load_panel.hardware_label.text()

    loaded = _load(view, qtbot)
    assert view.load_panel.progress.value() == 100
    assert view.load_panel.load_status.text().startswith("Loaded SmolLM2-135M-Instruct (demo) in ")
    assert "on the CPU" in view.load_panel.load_status.text()
    # The plan beside llama.cpp's buffers: every host buffer has a predicted and a measured figure.
    rows = [
        [view.memory.memory_table.item(r, c).text() for c in range(5)]
        for r in range(view.memory.memory_table.rowCount())
    ]
    assert loaded.compare and len(rows) == len(loaded.compare)
    weights = next(r for r in rows if r[1] == "Weights")
    assert weights[0] == "RAM" and weights[3] == "92.1" and weights[2] != "—" and weights[4].endswith("%")
    assert view.memory.figures["load"].text().endswith(" s")
    assert not view.chat.send_button.isEnabled() or view.adapter.state == STATE_LOADED

    # Stream: each token is appended at the end of the transcript, nothing is removed or re-rendered.
    view.chat.temperature.setValue(0.0)
    view.chat.max_tokens.setValue(24)
    changes: list[tuple[int, int, int]] = []
    view.chat.transcript.document().contentsChange.connect(
        lambda pos, removed, added: changes.append((pos, removed, added))
    )
    seen_while_streaming: list[bool] = []
    marks: list[int] = []  # len(changes) right after the view handled each token
    texts: list[str] = []  # each token's text ("" for a token that holds part of a UTF-8 character)

    def after_view_handled(event: object) -> None:
        assert isinstance(event, P.TokenEvent)
        seen_while_streaming.append(view.chat.transcript.toPlainText().endswith(view.chat.reply_text))
        marks.append(len(changes))
        texts.append(event.text)

    view.adapter.token.connect(after_view_handled)
    requests: list[P.ChatRequest] = []
    chat = view.adapter.chat

    def spy(request: P.ChatRequest) -> int:
        requests.append(request)
        return chat(request)

    view.adapter.chat = spy  # type: ignore[method-assign]
    with qtbot.waitSignal(view.adapter.done, timeout=60000) as blocker:
        _type_and_send(view, qtbot, "Say hello to me.")  # Ctrl+Enter
        assert view.adapter.state == STATE_GENERATING and view.chat.input.toPlainText() == ""
    first = blocker.args[0]
    assert isinstance(first, P.DoneEvent) and first.completion_tokens > 1
    assert seen_while_streaming and all(seen_while_streaming)
    # One insertion per token, each where the previous one ended; nothing removed, nothing redrawn.
    per_token = [changes[a:b] for a, b in itertools.pairwise(marks)]  # from the second token on
    # A token with text is one insertion; one that holds only part of a character (an emoji is
    # several byte tokens) inserts nothing until the character is whole.
    assert [len(c) for c in per_token] == [1 if text else 0 for text in texts[1:]]
    assert len(texts) >= first.completion_tokens - 1 and "".join(texts) == first.text
    token_changes = [c[0] for c in per_token if c]
    assert all(removed == 0 for _, removed, _ in token_changes)
    assert all(b[0] == a[0] + a[2] for a, b in itertools.pairwise(token_changes))
    assert view.chat.reply_text == first.text and first.text in view.chat.transcript.toPlainText()
    assert view.memory.figures["ttft"].text().endswith(" ms")
    assert view.memory.figures["generation"].text().endswith(" tok/s")
    assert (
        view.memory.figures["tokens"].text()
        == f"{first.prompt_tokens} prompt, {first.completion_tokens} generated"
    )
    assert view.memory.figures["predicted"].text() != "—"  # the speed model's figure beside the measured one

    # Second turn: the whole conversation goes along; Esc stops it within one token.
    tokens_after_stop: list[int] = []

    def escape_at_third(event: object) -> None:
        assert isinstance(event, P.TokenEvent)
        if event.index == 2:
            qtbot.keyClick(view.chat.input, QtCore.Qt.Key.Key_Escape)
        elif event.index > 2:
            tokens_after_stop.append(event.index)

    view.adapter.token.connect(escape_at_third)
    view.chat.max_tokens.setValue(300)
    with qtbot.waitSignal(view.adapter.done, timeout=60000) as blocker:
        _type_and_send(view, qtbot, "Now tell me a very long story about the sea, with many chapters.")
    second = blocker.args[0]
    view.adapter.token.disconnect(escape_at_third)
    assert second.stop_reason == "stopped" and len(tokens_after_stop) <= 1
    assert [m.role for m in requests[1].messages] == ["user", "assistant", "user"]
    assert requests[1].messages[1].content == first.text
    assert [m.role for m in view.chat.messages] == ["user", "assistant", "user", "assistant"]
    assert view.chat.transcript.toPlainText().rstrip().endswith("[stopped]")

    qtbot.mouseClick(view.chat.clear_button, QtCore.Qt.MouseButton.LeftButton)
    assert view.chat.messages == [] and view.chat.transcript.toPlainText() == ""

    # The Split tab moves on: the tab says the loaded model runs with the old settings until reloaded.
    assert "changed since this load" not in view.load_panel.hardware_label.text()
    view.state.update_settings(ctx=view.state.settings.ctx // 2)
    assert "changed since this load: Load again" in view.load_panel.hardware_label.text()


def test_cancel_stops_a_load_and_a_bad_load_is_explained_in_place(
    make_view: Callable[..., RunView], qtbot: QtBot
) -> None:
    view = make_view()
    _pick_demo(view, qtbot)
    cancelled_once: list[str] = []

    def cancel_when_loading(state: str) -> None:
        if state == "loading" and not cancelled_once:
            cancelled_once.append(state)
            qtbot.mouseClick(view.load_panel.cancel_button, QtCore.Qt.MouseButton.LeftButton)

    view.adapter.state_changed.connect(cancel_when_loading)
    with qtbot.waitSignal(view.adapter.error, timeout=60000) as blocker:
        qtbot.mouseClick(view.load_panel.load_button, QtCore.Qt.MouseButton.LeftButton)
    assert blocker.args[0].kind == P.ERR_CANCELLED
    assert view.load_panel.load_status.text() == "Loading was cancelled."
    assert (
        view.adapter.state == STATE_IDLE
        and view.load_panel.load_button.isEnabled()
        and not view.load_panel.cancel_button.isEnabled()
    )
    assert not view.problem.isVisibleTo(view)

    # Settings llama.cpp refuses: the planner says so first, and when the user loads anyway, the
    # worker's reason and the log's last lines show in the tab, no dialog.
    view.state.update_settings(type_v="q4_0", flash_attn=False, ctx=512)
    assert view.load_panel.load_model() is False
    assert view.load_panel.confirm_label.text().startswith(
        "Rigfit could not plan this: a quantized V cache needs flash"
    )
    qtbot.mouseClick(view.load_panel.load_anyway_button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.problem.isVisibleTo(view), timeout=60000)
    assert "quantized V cache requires flash_attn" in view.problem.label.text()
    assert view.load_panel.load_status.text() == "No model loaded."
    qtbot.mouseClick(view.problem.log_toggle, QtCore.Qt.MouseButton.LeftButton)
    assert view.problem.log_view.isVisibleTo(view) and view.problem.log_view.toPlainText().strip()
    assert not [w for w in QtWidgets.QApplication.topLevelWidgets() if isinstance(w, QtWidgets.QMessageBox)]
    assert view.adapter.pid is not None  # the worker survived and waits for the next load


def test_a_killed_model_process_is_reported_and_the_model_loads_again(
    make_view: Callable[..., RunView], qtbot: QtBot
) -> None:
    view = make_view()
    view.show()
    qtbot.waitExposed(view)
    _pick_demo(view, qtbot)
    view.state.update_settings(ctx=1024)
    _load(view, qtbot)
    pid = view.adapter.pid
    assert pid is not None
    vram: list[object] = []
    view.predicted_vram_changed.connect(vram.append)

    killed: list[int] = []

    def kill_on_first_token(event: object) -> None:
        if not killed:
            killed.append(pid)
            os.kill(pid, signal.SIGKILL)

    view.adapter.token.connect(kill_on_first_token)
    view.chat.max_tokens.setValue(400)
    with qtbot.waitSignal(view.adapter.exited, timeout=60000):
        _type_and_send(view, qtbot, "Write a long poem about mountains.")
    view.adapter.token.disconnect(kill_on_first_token)
    qtbot.waitUntil(lambda: view.problem.isVisibleTo(view), timeout=10000)
    assert view.problem.label.text().startswith("The model process stopped (signal 9)")
    assert "load the model again" in view.problem.label.text()
    assert view.problem.log_toggle.isVisibleTo(view)
    assert "[no reply: the model process stopped (signal 9)" in view.chat.transcript.toPlainText()
    # The unanswered message is back in the box and out of the history.
    assert view.chat.input.toPlainText() == "Write a long poem about mountains." and view.chat.messages == []
    assert view.load_panel.load_button.isEnabled() and not view.chat.send_button.isEnabled()
    assert vram and vram[-1] == {}
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() != psutil.STATUS_ZOMBIE

    _load(view, qtbot)
    assert view.adapter.pid not in (None, pid)
    view.chat.max_tokens.setValue(4)
    with qtbot.waitSignal(view.adapter.done, timeout=60000) as blocker:
        qtbot.mouseClick(view.chat.send_button, QtCore.Qt.MouseButton.LeftButton)
    assert blocker.args[0].completion_tokens >= 1


# -- picking a model ---------------------------------------------------------------------------------


def test_bad_files_are_explained_inline_and_the_last_good_choice_stays(
    make_view: Callable[..., RunView], qtbot: QtBot, tmp_path: Path, demo_model_path: str
) -> None:
    view = make_view()
    choice = _pick_demo(view, qtbot)
    notes = tmp_path / "notes.gguf"
    notes.write_text("not a model")
    header = tmp_path / "header.gguf"
    header.write_bytes(Path(demo_model_path).read_bytes()[:1000])
    cases = [
        (str(notes), "is not a GGUF file"),
        (str(header), "truncated or corrupt"),
        (str(tmp_path / "gone.gguf"), "model file not found"),
    ]
    for path, words in cases:
        with qtbot.waitSignal(view.picker.model_read_failed, timeout=30000) as blocker:
            view.open_model_file(path)
        assert words in blocker.args[0]
        assert view.picker.model_error.isVisibleTo(view)
        assert view.picker.model_error.text().startswith("Could not open that model: ")
        assert words in view.picker.model_error.text()
        assert view.state.model == choice  # the last good model is still the one Load uses
    assert not [w for w in QtWidgets.QApplication.topLevelWidgets() if isinstance(w, QtWidgets.QMessageBox)]
    assert view.adapter.pid is None  # nothing was started for a bad file


def test_a_catalog_model_can_be_planned_but_not_run(make_view: Callable[..., RunView]) -> None:
    view = make_view()
    spec = load_model_spec("llama-3.1-8b", "Q4_K_M")
    view.state.set_model(ModelChoice(ref="llama-3.1-8b", spec=spec, quant="Q4_K_M", label="Llama 3.1 8B"))
    assert "Download the GGUF, then open it" in view.picker.model_label.text()
    assert not view.load_panel.load_button.isEnabled()
    assert "download the GGUF" in view.load_panel.load_button.toolTip()
    assert view.load_panel.load_model() is False
    assert "catalog model with no file" in view.load_panel.load_status.text()
    assert view.adapter.pid is None


def test_discovered_models_are_listed_and_clicking_one_picks_it(
    make_view: Callable[..., RunView], qtbot: QtBot, tmp_path: Path
) -> None:
    models = tmp_path / "ollama"
    digest = "sha256-" + "a" * 64
    (models / "blobs").mkdir(parents=True)
    write_llama_gguf(models / "blobs" / digest, TINY)
    manifest = models / "manifests" / "registry.ollama.ai" / "library" / "tiny" / "latest"
    manifest.parent.mkdir(parents=True)
    layer = {"mediaType": "application/vnd.ollama.image.model", "digest": "sha256:" + "a" * 64}
    manifest.write_text(json.dumps({"layers": [layer]}))
    extra = tmp_path / "mine"
    extra.mkdir()
    write_llama_gguf(extra / "tiny-Q4_0.gguf", TINY)
    calls: list[list[str]] = []

    def discover(folders: list[str], stop: Callable[[], bool]) -> ScanResult:
        calls.append(list(folders))
        return discover_models(
            [SearchRoot(str(models), SOURCE_OLLAMA)], folders, should_stop=stop, home=tmp_path
        )

    view = make_view(discover=discover)
    found: list[object] = []
    view.models_discovered.connect(found.append)
    with qtbot.waitSignal(view.picker.scan_finished, timeout=30000):
        view.show()  # the first show searches
    tree = view.picker.found_tree
    assert tree.topLevelItemCount() == 2
    assert [tree.topLevelItem(0).text(c) for c in (0, 2, 3)] == [DEMO_LABEL, "Q4_1", "bundled with Rigfit"]
    ollama = tree.topLevelItem(1)
    assert ollama.text(0) == "tiny:latest" and ollama.text(3) == "Ollama · ~/ollama"
    assert found == [[str(models / "blobs" / digest)]]
    assert "1 model file found (Ollama)." in view.picker.scan_label.text()

    # A folder of the user's own: remembered (for the window's session store) and searched.
    folders: list[object] = []
    view.extra_folders_changed.connect(folders.append)
    with qtbot.waitSignal(view.picker.scan_finished, timeout=30000):
        view.picker.add_folder(str(extra))
    assert folders == [[str(extra)]] and calls[-1] == [str(extra)]
    assert tree.topLevelItemCount() == 3
    assert tree.findItems("tiny-Q4_0", QtCore.Qt.MatchFlag.MatchExactly)[0].text(2) == "Q4_0"

    ollama = tree.findItems("tiny:latest", QtCore.Qt.MatchFlag.MatchExactly)[0]
    rect = tree.visualItemRect(ollama)
    qtbot.mouseClick(tree.viewport(), QtCore.Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: view.state.model is not None, timeout=30000)
    assert view.state.model.label == "tiny:latest"
    assert view.state.model.path == str(models / "blobs" / digest)
    assert "<b>tiny:latest</b>" in view.picker.model_label.text()


def test_a_dropped_gguf_and_the_open_dialog_both_pick_the_file(
    make_view: Callable[..., RunView], qtbot: QtBot, tmp_path: Path
) -> None:
    dropped = write_llama_gguf(tmp_path / "dropped.gguf", TINY).path
    chosen = write_llama_gguf(tmp_path / "chosen.gguf", replace(TINY, n_layer=3)).path
    view = make_view()
    view.show()
    qtbot.waitExposed(view)

    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(dropped))])
    pos = QtCore.QPointF(view.rect().center())
    enter = QtGui.QDragEnterEvent(
        pos.toPoint(), QtCore.Qt.DropAction.CopyAction, mime, QtCore.Qt.MouseButton.LeftButton,
        QtCore.Qt.KeyboardModifier.NoModifier,
    )  # fmt: skip
    QtWidgets.QApplication.sendEvent(view, enter)
    assert enter.isAccepted()
    drop = QtGui.QDropEvent(
        pos, QtCore.Qt.DropAction.CopyAction, mime, QtCore.Qt.MouseButton.LeftButton,
        QtCore.Qt.KeyboardModifier.NoModifier,
    )  # fmt: skip
    QtWidgets.QApplication.sendEvent(view, drop)
    qtbot.waitUntil(
        lambda: view.state.model is not None and view.state.model.path == str(dropped), timeout=30000
    )
    assert view.state.model.spec.n_layer == 2

    text = QtCore.QMimeData()
    text.setText("just words")
    refused = QtGui.QDragEnterEvent(
        pos.toPoint(), QtCore.Qt.DropAction.CopyAction, text, QtCore.Qt.MouseButton.LeftButton,
        QtCore.Qt.KeyboardModifier.NoModifier,
    )  # fmt: skip
    refused.ignore()
    QtWidgets.QApplication.sendEvent(view, refused)
    assert not refused.isAccepted()

    view.open_model_dialog()  # Ctrl+O: opens without blocking
    dialog = view.picker.file_dialog
    assert dialog is not None and dialog.isVisible()
    assert "GGUF models (*.gguf)" in dialog.nameFilters()
    dialog.setDirectory(str(tmp_path))
    dialog.selectFile(str(chosen))
    dialog.accept()
    qtbot.waitUntil(
        lambda: view.state.model is not None and view.state.model.path == str(chosen), timeout=30000
    )
    assert view.state.model.spec.n_layer == 3


# -- the plan beside the load -------------------------------------------------------------------------


def test_the_settings_line_follows_the_split_tab_and_says_where_it_comes_from(
    make_view: Callable[..., RunView], tmp_path: Path
) -> None:
    rig = detect_rig(backend=load_fake("2x3090-nvlink"), sysfs_root=tmp_path / "sys")
    state = AppState()
    state.set_rig(rig)
    view = make_view(state)
    state.update_settings(tensor_split=(3.0, 1.0), ctx=4096, type_k="q8_0", type_v="q8_0", flash_attn=False)
    text = view.load_panel.settings_label.text()
    assert text.startswith("<b>From the Split tab:</b> ")
    assert "layer split: GPU 0 75% / GPU 1 25%" in text
    assert "all layers on the GPUs" in text and "context 4,096" in text
    assert "KV cache q8_0" in text and "flash attention off" in text
    assert "Split tab" in view.load_panel.settings_label.toolTip()
    assert describe_settings(Settings(n_gpu_layers=20, split_mode="none"), rig).startswith(
        "all on GPU 0 · 20 layers"
    )
    assert describe_settings(Settings(), _cpu_rig(tmp_path)).startswith("no GPU: every layer on the CPU")


def test_a_plan_that_does_not_fit_asks_before_loading(
    make_view: Callable[..., RunView], qtbot: QtBot, tmp_path: Path
) -> None:
    tiny_gpu = Rig(
        gpus=(Gpu(index=0, name="Tiny GPU", vram_total_mib=64.0),), source="planned", name="1x Tiny GPU"
    )
    state = AppState()
    state.set_rig(tiny_gpu)
    view = make_view(state)
    _pick_demo(view, qtbot)
    assert state.plan is not None and not state.plan.fits
    assert "The plan is for 1x Tiny GPU" in view.load_panel.hardware_label.text()
    qtbot.mouseClick(view.load_panel.load_button, QtCore.Qt.MouseButton.LeftButton)
    assert view.load_panel.confirm_bar.isVisibleTo(view)
    assert view.load_panel.confirm_label.text().startswith(
        "The plan says this does not fit as set: GPU 0 needs "
    )
    assert "and has 64 MiB" in view.load_panel.confirm_label.text()
    assert view.adapter.state == STATE_IDLE and view.adapter.pid is None  # nothing started yet
    qtbot.mouseClick(view.load_panel.dont_load_button, QtCore.Qt.MouseButton.LeftButton)
    assert not view.load_panel.confirm_bar.isVisibleTo(view) and view.adapter.pid is None

    qtbot.mouseClick(view.load_panel.load_button, QtCore.Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(view.adapter.state_changed, timeout=30000):
        qtbot.mouseClick(view.load_panel.load_anyway_button, QtCore.Qt.MouseButton.LeftButton)
    assert not view.load_panel.confirm_bar.isVisibleTo(view)
    view.load_panel.cancel_load()
    qtbot.waitUntil(lambda: view.adapter.state == STATE_IDLE, timeout=60000)


class GpuFakeClient:
    """Stands in for the worker on a two-GPU machine: ready with two CUDA devices, loads on request."""

    def __init__(self, on_event: Callable[[P.Event], None]) -> None:
        self.on_event = on_event
        self.alive = False
        self.pid: int | None = None
        self.ready_info: P.ReadyEvent | None = None
        self.loads: list[tuple[P.LoadSettings, Any]] = []
        self._ids = itertools.count(1)

    def start(self) -> P.ReadyEvent:
        self.alive, self.pid = True, 4242
        gpus = tuple(P.Device(name=f"CUDA{i}", description="RTX 3090", kind="gpu") for i in range(2))
        self.ready_info = P.ReadyEvent(pid=4242, llama_cpp_version="fake", gpu_offload=True, devices=gpus)
        self.on_event(self.ready_info)
        return self.ready_info

    def load(self, settings: P.LoadSettings, plan: Any = None) -> int:
        self.loads.append((settings, plan))
        return next(self._ids)

    def unload(self) -> int:
        return next(self._ids)

    def chat(self, request: P.ChatRequest) -> int:
        return next(self._ids)

    def stop(self) -> None: ...

    def cancel(self, req_id: int) -> None: ...

    def cancel_load(self) -> None: ...

    def kill(self) -> None:
        self.alive = False

    def close(self) -> None:
        self.alive = False

    def log_tail(self, n: int = 50) -> tuple[str, ...]:
        return ()


def test_predicted_and_measured_memory_per_gpu_and_the_monitor_prediction(
    make_view: Callable[..., RunView], qtbot: QtBot, tmp_path: Path
) -> None:
    rig = detect_rig(backend=load_fake("2x3090-nvlink"), sysfs_root=tmp_path / "sys")
    state = AppState()
    state.set_rig(rig)
    clients: list[GpuFakeClient] = []

    def factory(on_event: Callable[[P.Event], None]) -> GpuFakeClient:
        clients.append(GpuFakeClient(on_event))
        return clients[-1]

    adapter = RunnerAdapter(client_factory=factory)  # type: ignore[arg-type]
    view = make_view(state, adapter=adapter)
    _pick_demo(view, qtbot)
    plan = state.plan
    assert plan is not None and len(plan.devices) == 2
    predicted: list[object] = []
    view.predicted_vram_changed.connect(predicted.append)
    with qtbot.waitSignal(adapter.state_changed, timeout=5000, check_params_cb=lambda s: s == "loading"):
        view.load_panel.load_model()
    settings, sent_plan = clients[0].loads[0]
    assert sent_plan is plan and settings.model_path == view.state.model.path
    assert settings.n_threads == 1 and settings.n_ctx == state.settings.ctx

    d0, d1 = plan.devices
    buffers = (
        BufferSize("CPU_Mapped", "model", 8.0),
        BufferSize("CUDA0", "model", round(d0.weights_mib * 1.25, 2)),
        BufferSize("CUDA0", "KV", d0.kv_mib),
        BufferSize("CUDA0", "compute", d0.compute_mib),
        BufferSize("CUDA1", "model", d1.weights_mib),
        BufferSize("CUDA1", "KV", d1.kv_mib),
        BufferSize("CUDA1", "compute", d1.compute_mib),
    )
    vram = (
        P.VramDelta(gpu=0, before_mib=300.0, after_mib=900.0),
        P.VramDelta(gpu=1, before_mib=10.0, after_mib=700.0),
    )
    loaded = P.LoadedEvent(
        model_path=settings.model_path, buffers=buffers, load_s=1.5, n_ctx=settings.n_ctx, n_layer=30,
        layers={"CUDA0": 15, "CUDA1": 16}, vram=vram, id=1,
    )  # fmt: skip
    loaded = replace(loaded, compare=compare_load(loaded, plan))  # what the real client adds
    with qtbot.waitSignal(adapter.loaded, timeout=5000):
        clients[0].on_event(loaded)

    rows = [
        [view.memory.memory_table.item(r, c).text() for c in range(5)]
        for r in range(view.memory.memory_table.rowCount())
    ]
    gpu0 = {r[1]: r for r in rows if r[0] == "GPU 0"}
    assert set(gpu0) >= {"Weights", "KV cache", "Compute", "Total", "NVML total"}
    assert gpu0["Weights"][2] == f"{d0.weights_mib:,.1f}" and gpu0["Weights"][4] == "-20.0%"
    error_cell = view.memory.memory_table.item(rows.index(gpu0["Weights"]), 4)
    assert "more than 10% off" in error_cell.toolTip()
    assert gpu0["NVML total"][3] == "600.0"
    assert (
        view.memory.memory_table.item(rows.index(gpu0["Weights"]), 0).icon().isNull() is False
    )  # GPU colour
    assert "GPU 0: NVML saw +600 MiB" in view.memory.memory_note.text()
    assert "on CUDA0 (15 layers), CUDA1 (16 layers)" in view.load_panel.load_status.text()
    assert predicted[-1] == predicted_vram(plan, loaded)
    assert predicted[-1] == {0: round(300.0 + d0.total_mib, 1), 1: round(10.0 + d1.total_mib, 1)}

    view.load_panel.unload()
    with qtbot.waitSignal(adapter.unloaded, timeout=5000):
        clients[0].on_event(P.UnloadedEvent(id=2))
    assert predicted[-1] == {}
    assert view.load_panel.load_status.text().startswith("Unloaded")


def test_window_close_shuts_the_worker_down(make_view: Callable[..., RunView], qtbot: QtBot) -> None:
    window = QtWidgets.QMainWindow()
    qtbot.addWidget(window)
    view = make_view()
    window.setCentralWidget(view)
    _pick_demo(view, qtbot)
    view.state.update_settings(ctx=512)
    _load(view, qtbot)
    pid = view.adapter.pid
    assert pid is not None and psutil.pid_exists(pid)
    view.shutdown()  # what the main window's closeEvent calls
    window.close()
    assert not psutil.pid_exists(pid)
    assert not view.load_panel.load_button.isEnabled()


def test_closing_the_main_window_leaves_no_worker_thread_or_timer(
    make_view: Callable[..., RunView], qtbot: QtBot, tmp_path: Path
) -> None:
    from app.ui.main_window import TAB_RUN, MainWindow
    from app.ui.settings_store import SettingsStore

    window = MainWindow(
        store=SettingsStore.at(tmp_path / "rigfit.ini"),
        detect=lambda: _cpu_rig(tmp_path),
        discover=None,
        restore=False,
    )
    qtbot.addWidget(window)
    window.show()
    with qtbot.waitSignal(window.detection_finished, timeout=60000):
        window.start_detection()
    assert window.show_tab(TAB_RUN)
    view = window.run_view
    assert isinstance(view, RunView)
    view.n_threads = 1
    _pick_demo(view, qtbot)
    view.state.update_settings(ctx=512)
    _load(view, qtbot)
    pid = view.adapter.pid
    assert pid is not None and psutil.pid_exists(pid)

    window.close()

    assert not psutil.pid_exists(pid)
    assert view.adapter.state == STATE_CLOSED
    assert not psutil.Process().children(recursive=True)
    assert not _rigfit_threads()
    assert_quiet(window)
