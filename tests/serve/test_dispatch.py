"""The dispatcher's bookkeeping with a stand-in client: the bound, the order, cancellation, a crash.

The real worker is behind these rules in tests/serve/test_serve_cli.py; here each rule is pinned
exactly, with events delivered by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app.runner import protocol as P
from app.serve.dispatch import (
    DOWN,
    LOADING,
    NO_MODEL,
    READY,
    Dispatcher,
    RequestRecord,
    ServedModel,
    Unavailable,
)

MODEL = ServedModel(id="m", path="/m.gguf", n_ctx=512, created=1)
REQUEST = P.ChatRequest(messages=(P.ChatMessage("user", "hi"),))


class FakeClient:
    def __init__(self) -> None:
        self.sent: list[tuple[int, Callable[[P.Event], None]]] = []
        self.cancelled: list[int] = []
        self.dead = False

    def chat(self, request: P.ChatRequest, on_event: Callable[[P.Event], None] | None = None) -> int:
        if self.dead:
            raise P.RunnerError(
                P.ErrorEvent(message="the model process is not running", kind=P.ERR_NOT_LOADED)
            )
        assert on_event is not None
        self.sent.append((len(self.sent) + 1, on_event))
        return len(self.sent)

    def cancel(self, req_id: int) -> None:
        self.cancelled.append(req_id)


def _done(req_id: int) -> P.DoneEvent:
    return P.DoneEvent(
        text="x",
        stop_reason="eos",
        prompt_tokens=1,
        completion_tokens=1,
        ttft_s=0.1,
        prompt_ms=1.0,
        gen_ms=1.0,
        prompt_tok_s=1.0,
        gen_tok_s=42.0,
        wall_s=0.1,
        id=req_id,
    )


def _dispatcher(**kw: Any) -> tuple[Dispatcher, FakeClient]:
    client = FakeClient()
    d = Dispatcher(client, **kw)  # type: ignore[arg-type]
    d.set_model(MODEL)
    return d, client


def test_nothing_is_taken_without_a_model() -> None:
    d, _ = _dispatcher()
    d.set_model(None, LOADING, "m is loading")
    with pytest.raises(Unavailable) as info:
        d.submit(REQUEST)
    assert info.value.code == "model_loading" and "loading" in info.value.message
    d.set_model(None)
    assert d.status().state == NO_MODEL
    with pytest.raises(Unavailable):
        d.submit(REQUEST)
    assert d.status().refused == 2


def test_one_runs_max_waiting_wait_the_next_is_refused_until_one_ends() -> None:
    d, _client = _dispatcher(max_waiting=2)
    jobs = [d.submit(REQUEST) for _ in range(3)]
    assert [j.req_id for j in jobs] == [1, 2, 3]  # sent in the order admitted
    with pytest.raises(Unavailable) as info:
        d.submit(REQUEST)
    assert info.value.code == "queue_full"
    status = d.status()
    assert (status.outstanding, status.waiting, status.refused) == (3, 2, 1)
    jobs[0].feed(_done(1))
    assert jobs[0].next_event(0) == _done(1)
    assert d.submit(REQUEST).req_id == 4


def test_a_cancel_reaches_the_worker_once_and_never_after_the_answer() -> None:
    d, client = _dispatcher()
    job = d.submit(REQUEST)
    d.cancel(job)
    d.cancel(job)
    assert client.cancelled == [1]
    other = d.submit(REQUEST)
    other.feed(_done(other.req_id or 0))
    d.cancel(other)
    assert client.cancelled == [1]


def test_a_crash_ends_the_jobs_and_refuses_new_ones_until_a_model_is_served_again() -> None:
    d, _client = _dispatcher()
    job = d.submit(REQUEST)
    crash = P.ErrorEvent(message="the model process stopped (signal 9)", kind=P.ERR_CRASHED, id=1)
    job.feed(crash)
    assert job.next_event(0) == crash
    status = d.status()
    assert status.state == DOWN and "signal 9" in status.message and status.outstanding == 0
    with pytest.raises(Unavailable):
        d.submit(REQUEST)
    d.set_model(MODEL)
    assert d.submit(REQUEST).req_id == 2


def test_a_dead_worker_at_submit_is_a_503_not_a_hang() -> None:
    d, client = _dispatcher()
    client.dead = True
    with pytest.raises(Unavailable):
        d.submit(REQUEST)
    assert d.status().state == DOWN and d.status().outstanding == 0


def test_records_count_served_and_failed_and_reach_the_owner() -> None:
    seen: list[RequestRecord] = []
    d, _ = _dispatcher(on_record=seen.append)
    job = d.submit(REQUEST)
    ok = RequestRecord("chat", 200, "ok", 1, 5, 42.0)
    d.finish(job, ok)
    d.finish(d.submit(REQUEST), RequestRecord("chat", 200, "cancelled"))
    d.finish(None, RequestRecord("chat", 503, "failed"))
    status = d.status()
    assert (status.served, status.failed, status.last) == (1, 1, ok)
    assert len(seen) == 3


def test_close_answers_what_waits_and_refuses_the_rest() -> None:
    d, client = _dispatcher()
    job = d.submit(REQUEST)
    d.close()
    event = job.next_event(0)
    assert isinstance(event, P.ErrorEvent) and event.kind == P.ERR_SHUT_DOWN
    assert client.cancelled == [1]
    with pytest.raises(Unavailable) as info:
        d.submit(REQUEST)
    assert info.value.code == "shutting_down"
    d.set_model(MODEL)  # a late load after close serves nothing
    assert d.status().state != READY
