"""The worker with real llama.cpp on the CPU and the demo model: chat, stop, cancel, crashes, templates.

One worker serves the module (loads are ~0.3 s, but start-up and page-in are not free on 2 cores);
tests that need another model load it into the same worker, and tests that kill the worker check
that the next load starts a fresh one.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from app.runner import protocol as P
from app.runner.client import RunnerClient
from tests.runner.gguf_edit import edit_gguf

N_CTX = 1024
THREADS = 1  # one thread: no OpenMP barriers to stall when other jobs share the 2 cores


def _reaped(pid: int) -> bool:
    """Gone for good: neither running nor a zombie waiting for its parent."""
    try:
        psutil.Process(pid)
    except psutil.NoSuchProcess:
        return True
    return False


class Session:
    """The module's client plus what it has loaded."""

    def __init__(self, client: RunnerClient, demo: str) -> None:
        self.client = client
        self.demo = demo
        self.loaded: tuple[str, tuple[tuple[str, Any], ...]] | None = None

    def settings(self, path: str | None = None, **kw: Any) -> P.LoadSettings:
        return P.LoadSettings(model_path=path or self.demo, n_ctx=N_CTX, n_threads=THREADS, **kw)

    def load(self, path: str | None = None, **kw: Any) -> P.LoadedEvent:
        self.loaded = None  # a failed load leaves nothing loaded (the worker frees the old model first)
        event = self.client.load_sync(self.settings(path, **kw), timeout=120)
        self.loaded = (path or self.demo, tuple(sorted(kw.items())))
        return event

    def ensure_demo(self) -> None:
        if self.loaded != (self.demo, ()) or not self.client.alive:
            self.load()

    def chat(self, text: str, **kw: Any) -> P.ChatRequest:
        kw.setdefault("temperature", 0.0)
        return P.ChatRequest(messages=(P.ChatMessage("user", text),), **kw)


@pytest.fixture(scope="module")
def session(demo_model_path: str) -> Iterator[Session]:
    client = RunnerClient(env={P.TEST_SWITCH_ENV: "1"})
    client.start()
    try:
        yield Session(client, demo_model_path)
    finally:
        pid = client.pid
        client.close()
        assert pid is not None and _reaped(pid)


def _drain_until(
    client: RunnerClient, req_id: int, types: tuple[type, ...], timeout: float = 60
) -> list[P.Event]:
    """Every event (logs included) up to the first of ``types`` for ``req_id``."""
    seen: list[P.Event] = []
    deadline = time.monotonic() + timeout
    while True:
        event = client.next_event(max(0.1, deadline - time.monotonic()))
        seen.append(event)
        if isinstance(event, types) and getattr(event, "id", None) == req_id:
            return seen


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- chat -------------------------------------------------------------------------------------------


def test_demo_model_answers_a_chat(session: Session) -> None:
    session.ensure_demo()
    events = list(session.client.chat_stream(session.chat("Say hello to me.", max_tokens=24), timeout=60))
    done = events[-1]
    assert isinstance(done, P.DoneEvent)
    assert done.text.strip() and done.completion_tokens > 0
    assert done.template == "gguf" and done.template_error is None
    assert done.stop_reason in ("eos", "max_tokens")
    assert done.prompt_tokens > 10  # the template's system line and turn markers came in
    assert done.prompt_tok_s and done.prompt_tok_s > 0 and done.gen_tok_s and done.gen_tok_s > 0
    assert done.ttft_s is not None and 0 < done.ttft_s <= done.wall_s


