"""``rigfit serve --model demo`` on 127.0.0.1 against real clients: the ``openai`` package and raw HTTP.

One server (a subprocess on an ephemeral port) serves the module; the crash test runs its own, since
it kills the worker. The demo model generates ~100 tokens/s on one core, so replies are kept short.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import psutil
import pytest

from tests.commands.cli import rigfit
from tests.serve.serve_process import ServeProcess

KEY = "test-key-15"
CTX = 512
QUEUE = 4
ARGS = ("--model", "demo", "--ctx", str(CTX), "--threads", "1", "--queue", str(QUEUE), "--api-key", KEY)


@pytest.fixture(scope="module")
def server() -> Iterator[ServeProcess]:
    proc = ServeProcess(*ARGS)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def client(server: ServeProcess) -> openai.OpenAI:
    # No retries: a 503 must reach the test as it reached the client.
    return openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0, timeout=120)


def _messages(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _http(
    server: ServeProcess,
    method: str,
    path: str,
    body: bytes | dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    key: str | None = KEY,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    try:
        hdrs = dict(headers or {})
        if key is not None:
            hdrs["Authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        if data is not None:
            hdrs.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=hdrs)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def _error_of(raw: bytes) -> dict[str, Any]:
    error = json.loads(raw)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert "Traceback" not in error["message"]
    return error


# -- the openai client ---------------------------------------------------------------------------


def test_models_lists_the_loaded_model(server: ServeProcess, client: openai.OpenAI) -> None:
    assert server.model == "SmolLM2-135M-Instruct.Q4_1"
    assert [m.id for m in client.models.list()] == [server.model]
    assert client.models.retrieve(server.model).id == server.model
    status, health = server.health()
    assert status == 200 and health["status"] == "ok" and health["model"] == server.model


def test_a_chat_streamed_and_not_gives_the_same_reply_and_counts_tokens(
    server: ServeProcess, client: openai.OpenAI
) -> None:
    whole = client.chat.completions.create(
        model=server.model, messages=_messages("Name three colours."), max_tokens=12, temperature=0
    )
    text = whole.choices[0].message.content
    assert text and whole.choices[0].message.role == "assistant"
    assert whole.choices[0].finish_reason in ("stop", "length")
    assert whole.usage is not None and whole.usage.prompt_tokens > 10
    assert 0 < whole.usage.completion_tokens <= 12
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
    assert whole.model == server.model and whole.id.startswith("chatcmpl-")

    stream = client.chat.completions.create(
        model=server.model,
        messages=_messages("Name three colours."),
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([p for p in pieces if p]) > 1  # streamed token by token, not in one piece
    assert "".join(pieces) == text  # greedy: the same reply either way
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert len({c.id for c in chunks}) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_a_stop_sequence_cuts_the_reply_before_it(
    server: ServeProcess, client: openai.OpenAI, stream: bool
) -> None:
    prompt = _messages("Write the numbers from one to ten in words, separated by commas.")
    free = client.chat.completions.create(model=server.model, messages=prompt, max_tokens=30, temperature=0)
    text = free.choices[0].message.content or ""
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    assert stop.strip() and stop in text
    reply = client.chat.completions.create(
        model=server.model, messages=prompt, max_tokens=30, temperature=0, stop=[stop, "zzzz"], stream=stream
    )
    if stream:
        chunks = list(reply)  # type: ignore[arg-type]
        got = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = next(c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason)
    else:
        got = reply.choices[0].message.content  # type: ignore[union-attr]
        finish = reply.choices[0].finish_reason  # type: ignore[union-attr]
    assert got == text[: text.find(stop)]
    assert finish == "stop"


def test_completions_take_a_raw_prompt(server: ServeProcess, client: openai.OpenAI) -> None:
    whole = client.completions.create(
        model=server.model, prompt="Once upon a time", max_tokens=6, temperature=0
    )
    assert whole.object == "text_completion" and whole.choices[0].text
    assert whole.usage is not None and whole.usage.prompt_tokens < 10  # no chat template around it
    assert whole.choices[0].finish_reason == "length"
    streamed = client.completions.create(
        model=server.model, prompt="Once upon a time", max_tokens=6, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == whole.choices[0].text


def test_client_errors_are_openai_errors(server: ServeProcess, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=_messages("Hi"), max_tokens=2)
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as too_long:
        client.chat.completions.create(
            model=server.model, messages=_messages("word " * (CTX + 20)), max_tokens=2
        )
    assert too_long.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as too_long_stream:
        list(
            client.chat.completions.create(
                model=server.model, messages=_messages("word " * (CTX + 20)), max_tokens=2, stream=True
            )
        )
    assert too_long_stream.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=server.model, messages=_messages("Hi"), temperature=5)
    assert bad.value.param == "temperature"
    wrong_key = openai.OpenAI(base_url=server.url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong_key.models.list()


# -- raw HTTP ------------------------------------------------------------------------------------


def test_the_stream_on_the_wire_is_chunked_sse_ending_in_done(server: ServeProcess) -> None:
    body = {
        "model": server.model,
        "messages": _messages("Hi"),
        "max_tokens": 4,
        "temperature": 0,
        "stream": True,
    }
    status, headers, raw = _http(server, "POST", "/v1/chat/completions", body)
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["transfer-encoding"] == "chunked"
    events = raw.decode().split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    payloads = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(e.startswith("data: ") for e in events[:-1])
    assert all(p["object"] == "chat.completion.chunk" for p in payloads)
    assert payloads[-1]["choices"][0]["finish_reason"] == "length"


def test_keep_alive_serves_several_requests_on_one_connection(server: ServeProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        for _ in range(3):
            body = json.dumps(
                {"model": server.model, "messages": _messages("Hi"), "max_tokens": 2, "stream": True}
            )
            conn.request(
                "POST", "/v1/chat/completions", body=body, headers={"Authorization": f"Bearer {KEY}"}
            )
            r = conn.getresponse()
            assert r.status == 200 and r.read().endswith(b"data: [DONE]\n\n")
        conn.request("GET", "/v1/models", headers={"Authorization": f"Bearer {KEY}"})
        assert json.loads(conn.getresponse().read())["data"][0]["id"] == server.model
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/v1/chat/completions", b"{not json", 400, None),
        ("POST", "/v1/chat/completions", b"[1, 2]", 400, None),
        ("POST", "/v1/chat/completions", b"\xff\xfe\x00", 400, None),
        ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}, 400, None),
        ("POST", "/v1/chat/completions", {"model": "nope", "messages": []}, 404, "model_not_found"),
        ("POST", "/v1/chat/completions", {"model": "@served", "messages": "hi"}, 400, None),
        (
            "POST",
            "/v1/chat/completions",
            {"model": "@served", "messages": [{"role": "user", "content": "x"}], "n": 3},
            400,
            None,
        ),
        ("POST", "/v1/completions", {"model": "@served", "prompt": [1, 2, 3]}, 400, None),
        ("POST", "/v1/embeddings", {"model": "@served", "input": "x"}, 404, "unknown_url"),
        ("GET", "/v1/chat/completions", None, 404, "unknown_url"),
        ("PUT", "/v1/models", b"{}", 501, None),
        ("GET", "/v1/models/other", None, 404, "model_not_found"),
    ],
)
def test_bad_requests_get_an_error_object_never_a_traceback(
    server: ServeProcess, method: str, path: str, body: Any, status: int, code: str | None
) -> None:
    if isinstance(body, dict) and body.get("model") == "@served":
        body = {**body, "model": server.model}
    got, headers, raw = _http(server, method, path, body)
    assert got == status
    assert headers["content-type"] == "application/json"
    error = _error_of(raw)
    if code:
        assert error["code"] == code


def test_a_missing_or_wrong_key_is_401_and_health_needs_none(server: ServeProcess) -> None:
    for key in (None, "wrong"):
        status, headers, raw = _http(server, "GET", "/v1/models", key=key)
        assert status == 401 and headers["www-authenticate"] == "Bearer"
        assert _error_of(raw)["code"] == "invalid_api_key"
    status, _, raw = _http(server, "POST", "/v1/chat/completions", {"model": server.model}, key=None)
    assert status == 401
    assert _http(server, "GET", "/health", key=None)[0] == 200


def test_oversized_and_garbage_requests_are_refused_and_the_server_goes_on(server: ServeProcess) -> None:
    status, _, raw = _http(
        server, "POST", "/v1/chat/completions", b"", headers={"Content-Length": str(64 * 1024 * 1024)}
    )
    assert status == 413 and _error_of(raw)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(b"\x16\x03\x01 this is not HTTP\r\n\r\n")
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 400 " in head.split(b"\r\n")[0]
    assert _error_of(body)
    assert server.health()[0] == 200


# -- faults --------------------------------------------------------------------------------------


def _open_stream(
    server: ServeProcess, max_tokens: int
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """A long streaming chat, read until its first piece of text arrived (it runs in the worker)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    body = {
        "model": server.model,
        "messages": _messages("Tell me a very long story about the sea."),
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
    }
    conn.request(
        "POST", "/v1/chat/completions", body=json.dumps(body), headers={"Authorization": f"Bearer {KEY}"}
    )
    r = conn.getresponse()
    assert r.status == 200
    while True:
        line = r.readline()
        assert line, "the stream ended before any text"
        if line.startswith(b"data: ") and b'"content":"' in line and b'"content":""' not in line:
            return conn, r


