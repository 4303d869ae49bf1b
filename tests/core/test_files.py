"""Files a user names are read safely: regular files only, a cap per format, clear errors, no hang.

A FIFO used to block the open forever and /dev/zero to be read until memory ran out; here each is one
RigfitError, raised at once (the FIFO has no writer: a blocking open would never return, and the test
would hang instead of failing).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.core import files
from app.core.errors import BadModelFile, RigfitError
from app.core.hf_config import read_config
from app.core.model_source import load_model_spec
from app.hardware.rigfile import load_rig

posix_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.gguf"
    os.mkfifo(path)
    return path


@posix_only
def test_a_fifo_is_refused_without_blocking(fifo: Path) -> None:
    with pytest.raises(RigfitError, match=r"is a pipe \(FIFO\)"):
        files.read_capped(fifo, "rig file", 1024)
    with pytest.raises(BadModelFile, match="pipe"):
        load_model_spec(str(fifo))
    toml = fifo.with_name("rig.toml")
    os.mkfifo(toml)
    with pytest.raises(RigfitError, match="pipe"):
        load_rig(toml)
    config = fifo.with_name("config.json")
    os.mkfifo(config)
    with pytest.raises(BadModelFile, match="pipe"):
        read_config(config)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero here")
def test_a_device_is_refused_instead_of_read_forever() -> None:
    with pytest.raises(RigfitError, match="is a device"):
        load_rig("/dev/zero")
    with pytest.raises(BadModelFile, match="is a device"):
        read_config("/dev/zero")
    with pytest.raises(BadModelFile, match="device"):
        load_model_spec("/dev/zero")


def test_a_file_over_its_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "big.toml"
    with big.open("wb") as f:
        f.truncate(files.MAX_RIG_FILE_BYTES + 1)  # sparse: no disk used
    with pytest.raises(RigfitError, match="at most 1 MiB"):
        load_rig(big)


def test_a_folder_and_a_missing_file_are_named(tmp_path: Path) -> None:
    with pytest.raises(RigfitError, match="is a folder"):
        load_rig(tmp_path)
    with pytest.raises(RigfitError, match="not found"):
        load_rig(tmp_path / "nope.toml")


def test_a_name_too_long_is_one_short_line(tmp_path: Path) -> None:
    long = tmp_path / ("x" * 5000 + ".gguf")
    with pytest.raises(BadModelFile) as info:
        load_model_spec(str(long))
    message = str(info.value)
    assert "too long" in message and len(message) < 400
    with pytest.raises(RigfitError, match="too long"):
        load_rig(tmp_path / ("y" * 5000 + ".toml"))


def test_a_name_that_is_not_utf8_reads_and_prints(tmp_path: Path) -> None:
    name = os.fsdecode(b"rig-\xff\xfe.toml")
    path = tmp_path / name
    path.write_text('[[gpu]]\ncatalog = "rtx-3090"\n', encoding="utf-8")
    assert load_rig(path).n_gpus == 1
    with pytest.raises(RigfitError) as info:
        load_rig(tmp_path / os.fsdecode(b"gone-\xff.toml"))
    message = str(info.value)
    message.encode("utf-8")  # printable: the undecodable byte is shown escaped
    assert "\\xff" in message


def test_a_nul_in_a_path_is_an_error_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(RigfitError):
        load_rig(str(tmp_path / "a\x00b.toml"))
    with pytest.raises(BadModelFile):
        load_model_spec(str(tmp_path / "a\x00b.gguf"))


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deep_nesting_is_a_clear_error(tmp_path: Path, depth: int) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"a": ' + "[" * depth + "]" * depth + "}")
    with pytest.raises(BadModelFile, match="nests its values too deeply"):
        read_config(config)
    rig = tmp_path / "rig.toml"
    rig.write_text("x = " + "[" * depth + "]" * depth + "\n")
    with pytest.raises(RigfitError, match="too deeply"):
        load_rig(rig)


def test_bad_utf8_text_is_named(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_bytes(b'{"hidden_size": "\xff"}')
    with pytest.raises(BadModelFile, match=r"not a text \(UTF-8\) file"):
        read_config(config)


def test_show_path_is_printable_and_short() -> None:
    shown = files.show_path("/m/" + "é" * 400 + os.fsdecode(b"\xff") + "\n.gguf")
    assert len(shown) <= files.MAX_SHOWN_PATH
    shown.encode("utf-8")
    assert "\n" not in shown
