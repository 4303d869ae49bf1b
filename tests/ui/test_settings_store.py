"""What the window remembers: stored as text in an INI file, read back leniently."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from PySide6 import QtCore

from app.core.settings import Settings
from app.ui.settings_store import RIG_PLANNED, Session, SettingsStore


@pytest.fixture
def ini(tmp_path: Path) -> Path:
    return tmp_path / "rigfit.ini"


def test_a_session_survives_a_new_store_on_the_same_file(ini: Path) -> None:
    settings = Settings(
        ctx=16384, split_mode="tensor", tensor_split=(0.6, 0.4), n_gpu_layers=40, type_k="q8_0", type_v="q8_0"
    )
    SettingsStore.at(ini).save_session(
        Session(
            rig_mode=RIG_PLANNED,
            planned_rig_toml='format = 1\nname = "a, b"\n',
            model_ref="llama-3.1-8b",
            model_quant="Q4_K_M",
            settings=settings,
            tab="split",
            run_folders=("/models, mine",),
        )
    )
    back = SettingsStore.at(ini).load_session()
    assert back.rig_mode == RIG_PLANNED
    assert back.planned_rig_toml == 'format = 1\nname = "a, b"\n'  # commas survive the INI format
    assert (back.model_ref, back.model_quant, back.tab) == ("llama-3.1-8b", "Q4_K_M", "split")
    assert back.settings == settings
    assert back.run_folders == ("/models, mine",)


def test_window_blobs_round_trip_as_text(ini: Path) -> None:
    store = SettingsStore.at(ini)
    blob = QtCore.QByteArray(bytes(range(256)))
    store.set_window_blob("geometry", blob)
    store.sync()
    assert SettingsStore.at(ini).window_blob("geometry") == blob
    assert "geometry" in ini.read_text()


def test_corrupt_values_read_as_not_stored(ini: Path) -> None:
    ini.write_text(
        '[General]\nsettings="{not json"\nrig\\mode=sideways\nwindow\\geometry=@@@\n'
        'model\\ref="   "\nrun\\folders="[1, 2"\n',
        encoding="utf-8",
    )
    session = SettingsStore.at(ini).load_session()
    assert session == Session()
    assert SettingsStore.at(ini).window_blob("geometry") is None


def test_wrong_fields_keep_their_defaults_and_right_ones_are_kept(ini: Path) -> None:
    store = SettingsStore.at(ini)
    store.set_text(
        "settings",
        '{"ctx": -5, "split_mode": "diagonal", "tensor_split": [1, "x"], "flash_attn": false, '
        '"type_k": "q4_0", "type_v": "f64", "n_gpu_layers": 12, "main_gpu": true}',
    )
    settings = store.load_session().settings
    assert settings == Settings(flash_attn=False, type_k="q4_0", n_gpu_layers=12)


def test_a_store_written_by_a_newer_format_is_ignored(ini: Path) -> None:
    store = SettingsStore.at(ini)
    store.save_session(Session(model_ref="demo"))
    store.set_text("format", "99")
    assert store.load_session() == Session()


def test_memory_store_forgets() -> None:
    store = SettingsStore.memory()
    assert not store.persistent
    store.save_session(Session(model_ref="demo"))
    assert store.load_session().model_ref == "demo"
    assert SettingsStore.memory().load_session() == Session()


def test_the_default_store_lives_in_the_configuration_folder_tests_make_private() -> None:
    # tests/conftest.py gives every test its own configuration folder: the user's is never touched.
    config = Path(os.environ["XDG_CONFIG_HOME"])
    store = SettingsStore.default()
    assert store.persistent and Path(store.location).is_relative_to(config)
    store.save_session(Session(model_ref="demo"))
    assert SettingsStore.default().load_session().model_ref == "demo"


def test_each_test_starts_with_no_saved_session() -> None:
    assert SettingsStore.default().load_session() == Session()
