"""One reply on a loaded llama.cpp context: the prompt's decode, the sampling loop and its timings.

The worker (app/runner/worker.py) owns the process, the request queue and the model; this module owns
what happens between a tokenized prompt and the figures of the ``done`` event. It runs in the worker
process only (it calls llama.cpp through llama-cpp-python's low-level bindings, passed in as ``ll``).
"""

from __future__ import annotations

import codecs
import ctypes
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from app.runner import protocol as P
from app.runner.stop_strings import StopScanner


class GenerationFailed(Exception):
    """llama.cpp refused a step (tokenize, decode); the message is in the user's words."""


def tokenize(ll: Any, vocab: Any, text: str, add_special: bool, parse_special: bool) -> list[int]:
    """``text`` as the vocabulary's tokens (``add_special``: BOS as the model wants it)."""
    data = text.encode("utf-8")
    n_max = len(data) + 16
    buf = (ll.llama_token * n_max)()
    n = ll.llama_tokenize(vocab, data, len(data), buf, n_max, add_special, parse_special)
    if n < 0:
        n_max = -n
        buf = (ll.llama_token * n_max)()
        n = ll.llama_tokenize(vocab, data, len(data), buf, n_max, add_special, parse_special)
    if n < 0:
        raise GenerationFailed("the prompt could not be tokenized")
    return list(buf[:n])


def token_text(ll: Any, vocab: Any, token: int) -> str:
    """A token's text as the vocabulary stores it (special tokens included); ``""`` for none."""
    if token < 0:
        return ""
    raw = ll.llama_vocab_get_text(vocab, token)
    return raw.decode("utf-8", "replace") if raw else ""


def make_sampler(ll: Any, request: P.ChatRequest, seed: int | None) -> Any:
    """A sampler chain for the request; the caller frees it (``llama_sampler_free``)."""
    chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
    if request.temperature <= 0:
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
    else:
        # llama.cpp's common order: truncate first, then temperature, then draw.
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_top_p(request.top_p, 1))
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_temp(request.temperature))
        draw_seed = ll.LLAMA_DEFAULT_SEED if seed is None else seed & 0xFFFFFFFF
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_dist(draw_seed))
    return chain


@dataclass(frozen=True)
class Generated:
    """What one generation produced, for the ``done`` event."""

    text: str
    stop_reason: str  # eos / max_tokens / context / stopped / stop_sequence
    completion_tokens: int
    ttft_s: float | None
    prompt_ms: float
    gen_ms: float
    prompt_tok_s: float | None
    gen_tok_s: float | None


def generate(
    ll: Any,
    ctx: Any,
    vocab: Any,
    tokens: list[int],
    request: P.ChatRequest,
    *,
    n_batch: int,
    seed: int | None,
    started_s: float,
    stopped: Callable[[], bool],
    send: Callable[[Mapping[str, Any]], None],
    req_id: Any,
) -> Generated:
    """Decode the prompt ``tokens`` from an empty cache, then sample and stream the reply.

    Each piece goes out at once through ``send`` as a ``token`` event (UTF-8 completed across
    tokens; with stop strings, text that may start one is held back). ``stopped`` is asked before
    and after every token, so a stop or cancel ends the reply within one token. ``started_s`` is the
    ``time.perf_counter()`` of the request's arrival, for the time to first token.
    """
    n_ctx = int(ll.llama_n_ctx(ctx))
    ll.llama_memory_clear(ll.llama_get_memory(ctx), True)
    ll.llama_perf_context_reset(ctx)
    arr = (ll.llama_token * len(tokens))(*tokens)
    for start in range(0, len(tokens), n_batch):
        if stopped():
            break
        n = min(n_batch, len(tokens) - start)
        ptr = ctypes.cast(
            ctypes.addressof(arr) + start * ctypes.sizeof(ll.llama_token), ctypes.POINTER(ll.llama_token)
        )
        rc = ll.llama_decode(ctx, ll.llama_batch_get_one(ptr, n))
        if rc != 0:
            raise GenerationFailed(f"llama.cpp could not process the prompt (llama_decode returned {rc})")

    sampler = make_sampler(ll, request, seed)
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    piece_buf = ctypes.create_string_buffer(256)
    one = (ll.llama_token * 1)()
    text_parts: list[str] = []
    ttft: float | None = None
    n_past = len(tokens)
    n_out = 0
    n_sent = 0
    # Only requests with stop strings pay for the scan (and hold text back); the Run tab's don't.
    scanner = StopScanner(request.stop) if request.stop else None
    reason = "stopped" if stopped() else ""
    try:
        while not reason:
            token = ll.llama_sampler_sample(sampler, ctx, -1)
            if not request.ignore_eos and ll.llama_vocab_is_eog(vocab, token):
                reason = "eos"
                break
            n = ll.llama_token_to_piece(vocab, token, piece_buf, len(piece_buf), 0, False)
            if n < 0:
                piece_buf = ctypes.create_string_buffer(-n)
                n = ll.llama_token_to_piece(vocab, token, piece_buf, len(piece_buf), 0, False)
            text = decoder.decode(piece_buf.raw[: max(n, 0)])
            if stopped():
                reason = "stopped"
                break
            if ttft is None:
                ttft = time.perf_counter() - started_s
            n_out += 1
            if scanner is not None:
                text = scanner.feed(text)
                if scanner.matched is not None:
                    reason = "stop_sequence"
            if scanner is None or text:
                # The per-token path skips the dataclass round trip; the line is a TokenEvent all the same.
                send({"type": "token", "text": text, "index": n_sent, "id": req_id})
                text_parts.append(text)
                n_sent += 1
            if reason:
                break
            if n_out >= request.max_tokens:
                reason = "max_tokens"
                break
            if n_past >= n_ctx:
                reason = "context"
                break
            one[0] = token
            rc = ll.llama_decode(ctx, ll.llama_batch_get_one(one, 1))
            if rc != 0:
                raise GenerationFailed(f"llama.cpp stopped generating (llama_decode returned {rc})")
            n_past += 1
            if stopped():
                reason = "stopped"
    finally:
        ll.llama_sampler_free(sampler)
    tail = decoder.decode(b"", final=True)
    if scanner is not None:
        # Held-back text that never became a stop string is part of the reply after all.
        tail = scanner.feed(tail) + scanner.flush()
        if tail:
            send({"type": "token", "text": tail, "index": n_sent, "id": req_id})
    text_parts.append(tail)
    perf = ll.llama_perf_context(ctx)
    # llama.cpp reports at least 1 for each count; with no time spent there was no such pass.
    prompt_ms = float(perf.t_p_eval_ms)
    gen_ms = float(perf.t_eval_ms)
    return Generated(
        text="".join(text_parts),
        stop_reason=reason,
        completion_tokens=n_out,
        ttft_s=None if ttft is None else round(ttft, 4),
        prompt_ms=round(prompt_ms, 3),
        gen_ms=round(gen_ms, 3),
        prompt_tok_s=round(perf.n_p_eval * 1000.0 / prompt_ms, 2) if prompt_ms > 0 else None,
        gen_tok_s=round(perf.n_eval * 1000.0 / gen_ms, 2) if gen_ms > 0 else None,
    )