def test_repeat_penalty_min_p_and_a_system_prompt_reach_the_sampler(session: Session) -> None:
    session.ensure_demo()

    def reply(request: P.ChatRequest) -> P.DoneEvent:
        done = list(session.client.chat_stream(request, timeout=60))[-1]
        assert isinstance(done, P.DoneEvent)
        return done

    text = "List the colours of the rainbow, then list them again."
    plain = reply(session.chat(text, max_tokens=48, ignore_eos=True))
    # Off values are exactly the old sampler: greedy, no penalty.
    assert (
        reply(session.chat(text, max_tokens=48, ignore_eos=True, repeat_penalty=1.0, min_p=0.0)).text
        == plain.text
    )
    penalised = reply(session.chat(text, max_tokens=48, ignore_eos=True, repeat_penalty=1.5))
    assert penalised.text != plain.text  # the penalty changed which tokens greedy picks
    # min-p truncates before the draw: with a seed the sampled reply is reproducible.
    sampled = session.chat(text, max_tokens=16, temperature=0.9, min_p=0.2, seed=7)
    assert reply(sampled).text == reply(sampled).text
    system = P.ChatRequest(
        messages=(P.ChatMessage("system", "Answer in one word."), P.ChatMessage("user", text)),
        temperature=0.0,
        max_tokens=8,
    )
    with_system = reply(system)
    # The system message is in the prompt: SmolLM2's template puts its own default one there otherwise.
    assert with_system.prompt_tokens != plain.prompt_tokens
    with pytest.raises(Exception, match="repeat penalty"):
        P.ChatRequest(messages=system.messages, repeat_penalty=0.0).validate()
    with pytest.raises(Exception, match="min-p"):
        P.ChatRequest(messages=system.messages, min_p=1.0).validate()


def test_tokens_stream_in_order_as_they_are_made(session: Session) -> None:
    session.ensure_demo()
    arrivals: list[tuple[float, P.TokenEvent | P.DoneEvent]] = []
    request = session.chat("Count from one to twenty.", max_tokens=40, ignore_eos=True)
    for event in session.client.chat_stream(request, timeout=60):
        arrivals.append((time.monotonic(), event))
    tokens = [e for _, e in arrivals if isinstance(e, P.TokenEvent)]
    done = arrivals[-1][1]
    assert isinstance(done, P.DoneEvent) and done.stop_reason == "max_tokens"
    assert [t.index for t in tokens] == list(range(40)) == list(range(done.completion_tokens))
    assert "".join(t.text for t in tokens) == done.text
    # Streamed, not delivered in one lump at the end: first and last token arrive a generation apart.
    spread_s = arrivals[-2][0] - arrivals[0][0]
    assert done.gen_tok_s is not None
    assert spread_s > 0.5 * 39 / done.gen_tok_s


def test_stop_ends_generation_within_one_token(session: Session) -> None:
    session.ensure_demo()
    client = session.client
    req_id = client.chat(session.chat("Tell me a long story about the sea.", max_tokens=400, ignore_eos=True))
    after_stop = 0
    stopped = False
    while True:
        event = client.next_event(60)
        if isinstance(event, P.TokenEvent) and event.id == req_id:
            if stopped:
                after_stop += 1
            elif event.index == 3:
                client.stop()
                stopped = True
        elif isinstance(event, P.DoneEvent) and event.id == req_id:
            break
        elif isinstance(event, P.ErrorEvent):
            pytest.fail(event.message)
    assert event.stop_reason == "stopped"
    assert after_stop <= 1
    assert event.completion_tokens == 4 + after_stop


def test_a_stop_does_not_leak_into_the_next_request(session: Session) -> None:
    session.ensure_demo()
    session.client.stop()  # nothing running: must not cut the next chat short
    events = list(session.client.chat_stream(session.chat("Hi", max_tokens=5, ignore_eos=True), timeout=60))
    assert isinstance(events[-1], P.DoneEvent) and events[-1].stop_reason == "max_tokens"


def test_bench_request_times_prompt_and_generation(session: Session) -> None:
    session.ensure_demo()
    event = session.client.bench_sync(64, 8, timeout=60)
    assert event.pp == 64 and event.tg == 8
    assert event.pp_tok_s and event.pp_tok_s > 0 and event.tg_tok_s and event.tg_tok_s > 0
    # llama.cpp's own counters: 64 tokens in one pass are faster per token than 8 one-token passes.
    assert event.pp_tok_s > event.tg_tok_s


# -- load ------------------------------------------------------------------------------------------


