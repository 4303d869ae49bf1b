"""A conversation as the model's prompt text: the GGUF's chat template, else ChatML or a plain layout.

Runs in the worker process (app/runner/worker.py), which holds the vocabulary; the Run tab's chat and
the server's ``/v1/chat/completions`` both come through here, so they format a conversation alike.
The GGUF's template itself renders in a helper process with a memory cap and a time limit
(app/runner/template_sandbox.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.runner import protocol as P
from app.runner.generation import token_text, tokenize
from app.runner.template_sandbox import TemplateSandbox


def render_prompt(
    ll: Any,
    vocab: Any,
    chat_template: str | None,
    messages: Sequence[P.ChatMessage],
    sandbox: TemplateSandbox,
) -> tuple[str, bool, str, str | None]:
    """The prompt text, whether llama.cpp should add BOS, the template used and why the GGUF's failed.

    The GGUF's template runs in llama-cpp-python's Jinja2ChatFormatter, whose environment is
    jinja2's ImmutableSandboxedEnvironment with a loader that finds no files: a template cannot
    reach Python internals, call unsafe methods or include a file. A template that tries, fails to
    compile, renders nothing or runs too long falls back to ChatML (when the vocabulary has its
    tokens) or a plain "role: content" layout. It runs in ``sandbox``, a helper process: a template
    is a program from the model file, and one C-level operation of it can allocate gigabytes where no
    signal interrupts it.
    """
    chat = [{"role": m.role, "content": m.content} for m in messages]
    problem: str | None = None
    if chat_template:
        try:
            prompt = _render_gguf_template(ll, vocab, chat_template, chat, sandbox)
            if prompt.strip():
                return prompt, False, "gguf", None
            problem = "the chat template rendered an empty prompt"
        except Exception as exc:  # any template failure means: use the fallback
            problem = f"{type(exc).__name__}: {exc}"
    if _has_chatml(ll, vocab):
        parts = [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in chat]
        return "".join(parts) + "<|im_start|>assistant\n", True, "chatml", problem
    parts = [f"{m['role']}: {m['content']}\n" for m in chat]
    return "".join(parts) + "assistant:", True, "plain", problem


def _render_gguf_template(
    ll: Any, vocab: Any, template: str, chat: list[dict[str, str]], sandbox: TemplateSandbox
) -> str:
    eos = token_text(ll, vocab, int(ll.llama_vocab_eos(vocab)))
    bos = token_text(ll, vocab, int(ll.llama_vocab_bos(vocab)))
    return sandbox.render(template, chat, bos=bos, eos=eos)


def _has_chatml(ll: Any, vocab: Any) -> bool:
    return len(tokenize(ll, vocab, "<|im_start|>", add_special=False, parse_special=True)) == 1
