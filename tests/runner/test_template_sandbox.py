"""Chat templates render in a helper process: a memory bomb or an endless loop is a template error."""

from __future__ import annotations

from collections.abc import Iterator

import psutil
import pytest

from app.runner.template_sandbox import TemplateError, TemplateSandbox

CHAT = [{"role": "user", "content": "hi"}]


@pytest.fixture
def sandbox() -> Iterator[TemplateSandbox]:
    box = TemplateSandbox(time_limit_s=5.0, memory_mib=128)
    try:
        yield box
    finally:
        box.close()


def test_a_template_renders_as_llama_cpp_python_renders_it(sandbox: TemplateSandbox) -> None:
    template = (
        "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{{ eos_token }}"
    )
    assert sandbox.render(template, CHAT, bos="<s>", eos="</s>") == "<s><user>hi</s>"


def test_a_memory_bomb_is_a_template_error_and_the_renderer_goes_on(sandbox: TemplateSandbox) -> None:
    with pytest.raises(TemplateError, match="more than 128 MiB"):
        sandbox.render("{{ ('x' * 1500000000) | length }}", CHAT, bos="", eos="")
    pid = sandbox.pid
    assert pid is not None
    # The cap is the helper's: its resident memory never came near the 1.5 GB the template asked for.
    assert psutil.Process(pid).memory_info().rss < 512 * 2**20
    assert sandbox.render("ok {{ messages | length }}", CHAT, bos="", eos="") == "ok 1"


def test_a_template_that_runs_too_long_is_stopped(sandbox: TemplateSandbox) -> None:
    box = TemplateSandbox(time_limit_s=1.0)
    try:
        with pytest.raises(TemplateError, match="ran longer than 1 s"):
            box.render(
                "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                CHAT,
                bos="",
                eos="",
            )
        assert box.pid is None  # killed; the next render starts a fresh helper
        assert box.render("again", CHAT, bos="", eos="") == "again"
    finally:
        box.close()


def test_a_template_error_is_reported_in_words(sandbox: TemplateSandbox) -> None:
    with pytest.raises(TemplateError, match="no system message"):
        sandbox.render("{{ raise_exception('no system message') }}", CHAT, bos="", eos="")
    with pytest.raises(TemplateError, match="TemplateSyntaxError"):
        sandbox.render("{% for %}", CHAT, bos="", eos="")


def test_a_renderer_that_dies_is_replaced(sandbox: TemplateSandbox) -> None:
    sandbox.render("x", CHAT, bos="", eos="")
    pid = sandbox.pid
    assert pid is not None
    psutil.Process(pid).kill()
    psutil.Process(pid).wait(5)
    assert sandbox.render("y", CHAT, bos="", eos="") == "y"
    assert sandbox.pid not in (None, pid)