def _hang_up(conn: http.client.HTTPConnection) -> None:
    """Go away as a client does when its user closes the tab: the socket closes, whatever still reads it."""
    if conn.sock is not None:
        conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()


def _records(server: ServeProcess, since: int) -> list[dict[str, Any]]:
    return [e for e in server.all_events[since:] if e["type"] == "request"]


def _wait_records(server: ServeProcess, since: int, n: int, timeout_s: float = 120) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while len(_records(server, since)) < n:
        assert time.monotonic() < deadline, _records(server, since)
        time.sleep(0.05)
    return _records(server, since)


def test_a_client_that_disconnects_mid_stream_stops_its_generation(server: ServeProcess) -> None:
    since = len(server.all_events)
    conn, _ = _open_stream(server, max_tokens=3000)
    _hang_up(conn)
    record = _wait_records(server, since, 1)[0]
    assert record["outcome"] == "cancelled"
    # The next request is answered at once: nothing is still generating 3000 tokens for nobody.
    body = {"model": server.model, "messages": _messages("Hi"), "max_tokens": 3}
    status, _, raw = _http(server, "POST", "/v1/chat/completions", body)
    assert status == 200 and json.loads(raw)["usage"]["completion_tokens"] <= 3
    server.wait_health(200, running=0, waiting=0)


