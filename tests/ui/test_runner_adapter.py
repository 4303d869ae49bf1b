"""The Qt adapter of the model process: events become GUI-thread signals, and the state machine holds.

Real llama.cpp on the CPU with the demo model for the paths users hit (load, stream, stop, cancel,
a killed worker); tiny Python scripts stand in for the worker where timing must be controlled (a
slow start, a start that fails), and a fake client checks the state machine's edge cases.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from pytestqt.qtbot import QtBot

from PySide6 import QtCore

from app.core.errors import RigfitError
from app.runner import protocol as P
from app.runner.client import RunnerClient
from app.ui.runner_adapter import (
    STATE_CLOSED,
    STATE_GENERATING,
    STATE_IDLE,
    STATE_LOADED,
    STATE_LOADING,
    STATE_STARTING,
    RunnerAdapter,
)

THREADS = 1  # one llama.cpp thread: no OpenMP barriers stalling when other jobs share the 2 cores
READY = '{"type": "ready", "pid": 1, "llama_cpp_version": "fake", "gpu_offload": false}'


def _rigfit_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("rigfit-") and t.is_alive()]


def _children() -> list[psutil.Process]:
    return psutil.Process().children(recursive=True)


class Recorder:
    """Every signal of an adapter, in order, with the thread it arrived on."""

    def __init__(self, adapter: RunnerAdapter) -> None:
        self.events: list[tuple[str, object]] = []
        self.states: list[str] = []
        self.threads: set[bool] = set()
        gui = QtCore.QThread.currentThread()
        names = ("ready", "progress", "loaded", "token", "done", "error", "exited", "unloaded")
        for name in names:
            getattr(adapter, name).connect(self._make(name, gui))
        adapter.state_changed.connect(self.states.append)

    def _make(self, name: str, gui: QtCore.QThread) -> Callable[..., None]:
        def slot(*args: object) -> None:
            self.threads.add(QtCore.QThread.currentThread() is gui)
            self.events.append((name, args[0] if args else None))

        return slot

    def of(self, name: str) -> list[object]:
        return [e for n, e in self.events if n == name]


@pytest.fixture
def adapters(qtbot: QtBot) -> Iterator[Callable[..., RunnerAdapter]]:
    """Makes adapters; at teardown closes them and checks nothing is left: no process, no thread."""
    made: list[RunnerAdapter] = []

    def make(command: list[str] | None = None, env: dict[str, str] | None = None) -> RunnerAdapter:
        def factory(on_event: Callable[[P.Event], None]) -> RunnerClient:
            return RunnerClient(on_event=on_event, queue_events=False, command=command, env=env)

        adapter = RunnerAdapter(client_factory=factory)
        made.append(adapter)
        return adapter

    yield make
    for adapter in made:
        adapter.close()
        assert adapter.state == STATE_CLOSED
    assert not _children()
    assert not _rigfit_threads()


def _script(body: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(body)]


def _load(adapter: RunnerAdapter, qtbot: QtBot, demo: str, **kw: object) -> P.LoadedEvent:
    with qtbot.waitSignal(adapter.loaded, timeout=60000) as blocker:
        adapter.load(P.LoadSettings(model_path=demo, n_ctx=512, n_threads=THREADS, **kw))  # type: ignore[arg-type]
    event = blocker.args[0]
    assert isinstance(event, P.LoadedEvent)
    return event


def _chat(text: str, **kw: object) -> P.ChatRequest:
    kw.setdefault("temperature", 0.0)
    return P.ChatRequest(messages=(P.ChatMessage("user", text),), **kw)  # type: ignore[arg-type]


# -- the real worker -------------------------------------------------------------------------------


def test_load_stream_and_stop_arrive_as_gui_thread_signals_in_order(
    adapters: Callable[..., RunnerAdapter], qtbot: QtBot, demo_model_path: str
) -> None:
    adapter = adapters()
    rec = Recorder(adapter)
    loaded = _load(adapter, qtbot, demo_model_path)
    assert loaded.n_layer == 30 and loaded.buffers
    assert adapter.loaded_event is loaded and adapter.state == STATE_LOADED
    assert rec.states[:3] == [STATE_STARTING, STATE_LOADING, STATE_LOADED]
    percents = [p for p in rec.of("progress") if isinstance(p, int)]
    assert percents[0] == 0 and percents[-1] == 100 and percents == sorted(percents)
    assert rec.of("ready") and adapter.ready_info is not None

    with qtbot.waitSignal(adapter.done, timeout=60000) as done_blocker:
        adapter.chat(_chat("Say hello.", max_tokens=12, ignore_eos=True))
        assert adapter.state == STATE_GENERATING
    done = done_blocker.args[0]
    tokens = [t for t in rec.of("token") if isinstance(t, P.TokenEvent)]
    assert [t.index for t in tokens] == list(range(12))
    assert "".join(t.text for t in tokens) == done.text
    assert adapter.state == STATE_LOADED

    # Stop: the reply ends within one token of the stop.
    rec.events.clear()
    stopped_at: list[int] = []

    def stop_at_third(event: object) -> None:
        if isinstance(event, P.TokenEvent) and event.index == 2 and not stopped_at:
            stopped_at.append(event.index)
            adapter.stop()

    adapter.token.connect(stop_at_third)
    with qtbot.waitSignal(adapter.done, timeout=60000) as done_blocker:
        adapter.chat(_chat("Tell me a long story about the sea.", max_tokens=300, ignore_eos=True))
    done = done_blocker.args[0]
    assert done.stop_reason == "stopped"
    assert done.completion_tokens <= 4
    assert rec.threads == {True}  # every signal was delivered on the GUI thread


def test_cancel_right_after_load_cancels_and_the_next_load_works(
    adapters: Callable[..., RunnerAdapter], qtbot: QtBot, demo_model_path: str
) -> None:
    adapter = adapters()
    rec = Recorder(adapter)
    cancel_once = []

    def cancel_when_loading(state: str) -> None:
        if state == STATE_LOADING and not cancel_once:
            cancel_once.append(state)
            adapter.cancel_load()

    adapter.state_changed.connect(cancel_when_loading)
    with qtbot.waitSignal(adapter.error, timeout=60000) as blocker:
        adapter.load(P.LoadSettings(model_path=demo_model_path, n_ctx=512, n_threads=THREADS))
    assert blocker.args[0].kind == P.ERR_CANCELLED
    assert adapter.state == STATE_IDLE and adapter.loaded_event is None
    assert not rec.of("loaded")
    adapter.state_changed.disconnect(cancel_when_loading)
    with pytest.raises(RigfitError, match="no model is loaded"):
        adapter.chat(_chat("hi"))
    _load(adapter, qtbot, demo_model_path)
    assert adapter.state == STATE_LOADED


def test_a_killed_worker_is_reported_and_a_second_load_starts_a_fresh_one(
    adapters: Callable[..., RunnerAdapter], qtbot: QtBot, demo_model_path: str
) -> None:
    adapter = adapters()
    rec = Recorder(adapter)
    _load(adapter, qtbot, demo_model_path)
    pid = adapter.pid
    assert pid is not None
    with qtbot.waitSignal(adapter.exited, timeout=30000):
        os.kill(pid, signal.SIGKILL)
    errors = [e for e in rec.of("error") if isinstance(e, P.ErrorEvent)]
    assert errors and errors[-1].kind == P.ERR_CRASHED
    assert "the model process stopped (signal 9)" in errors[-1].message
    exited = rec.of("exited")[-1]
    assert isinstance(exited, P.ExitedEvent) and not exited.expected and exited.exit_code == -9
    assert adapter.state == STATE_IDLE and adapter.loaded_event is None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() != psutil.STATUS_ZOMBIE

    _load(adapter, qtbot, demo_model_path)
    assert adapter.pid is not None and adapter.pid != pid


def test_closing_while_the_worker_starts_leaves_no_process(adapters: Callable[..., RunnerAdapter]) -> None:
    adapter = adapters()
    adapter.load(P.LoadSettings(model_path="/models/never-loaded.gguf"))
    assert adapter.state == STATE_STARTING
    adapter.close()  # the window closes right after the Load click
    assert adapter.state == STATE_CLOSED
    assert not _children()
    assert not _rigfit_threads()


# -- stand-in workers --------------------------------------------------------------------------------


def test_cancel_while_the_worker_starts_is_immediate_and_no_load_is_sent(
    adapters: Callable[..., RunnerAdapter], qtbot: QtBot, tmp_path: Path
) -> None:
    seen = tmp_path / "requests.txt"
    body = f"""
        import sys, time
        time.sleep(1.0)  # importing llama.cpp
        print({READY!r}, flush=True)
        with open({str(seen)!r}, "a") as out:
            for line in sys.stdin:
                out.write(line)
                out.flush()
    """
    adapter = adapters(command=_script(body))
    rec = Recorder(adapter)
    adapter.load(P.LoadSettings(model_path="/models/x.gguf"))
    assert adapter.state == STATE_STARTING
    adapter.cancel_load()
    assert adapter.state == STATE_IDLE
    errors = [e for e in rec.of("error") if isinstance(e, P.ErrorEvent)]
    assert [e.kind for e in errors] == [P.ERR_CANCELLED]
    qtbot.waitSignal(adapter.ready, timeout=30000).wait()
    qtbot.wait(200)
    assert adapter.state == STATE_IDLE
    assert '"type":"load"' not in (seen.read_text() if seen.exists() else "")


def test_a_worker_that_cannot_start_gives_one_error_with_its_output(
    adapters: Callable[..., RunnerAdapter], qtbot: QtBot
) -> None:
    adapter = adapters(
        command=_script("import sys; print('no llama.cpp here', file=sys.stderr); sys.exit(3)")
    )
    rec = Recorder(adapter)
    with qtbot.waitSignal(adapter.exited, timeout=30000):
        adapter.load(P.LoadSettings(model_path="/models/x.gguf"))
    qtbot.wait(100)
    assert adapter.state == STATE_IDLE
    errors = [e for e in rec.of("error") if isinstance(e, P.ErrorEvent)]
    assert len(errors) == 1
    assert "exit code 3" in errors[0].message
    assert any("no llama.cpp here" in line for line in errors[0].log_tail)


def test_a_split_for_gpus_this_machine_lacks_is_refused_before_loading(
    adapters: Callable[..., RunnerAdapter], qtbot: QtBot, tmp_path: Path
) -> None:
    seen = tmp_path / "requests.txt"
    body = f"""
        import sys
        print({READY!r}, flush=True)
        with open({str(seen)!r}, "a") as out:
            for line in sys.stdin:
                out.write(line)
                out.flush()
    """
    adapter = adapters(command=_script(body))
    with qtbot.waitSignal(adapter.error, timeout=30000) as blocker:
        adapter.load(P.LoadSettings(model_path="/models/x.gguf", tensor_split=(1.0, 1.0)))
    assert blocker.args[0].kind == P.ERR_BAD_REQUEST
    assert "llama.cpp sees no GPU" in blocker.args[0].message
    assert adapter.state == STATE_IDLE
    qtbot.wait(100)
    assert '"type":"load"' not in (seen.read_text() if seen.exists() else "")


# -- the state machine, with a fake client -------------------------------------------------------------


class FakeClient:
    """Records requests; the test plays the worker's events."""

    def __init__(self, on_event: Callable[[P.Event], None]) -> None:
        self.on_event = on_event
        self.alive = False
        self.pid: int | None = None
        self.ready_info: P.ReadyEvent | None = None
        self.requests: list[str] = []
        self._ids = itertools.count(1)
        self._pids = itertools.count(1000)

    def start(self) -> P.ReadyEvent:
        self.alive = True
        self.pid = next(self._pids)
        self.ready_info = P.ReadyEvent(pid=self.pid, llama_cpp_version="fake", gpu_offload=False)
        self.on_event(self.ready_info)
        return self.ready_info

    def load(self, settings: P.LoadSettings, plan: object = None) -> int:
        self.requests.append("load")
        return next(self._ids)

    def chat(self, request: P.ChatRequest) -> int:
        self.requests.append("chat")
        return next(self._ids)

    def cancel_load(self) -> None:
        self.requests.append("cancel")

    def stop(self) -> None:
        self.requests.append("stop")

    def cancel(self, req_id: int) -> None:
        self.requests.append(f"cancel {req_id}")

    def unload(self) -> int:
        self.requests.append("unload")
        return next(self._ids)

    def kill(self) -> None:
        self.alive = False

    def close(self) -> None:
        self.alive = False

    def log_tail(self, n: int = 50) -> tuple[str, ...]:
        return ()


