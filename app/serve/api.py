"""OpenAI's HTTP API, the part a local chat model answers: bodies checked and turned into the worker's
requests; replies, streamed chunks and errors built the way OpenAI's clients parse them.

Pure functions and frozen values: no sockets and no threads (app/serve/server.py has those), so every
rule here is tested without a model. Parameters a local model cannot honour change the answer's
meaning (several choices, log-probabilities, a JSON schema, a required tool call): they get a 400 that
says so. Parameters that only tune or label a request (penalties, ``user``, ``metadata``, optional
tools) are ignored, as llama-server, LM Studio and Ollama do, so chat apps that always send them work.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.runner import protocol as P

# Sampling defaults when a client sends none: the Run tab's (and llama-server's), not OpenAI's 1.0/1.0,
# which make small local models ramble.
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_P = 0.95
# OpenAI's documented default for /v1/completions; a chat reply runs to its end (or the context's).
DEFAULT_COMPLETION_MAX_TOKENS = 16
MAX_TEMPERATURE = 2.0

CHAT = "chat"
COMPLETION = "completion"

# OpenAI's error types.
INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}
_SPLIT_SUFFIX = re.compile(r"-\d{5}-of-\d{5}$")


class ApiError(Exception):
    """An answer that is an OpenAI error object: ``{"error": {message, type, param, code}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.code, self.param)


