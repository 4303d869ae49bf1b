"""Benchmark: generation speed through the worker process against a bare llama-cpp-python loop.

Same model (the demo), same context, threads and prompt tokens, greedy sampling, a fixed number of
tokens. The worker's speed is what the parent sees: tokens per second between the arrival of the
first and the last token event (so the protocol, the JSON and both processes' threads are in it).
The bare loop is the same llama.cpp calls in a process of its own (tests/bench/bare_llama_loop.py),
timed over the same span. Runs alternate, several repeats; the goal is a ratio of the best runs of at
least 0.97 (the ratio of the medians is printed too).

Run with ``pytest tests/bench -s`` to see the figures.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from app.runner import protocol as P
from app.runner.client import RunnerClient
from tests.bench.harness import Bench

N_CTX = 512
THREADS = 1  # one core for llama.cpp, one for everything else, on the 2-core CI machine
N_TOKENS = 96
REPEATS = 11
PROMPT = "Tell me about the history of the bicycle."
# The demo's chat template, rendered for PROMPT (the worker renders it from the GGUF; checked below).
RENDERED = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    f"<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n"
)


def _through_worker(client: RunnerClient) -> tuple[float, Any]:
    request = P.ChatRequest(
        messages=(P.ChatMessage("user", PROMPT),), temperature=0.0, max_tokens=N_TOKENS, ignore_eos=True
    )
    arrivals: list[float] = []
    done = None
    for event in client.chat_stream(request, timeout=120):
        if isinstance(event, P.TokenEvent):
            arrivals.append(time.perf_counter())
        else:
            done = event
    assert len(arrivals) == N_TOKENS
    return (N_TOKENS - 1) / (arrivals[-1] - arrivals[0]), done


class BareLoop:
    """The bare llama-cpp-python loop (tests/bench/bare_llama_loop.py) in a process of its own."""

    def __init__(self, model_path: str) -> None:
        script = Path(__file__).with_name("bare_llama_loop.py")
        argv = [sys.executable, str(script), model_path, str(N_CTX), str(THREADS), str(N_TOKENS), "0"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.stdin.write(json.dumps(RENDERED) + "\n")
        self.stdin.flush()
        ready = self.stdout.readline().split()
        assert ready[:1] == ["ready"], ready
        self.n_prompt = int(ready[1])

    def run(self) -> float:
        self.stdin.write("go\n")
        self.stdin.flush()
        return float(self.stdout.readline())

    def close(self) -> None:
        self.stdin.close()
        self.proc.wait(timeout=60)


@pytest.mark.slow
def test_generation_through_the_worker_keeps_97_percent_of_a_bare_loop(
    demo_model_path: str, bench: Bench
) -> None:
    bare = BareLoop(demo_model_path)
    try:
        with RunnerClient() as client:
            client.load_sync(
                P.LoadSettings(model_path=demo_model_path, n_ctx=N_CTX, n_threads=THREADS), timeout=120
            )
            # Warm both up (page-in, thread start) before timing anything.
            _, done = _through_worker(client)
            assert done is not None and done.prompt_tokens == bare.n_prompt  # the same work on both sides
            bare.run()
            bench.ratio(
                "generation through the worker / bare loop",
                lambda: _alternate(client, bare),
                at_least=0.97,
            )
    finally:
        bare.close()


def _alternate(client: RunnerClient, bare: BareLoop) -> tuple[float, str]:
    worker_rates: list[float] = []
    bare_rates: list[float] = []
    for i in range(REPEATS):
        # Alternate who goes first, so a slow spell of the machine hits both sides alike.
        if i % 2:
            bare_rates.append(bare.run())
            worker_rates.append(_through_worker(client)[0])
        else:
            worker_rates.append(_through_worker(client)[0])
            bare_rates.append(bare.run())
    # The best run of each side is what the code can do; medians also carry the machine's noise (other
    # processes on a shared 2-core machine). The goal is checked on the best runs; medians are printed.
    best_ratio = max(worker_rates) / max(bare_rates)
    median_ratio = statistics.median(worker_rates) / statistics.median(bare_rates)
    return best_ratio, (
        f"generation tok/s, {N_TOKENS} tokens x {REPEATS} runs, {THREADS} thread(s): "
        f"worker {[round(r, 1) for r in worker_rates]}, bare {[round(r, 1) for r in bare_rates]}; "
        f"ratio of medians {median_ratio:.3f}"
    )
