"""The protocol's messages: encoding, settings validation, events that survive a round trip."""

from __future__ import annotations

import json

import pytest

from app.core.errors import RigfitError
from app.core.settings import Settings
from app.runner import protocol as P
from app.runner.logparse import BufferSize


def test_a_message_is_one_line_even_with_newlines_in_text() -> None:
    line = P.encode({"type": "token", "text": "a\nb", "index": 0})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert P.decode(line) == {"type": "token", "text": "a\nb", "index": 0}


@pytest.mark.parametrize("raw", [b"[1,2]", b'{"no_type": 1}', b"not json", b'{"type": 3}'])
def test_decode_refuses_what_is_not_a_message(raw: bytes) -> None:
    with pytest.raises(ValueError):
        P.decode(raw)


def test_load_settings_follow_the_planner_settings() -> None:
    s = Settings(
        ctx=2048,
        split_mode="row",
        tensor_split=(3.0, 1.0),
        main_gpu=1,
        n_gpu_layers=20,
        flash_attn=False,
        type_k="q8_0",
        type_v="q4_0",
        n_batch=256,
        n_ubatch=128,
    )
    load = P.LoadSettings.from_settings("/m.gguf", s, n_threads=4, seed=7)
    assert (load.n_ctx, load.split_mode, load.tensor_split, load.main_gpu, load.n_gpu_layers) == (
        2048,
        "row",
        (3.0, 1.0),
        1,
        20,
    )
    assert (load.flash_attn, load.type_k, load.type_v, load.n_batch, load.n_ubatch) == (
        False,
        "q8_0",
        "q4_0",
        256,
        128,
    )
    assert P.LoadSettings.from_message(json.loads(json.dumps(load.to_message()))) == load


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"tensor_split": (1.0, -1.0)}, "zero or positive"),
        ({"tensor_split": (0.0, 0.0)}, "above zero"),
        ({"split_mode": "diagonal"}, "unknown split mode"),
        ({"type_k": "q5_1"}, "unknown K cache type"),
        ({"n_ctx": 0}, "context"),
        ({"n_gpu_layers": -2}, "GPU layers"),
        ({"n_threads": 0}, "threads"),
    ],
)
def test_bad_load_settings_are_refused_in_words(change: dict[str, object], words: str) -> None:
    base = P.LoadSettings(model_path="/m.gguf")
    with pytest.raises(RigfitError, match=words):
        P.LoadSettings(**{**base.__dict__, **change}).validate()


def test_unknown_load_setting_is_refused() -> None:
    with pytest.raises(RigfitError, match="unknown load setting"):
        P.LoadSettings.from_message({"model_path": "/m.gguf", "use_mmap": True})


def test_chat_request_round_trip_and_checks() -> None:
    req = P.ChatRequest(messages=(P.ChatMessage("user", "hi"),), temperature=0.0, max_tokens=3, seed=5)
    assert P.ChatRequest.from_message({"type": "chat", **json.loads(json.dumps(req.to_message()))}) == req
    with pytest.raises(RigfitError):
        P.ChatRequest(messages=()).validate()
    with pytest.raises(RigfitError):
        P.ChatRequest(messages=req.messages, top_p=0).validate()
    with pytest.raises(RigfitError):
        P.ChatRequest.from_message({"messages": [{"role": "user"}]})


def test_events_survive_a_round_trip_through_json() -> None:
    events: list[P.Event] = [
        P.ReadyEvent(
            pid=1,
            llama_cpp_version="0.3.36",
            gpu_offload=True,
            devices=(P.Device("CUDA0", "NVIDIA H200", "gpu"),),
        ),
        P.ProgressEvent(percent=42, id=1),
        P.LogEvent(lines=("a", "b")),
        P.LoadedEvent(
            model_path="/m.gguf",
            buffers=(BufferSize("CUDA0", "model", 3853.02),),
            load_s=1.5,
            n_ctx=8192,
            n_layer=32,
            layers={"CUDA0": 33},
            offloaded_layers=33,
            offloadable_layers=33,
            vram=(P.VramDelta(0, 10.0, 5531.6),),
            compare=(P.CompareRow("CUDA0", "weights", 3850.0, 3853.02, -0.08),),
            id=1,
        ),
        P.TokenEvent(text="héllo", index=3, id=2),
        P.DoneEvent(
            text="x",
            stop_reason="eos",
            prompt_tokens=5,
            completion_tokens=1,
            ttft_s=0.1,
            prompt_ms=1.0,
            gen_ms=2.0,
            prompt_tok_s=5000.0,
            gen_tok_s=None,
            wall_s=0.2,
            id=2,
        ),
        P.BenchEvent(pp=512, tg=128, pp_ms=100.0, tg_ms=1000.0, pp_tok_s=5120.0, tg_tok_s=128.0, id=3),
        P.UnloadedEvent(id=4),
        P.ErrorEvent(message="boom", kind=P.ERR_CRASHED, log_tail=("x",), exit_code=-9, pid=12),
        P.ExitedEvent(exit_code=-9, expected=False, pid=12),
    ]
    for event in events:
        message = json.loads(P.encode(P.event_to_message(event)))
        assert P.parse_event(message) == event


def test_loaded_event_json_has_the_increase_and_compare_keys() -> None:
    event = P.LoadedEvent(
        model_path="/m",
        buffers=(),
        load_s=0,
        n_ctx=1,
        n_layer=1,
        vram=(P.VramDelta(0, 100.0, 650.5),),
        compare=(P.CompareRow("host", "kv", 45.0, 45.0, 0.0),),
    )
    message = P.event_to_message(event)
    assert message["vram"] == [
        {"gpu": 0, "before_mib": 100.0, "after_mib": 650.5, "after_load_mib": None, "increase_mib": 550.5}
    ]
    assert message["compare"] == [
        {"device": "host", "buffer": "kv", "predicted_mib": 45.0, "measured_mib": 45.0, "error_pct": 0.0}
    ]


def test_newer_workers_extra_keys_are_ignored() -> None:
    assert P.parse_event({"type": "token", "text": "a", "index": 0, "logprob": -0.1}) == P.TokenEvent("a", 0)
    with pytest.raises(ValueError):
        P.parse_event({"type": "telepathy"})


def test_the_token_short_cut_reads_lines_as_the_general_parser_does() -> None:
    for message in (
        {"type": "token", "text": 'a "quoted"\nline', "index": 7, "id": 3},
        {"type": "token", "text": "é", "index": 0},
    ):
        line = P.encode(message)
        assert line.startswith(b'{"type":"token",')
        assert P.parse_event_line(line) == P.parse_event(P.decode(line))
    done = P.encode(P.event_to_message(P.UnloadedEvent(id=1)))
    assert P.parse_event_line(done) == P.UnloadedEvent(id=1)
