"""The baseline of the runner benchmark: llama-cpp-python's low-level API in a process of its own.

    python tests/bench/bare_llama_loop.py MODEL.gguf N_CTX N_THREADS N_TOKENS N_GPU_LAYERS

Reads the rendered prompt (one JSON string) from the first line of standard input, loads the model,
tokenizes the prompt and prints ``ready <prompt tokens>``; then, for every further line, decodes the
prompt and N_TOKENS greedy tokens and prints their rate (first to last token) as one line. It runs in
its own process, like Rigfit's worker, so neither side inherits the test process's state (threads,
earlier llama.cpp calls) and the two are measured alike.
"""

from __future__ import annotations

import ctypes
import json
import sys
import time


def main() -> int:
    path, n_ctx, n_threads, n_tokens, n_gpu_layers = sys.argv[1], *map(int, sys.argv[2:6])
    rendered = json.loads(sys.stdin.readline())
    import llama_cpp as ll

    quiet = ll.llama_log_callback(lambda level, text, user_data: None)
    ll.llama_log_set(quiet, ctypes.c_void_p(0))
    ll.llama_backend_init()
    mparams = ll.llama_model_default_params()
    mparams.n_gpu_layers = n_gpu_layers
    model = ll.llama_model_load_from_file(path.encode(), mparams)
    cparams = ll.llama_context_default_params()
    cparams.n_ctx = n_ctx
    cparams.n_threads = cparams.n_threads_batch = n_threads
    cparams.flash_attn_type = ll.LLAMA_FLASH_ATTN_TYPE_ENABLED
    ctx = ll.llama_init_from_model(model, cparams)
    vocab = ll.llama_model_get_vocab(model)
    data = rendered.encode()
    buf = (ll.llama_token * n_ctx)()
    n_prompt = ll.llama_tokenize(vocab, data, len(data), buf, n_ctx, False, True)
    prompt = (ll.llama_token * n_prompt)(*buf[:n_prompt])
    print(f"ready {n_prompt}", flush=True)
    piece = ctypes.create_string_buffer(256)
    one = (ll.llama_token * 1)()
    for _ in sys.stdin:
        ll.llama_memory_clear(ll.llama_get_memory(ctx), True)
        ll.llama_decode(ctx, ll.llama_batch_get_one(prompt, n_prompt))
        chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
        first = last = 0.0
        for i in range(n_tokens):
            token = ll.llama_sampler_sample(chain, ctx, -1)
            ll.llama_token_to_piece(vocab, token, piece, len(piece), 0, False)
            last = time.perf_counter()
            if i == 0:
                first = last
            if i == n_tokens - 1:
                break
            one[0] = token
            ll.llama_decode(ctx, ll.llama_batch_get_one(one, 1))
        ll.llama_sampler_free(chain)
        print((n_tokens - 1) / (last - first), flush=True)
    ll.llama_free(ctx)
    ll.llama_model_free(model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