def test_measured_buffers_equal_what_llama_cpp_logged(session: Session) -> None:
    client = session.client
    session.loaded = None
    req_id = client.load(session.settings())
    events = _drain_until(client, req_id, (P.LoadedEvent, P.ErrorEvent))
    loaded = events[-1]
    assert isinstance(loaded, P.LoadedEvent)
    session.loaded = (session.demo, ())
    logged = [
        line for e in events if isinstance(e, P.LogEvent) and e.source == "llama.cpp" for line in e.lines
    ]
    found = {}
    for line in logged:
        m = re.search(r"(\S+)\s+(model|KV|compute|output) buffer size =\s+([\d.]+) MiB", line)
        if m:
            found[(m.group(1), m.group(2))] = float(m.group(3))
    assert found and {(b.device, b.buffer): b.mib for b in loaded.buffers} == found
    # And they are the real sizes: KV = n_ctx × 30 layers × 192 (3 KV heads × 64) × 2 bytes × (K and V).
    assert found[("CPU", "KV")] == N_CTX * 30 * 192 * 2 * 2 / 2**20
    assert found[("CPU_Mapped", "model")] == 92.10
    assert loaded.layers == {"CPU": 31}  # 30 repeating layers + the output layer
    assert loaded.n_ctx == N_CTX and loaded.n_layer == 30
    assert loaded.on_cpu_only and loaded.vram == ()  # no NVML here
    # llama-cpp-python installs its own log callback; ours replaced it, so nothing went to raw stderr.
    raw = [line for e in events if isinstance(e, P.LogEvent) and e.source == "stderr" for line in e.lines]
    assert not any("buffer size" in line for line in raw)


def test_progress_runs_from_0_to_100(session: Session) -> None:
    client = session.client
    session.loaded = None
    req_id = client.load(session.settings())
    events = _drain_until(client, req_id, (P.LoadedEvent, P.ErrorEvent))
    session.loaded = (session.demo, ())
    percents = [e.percent for e in events if isinstance(e, P.ProgressEvent) and e.id == req_id]
    assert percents[0] == 0 and percents[-1] == 100 and percents == sorted(percents)


def test_a_load_can_be_cancelled_and_the_worker_loads_again(session: Session) -> None:
    client = session.client
    session.loaded = None
    req_id = client.load(session.settings())
    client.cancel_load()
    end = _drain_until(client, req_id, (P.LoadedEvent, P.ErrorEvent))[-1]
    assert isinstance(end, P.ErrorEvent) and end.kind == P.ERR_CANCELLED, end
    assert client.alive
    with pytest.raises(P.RunnerError, match="no model is loaded"):
        list(client.chat_stream(session.chat("hi", max_tokens=2), timeout=30))
    session.load()
    events = list(client.chat_stream(session.chat("hi", max_tokens=3, ignore_eos=True), timeout=60))
    assert isinstance(events[-1], P.DoneEvent) and events[-1].completion_tokens == 3


@pytest.mark.parametrize(
    ("make", "kind", "words"),
    [
        (lambda demo, tmp: tmp / "missing.gguf", P.ERR_BAD_MODEL, "not found"),
        (
            lambda demo, tmp: _write(tmp / "text.gguf", b"hello world" * 10),
            P.ERR_BAD_MODEL,
            "not a GGUF file",
        ),
        (
            lambda demo, tmp: _write(tmp / "half.gguf", Path(demo).read_bytes()[:50_000_000]),
            P.ERR_BAD_MODEL,
            "corrupted or incomplete",
        ),
        (
            lambda demo, tmp: _write(tmp / "header.gguf", Path(demo).read_bytes()[:1000]),
            P.ERR_BAD_MODEL,
            "could not load header.gguf",
        ),
        (
            lambda demo, tmp: edit_gguf(demo, tmp / "arch.gguf", strings={"general.architecture": "llamx"}),
            P.ERR_BAD_MODEL,
            "unknown model architecture: 'llamx'",
        ),
    ],
    ids=["missing", "not-gguf", "truncated", "truncated-header", "unknown-architecture"],
)
def test_bad_model_files_give_a_plain_error(
    session: Session, tmp_path: Path, make: Any, kind: str, words: str
) -> None:
    path = make(session.demo, tmp_path)
    with pytest.raises(P.RunnerError) as info:
        session.load(str(path))
    assert info.value.event.kind == kind
    assert words in info.value.event.message
    assert "\n" not in info.value.event.message
    assert session.client.alive


def test_a_context_that_cannot_be_created_is_a_plain_error(session: Session) -> None:
    with pytest.raises(P.RunnerError) as info:
        session.load(type_v="q4_0", flash_attn=False)
    assert info.value.event.kind == P.ERR_CONTEXT_FAILED
    assert "quantized V cache requires flash_attn" in info.value.event.message
    assert info.value.event.log_tail  # the lines llama.cpp logged come with it


# -- chat templates --------------------------------------------------------------------------------

