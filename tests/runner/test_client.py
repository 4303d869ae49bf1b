"""The client's handling of protocol edge cases, with tiny Python scripts standing in for the worker."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time

import psutil
import pytest

from app.runner import protocol as P
from app.runner.client import RunnerClient, describe_exit, worker_command, worker_environment

READY = '{"type": "ready", "pid": 1, "llama_cpp_version": "fake", "gpu_offload": false}'


def _script(body: str) -> list[str]:
    """A fake worker: the protocol goes to stdout, as the real worker's private fd does."""
    return [sys.executable, "-c", textwrap.dedent(body)]


def _gone(pid: int) -> bool:
    try:
        psutil.Process(pid)
    except psutil.NoSuchProcess:
        return True
    return False


def test_exit_descriptions_name_the_signal_or_code() -> None:
    assert describe_exit(-9).startswith("the model process stopped (signal 9)")
    assert describe_exit(-11).startswith("the model process stopped (signal 11)")
    assert describe_exit(3) == "the model process stopped (exit code 3)"
    assert describe_exit(0xC0000005) == "the model process stopped (exit code 0xc0000005)"
    tail = ["x", "/src/llama-model.cpp:1328: GGML_ASSERT(hparams.n_layer_all > 0) failed"]
    assert describe_exit(-6, tail) == (
        "the model process stopped (signal 6): /src/llama-model.cpp:1328: GGML_ASSERT(hparams.n_layer_all > 0) failed"
    )


def test_worker_environment_numbers_cuda_like_nvml_and_finds_the_app() -> None:
    env = worker_environment({"EXTRA": "1"})
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert env["EXTRA"] == "1"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(P.__file__))))
    assert env["PYTHONPATH"].split(os.pathsep)[0] == root


def test_worker_command_uses_the_frozen_binary_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    assert worker_command() == [sys.executable, "-m", "app.runner.worker"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert worker_command() == [sys.executable, "--rigfit-worker"]


def test_the_rigfit_worker_switch_starts_the_worker() -> None:
    code = "import sys; sys.argv = ['rigfit', '--rigfit-worker']; from app.__main__ import main; sys.exit(main())"
    with RunnerClient(command=[sys.executable, "-c", code]) as client:
        ready = client.start()
        assert ready.llama_cpp_version == "0.3.36"
        assert ready.devices and ready.devices[0].kind == "cpu"


def test_a_worker_that_dies_at_start_is_reported_with_its_output() -> None:
    client = RunnerClient(
        command=_script("import sys; print('llama_cpp: no such library', file=sys.stderr); sys.exit(3)")
    )
    with pytest.raises(P.RunnerError) as info:
        client.start()
    assert info.value.event.kind == P.ERR_START_FAILED
    assert any("no such library" in line for line in info.value.event.log_tail)
    assert client.last_exit_code == 3
    client.close()


def test_unreadable_lines_are_logged_and_skipped() -> None:
    body = f"""
        import sys
        print({READY!r}, flush=True)
        print('this is not json', flush=True)
        print('{{"type": "token", "text": "ok", "index": 0, "id": 1}}', flush=True)
        sys.stdin.readline()
    """
    with RunnerClient(command=_script(body)) as client:
        client.start()
        events = [client.next_event(10) for _ in range(2)]
        assert isinstance(events[0], P.ReadyEvent)
        assert events[1] == P.TokenEvent(text="ok", index=0, id=1)
        assert any("unreadable message" in line for line in client.log_tail())


def test_a_crash_is_reported_once_with_the_exit_and_the_process_is_reaped() -> None:
    body = f"""
        import os, sys, time
        print({READY!r}, flush=True)
        sys.stdin.readline()
        print('about to fall over', file=sys.stderr, flush=True)
        os.kill(os.getpid(), 9)
    """
    with RunnerClient(command=_script(body)) as client:
        client.start()
        pid = client.pid
        assert pid is not None
        req_id = client.chat(P.ChatRequest(messages=(P.ChatMessage("user", "hi"),)))
        with pytest.raises(P.RunnerError) as info:
            list(client.events_for(req_id, 10))
        event = info.value.event
        assert event.kind == P.ERR_CRASHED and event.exit_code == -9 and event.pid == pid
        assert "(signal 9)" in event.message
        assert "about to fall over" in event.log_tail
        assert _gone(pid)
        assert not client.alive


def test_close_escalates_to_kill_when_the_worker_ignores_shutdown_and_sigterm() -> None:
    body = f"""
        import signal, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print({READY!r}, flush=True)
        sys.stdin.close()
        while True:
            time.sleep(1)
    """
    client = RunnerClient(command=_script(body))
    client.start()
    pid = client.pid
    assert pid is not None
    t0 = time.monotonic()
    client.close(timeout_s=0.5)
    assert time.monotonic() - t0 < 10
    assert client.last_exit_code == -signal.SIGKILL
    assert _gone(pid)


def test_a_killed_worker_is_expected_not_a_crash() -> None:
    body = f"""
        import sys
        print({READY!r}, flush=True)
        sys.stdin.readline()
    """
    client = RunnerClient(command=_script(body))
    client.start()
    client.kill()
    events = []
    while True:
        event = client.next_event(5)
        events.append(event)
        if isinstance(event, P.ExitedEvent):
            break
    assert not any(isinstance(e, P.ErrorEvent) for e in events)
    assert events[-1].expected
    client.close()


def test_callback_mode_delivers_events_on_the_reader_thread_without_a_queue() -> None:
    got: list[P.Event] = []
    body = f"""
        import sys
        print({READY!r}, flush=True)
        sys.stdin.readline()
    """
    client = RunnerClient(got.append, queue_events=False, command=_script(body))
    client.start()
    client.close()
    assert isinstance(got[0], P.ReadyEvent)
    assert isinstance(got[-1], P.ExitedEvent) and got[-1].expected
    with pytest.raises(RuntimeError):
        client.next_event(0)
