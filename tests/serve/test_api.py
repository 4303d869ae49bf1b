"""OpenAI request bodies into worker requests, and the replies' shapes, without a model."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.runner import protocol as P
from app.serve import api

MODEL = "SmolLM2-135M-Instruct.Q4_1"


def _chat(**body: Any) -> api.Call:
    body.setdefault("messages", [{"role": "user", "content": "Hi"}])
    return api.parse_chat(body, MODEL, n_ctx=2048)


def _error(fn: Any, *args: Any) -> api.ApiError:
    with pytest.raises(api.ApiError) as info:
        fn(*args)
    return info.value


def test_a_chat_body_becomes_a_worker_request() -> None:
    call = _chat(
        messages=[
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}],
            },
            {"role": "assistant", "content": None, "tool_calls": []},
        ],
        max_tokens=12,
        temperature=0.2,
        top_p=0.5,
        stop="\n",
        seed=7,
        stream=True,
        stream_options={"include_usage": True},
        presence_penalty=0.5,  # ignored, as local servers do
        user="someone",
    )
    assert call.endpoint == api.CHAT and call.stream and call.include_usage
    r = call.request
    assert [(m.role, m.content) for m in r.messages] == [
        ("system", "Be brief."),
        ("user", "Hello\nthere"),
        ("assistant", ""),
    ]
    assert (r.max_tokens, r.temperature, r.top_p, r.stop, r.seed, r.prompt) == (
        12,
        0.2,
        0.5,
        ("\n",),
        7,
        None,
    )
    r.validate()


def test_defaults_a_chat_runs_to_the_context_a_completion_to_16_tokens() -> None:
    assert _chat().request.max_tokens == 2048
    assert _chat(max_completion_tokens=5, max_tokens=9).request.max_tokens == 5
    call = api.parse_completion({"prompt": "Once"}, MODEL)
    assert call.request.max_tokens == api.DEFAULT_COMPLETION_MAX_TOKENS
    assert call.request.prompt == "Once" and call.request.messages == ()
    assert api.parse_completion({"prompt": ["Once"]}, MODEL).request.prompt == "Once"


def test_top_p_zero_means_greedy() -> None:
    r = _chat(top_p=0, temperature=0.7).request
    assert (r.temperature, r.top_p) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages[0].content",
        ),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": True}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 2.5}, "max_tokens"),
        ({"stop": 5}, "stop"),
        ({"stop": [f"s{i}" for i in range(P.MAX_STOP_STRINGS + 1)]}, "stop"),
        ({"seed": "1"}, "seed"),
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"stream": "yes"}, "stream"),
        ({"tools": [{"type": "function"}], "tool_choice": "required"}, "tool_choice"),
    ],
)
def test_bad_chat_parameters_are_400_naming_the_parameter(body: dict[str, Any], param: str) -> None:
    full = {"messages": [{"role": "user", "content": "Hi"}], **body}
    err = _error(api.parse_chat, full, MODEL, 2048)
    assert err.status == 400 and err.param == param
    assert err.body()["error"]["type"] == "invalid_request_error"
    assert err.message.endswith(".")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "prompt"),
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"prompt": [1, 2, 3]}, "prompt"),
        ({"prompt": "x", "echo": True}, "echo"),
        ({"prompt": "x", "suffix": "y"}, "suffix"),
        ({"prompt": "x", "best_of": 3}, "best_of"),
    ],
)
def test_bad_completion_parameters_are_400(body: dict[str, Any], param: str) -> None:
    err = _error(api.parse_completion, body, MODEL)
    assert err.status == 400 and err.param == param


def test_the_model_must_be_named_and_be_the_one_served() -> None:
    assert _error(api.check_model, {}, MODEL).status == 400
    err = _error(api.check_model, {"model": "gpt-4o"}, MODEL)
    assert err.status == 404 and err.code == "model_not_found" and MODEL in err.message
    assert api.check_model({"model": MODEL}, MODEL) == MODEL


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'{"a": NaN}', b"\xff\xfe", b"", b"[" * 100_000])
def test_bodies_that_are_not_a_json_object_are_400(raw: bytes) -> None:
    err = _error(api.parse_json, raw)
    assert err.status == 400 and err.body()["error"]["message"]


def test_model_ids_drop_the_extension_and_shard_suffix() -> None:
    assert api.model_id_for("/m/SmolLM2-135M-Instruct.Q4_1.gguf") == "SmolLM2-135M-Instruct.Q4_1"
    assert api.model_id_for("/m/Llama-3.3-70B-Q4_K_M-00001-of-00002.gguf") == "Llama-3.3-70B-Q4_K_M"


def _done(**kw: Any) -> P.DoneEvent:
    base = dict(
        text="Hello!",
        stop_reason="eos",
        prompt_tokens=20,
        completion_tokens=3,
        ttft_s=0.05,
        prompt_ms=30.0,
        gen_ms=20.0,
        prompt_tok_s=666.7,
        gen_tok_s=100.0,
        wall_s=0.1,
    )
    base.update(kw)
    return P.DoneEvent(**base)  # type: ignore[arg-type]


def test_a_whole_chat_reply_has_openai_s_shape_and_usage() -> None:
    call = _chat()
    body = api.response(call, "chatcmpl-1", 1700000000, _done())
    assert body["object"] == "chat.completion" and body["model"] == MODEL
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello!", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23}


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [("eos", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("context", "length")],
)
def test_finish_reasons(stop_reason: str, finish: str) -> None:
    assert api.finish_reason(stop_reason) == finish


def test_stream_chunks_are_server_sent_events() -> None:
    call = _chat(stream=True)
    first = api.chunk(call, "chatcmpl-1", 1, role=True)
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    piece = api.sse(api.chunk(call, "chatcmpl-1", 1, text="Hé"))
    assert piece.startswith(b"data: {") and piece.endswith(b"}\n\n") and piece.count(b"\n") == 2
    assert json.loads(piece[6:])["choices"][0]["delta"] == {"content": "Hé"}
    assert api.sse("[DONE]") == b"data: [DONE]\n\n"
    completion = api.parse_completion({"prompt": "x", "stream": True}, MODEL)
    assert api.chunk(completion, "cmpl-1", 1, text="y")["choices"][0]["text"] == "y"


def test_usage_chunk_has_no_choices() -> None:
    call = _chat(stream=True, stream_options={"include_usage": True})
    assert api.chunk(call, "c", 1, text="x")["usage"] is None
    last = api.usage_chunk(call, "c", 1, _done())
    assert last["choices"] == [] and last["usage"]["total_tokens"] == 23


def test_worker_errors_become_http_errors() -> None:
    too_long = P.ErrorEvent(
        message="the conversation is 900 tokens, more than the context of 512 tokens allows",
        kind=P.ERR_CONTEXT_EXCEEDED,
    )
    err = api.worker_error(too_long, api.CHAT)
    assert (err.status, err.code, err.param) == (400, "context_length_exceeded", "messages")
    crashed = P.ErrorEvent(message="the model process stopped (signal 9)", kind=P.ERR_CRASHED)
    assert api.worker_error(crashed, api.CHAT).status == 503
    assert api.worker_error(P.ErrorEvent(message="boom", kind=P.ERR_GENERATION), api.CHAT).status == 500
