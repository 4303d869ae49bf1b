"""The server's cost at GPU speed: a 1B-shaped synthetic model through ``rigfit serve`` against the worker.

At ~1000 tokens per second a token leaves llama.cpp every millisecond, so whatever the server adds per
token (the dispatcher, the HTTP thread, JSON, a socket write) shows far more than at the demo model's
~100 on a CPU. Run on the GPU machine (DEVICE.md):

    source .device/build.sh && python3 tests/gpu/serve_speed.py [RUNS] [TOKENS]

Prints tokens per second (pieces of text between the first and last SSE chunk; token events over the
same span for the worker), alternating runs, and the time to first token each side sees.
"""

from __future__ import annotations

import http.client
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app.runner import protocol as P  # noqa: E402
from app.runner.client import RunnerClient  # noqa: E402
from tests.serve.serve_process import ServeProcess  # noqa: E402
from tests.synth_gguf import SynthShape, write_llama_gguf  # noqa: E402

PROMPT = "The history of the bicycle begins"
# Random weights tiled over rows make greedy decoding repeat one (often empty) token; sampling with a
# fixed seed gives varied text, and the same work on both sides.
CTX = 2048


def through_server(server: ServeProcess, tokens: int) -> tuple[float, float]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    body = json.dumps(
        {
            "model": server.model,
            "prompt": PROMPT,
            "max_tokens": tokens,
            "temperature": 1.0,
            "top_p": 1.0,
            "seed": 7,
            "ignore_eos": True,
            "stream": True,
        }
    )
    arrivals: list[float] = []
    sent = time.perf_counter()
    conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200, r.read()
    while line := r.readline():
        if line.startswith(b"data: {") and b'"text":""' not in line:
            arrivals.append(time.perf_counter())
    conn.close()
    return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]), arrivals[0] - sent


def direct(client: RunnerClient, tokens: int) -> tuple[float, float]:
    request = P.ChatRequest(
        messages=(), prompt=PROMPT, temperature=1.0, top_p=1.0, seed=7, max_tokens=tokens, ignore_eos=True
    )
    arrivals: list[float] = []
    sent = time.perf_counter()
    for event in client.chat_stream(request, timeout=120):
        if isinstance(event, P.TokenEvent) and event.text:
            arrivals.append(time.perf_counter())
    return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]), arrivals[0] - sent


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 512
    shape = SynthShape(
        n_layer=16, n_embd=2048, n_ff=8192, n_head=32, n_head_kv=8, n_vocab=32000, weight_type="Q4_0"
    )
    path = write_llama_gguf(Path(tempfile.mkdtemp()) / "synth-1b-q4_0.gguf", shape).path
    server = ServeProcess("--model", str(path), "--ctx", str(CTX))
    try:
        with RunnerClient() as client:
            loaded = client.load_sync(P.LoadSettings(model_path=str(path), n_ctx=CTX), timeout=300)
            through_server(server, 32)
            direct(client, 32)
            served, straight = [], []
            for i in range(runs):
                pair = [
                    lambda: served.append(through_server(server, tokens)),
                    lambda: straight.append(direct(client, tokens)),
                ]
                for step in pair if i % 2 == 0 else reversed(pair):
                    step()
            rate = lambda xs: [round(r, 1) for r, _ in xs]  # noqa: E731
            print(f"{tokens} tokens x {runs} runs, 1B-shaped Q4_0, ctx {CTX}, layers {dict(loaded.layers)}")
            print("server tok/s:", rate(served))
            print("direct tok/s:", rate(straight))
            print(
                f"best/best {max(r for r, _ in served) / max(r for r, _ in straight):.3f}, "
                f"median/median {statistics.median(r for r, _ in served) / statistics.median(r for r, _ in straight):.3f}"
            )
            print(
                f"time to first token (median): server {statistics.median(t for _, t in served) * 1000:.1f} ms, "
                f"direct {statistics.median(t for _, t in straight) * 1000:.1f} ms"
            )
    finally:
        print("server exit code", server.stop())
    return 0


if __name__ == "__main__":
    sys.exit(main())
