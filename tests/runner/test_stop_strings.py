"""Stop sequences over a token stream: what is released never shows a stop string, or half of one."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.errors import RigfitError
from app.runner import protocol as P
from app.runner.stop_strings import StopScanner


def _run(pieces: list[str], stops: list[str]) -> tuple[list[str], str | None]:
    scanner = StopScanner(stops)
    out = [scanner.feed(p) for p in pieces]
    if scanner.matched is None:
        out.append(scanner.flush())
    return out, scanner.matched


def test_a_stop_split_across_tokens_is_held_back_then_dropped() -> None:
    out, matched = _run(["Hello", "\n", "\nUs", "er:", " more"], ["\n\nUser:"])
    assert matched == "\n\nUser:"
    assert out == ["Hello", "", "", "", ""]


def test_held_text_that_turns_out_harmless_is_released() -> None:
    out, matched = _run(["a\n", "\nb"], ["\n\nUser:"])
    assert matched is None
    assert out[0] == "a" and "".join(out) == "a\n\nb"


def test_the_stop_completed_first_wins_however_the_tokens_split() -> None:
    assert _run(["U::"], [":", "U::"]) == (["U"], ":")
    assert _run(["U:", ":"], [":", "U::"]) == (["U", ""], ":")


def test_the_earliest_of_several_stops_wins() -> None:
    out, matched = _run(["one END two STOP"], ["STOP", "END"])
    assert matched == "END" and out == ["one "]


def test_nothing_is_released_after_a_match() -> None:
    scanner = StopScanner(["x"])
    assert scanner.feed("abxcd") == "ab"
    assert scanner.feed("more") == "" and scanner.flush() == ""


@given(
    text=st.text(alphabet="ab\nU:", max_size=40),
    stops=st.lists(st.text(alphabet="ab\nU:", min_size=1, max_size=5), min_size=1, max_size=3),
    cuts=st.lists(st.integers(min_value=0, max_value=40), max_size=10),
)
def test_any_split_of_the_stream_gives_the_text_before_the_first_stop(
    text: str, stops: list[str], cuts: list[int]
) -> None:
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    out, matched = _run(pieces, stops)
    # The stop completed first (smallest end, then earliest start) ends the text, however it is split.
    hits = sorted((text.find(s) + len(s), text.find(s), s) for s in stops if s in text)
    if hits:
        _end, first, _stop = hits[0]
        assert matched is not None and text.find(matched) == first
        assert "".join(out) == text[:first]
    else:
        assert matched is None and "".join(out) == text
    # What was released before the end never held the beginning of a stop that later completed.
    released = ""
    for piece in out:
        released += piece
        assert not any(s in released for s in stops)


def test_chat_requests_check_their_stops_and_prompt() -> None:
    msg = (P.ChatMessage("user", "hi"),)
    P.ChatRequest(messages=msg, stop=("a",) * P.MAX_STOP_STRINGS).validate()
    with pytest.raises(RigfitError, match="at most"):
        P.ChatRequest(messages=msg, stop=("a",) * (P.MAX_STOP_STRINGS + 1)).validate()
    with pytest.raises(RigfitError, match="1 to"):
        P.ChatRequest(messages=msg, stop=("",)).validate()
    with pytest.raises(RigfitError, match="not both"):
        P.ChatRequest(messages=msg, prompt="x").validate()
    P.ChatRequest(messages=(), prompt="").validate()
    with pytest.raises(RigfitError, match="at least one message"):
        P.ChatRequest(messages=()).validate()


def test_a_raw_prompt_with_stops_survives_the_protocol() -> None:
    request = P.ChatRequest(messages=(), prompt="Once upon", stop=("\n", "END"), max_tokens=9, seed=3)
    back = P.ChatRequest.from_message(P.decode(P.encode({"type": "chat", **request.to_message()})))
    assert back == request