ATTACKS = {
    "globals-os": "{{ cycler.__init__.__globals__.os.system('touch MARKER') }}",
    "subclasses": "{% for c in ''.__class__.__mro__[1].__subclasses__() %}{{ c }}{% endfor %}",
    "builtins-open": "{{ raise_exception.__globals__['__builtins__']['open']('MARKER', 'w') }}",
    "lipsum-popen": "{{ lipsum.__globals__['os'].popen('touch MARKER').read() }}",
    "include-file": "{% include 'MARKER_SRC' %}",
    "mutate-messages": "{{ messages.append({'role': 'x'}) }}{{ messages.__class__.__base__ }}",
}


@pytest.mark.parametrize("attack", list(ATTACKS), ids=list(ATTACKS))
def test_a_malicious_chat_template_runs_nothing(session: Session, tmp_path: Path, attack: str) -> None:
    marker = tmp_path / "pwned"
    secret = tmp_path / "secret.txt"
    secret.write_text("the file system is not for templates")
    template = ATTACKS[attack].replace("MARKER_SRC", str(secret)).replace("MARKER", str(marker))
    path = edit_gguf(
        session.demo, tmp_path / "evil.gguf", strings={"tokenizer.chat_template": template}, jinja_pad=True
    )
    loaded = session.load(str(path))
    assert loaded.chat_template
    events = list(session.client.chat_stream(session.chat("Say hi.", max_tokens=8), timeout=60))
    done = events[-1]
    assert isinstance(done, P.DoneEvent)
    assert not marker.exists()
    assert "the file system is not for templates" not in done.text
    assert done.template == "chatml"  # the fallback answered instead
    assert done.template_error
    assert done.text.strip()


def test_a_gguf_without_a_chat_template_falls_back_to_chatml(session: Session, tmp_path: Path) -> None:
    path = edit_gguf(
        session.demo, tmp_path / "bare.gguf", renames={"tokenizer.chat_template": "tokenizer.chat_templatX"}
    )
    loaded = session.load(str(path))
    assert not loaded.chat_template
    done = list(session.client.chat_stream(session.chat("Say hi.", max_tokens=8), timeout=60))[-1]
    assert isinstance(done, P.DoneEvent) and done.template == "chatml" and done.template_error is None
    assert done.text.strip()


def test_llama_cpp_renders_templates_in_jinja_s_immutable_sandbox() -> None:
    # Pins the library behaviour the worker relies on; a llama-cpp-python upgrade must keep it.
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    formatter = Jinja2ChatFormatter(template="{{ messages[0]['content'] }}", eos_token="", bos_token="")
    assert isinstance(formatter._environment.environment, ImmutableSandboxedEnvironment)


# -- crashes ---------------------------------------------------------------------------------------


def _chat_until_token(client: RunnerClient, request: P.ChatRequest, index: int) -> int:
    req_id = client.chat(request)
    while True:
        event = client.next_event(60)
        if isinstance(event, P.TokenEvent) and event.id == req_id and event.index >= index:
            return req_id
        if isinstance(event, (P.DoneEvent, P.ErrorEvent)) and getattr(event, "id", None) == req_id:
            pytest.fail(f"the chat ended before token {index}: {event}")


def _expect_crash(client: RunnerClient, req_id: int) -> P.ErrorEvent:
    with pytest.raises(P.RunnerError) as info:
        for _ in client.events_for(req_id, 60):
            pass
    return info.value.event


def _loads_and_chats_again(session: Session, old_pid: int) -> None:
    assert _reaped(old_pid)
    session.load()
    assert session.client.pid != old_pid
    done = list(session.client.chat_stream(session.chat("hi", max_tokens=3, ignore_eos=True), timeout=60))[-1]
    assert isinstance(done, P.DoneEvent) and done.completion_tokens == 3


def test_sigkill_mid_generation_is_reported_and_a_fresh_worker_loads_again(session: Session) -> None:
    session.ensure_demo()
    client = session.client
    pid = client.pid
    assert pid is not None
    req_id = _chat_until_token(client, session.chat("Write a long poem.", max_tokens=400, ignore_eos=True), 2)
    os.kill(pid, signal.SIGKILL)
    error = _expect_crash(client, req_id)
    assert error.kind == P.ERR_CRASHED and error.exit_code == -signal.SIGKILL
    assert "the model process stopped (signal 9)" in error.message
    assert error.log_tail  # the last lines it logged
    _loads_and_chats_again(session, pid)


