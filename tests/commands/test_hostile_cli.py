"""Hostile and absurd command lines: one line in the user's words, exit code 2, no traceback, no hang.

The cases of issue 17 ("Paths and numbers from the command line"): a FIFO or /dev/zero as a model,
rig file or config.json, a 5000-character file name, paths and prompts that are not UTF-8, deeply
nested JSON and TOML, and numbers that would wrap in llama.cpp's C integers. A subprocess timeout is
the hang guard: a command that blocked would fail the test there, not pass it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main
from tests.commands.cli import ROOT

HANG_GUARD_S = 120


def _cli(*args: str | bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        capture_output=True,
        timeout=HANG_GUARD_S,
        check=False,
        env={**os.environ, "RIGFIT_FAKE_NVML": "zero-gpus"},
    )


def _one_line_exit_2(out: subprocess.CompletedProcess[bytes], *words: str) -> str:
    err = out.stderr.decode("utf-8", "replace").strip()
    assert out.returncode == 2, (out.returncode, err)
    assert "Traceback" not in err and err.count("\n") == 0, err
    for w in words:
        assert w in err, err
    return err


def _in_process(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(list(args)) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.count("\n") == 0, err
    return err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_as_model_rig_file_or_config_does_not_block(tmp_path: Path) -> None:
    for name in ("model.gguf", "rig.toml", "config.json"):
        os.mkfifo(tmp_path / name)
    _one_line_exit_2(_cli("plan", "--model", str(tmp_path / "model.gguf"), "--rig", "RTX 3090"), "pipe")
    _one_line_exit_2(
        _cli("plan", "--model", "llama-3.2-1b", "--rig-file", str(tmp_path / "rig.toml")), "pipe"
    )
    _one_line_exit_2(_cli("plan", "--model", str(tmp_path / "config.json"), "--rig", "RTX 3090"), "pipe")
    _one_line_exit_2(_cli("run", "--model", str(tmp_path / "model.gguf"), "--prompt", "hi"), "pipe")


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero here")
def test_dev_zero_as_rig_file_or_config_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert "device" in _in_process(capsys, "plan", "--model", "llama-3.2-1b", "--rig-file", "/dev/zero")
    assert "device" in _in_process(capsys, "detect", "--rig-file", "/dev/zero")
    assert "device" in _in_process(capsys, "plan", "--model", "/dev/zero", "--rig", "RTX 3090")
    assert "device" in _in_process(capsys, "fit", "--rig", "RTX 3090", "--model", "/dev/zero")


def test_a_5000_character_file_name_is_one_short_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    long = str(tmp_path / ("m" * 5000)) + ".gguf"
    for args in (
        ("plan", "--model", long, "--rig", "RTX 3090"),
        ("plan", "--model", "llama-3.2-1b", "--rig-file", long),
        ("run", "--model", long, "--prompt", "hi"),
        ("fit", "--rig", "RTX 3090", "--model", long),
    ):
        err = _in_process(capsys, *args)
        assert "too long" in err and len(err) < 700, err


def test_paths_and_prompts_that_are_not_utf8(tmp_path: Path, demo_model_path: str) -> None:
    bad = os.fsencode(tmp_path) + b"/m\xff\xfe.gguf"
    err = _one_line_exit_2(_cli("plan", "--model", bad, "--rig", "RTX 3090"), "not found")
    assert "\\xff" in err
    _one_line_exit_2(_cli("run", "--model", bad, "--prompt", "hi"), "not found")
    # A real model behind a name that is not UTF-8 plans, and its name prints.
    link = os.fsencode(tmp_path) + b"/smol-\xff.gguf"
    os.symlink(demo_model_path, link)
    out = _cli("plan", "--model", link, "--rig", "RTX 3090")
    assert out.returncode == 0, out.stderr
    # A prompt of bytes that are not UTF-8 is refused before the worker starts.
    out = _cli("run", "--model", "demo", "--prompt", b"caf\xe9")
    _one_line_exit_2(out, "not UTF-8")


def test_deeply_nested_json_and_toml_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    deep = 200_000
    config = tmp_path / "config.json"
    config.write_text('{"x": ' + "[" * deep + "]" * deep + "}")
    rig = tmp_path / "rig.toml"
    rig.write_text("x = " + "[" * deep + "]" * deep + "\n")
    assert "too deeply" in _in_process(capsys, "plan", "--model", str(config), "--rig", "RTX 3090")
    assert "too deeply" in _in_process(capsys, "plan", "--model", "llama-3.2-1b", "--rig-file", str(rig))


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("run", "--model", "demo", "--prompt", "hi", "--ctx", "4294971392"), "--ctx: the context must be from 1"),
        (("run", "--model", "demo", "--prompt", "hi", "--threads", "4294967297"), "--threads"),
        (("run", "--model", "demo", "--prompt", "hi", "--batch", "4294967297"), "--batch"),
        (("run", "--model", "demo", "--prompt", "hi", "--ubatch", "0"), "--ubatch"),
        (("run", "--model", "demo", "--prompt", "hi", "--ngl", "4294967297"), "--ngl"),
        (("run", "--model", "demo", "--prompt", "hi", "--main-gpu", "-1"), "--main-gpu"),
        (("run", "--model", "demo", "--prompt", "hi", "--seed", "4294967296"), "--seed"),
        (("run", "--model", "demo", "--prompt", "hi", "--max-tokens", "99999999999"), "--max-tokens"),
        (("run", "--model", "demo", "--prompt", "hi", "--temperature", "nan"), "--temperature"),
        (("run", "--model", "demo", "--prompt", "hi", "--top-p", "inf"), "--top-p"),
        (("run", "--model", "demo", "--prompt", "hi", "--split", "1e308,1e308"), "at most 1,000,000,000"),
        (("plan", "--model", "llama-3.2-1b", "--rig", "2x RTX 3090", "--split", "1e308,1e308"), "at most"),
        (("plan", "--model", "llama-3.2-1b", "--rig", "2x RTX 3090", "--split", "nan,1"), "zero or positive"),
        (("plan", "--model", "llama-3.2-1b", "--rig", "RTX 3090", "--ctx", "99999999999999999999"), "--ctx"),
        (("plan", "--model", "llama-3.2-1b", "--rig", "RTX 3090", "--ubatch", "4294967297"), "--ubatch"),
        (("fit", "--rig", "RTX 3090", "--ctx", "-1"), "--ctx"),
        (("bench", "--model", "demo", "--pp", "4294967297"), "--pp"),
        (("bench", "--model", "demo", "--repeat", "1e9"), "--repeat"),
        # llama.cpp RPC servers (issue 13): checked as argparse reads them, before any server is asked.
        (("detect", "--rpc", "127.0.0.1:99999"), "--rpc: '127.0.0.1:99999': the port must be a number from 1 to 65535"),
        (("detect", "--rpc", "127.0.0.1:0"), "the port must be"),
        (("plan", "--model", "llama-3.2-1b", "--rig", "RTX 3090", "--rpc", "127.0.0.1:\u00b2"), "the port must be"),
        (("plan", "--model", "llama-3.2-1b", "--rig", "RTX 3090", "--rpc", "127.0.0.1:\uff15\uff10"), "the port must be"),
        (("run", "--model", "demo", "--prompt", "hi", "--rpc", "h" * 5000 + ":50052"), "not a host name"),
        (("fit", "--rig", "RTX 3090", "--rpc", "bad\x00host:1"), "not a host name"),
        (("fit", "--rig", "RTX 3090", "--rpc", "h\u00e9llo:1"), "not a host name"),
        (("bench", "--model", "demo", "--rpc", ",".join(f"127.0.0.1:{p}" for p in range(1, 70))), "at most 64"),
        (("serve", "--model", "demo", "--rpc", "127.0.0.1:1,127.0.0.1:1"), "given twice"),
        (("serve", "--model", "demo", "--port", "65536"), "--port"),
        (("serve", "--model", "demo", "--queue", "99999999999"), "--queue"),
        (("rpc-server", "--port", "4294967297"), "--port"),
        (("rpc-server", "--threads", "4294967297"), "--threads"),
    ],
)  # fmt: skip
def test_numbers_that_would_wrap_are_refused_before_llama_cpp(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], words: str
) -> None:
    err = _in_process(capsys, *args)
    assert words in err, err


def test_help_states_how_long_run_waits_on_a_silent_worker(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "silent for 30 s" in text and "never waits longer" in text, text
    assert "RIGFIT_WORKER_SILENCE_S=120 rigfit run" in text and "run again" in text, text


def test_rpc_servers_that_are_not_utf8_are_one_line() -> None:
    _one_line_exit_2(_cli("detect", "--rpc", b"127.0.0.1\xff:50052"), "--rpc", "not a host name")
    _one_line_exit_2(_cli("rpc-server", "--host", b"127.0.0.1\xff"), "not a host name")
