"""Nothing waits forever on the worker, and a chat template cannot take the worker's memory.

Real llama.cpp on the CPU with a tiny synthetic F16 model (tests/synth_gguf.py): a stopped worker
(SIGSTOP) is ended by the client's watchdog and every wait reports it, in queue mode (the CLI), in
callback mode (the window) and through ``rigfit run``; a template that asks for 1.5 GB renders in a
capped helper and comes back as a template error.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from app.runner import protocol as P
from app.runner.client import RunnerClient
from tests.commands.cli import ROOT
from tests.synth_gguf import SynthShape, write_llama_gguf

SILENCE_S = 3.0
BOMB = "{{ ('x' * 1500000000) | length }}"


def _tiny(path: Path, template: str | None = None) -> Path:
    shape = SynthShape(
        n_layer=2, n_embd=64, n_ff=128, n_head=4, n_head_kv=2, n_vocab=300, weight_type="F16",
        chat_template=template,
    )  # fmt: skip
    return write_llama_gguf(path, shape).path


def _settings(path: Path) -> P.LoadSettings:
    return P.LoadSettings(model_path=str(path), n_ctx=256, n_threads=1)


def _chat(max_tokens: int = 4) -> P.ChatRequest:
    return P.ChatRequest(messages=(P.ChatMessage("user", "hi"),), max_tokens=max_tokens, temperature=0.0)


@pytest.fixture
def client() -> Iterator[RunnerClient]:
    c = RunnerClient(silence_limit_s=SILENCE_S)
    try:
        yield c
    finally:
        pid = c.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        c.close()


def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_stopped_worker_ends_the_chat_with_a_message_that_says_what_to_do(
    client: RunnerClient, tmp_path: Path
) -> None:
    client.load_sync(_settings(_tiny(tmp_path / "tiny.gguf")), timeout=120)
    pid = client.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    # No timeout of our own: the watchdog is what ends the wait.
    with pytest.raises(P.RunnerError) as info:
        list(client.chat_stream(_chat()))
    event = info.value.event
    assert event.kind == P.ERR_CRASHED
    assert f"no sign of life for {SILENCE_S:g} s" in event.message
    assert "stopped" in event.message and "Try again" in event.message
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    # The next load starts a fresh worker.
    client.load_sync(_settings(tmp_path / "tiny.gguf"), timeout=120)
    assert client.pid != pid


def test_the_watchdog_ends_a_silent_worker_in_callback_mode_too() -> None:
    # A worker that says it is ready, beats once, then goes silent without exiting (as a frozen one).
    body = (
        "import sys, time\n"
        'print(\'{"type": "ready", "pid": 1, "llama_cpp_version": "fake", "gpu_offload": false}\', flush=True)\n'
        'print(\'{"type":"heartbeat"}\', flush=True)\n'
        "time.sleep(600)\n"
    )
    got: list[P.Event] = []
    client = RunnerClient(
        got.append, queue_events=False, command=[sys.executable, "-c", body], silence_limit_s=SILENCE_S
    )
    try:
        client.start()
        proc = client._proc
        assert proc is not None
        proc.wait(60)  # ended by the watchdog, not by us
        for thread in client._threads:
            thread.join(30)
    finally:
        client.close()
    errors = [e for e in got if isinstance(e, P.ErrorEvent)]
    assert len(errors) == 1 and "no sign of life" in errors[0].message
    assert isinstance(got[-1], P.ExitedEvent) and not got[-1].expected


def test_a_worker_without_heartbeats_is_not_ended(tmp_path: Path) -> None:
    # Protocol fakes (and older workers) send no heartbeat: the watchdog stays unarmed.
    body = (
        "import sys, time\n"
        'print(\'{"type": "ready", "pid": 1, "llama_cpp_version": "fake", "gpu_offload": false}\', flush=True)\n'
        "sys.stdin.readline()\n"
    )
    client = RunnerClient(command=[sys.executable, "-c", body], silence_limit_s=1.0)
    try:
        client.start()
        with pytest.raises(P.RunnerError, match="no answer"):
            list(client.events_for(99, timeout=2.5))
        assert client.alive
    finally:
        client.close()


def test_rigfit_run_ends_on_a_stopped_worker_with_exit_1(tmp_path: Path) -> None:
    model = write_llama_gguf(
        tmp_path / "long.gguf",
        SynthShape(n_layer=4, n_embd=256, n_ff=512, n_head=4, n_vocab=2000, weight_type="F16"),
    ).path
    env = {**os.environ, P.SILENCE_ENV: str(SILENCE_S)}
    args = ["--model", str(model), "--prompt", "hi", "--max-tokens", "100000", "--ctx", "16384"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "run", *args, "--json", "--threads", "1", "--temperature", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    stopped = None
    try:
        for line in proc.stdout:
            if json.loads(line)["type"] == "loaded":
                workers = [
                    c
                    for c in psutil.Process(proc.pid).children()
                    if "app.runner.worker" in " ".join(c.cmdline())
                ]
                assert len(workers) == 1
                stopped = workers[0]
                stopped.send_signal(signal.SIGSTOP)
                break
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        if stopped is not None and stopped.is_running():
            stopped.send_signal(signal.SIGCONT)
    assert stopped is not None
    assert proc.returncode == 1, err
    events = [json.loads(x) for x in out.splitlines()]
    assert events[-1]["type"] == "error" and "no sign of life" in events[-1]["message"]
    assert [x for x in err.splitlines() if "no sign of life" in x]


def test_a_chat_template_memory_bomb_is_a_template_error(client: RunnerClient, tmp_path: Path) -> None:
    loaded = client.load_sync(_settings(_tiny(tmp_path / "bomb.gguf", BOMB)), timeout=120)
    assert loaded.chat_template
    done = list(client.chat_stream(_chat(), timeout=120))[-1]
    assert isinstance(done, P.DoneEvent)
    assert done.template != "gguf"  # the fallback layout answered
    assert done.template_error is not None and "MiB of memory" in done.template_error
    worker = client.pid
    assert worker is not None
    helpers = [c for c in psutil.Process(worker).children() if "template_sandbox" in " ".join(c.cmdline())]
    assert len(helpers) == 1
    # Neither the worker nor the helper ever held the 1.5 GB the template asked for.
    assert _peak_rss_mib(helpers[0].pid) < 600
    assert _peak_rss_mib(worker) < 600
    # A good template on the next model renders in the same helper.
    client.load_sync(_settings(_tiny(tmp_path / "good.gguf", "{{ messages[0]['content'] }}!")), timeout=120)
    done = list(client.chat_stream(_chat(), timeout=120))[-1]
    assert isinstance(done, P.DoneEvent) and done.template == "gguf" and done.template_error is None
