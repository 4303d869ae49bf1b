"""Rig files: save and load round-trip to an equal Rig; a broken file names itself and the problem."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from app.core.errors import RigfitError
from app.core.rig import Gpu, Host, PcieLink
from app.hardware.catalog import build_planned_rig, parse_rig_expression
from app.hardware.nvml import load_fake
from app.hardware.probe import detect_rig
from app.hardware.rigfile import load_rig, rig_from_toml, rig_to_toml, save_rig


@pytest.mark.parametrize(
    "expr",
    [
        "2x RTX 3090",
        "2x RTX 3090 nvlink + RTX 3060@gen3x4",
        "RTX 4090 + RTX 4090@x4",
        "8x H100 nvlink",
        "RTX 3090 + RX 7900 XTX + Arc B580",
    ],
)
def test_planned_rigs_round_trip_exactly(expr: str, tmp_path: Path) -> None:
    rig = parse_rig_expression(expr)
    path = tmp_path / "rig.toml"
    save_rig(rig, path)
    assert load_rig(path) == rig


def test_host_overrides_custom_cards_and_free_memory_round_trip(tmp_path: Path) -> None:
    custom = Gpu(
        index=0,
        name='Modded "2080 Ti" 22GB \\ test',
        vram_total_mib=22528.0,
        bandwidth_gbps=616.0,
        tdp_w=250.0,
        pcie=PcieLink(gen=3, width=8, max_gen=3, max_width=8, gpu_max_gen=3, gpu_max_width=16),
        planned=True,
    )
    base = parse_rig_expression("RTX 3090").gpus[0]
    host = Host(
        cpu_name="Ryzen 9 7950X — 16 cores", cores_physical=16, cores_logical=32, ram_total_mib=131072.0
    )
    rig = build_planned_rig(
        [custom, replace(base, vram_free_mib=20000.0, overhead_mib=600.0)], host=host, name="Mein Rig ✓"
    )
    path = tmp_path / "custom.toml"
    save_rig(rig, path)
    assert tomllib.loads(path.read_text(encoding="utf-8"))["gpu"][0]["name"] == custom.name
    assert load_rig(path) == rig


def test_a_detected_rig_saves_as_the_same_hardware_planned(tmp_path: Path) -> None:
    detected = detect_rig(backend=load_fake("3090+3060-x4"), sysfs_root=tmp_path)
    path = tmp_path / "mine.toml"
    save_rig(detected, path)
    planned = load_rig(path)
    assert planned.source == "planned"
    assert [g.catalog_id for g in planned.gpus] == ["rtx-3090", "rtx-3060-12gb"]
    assert [g.name for g in planned.gpus] == ["NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 3060"]
    assert [g.vram_free_mib for g in planned.gpus] == [g.vram_free_mib for g in detected.gpus]
    assert [g.pcie.max_width for g in planned.gpus] == [16, 4]
    assert [g.pcie.max_gen for g in planned.gpus] == [4, 3]
    assert planned.host == detected.host


def test_nvlinked_detected_pair_keeps_its_bridge(tmp_path: Path) -> None:
    detected = detect_rig(backend=load_fake("2x3090-nvlink"), sysfs_root=tmp_path)
    planned = rig_from_toml(rig_to_toml(detected))
    assert planned.topology == detected.topology == (("X", "NV4"), ("NV4", "X"))


GOOD = 'format = 1\nname = "x"\n\n[[gpu]]\ncatalog = "rtx-3090"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[gpu]\n", "is not valid TOML"),
        ('format = 2\n[[gpu]]\ncatalog = "rtx-3090"\n', "format 2 is not supported"),
        ('name = "x"\n', "no GPUs"),
        ('[[gpu]]\ncatalog = "rtx-3095"\n', r"GPU 0: unknown GPU 'rtx-3095'; did you mean"),
        ('[[gpu]]\ncatalog = "rtx-3090"\nslot_width = 3\n', "slot_width must be 1, 2, 4, 8 or 16"),
        ('[[gpu]]\ncatalog = "rtx-3090"\nslot_gen = 7\n', "slot_gen must be a PCIe generation"),
        ('[[gpu]]\ncatalog = "rtx-3090"\nvram_free_mib = 99999\n', "more than the card's 24576 MiB"),
        ('[[gpu]]\ncatalog = "rtx-3090"\nvram_free_mib = "lots"\n', "must be a number"),
        ('[[gpu]]\ncatalog = "rtx-3090"\ncolour = "red"\n', "unknown key"),
        ('[[gpu]]\nname = "mystery"\n', "needs vram_total_mib"),
        (
            'nvlink = [[0, 1]]\n[[gpu]]\ncatalog = "rtx-4090"\n[[gpu]]\ncatalog = "rtx-4090"\n',
            "no NVLink connector",
        ),
        (
            'nvlink = [[0, 5]]\n[[gpu]]\ncatalog = "rtx-3090"\n[[gpu]]\ncatalog = "rtx-3090"\n',
            "there is no GPU 5",
        ),
        ('nvlink = [0, 1]\n[[gpu]]\ncatalog = "rtx-3090"\n', "nvlink must be a list of GPU position lists"),
        ('[host]\nram_total_mib = -1\n[[gpu]]\ncatalog = "rtx-3090"\n', "must be a positive number"),
        ('[host]\nram = 1\n[[gpu]]\ncatalog = "rtx-3090"\n', r"unknown key\(s\) in \[host\]"),
    ],
)
def test_broken_rig_files_name_the_file_and_the_problem(text: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "broken-rig.toml"
    path.write_text(text)
    with pytest.raises(RigfitError, match=message) as err:
        load_rig(path)
    assert str(path) in str(err.value)


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(RigfitError, match="rig file not found"):
        load_rig(tmp_path / "nope.toml")
    blob = tmp_path / "blob.toml"
    blob.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(RigfitError, match="not a text"):
        load_rig(blob)


def test_a_minimal_hand_written_file_loads_with_the_default_host(tmp_path: Path) -> None:
    path = tmp_path / "min.toml"
    path.write_text(GOOD)
    rig = load_rig(path)
    assert rig.name == "x" and rig.gpus[0].catalog_id == "rtx-3090"
    assert rig.host == parse_rig_expression("RTX 3090").host


def test_saving_into_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RigfitError, match="cannot save the rig file"):
        save_rig(parse_rig_expression("RTX 3090"), tmp_path / "no" / "such" / "dir" / "rig.toml")


# -- saving never loses the old file (issue 17) ------------------------------------------------------


def test_a_failed_save_leaves_the_old_rig_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    from app.hardware import rigfile

    target = tmp_path / "mine.toml"
    rigfile.save_rig(parse_rig_expression("2x RTX 3090"), target)
    before = target.read_bytes()
    real_write = os.write

    def disk_full(fd: int, data: bytes | memoryview) -> int:
        real_write(fd, bytes(data)[:10])  # part of it lands, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rigfile.os, "write", disk_full)
    with pytest.raises(RigfitError, match="No space left"):
        rigfile.save_rig(parse_rig_expression("RTX 4090 + RTX 3060"), target)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert load_rig(target).n_gpus == 2
    assert [p.name for p in tmp_path.iterdir()] == ["mine.toml"]  # no temporary file left behind


def test_a_save_replaces_the_file_whole_and_keeps_its_permissions(tmp_path: Path) -> None:
    import os
    import stat

    from app.hardware import rigfile

    target = tmp_path / "shared.toml"
    rigfile.save_rig(parse_rig_expression("RTX 3090"), target)
    os.chmod(target, 0o640)
    rigfile.save_rig(parse_rig_expression("RTX 4090 + RTX 3090"), target)
    assert load_rig(target).n_gpus == 2
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640


def test_saving_onto_a_folder_or_into_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    from app.hardware import rigfile

    with pytest.raises(RigfitError, match="is a folder"):
        rigfile.save_rig(parse_rig_expression("RTX 3090"), tmp_path)
    with pytest.raises(RigfitError, match=r"not found|a part of the path"):
        rigfile.save_rig(parse_rig_expression("RTX 3090"), tmp_path / "nope" / "rig.toml")
