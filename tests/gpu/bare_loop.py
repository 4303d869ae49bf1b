"""A bare llama-cpp-python generation loop in its own process (the baseline for the runner's cost).

    python3 tests/gpu/bare_loop.py MODEL.gguf N_CTX N_THREADS N_PROMPT N_TOKENS

Loads the model with every layer on the GPU through ``llama_cpp.Llama``, then for every line read on
standard input generates N_TOKENS greedy tokens after an N_PROMPT-token prompt and prints the token
rate (first to last token) as one line. Its own process, like Rigfit's worker, so both pay the same.
"""

from __future__ import annotations

import sys
import time


def main() -> int:
    path, n_ctx, n_threads, n_prompt, n_tokens = sys.argv[1], *map(int, sys.argv[2:6])
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=path, n_gpu_layers=-1, n_ctx=n_ctx, n_threads=n_threads, flash_attn=True, verbose=False
    )
    prompt = list(range(300, 300 + n_prompt))
    print("ready", flush=True)
    for _ in sys.stdin:
        llm.reset()
        arrivals = []
        for token in llm.generate(prompt, top_k=1, temp=0.0, reset=True):
            llm.detokenize([token])
            arrivals.append(time.perf_counter())
            if len(arrivals) == n_tokens:
                break
        print((len(arrivals) - 1) / (arrivals[-1] - arrivals[0]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
