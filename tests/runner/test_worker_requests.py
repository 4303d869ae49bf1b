"""A worker shared by several users (the window's chat, the server): routed events, cancel by id,
raw prompts, stop sequences and a prompt too long for the context, with real llama.cpp on the CPU."""

from __future__ import annotations

import queue
import signal
from collections.abc import Iterator

import pytest

from app.runner import protocol as P
from app.runner.client import RunnerClient

N_CTX = 256
THREADS = 1


class Route:
    """The events of one routed request, as the server's dispatcher receives them."""

    def __init__(self) -> None:
        self.events: queue.Queue[P.Event] = queue.Queue()

    def __call__(self, event: P.Event) -> None:
        self.events.put(event)

    def until_end(self, timeout_s: float = 60) -> list[P.Event]:
        seen = []
        while True:
            event = self.events.get(timeout=timeout_s)
            seen.append(event)
            if isinstance(event, (P.DoneEvent, P.ErrorEvent)):
                return seen

    def first_token(self, timeout_s: float = 60) -> P.Event:
        return self.events.get(timeout=timeout_s)


def _chat(text: str, **kw: object) -> P.ChatRequest:
    kw.setdefault("temperature", 0.0)
    return P.ChatRequest(messages=(P.ChatMessage("user", text),), **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def client(demo_model_path: str) -> Iterator[RunnerClient]:
    with RunnerClient() as c:
        c.load_sync(P.LoadSettings(model_path=demo_model_path, n_ctx=N_CTX, n_threads=THREADS), timeout=120)
        yield c


def _drain(client: RunnerClient) -> list[P.Event]:
    seen = []
    while True:
        try:
            seen.append(client.next_event(0))
        except queue.Empty:
            return seen


def test_routed_events_go_to_their_callback_only(client: RunnerClient) -> None:
    _drain(client)
    route = Route()
    req_id = client.chat(_chat("Hi", max_tokens=4, ignore_eos=True), on_event=route)
    events = route.until_end()
    assert [type(e) for e in events] == [P.TokenEvent] * 4 + [P.DoneEvent]
    assert all(e.id == req_id for e in events)  # type: ignore[union-attr]
    assert not [e for e in _drain(client) if getattr(e, "id", None) == req_id]


def test_cancel_stops_one_request_and_leaves_the_one_behind_it(client: RunnerClient) -> None:
    long, short = Route(), Route()
    long_id = client.chat(_chat("Tell me a long story.", max_tokens=200, ignore_eos=True), on_event=long)
    client.chat(_chat("Hi", max_tokens=5, ignore_eos=True), on_event=short)
    assert isinstance(long.first_token(), P.TokenEvent)
    client.cancel(long_id)
    done = long.until_end()[-1]
    assert isinstance(done, P.DoneEvent) and done.stop_reason == "stopped" and done.completion_tokens < 200
    after = short.until_end()[-1]
    assert (
        isinstance(after, P.DoneEvent) and after.stop_reason == "max_tokens" and after.completion_tokens == 5
    )


def test_a_request_cancelled_while_it_waits_is_answered_at_once_and_never_runs(client: RunnerClient) -> None:
    first, waiting = Route(), Route()
    first_id = client.chat(_chat("Count to a thousand.", max_tokens=2000, ignore_eos=True), on_event=first)
    waiting_id = client.chat(_chat("Hi", max_tokens=8, ignore_eos=True), on_event=waiting)
    assert isinstance(first.first_token(), P.TokenEvent)
    client.cancel(waiting_id)
    events = waiting.until_end()
    assert len(events) == 1
    done = events[0]
    assert isinstance(done, P.DoneEvent) and done.stop_reason == "stopped" and done.completion_tokens == 0
    # Answered while the first one still runs: its user is not kept waiting for 2000 tokens.
    assert not any(isinstance(e, P.DoneEvent) for e in list(first.events.queue))
    client.cancel(first_id)
    assert first.until_end()[-1].stop_reason == "stopped"  # type: ignore[union-attr]
    after = Route()
    client.chat(_chat("Hi", max_tokens=2, ignore_eos=True), on_event=after)
    assert isinstance(after.until_end()[-1], P.DoneEvent)  # the skipped request left nothing behind


def test_a_raw_prompt_is_not_templated(client: RunnerClient) -> None:
    route = Route()
    client.chat(
        P.ChatRequest(messages=(), prompt="The capital of France is", temperature=0.0, max_tokens=4),
        on_event=route,
    )
    done = route.until_end()[-1]
    assert isinstance(done, P.DoneEvent) and done.template == "none"
    assert done.prompt_tokens < 10  # the words alone: no system line, no turn markers
    chat = Route()
    client.chat(_chat("The capital of France is", max_tokens=1), on_event=chat)
    templated = chat.until_end()[-1]
    assert isinstance(templated, P.DoneEvent) and templated.prompt_tokens > done.prompt_tokens + 10


def test_a_stop_sequence_ends_the_reply_before_it_and_is_never_streamed(client: RunnerClient) -> None:
    free = Route()
    client.chat(_chat("List five fruits, one per line.", max_tokens=40, ignore_eos=True), on_event=free)
    full = free.until_end()[-1]
    assert isinstance(full, P.DoneEvent)
    text = full.text
    # A stop string from the middle of the greedy reply, found wherever tokens split it.
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    assert stop and stop in text
    cut = Route()
    client.chat(
        _chat("List five fruits, one per line.", max_tokens=40, ignore_eos=True, stop=(stop,)), on_event=cut
    )
    events = cut.until_end()
    done = events[-1]
    assert isinstance(done, P.DoneEvent) and done.stop_reason == "stop_sequence"
    assert done.text == text[: text.find(stop)]
    streamed = "".join(e.text for e in events if isinstance(e, P.TokenEvent))
    assert streamed == done.text and stop not in streamed
    assert done.completion_tokens < full.completion_tokens


def test_a_prompt_longer_than_the_context_is_its_own_error(client: RunnerClient) -> None:
    route = Route()
    client.chat(_chat("word " * (N_CTX + 50), max_tokens=4), on_event=route)
    error = route.until_end()[-1]
    assert isinstance(error, P.ErrorEvent) and error.kind == P.ERR_CONTEXT_EXCEEDED
    assert f"context of {N_CTX} tokens" in error.message
    ok = Route()
    client.chat(_chat("Hi", max_tokens=2), on_event=ok)
    assert isinstance(ok.until_end()[-1], P.DoneEvent)  # the worker goes on


def test_a_routed_request_hears_the_worker_die_and_a_dead_worker_refuses_at_once(
    demo_model_path: str,
) -> None:
    with RunnerClient() as c:
        c.load_sync(P.LoadSettings(model_path=demo_model_path, n_ctx=N_CTX, n_threads=THREADS), timeout=120)
        route = Route()
        req_id = c.chat(_chat("Tell me a story.", max_tokens=500, ignore_eos=True), on_event=route)
        assert isinstance(route.first_token(), P.TokenEvent)
        assert c.pid is not None
        import os

        os.kill(c.pid, signal.SIGKILL)
        error = route.until_end()[-1]
        assert isinstance(error, P.ErrorEvent) and error.kind == P.ERR_CRASHED and error.id == req_id
        assert "signal 9" in error.message
        with pytest.raises(P.RunnerError):
            c.chat(_chat("Hi"), on_event=Route())


def test_a_routed_request_hears_a_shutdown(demo_model_path: str) -> None:
    c = RunnerClient()
    c.load_sync(P.LoadSettings(model_path=demo_model_path, n_ctx=N_CTX, n_threads=THREADS), timeout=120)
    route = Route()
    c.chat(_chat("Tell me a story.", max_tokens=500, ignore_eos=True), on_event=route)
    assert isinstance(route.first_token(), P.TokenEvent)
    c.close()
    end = route.until_end()[-1]
    # Shut down mid-generation: the worker stops the chat (done, stopped) or exits before it says so.
    assert (isinstance(end, P.DoneEvent) and end.stop_reason == "stopped") or (
        isinstance(end, P.ErrorEvent) and end.kind == P.ERR_SHUT_DOWN
    )