@pytest.fixture
def fake(qtbot: QtBot) -> Iterator[tuple[RunnerAdapter, list[FakeClient]]]:
    clients: list[FakeClient] = []

    def factory(on_event: Callable[[P.Event], None]) -> FakeClient:
        client = FakeClient(on_event)
        clients.append(client)
        return client

    adapter = RunnerAdapter(client_factory=factory)  # type: ignore[arg-type]
    yield adapter, clients
    adapter.close()


def _loaded_fake(adapter: RunnerAdapter, clients: list[FakeClient], qtbot: QtBot) -> FakeClient:
    with qtbot.waitSignal(adapter.state_changed, timeout=5000, check_params_cb=lambda s: s == STATE_LOADING):
        adapter.load(P.LoadSettings(model_path="/m.gguf"))
    client = clients[0]
    with qtbot.waitSignal(adapter.loaded, timeout=5000):
        client.on_event(
            P.LoadedEvent(model_path="/m.gguf", buffers=(), load_s=0.1, n_ctx=512, n_layer=2, id=1)
        )
    return client


def test_a_crash_of_a_replaced_worker_does_not_fail_the_new_load(
    fake: tuple[RunnerAdapter, list[FakeClient]], qtbot: QtBot
) -> None:
    adapter, clients = fake
    client = _loaded_fake(adapter, clients, qtbot)
    old_pid = client.pid
    client.alive = False
    client.ready_info = None
    adapter._set_state(STATE_IDLE)  # as after the crash was reported
    adapter.load(P.LoadSettings(model_path="/m.gguf"))
    # The old worker's late crash report arrives while the new one starts: it must be ignored.
    client.on_event(
        P.ErrorEvent(message="the model process stopped (signal 9)", kind=P.ERR_CRASHED, pid=old_pid)
    )
    client.on_event(P.ExitedEvent(exit_code=-9, expected=False, pid=old_pid))
    qtbot.waitUntil(lambda: adapter.state == STATE_LOADING, timeout=5000)
    assert client.pid != old_pid


