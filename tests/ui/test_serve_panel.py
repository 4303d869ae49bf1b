"""The Run tab's Serve switch with the real worker: the model loaded in the window answers HTTP clients,
the window's chat shares it, the GUI thread stays free, a taken port and a crash are said plainly."""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from pytestqt.qtbot import QtBot

from PySide6 import QtCore, QtGui

from app.runner import protocol as P
from app.ui.run.serve_panel import ServePanel
from app.ui.runner_adapter import RunnerAdapter
from tests.ui.ui_guard import assert_quiet

THREADS = 1


@pytest.fixture
def panel(qtbot: QtBot) -> Iterator[ServePanel]:
    adapter = RunnerAdapter()
    widget = ServePanel(adapter, port=0)
    qtbot.addWidget(widget)
    yield widget
    widget.shutdown()
    adapter.close()
    assert_quiet(widget)


def _load(panel: ServePanel, qtbot: QtBot, demo: str) -> P.LoadedEvent:
    with qtbot.waitSignal(panel.adapter.loaded, timeout=60000) as blocker:
        panel.adapter.load(P.LoadSettings(model_path=demo, n_ctx=512, n_threads=THREADS))
    return blocker.args[0]  # type: ignore[no-any-return]


def _serve(panel: ServePanel, qtbot: QtBot) -> openai.OpenAI:
    with qtbot.waitSignal(panel.serving_changed, timeout=10000):
        panel.switch.setChecked(True)
    assert panel.serving and panel.url.text().startswith("http://127.0.0.1:")
    return openai.OpenAI(base_url=panel.url.text(), api_key="none", max_retries=0, timeout=120)


def _in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except Exception as exc:  # handed to the test, which fails with it
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_the_loaded_model_serves_http_beside_the_tab_s_chat_and_the_gui_stays_free(
    panel: ServePanel, qtbot: QtBot, demo_model_path: str
) -> None:
    _load(panel, qtbot, demo_model_path)
    client = _serve(panel, qtbot)
    assert panel.copy_url() == panel.url.text() == QtGui.QGuiApplication.clipboard().text()
    assert not panel.port.isEnabled()  # the address is fixed while serving

    ticks: list[int] = []
    timer = QtCore.QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start()

    def ask() -> str:
        stream = client.chat.completions.create(
            model="SmolLM2-135M-Instruct.Q4_1",
            messages=[{"role": "user", "content": "Count from one to ten."}],
            max_tokens=24,
            temperature=0,
            stream=True,
        )
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    thread, out = _in_thread(ask)
    # The tab's own chat, sent while the HTTP request runs: it waits its turn in the same worker.
    with qtbot.waitSignal(panel.adapter.done, timeout=120000) as blocker:
        panel.adapter.chat(
            P.ChatRequest(
                messages=(P.ChatMessage("user", "Hi"),), temperature=0, max_tokens=6, ignore_eos=True
            )
        )
    qtbot.waitUntil(lambda: not thread.is_alive(), timeout=120000)
    timer.stop()
    thread.join()
    assert isinstance(out[0], str) and out[0]
    assert isinstance(blocker.args[0], P.DoneEvent) and blocker.args[0].completion_tokens == 6
    # The GUI thread went on painting (the Monitor tab's plots) while tokens went out over HTTP.
    assert ticks
    qtbot.waitUntil(lambda: "1 request served" in panel.status.text(), timeout=10000)
    assert "tok/s" in panel.status.text() and "Serving SmolLM2-135M-Instruct.Q4_1" in panel.status.text()

    port = int(panel.url.text().rsplit(":", 1)[1].split("/")[0])
    with qtbot.waitSignal(panel.serving_changed, timeout=10000):
        panel.switch.setChecked(False)
    assert panel.url.text() == "" and panel.port.isEnabled()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=10)


def test_without_a_model_requests_get_503_then_load_crash_and_reload_are_followed(
    panel: ServePanel, qtbot: QtBot, demo_model_path: str
) -> None:
    client = _serve(panel, qtbot)
    assert "No model is loaded" in panel.status.text()
    with pytest.raises(openai.InternalServerError) as none:
        client.completions.create(model="x", prompt="Hi", max_tokens=2)
    assert none.value.status_code == 503
    _load(panel, qtbot, demo_model_path)
    qtbot.waitUntil(lambda: panel.status.text().startswith("Serving"), timeout=10000)
    reply = client.completions.create(model="SmolLM2-135M-Instruct.Q4_1", prompt="Hi", max_tokens=2)
    assert reply.choices[0].text

    pid = panel.adapter.pid
    assert pid is not None
    with qtbot.waitSignal(panel.adapter.error, timeout=30000):
        os.kill(pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: "model process stopped" in panel.status.text(), timeout=10000)
    with pytest.raises(openai.InternalServerError) as down:
        client.completions.create(model="SmolLM2-135M-Instruct.Q4_1", prompt="Hi", max_tokens=2)
    assert down.value.status_code == 503 and "load the model again" in str(down.value)

    _load(panel, qtbot, demo_model_path)  # the user loads again in the Run tab: served again
    reply = client.completions.create(model="SmolLM2-135M-Instruct.Q4_1", prompt="Hi", max_tokens=2)
    assert reply.choices[0].text


def test_a_taken_port_is_said_and_the_switch_goes_back_off(panel: ServePanel, qtbot: QtBot) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        panel.port.setValue(port)
        panel.switch.setChecked(True)
        qtbot.waitUntil(lambda: "already in use" in panel.status.text(), timeout=10000)
    assert not panel.switch.isChecked() and not panel.serving and panel.url.text() == ""
    assert f"Port {port} on 127.0.0.1" in panel.status.text()


def test_opening_to_the_network_warns_and_says_whether_a_key_is_set(panel: ServePanel, qtbot: QtBot) -> None:
    assert panel.warning.isHidden()
    panel.network.setChecked(True)
    assert not panel.warning.isHidden() and "no API key is set" in panel.warning.text()
    panel.api_key.setText("secret")
    assert "they need the API key" in panel.warning.text()
    assert panel.host == "0.0.0.0"
    panel.network.setChecked(False)
    assert panel.warning.isHidden() and panel.host == "127.0.0.1"
