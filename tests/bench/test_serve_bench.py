"""Benchmark: generation speed through ``rigfit serve`` (HTTP, server-sent events) against the worker directly.

Same model (the demo), context, thread count, prompt and greedy sampling, a fixed number of tokens
(``ignore_eos``). The server's speed is what an HTTP client sees: pieces of text per second between
the arrival of the first and the last SSE chunk, so the dispatcher, the HTTP thread, the JSON and the
socket are all in it. The direct side is a :class:`RunnerClient` in this process with a worker of its
own, timed over the same span of token events. Runs alternate; the goal is a ratio of the best runs of
at least 0.95. The time to first token each side sees (request sent → first text) is printed, and the
median difference is the time the server adds.

Run with ``make bench`` (or ``pytest tests/bench/test_serve_bench.py --bench -s``).
"""

from __future__ import annotations

import http.client
import json
import statistics
import time

import pytest

from app.runner import protocol as P
from app.runner.client import RunnerClient
from tests.bench.harness import Bench
from tests.serve.serve_process import ServeProcess

N_CTX = 512
THREADS = 1  # one core for llama.cpp, one for everything else, on the 2-core CI machine
N_TOKENS = 96
REPEATS = 9
PROMPT = "Tell me about the history of the bicycle."


def _through_server(server: ServeProcess) -> tuple[float, float]:
    """(pieces per second, seconds to the first piece) for one streamed chat over HTTP."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    body = json.dumps(
        {
            "model": server.model,
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": N_TOKENS,
            "temperature": 0,
            "ignore_eos": True,
            "stream": True,
        }
    )
    arrivals: list[float] = []
    try:
        sent = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 200
        while line := r.readline():
            if line.startswith(b"data: {") and b'"content":"' in line and b'"content":""' not in line:
                arrivals.append(time.perf_counter())
        assert r.getheader("Content-Type", "").startswith("text/event-stream")
    finally:
        conn.close()
    assert len(arrivals) > N_TOKENS // 2, len(arrivals)
    return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]), arrivals[0] - sent


def _direct(client: RunnerClient) -> tuple[float, float]:
    request = P.ChatRequest(
        messages=(P.ChatMessage("user", PROMPT),), temperature=0.0, max_tokens=N_TOKENS, ignore_eos=True
    )
    arrivals: list[float] = []
    sent = time.perf_counter()
    for event in client.chat_stream(request, timeout=120):
        if isinstance(event, P.TokenEvent) and event.text:
            arrivals.append(time.perf_counter())
    return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]), arrivals[0] - sent


@pytest.mark.slow
def test_generation_through_the_server_keeps_95_percent_of_the_worker(
    demo_model_path: str, bench: Bench
) -> None:
    server = ServeProcess("--model", "demo", "--ctx", str(N_CTX), "--threads", str(THREADS))
    try:
        with RunnerClient() as client:
            client.load_sync(
                P.LoadSettings(model_path=demo_model_path, n_ctx=N_CTX, n_threads=THREADS), timeout=120
            )
            # Warm both up (page-in, thread start) before timing anything.
            _direct(client)
            _through_server(server)
            bench.ratio(
                "generation through the server / the worker directly",
                lambda: _alternate(server, client),
                at_least=0.95,
            )
    finally:
        assert server.stop() == 0


def _alternate(server: ServeProcess, client: RunnerClient) -> tuple[float, str]:
    served: list[tuple[float, float]] = []
    direct: list[tuple[float, float]] = []
    for i in range(REPEATS):
        # Alternate who goes first, so a slow spell of the machine hits both sides alike.
        if i % 2:
            direct.append(_direct(client))
            served.append(_through_server(server))
        else:
            served.append(_through_server(server))
            direct.append(_direct(client))
    best_ratio = max(r for r, _ in served) / max(r for r, _ in direct)
    median_ratio = statistics.median(r for r, _ in served) / statistics.median(r for r, _ in direct)
    ttft_served_ms = statistics.median(t for _, t in served) * 1000
    ttft_direct_ms = statistics.median(t for _, t in direct) * 1000
    return best_ratio, (
        f"tok/s, {N_TOKENS} tokens x {REPEATS} runs, {THREADS} thread(s): "
        f"server {[round(r, 1) for r, _ in served]}, direct {[round(r, 1) for r, _ in direct]}; "
        f"ratio of medians {median_ratio:.3f}; time to first token (median) server {ttft_served_ms:.1f} ms, "
        f"direct {ttft_direct_ms:.1f} ms, added by the server {ttft_served_ms - ttft_direct_ms:+.1f} ms"
    )