def test_twenty_concurrent_requests_are_answered_or_told_503_none_lost_or_mixed(server: ServeProcess) -> None:
    prompts = [f"Say the word {w} and nothing else." for w in ("apple", "river", "stone", "cloud", "flame")]

    def ask(prompt: str) -> tuple[int, dict[str, Any]]:
        body = {"model": server.model, "messages": _messages(prompt), "max_tokens": 6, "temperature": 0}
        status, _, raw = _http(server, "POST", "/v1/chat/completions", body)
        return status, json.loads(raw)

    expected = {p: ask(p)[1]["choices"][0]["message"]["content"] for p in prompts}
    assert len(set(expected.values())) > 1  # different prompts, different answers: a mix-up would show

    # Hold the worker with a long stream, so admission is decided while it runs: QUEUE requests wait,
    # the other 16 are refused at once. Then the long stream's client goes away and the queue drains.
    conn, _ = _open_stream(server, max_tokens=3000)
    results: list[tuple[str, int, dict[str, Any]]] = []
    lock = threading.Lock()

    def worker(prompt: str) -> None:
        status, body = ask(prompt)
        with lock:
            results.append((prompt, status, body))

    threads = [threading.Thread(target=worker, args=(prompts[i % len(prompts)],)) for i in range(20)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while sum(1 for _, s, _ in list(results) if s == 503) < 20 - QUEUE:
        assert time.monotonic() < deadline, results
        time.sleep(0.05)
    assert server.wait_health(200, running=1)["waiting"] == QUEUE
    _hang_up(conn)
    for t in threads:
        t.join(120)
    assert len(results) == 20
    refused = [b for _, s, b in results if s == 503]
    answered = [(p, b) for p, s, b in results if s == 200]
    assert len(refused) == 20 - QUEUE and len(answered) == QUEUE
    assert all(b["error"]["code"] == "queue_full" for b in refused)
    for prompt, body in answered:
        assert body["choices"][0]["message"]["content"] == expected[prompt]
    assert len({b["id"] for _, b in answered}) == QUEUE
    server.wait_health(200, running=0, waiting=0)


def test_a_client_gone_while_waiting_leaves_the_queue(server: ServeProcess) -> None:
    since = len(server.all_events)
    conn, _ = _open_stream(server, max_tokens=3000)
    waiting = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    body = {"model": server.model, "messages": _messages("Hi"), "max_tokens": 50, "ignore_eos": True}
    waiting.request(
        "POST", "/v1/chat/completions", body=json.dumps(body), headers={"Authorization": f"Bearer {KEY}"}
    )
    server.wait_health(200, waiting=1)
    _hang_up(waiting)
    # Its place is free while the long stream still runs (the worker skips it when it gets there).
    server.wait_health(200, running=1, waiting=0)
    _hang_up(conn)
    records = _wait_records(server, since, 2)
    assert [r["outcome"] for r in records] == ["cancelled", "cancelled"], records
    assert records[0]["completion_tokens"] == 0
    server.wait_health(200, running=0, waiting=0)


def test_a_killed_worker_gives_503_then_the_model_is_loaded_again(demo_model_path: str) -> None:
    server = ServeProcess("--model", "demo", "--ctx", str(CTX), "--threads", "1")
    try:
        client = openai.OpenAI(base_url=server.url, api_key="none", max_retries=0, timeout=120)
        first_pid = server.worker().pid
        conn, stream = _open_stream(server, max_tokens=3000)
        queued: list[Any] = []
        behind = threading.Thread(
            target=lambda: queued.append(
                _http(
                    server,
                    "POST",
                    "/v1/chat/completions",
                    {"model": server.model, "messages": _messages("Hi")},
                    key=None,
                )
            )
        )
        behind.start()
        server.wait_health(200, waiting=1)
        server.worker().kill()
        rest = stream.read().decode()
        conn.close()
        # The stream had started (200): the error comes as an SSE error object, which clients raise.
        assert '"error":' in rest and "model process stopped" in rest and "data: [DONE]" not in rest
        behind.join(60)
        status, _, raw = queued[0]
        assert status == 503 and _error_of(raw)["code"] == "model_crashed"
        server.wait_for("notice")
        server.wait_health(200, timeout_s=120)
        second = server.worker()
        assert second.pid != first_pid
        reply = client.chat.completions.create(model=server.model, messages=_messages("Hi"), max_tokens=3)
        assert reply.choices[0].message.content
    finally:
        code = server.stop()
    # Ctrl+C: a clean exit, no worker left behind, nothing listening any more.
    assert code == 0
    assert server.all_events[-1]["type"] == "stopped"
    assert not [p for p in server.all_events if p["type"] == "error"]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=10)
    with pytest.raises(psutil.NoSuchProcess):
        second.status()


# -- the command line ----------------------------------------------------------------------------


def test_a_taken_port_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = rigfit("serve", "--model", "demo", "--port", str(port), timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        f"rigfit: port {port} on 127.0.0.1 is already in use (another server?): choose another port"
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--model", "demo", "--port", "70000"), "the port must be from 0 to 65,535"),
        (("--model", "/nonexistent/model.gguf", "--port", "0"), "model file not found"),
        (
            ("--model", "demo", "--port", "0", "--host", "no.such.host.invalid"),
            "cannot listen on 'no.such.host.invalid'",
        ),
        (("--model", "demo", "--port", "0", "--host", "192.0.2.1"), "cannot listen on 192.0.2.1"),
        (("--model", "demo", "--port", "0", "--queue", "-1"), "the queue must be from 0 to 4096 requests"),
        (("--model", "demo", "--port", "0", "--api-key", " "), "the API key is empty"),
        (("--model", "demo", "--port", "abc"), "the port must be a whole number"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], words: str) -> None:
    out = rigfit("serve", *args, timeout=60)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in out.stderr