def error_body(message: str, type: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error object; its clients read ``error.message`` and ``error.code``."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def unavailable(message: str, code: str) -> ApiError:
    """503: the model cannot answer now (loading, stopped, queue full); the client may try again."""
    return ApiError(503, message, type=SERVER_ERROR, code=code)


@dataclass(frozen=True)
class Call:
    """One checked generation request: what to ask the worker and how to answer the client."""

    endpoint: str  # CHAT or COMPLETION
    model: str
    request: P.ChatRequest
    stream: bool
    include_usage: bool  # stream_options.include_usage: a last chunk with the token counts


def model_id_for(path: str | Path) -> str:
    """The name clients put in ``model``: the GGUF's file name without ``.gguf`` or a shard suffix."""
    stem = Path(path).name
    if stem.lower().endswith(".gguf"):
        stem = stem[: -len(".gguf")]
    return _SPLIT_SUFFIX.sub("", stem) or "model"


def parse_json(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or a 400 in OpenAI's words."""

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ApiError(
            400,
            "We could not parse the JSON body of your request. The body must be valid JSON (UTF-8).",
        ) from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


def check_model(body: Mapping[str, Any], served: str) -> str:
    """The model the request names: missing is 400, another than the one served is 404."""
    name = body.get("model")
    if name is None:
        raise ApiError(400, "You must provide a model parameter.", param="model")
    if not isinstance(name, str):
        raise ApiError(400, "Invalid type for 'model': expected a string.", param="model")
    if name != served:
        raise ApiError(
            404,
            f"The model '{name}' does not exist: this server has '{served}' loaded (GET /v1/models lists it).",
            code="model_not_found",
            param="model",
        )
    return name


def parse_chat(body: Mapping[str, Any], model: str, n_ctx: int) -> Call:
    """``POST /v1/chat/completions``: the worker renders the messages with the GGUF's chat template."""
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "'messages' must be a non-empty array of messages.", param="messages")
    messages = tuple(_message(m, i) for i, m in enumerate(raw))
    _refuse_meaning_changes(body)
    tool_choice = body.get("tool_choice")
    if tool_choice not in (None, "none", "auto") and body.get("tools"):
        raise ApiError(
            400, "This model answers in text only: it cannot be made to call a tool.", param="tool_choice"
        )
    max_tokens = _max_tokens(body, ("max_completion_tokens", "max_tokens"), default=n_ctx)
    return Call(
        endpoint=CHAT,
        model=model,
        request=_request(body, messages=messages, max_tokens=max_tokens),
        stream=_stream(body),
        include_usage=_include_usage(body),
    )


def parse_completion(body: Mapping[str, Any], model: str) -> Call:
    """``POST /v1/completions``: the prompt is tokenized as it is, without a template."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, list):
        raise ApiError(
            400,
            "'prompt' must be one string: this server answers one prompt per request (token arrays are not supported).",
            param="prompt",
        )
    if not isinstance(prompt, str):
        raise ApiError(400, "'prompt' must be a string.", param="prompt")
    _refuse_meaning_changes(body)
    if body.get("echo"):
        raise ApiError(400, "'echo' is not supported by this server.", param="echo")
    if body.get("suffix"):
        raise ApiError(400, "'suffix' (fill-in-the-middle) is not supported by this server.", param="suffix")
    best_of = body.get("best_of")
    if best_of is not None and best_of != 1:
        raise ApiError(400, "'best_of' must be 1: this server makes one completion.", param="best_of")
    max_tokens = _max_tokens(body, ("max_tokens",), default=DEFAULT_COMPLETION_MAX_TOKENS)
    return Call(
        endpoint=COMPLETION,
        model=model,
        request=_request(body, prompt=prompt, max_tokens=max_tokens),
        stream=_stream(body),
        include_usage=_include_usage(body),
    )


# -- replies ---------------------------------------------------------------------------------------


def new_id(endpoint: str) -> str:
    return ("chatcmpl-" if endpoint == CHAT else "cmpl-") + uuid.uuid4().hex[:24]


def finish_reason(stop_reason: str) -> str:
    """OpenAI's ``finish_reason`` for the worker's ``stop_reason``: a natural end or a length limit."""
    return "length" if stop_reason in ("max_tokens", "context") else "stop"


def usage(done: P.DoneEvent) -> dict[str, int]:
    return {
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
        "total_tokens": done.prompt_tokens + done.completion_tokens,
    }


def timings(done: P.DoneEvent) -> dict[str, Any]:
    """llama-server's ``timings`` object (front ends such as SillyTavern show it), from llama.cpp's counters."""
    return {
        "prompt_n": done.prompt_tokens,
        "prompt_ms": done.prompt_ms,
        "prompt_per_second": done.prompt_tok_s,
        "predicted_n": done.completion_tokens,
        "predicted_ms": done.gen_ms,
        "predicted_per_second": done.gen_tok_s,
    }


def response(call: Call, reply_id: str, created: int, done: P.DoneEvent) -> dict[str, Any]:
    """The whole answer of a request without ``stream``."""
    reason = finish_reason(done.stop_reason)
    choice: dict[str, Any]
    if call.endpoint == CHAT:
        obj = "chat.completion"
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": done.text, "refusal": None},
            "logprobs": None,
            "finish_reason": reason,
        }
    else:
        obj = "text_completion"
        choice = {"text": done.text, "index": 0, "logprobs": None, "finish_reason": reason}
    return {
        "id": reply_id,
        "object": obj,
        "created": created,
        "model": call.model,
        "choices": [choice],
        "usage": usage(done),
        "timings": timings(done),
    }


def chunk(
    call: Call,
    reply_id: str,
    created: int,
    *,
    text: str | None = None,
    role: bool = False,
    finish: str | None = None,
) -> dict[str, Any]:
    """One streamed chunk: the opening role, a piece of text, or the closing ``finish_reason``."""
    choice: dict[str, Any]
    if call.endpoint == CHAT:
        obj = "chat.completion.chunk"
        delta: dict[str, Any] = {}
        if role:
            delta["role"] = "assistant"
            delta["content"] = ""
        if text is not None:
            delta["content"] = text
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    else:
        obj = "text_completion"
        choice = {"text": text or "", "index": 0, "logprobs": None, "finish_reason": finish}
    data: dict[str, Any] = {
        "id": reply_id,
        "object": obj,
        "created": created,
        "model": call.model,
        "choices": [choice],
    }
    if call.include_usage:
        data["usage"] = None
    return data


def usage_chunk(call: Call, reply_id: str, created: int, done: P.DoneEvent) -> dict[str, Any]:
    """The last chunk when ``stream_options.include_usage`` is set: no choices, the token counts."""
    obj = "chat.completion.chunk" if call.endpoint == CHAT else "text_completion"
    return {
        "id": reply_id,
        "object": obj,
        "created": created,
        "model": call.model,
        "choices": [],
        "usage": usage(done),
        "timings": timings(done),
    }


def sse(data: Mapping[str, Any] | str) -> bytes:
    """One server-sent event: ``data: <json>`` and a blank line (``data: [DONE]`` ends a stream)."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return b"data: " + text.encode("utf-8") + b"\n\n"


def models_list(model: str | None, created: int, n_ctx: int | None) -> dict[str, Any]:
    """``GET /v1/models``: the model loaded now, or an empty list."""
    data = [model_object(model, created, n_ctx)] if model is not None else []
    return {"object": "list", "data": data}


def model_object(model: str, created: int, n_ctx: int | None) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": created, "owned_by": "rigfit", "n_ctx": n_ctx}


def worker_error(event: P.ErrorEvent, endpoint: str) -> ApiError:
    """The worker's error for one request, as the HTTP answer a client expects."""
    if event.kind == P.ERR_CONTEXT_EXCEEDED:
        return ApiError(
            400,
            f"This model's context is too small for this request: {event.message}.",
            code="context_length_exceeded",
            param="messages" if endpoint == CHAT else "prompt",
        )
    if event.kind == P.ERR_BAD_REQUEST:
        return ApiError(400, _sentence(event.message))
    if event.kind == P.ERR_CRASHED:
        return unavailable(_sentence(event.message), "model_crashed")
    if event.kind in (P.ERR_NOT_LOADED, P.ERR_SHUT_DOWN, P.ERR_CANCELLED):
        return unavailable(_sentence(event.message), "model_not_loaded")
    return ApiError(500, _sentence(event.message), type=SERVER_ERROR, code=event.kind)


# -- request fields --------------------------------------------------------------------------------


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "." if text else "Unknown error."


def _message(raw: Any, index: int) -> P.ChatMessage:
    where = f"messages[{index}]"
    if not isinstance(raw, dict):
        raise ApiError(400, f"'{where}' must be an object with 'role' and 'content'.", param=where)
    role = raw.get("role")
    if role not in _ROLES:
        raise ApiError(
            400,
            f"'{where}.role' must be one of system, developer, user, assistant, tool; got {role!r}.",
            param=f"{where}.role",
        )
    return P.ChatMessage(role=_ROLES[role], content=_content(raw.get("content"), f"{where}.content"))


def _content(content: Any, where: str) -> str:
    if content is None:  # an assistant turn that only called tools
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in ("text", "input_text"):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ApiError(
                    400, f"'{where}' has a {kind!r} part: this model takes text only.", param=where
                )
            text = part.get("text")
            if not isinstance(text, str):
                raise ApiError(400, f"A text part of '{where}' needs a string 'text'.", param=where)
            parts.append(text)
        return "\n".join(parts)
    raise ApiError(400, f"'{where}' must be a string or an array of text parts.", param=where)


def _refuse_meaning_changes(body: Mapping[str, Any]) -> None:
    n = body.get("n")
    if n is not None and (not _is_int(n) or n != 1):
        raise ApiError(400, "'n' must be 1: this server makes one choice per request.", param="n")
    logprobs = body.get("logprobs")
    if logprobs not in (None, False, 0):
        raise ApiError(400, "'logprobs' is not supported by this server.", param="logprobs")
    fmt = body.get("response_format")
    if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise ApiError(
            400,
            "'response_format' other than text (JSON mode, a JSON schema) is not supported by this server.",
            param="response_format",
        )


def _request(
    body: Mapping[str, Any],
    *,
    max_tokens: int,
    messages: Sequence[P.ChatMessage] = (),
    prompt: str | None = None,
) -> P.ChatRequest:
    temperature = _number(body, "temperature", DEFAULT_TEMPERATURE, 0.0, MAX_TEMPERATURE)
    top_p = _number(body, "top_p", DEFAULT_TOP_P, 0.0, 1.0)
    if top_p == 0:
        # OpenAI allows 0: only the most likely token remains, which is greedy sampling.
        temperature, top_p = 0.0, 1.0
    seed = body.get("seed")
    if seed is not None and not _is_int(seed):
        raise ApiError(400, "'seed' must be an integer.", param="seed")
    ignore_eos = body.get("ignore_eos", False)  # llama-server's extension: a fixed number of tokens
    if not isinstance(ignore_eos, bool):
        raise ApiError(400, "'ignore_eos' must be true or false.", param="ignore_eos")
    return P.ChatRequest(
        messages=tuple(messages),
        prompt=prompt,
        temperature=temperature,
        top_p=top_p,
        max_tokens=max_tokens,
        seed=seed,
        ignore_eos=ignore_eos,
        stop=_stop(body.get("stop")),
    )


def _stop(stop: Any) -> tuple[str, ...]:
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise ApiError(400, "'stop' must be a string or an array of strings.", param="stop")
    stops = tuple(dict.fromkeys(s for s in stop if s))
    if len(stops) > P.MAX_STOP_STRINGS:
        raise ApiError(400, f"'stop' takes at most {P.MAX_STOP_STRINGS} sequences.", param="stop")
    if any(len(s) > P.MAX_STOP_CHARS for s in stops):
        raise ApiError(
            400, f"Each stop sequence must be at most {P.MAX_STOP_CHARS} characters.", param="stop"
        )
    return stops


def _max_tokens(body: Mapping[str, Any], names: Sequence[str], default: int) -> int:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if not _is_int(value) or value < 1:
            raise ApiError(400, f"'{name}' must be an integer of 1 or more.", param=name)
        return int(value)
    return max(1, default)


def _number(body: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ApiError(400, f"'{name}' must be a number.", param=name)
    if not low <= value <= high:
        raise ApiError(400, f"'{name}' must be between {low:g} and {high:g}, got {value:g}.", param=name)
    return float(value)


def _stream(body: Mapping[str, Any]) -> bool:
    stream = body.get("stream", False)
    if stream is None:
        return False
    if not isinstance(stream, bool):
        raise ApiError(400, "'stream' must be true or false.", param="stream")
    return stream


def _include_usage(body: Mapping[str, Any]) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise ApiError(400, "'stream_options' must be an object.", param="stream_options")
    return bool(options.get("include_usage")) and _stream(body)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