def test_requests_out_of_turn_are_refused_in_plain_words(
    fake: tuple[RunnerAdapter, list[FakeClient]], qtbot: QtBot
) -> None:
    adapter, clients = fake
    with pytest.raises(RigfitError, match="no model is loaded"):
        adapter.chat(_chat("hi"))
    client = _loaded_fake(adapter, clients, qtbot)
    adapter.chat(_chat("hi"))
    with pytest.raises(RigfitError, match="cannot load now"):
        adapter.load(P.LoadSettings(model_path="/m.gguf"))
    adapter.stop()
    # By id: a request of the local server on the same worker is not stopped with the chat.
    assert client.requests == ["load", "chat", "cancel 2"]
    # Tokens and the done event of another request id are not this chat's.
    rec = Recorder(adapter)
    client.on_event(P.TokenEvent(text="x", index=0, id=99))
    client.on_event(P.TokenEvent(text="ok", index=0, id=2))
    with qtbot.waitSignal(adapter.done, timeout=5000):
        client.on_event(
            P.DoneEvent(
                text="ok", stop_reason="stopped", prompt_tokens=1, completion_tokens=1, ttft_s=0.1,
                prompt_ms=1.0, gen_ms=1.0, prompt_tok_s=1.0, gen_tok_s=1.0, wall_s=0.1, id=2,
            )
        )  # fmt: skip
    assert [t.text for t in rec.of("token") if isinstance(t, P.TokenEvent)] == ["ok"]
    assert adapter.state == STATE_LOADED
    adapter.unload()
    with qtbot.waitSignal(adapter.unloaded, timeout=5000):
        client.on_event(P.UnloadedEvent(id=3))
    assert adapter.state == STATE_IDLE and adapter.loaded_event is None


def test_a_failed_chat_keeps_the_model_loaded(
    fake: tuple[RunnerAdapter, list[FakeClient]], qtbot: QtBot
) -> None:
    adapter, clients = fake
    client = _loaded_fake(adapter, clients, qtbot)
    req = adapter.chat(_chat("hi"))
    with qtbot.waitSignal(adapter.error, timeout=5000):
        client.on_event(
            P.ErrorEvent(message="the prompt could not be tokenized", kind=P.ERR_GENERATION, id=req)
        )
    assert adapter.state == STATE_LOADED


def test_close_refuses_later_requests(fake: tuple[RunnerAdapter, list[FakeClient]]) -> None:
    adapter, _ = fake
    adapter.close()
    with pytest.raises(RigfitError, match="shut down"):
        adapter.load(P.LoadSettings(model_path="/m.gguf"))