def test_an_aborting_worker_is_reported_and_a_fresh_worker_loads_again(session: Session) -> None:
    session.ensure_demo()
    client = session.client
    pid = client.pid
    assert pid is not None
    req_id = _chat_until_token(client, session.chat("Write a long poem.", max_tokens=400, ignore_eos=True), 1)
    client.abort_for_test()
    error = _expect_crash(client, req_id)
    assert error.kind == P.ERR_CRASHED
    assert "the model process stopped (signal 6)" in error.message
    _loads_and_chats_again(session, pid)


def test_a_gguf_that_trips_a_llama_cpp_assert_is_reported_and_the_next_load_works(
    session: Session, tmp_path: Path
) -> None:
    path = edit_gguf(session.demo, tmp_path / "zero-layers.gguf", uint32s={"llama.block_count": 0})
    session.client.start()
    pid = session.client.pid
    assert pid is not None
    with pytest.raises(P.RunnerError) as info:
        session.load(str(path))
    error = info.value.event
    assert error.kind == P.ERR_CRASHED
    assert "signal 6" in error.message and "GGML_ASSERT" in error.message
    assert any("GGML_ASSERT" in line for line in error.log_tail)
    _loads_and_chats_again(session, pid)


def test_the_abort_switch_is_refused_without_the_test_environment(demo_model_path: str) -> None:
    with RunnerClient() as client:
        client.start()
        client.abort_for_test()
        while True:
            event = client.next_event(30)
            if isinstance(event, P.ErrorEvent):
                break
        assert event.kind == P.ERR_BAD_REQUEST and "tests only" in event.message
        client.load_sync(P.LoadSettings(model_path=demo_model_path, n_ctx=256, n_threads=THREADS), timeout=60)
        assert client.alive


# -- the channel -----------------------------------------------------------------------------------

NOISY_WORKER = """
import os, app.runner.worker as w
claim = w.claim_protocol_fd
def noisy():
    fd = claim()
    os.write(1, b'{"type": "token", "text": "C-level noise on fd 1", "index": 99}\\n')
    print('python print noise')
    return fd
w.claim_protocol_fd = noisy
raise SystemExit(w.main())
"""


def test_writes_to_stdout_inside_the_worker_cannot_corrupt_the_protocol(demo_model_path: str) -> None:
    with RunnerClient(command=[sys.executable, "-c", NOISY_WORKER]) as client:
        client.start()
        loaded = client.load_sync(
            P.LoadSettings(model_path=demo_model_path, n_ctx=256, n_threads=THREADS), timeout=60
        )
        assert loaded.buffers
        seen: list[P.Event] = []
        while True:
            try:
                seen.append(client.next_event(0.5))
            except Exception:  # queue drained
                break
        assert not any(isinstance(e, P.TokenEvent) for e in seen)
        tail = client.log_tail(400)
        assert any("C-level noise on fd 1" in line for line in tail)
        assert any("python print noise" in line for line in tail)


def test_close_leaves_no_process_behind(demo_model_path: str) -> None:
    client = RunnerClient()
    client.load_sync(P.LoadSettings(model_path=demo_model_path, n_ctx=256, n_threads=THREADS), timeout=60)
    pid = client.pid
    assert pid is not None and psutil.pid_exists(pid)
    client.close()
    assert _reaped(pid)
    assert not client.alive


def test_the_client_puts_the_plan_comparison_into_the_loaded_event(session: Session) -> None:
    from app.core.plan import HostPlan, Plan
    from app.core.settings import Settings

    plan = Plan(
        model="demo",
        quant="Q4_1",
        settings=Settings(ctx=N_CTX),
        devices=(),
        host=HostPlan(
            layers=30, weights_mib=92.10, kv_mib=22.5, compute_mib=50.0, output_mib=0.19, available_mib=None
        ),
        status="fits",
        tensor_split=(),
        n_layer=30,
        layers_on_cpu=30,
    )
    session.loaded = None
    loaded = session.client.load_sync(session.settings(), plan=plan, timeout=120)
    session.loaded = (session.demo, ())
    rows = {(r.device, r.buffer): r for r in loaded.compare}
    assert rows[("host", "kv")] == P.CompareRow("host", "kv", 22.5, 22.5, 0.0)
    assert rows[("host", "weights")].error_pct == 0.0
    assert rows[("host", "compute")].measured_mib > 50.0 and rows[("host", "compute")].error_pct < 0
