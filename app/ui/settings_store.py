"""What the window remembers between runs (QSettings, organisation "Rigfit"): window geometry and
state, the current tab, the rig (detected, or the planned rig as rig-file text), the model and quant,
and the load settings (context, split, split mode, KV type, flash attention, GPU layers).

Every value is stored as text (JSON for structured values, base64 for Qt's geometry blobs), so the
INI and native back ends read back the same thing. Reading never raises: a corrupt value, a model
file that is gone or a split for another GPU count reads as "not stored" and the window starts with
its default for that value. Tests point the store at a temporary INI file (:meth:`SettingsStore.at`),
and tests/conftest.py points the user's configuration folder at a temporary one for every test.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path

from PySide6 import QtCore

from app.core.settings import KV_TYPES, SPLIT_MODES, Settings

log = logging.getLogger(__name__)

ORGANISATION = "Rigfit"
APPLICATION = "Rigfit"
FORMAT_KEY = "format"
FORMAT_VERSION = 1

RIG_DETECTED = "detected"
RIG_PLANNED = "planned"

# Settings fields the window lets the user change; the rest keep their defaults on every start.
REMEMBERED_SETTINGS: tuple[str, ...] = (
    "ctx",
    "split_mode",
    "tensor_split",
    "main_gpu",
    "n_gpu_layers",
    "flash_attn",
    "type_k",
    "type_v",
)
MAX_CTX = 1 << 24


@dataclass(frozen=True)
class Session:
    """The user's last selection. ``None`` fields were not stored (or could not be read back)."""

    rig_mode: str | None = None  # "detected" or "planned"
    planned_rig_toml: str | None = None  # the planned rig as rig-file text (app.hardware.rigfile)
    model_ref: str | None = None  # catalog id, GGUF path, config.json path or "demo"
    model_quant: str | None = None
    settings: Settings | None = None
    tab: str | None = None
    run_folders: tuple[str, ...] | None = None  # folders the user added to the Run tab's model search


def _settings_to_json(settings: Settings) -> str:
    data: dict[str, object] = {}
    for name in REMEMBERED_SETTINGS:
        value = getattr(settings, name)
        data[name] = list(value) if isinstance(value, tuple) else value
    return json.dumps(data, sort_keys=True)


def _settings_from_json(text: str) -> Settings | None:
    """Read the remembered settings back; a field that is missing or wrong keeps its default."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    values: dict[str, object] = {}
    ctx = data.get("ctx")
    if isinstance(ctx, int) and not isinstance(ctx, bool) and 1 <= ctx <= MAX_CTX:
        values["ctx"] = ctx
    mode = data.get("split_mode")
    if mode in SPLIT_MODES:
        values["split_mode"] = mode
    split = data.get("tensor_split")
    if (
        isinstance(split, list)
        and split
        and all(
            isinstance(r, int | float) and not isinstance(r, bool) and math.isfinite(r) and r >= 0
            for r in split
        )
        and sum(split) > 0
    ):
        values["tensor_split"] = tuple(float(r) for r in split)
    main_gpu = data.get("main_gpu")
    if isinstance(main_gpu, int) and not isinstance(main_gpu, bool) and 0 <= main_gpu < 64:
        values["main_gpu"] = main_gpu
    ngl = data.get("n_gpu_layers")
    if isinstance(ngl, int) and not isinstance(ngl, bool) and ngl >= -1:
        values["n_gpu_layers"] = ngl
    fa = data.get("flash_attn")
    if isinstance(fa, bool):
        values["flash_attn"] = fa
    for key in ("type_k", "type_v"):
        if data.get(key) in KV_TYPES:
            values[key] = data[key]
    known = {f.name for f in fields(Settings)}
    return Settings(**{k: v for k, v in values.items() if k in known})  # type: ignore[arg-type]


def _folders_from_json(text: str | None) -> tuple[str, ...] | None:
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, list):
        return None
    return tuple(str(f) for f in data if isinstance(f, str) and f.strip()) or None


class SettingsStore:
    """A typed face on QSettings (or on a dict, when nothing should persist)."""

    def __init__(self, qsettings: QtCore.QSettings | None = None) -> None:
        self._qs = qsettings
        self._memory: dict[str, str] = {}

    # -- where ------------------------------------------------------------------------------------
    @classmethod
    def default(cls) -> SettingsStore:
        """The user's settings (Rigfit/Rigfit.ini in the user's configuration folder: XDG_CONFIG_HOME or
        ~/.config on Linux)."""
        return cls(
            QtCore.QSettings(
                QtCore.QSettings.Format.IniFormat, QtCore.QSettings.Scope.UserScope, ORGANISATION, APPLICATION
            )
        )

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> SettingsStore:
        """Settings in the INI file ``path`` (tests; a portable install)."""
        return cls(QtCore.QSettings(str(Path(path)), QtCore.QSettings.Format.IniFormat))

    @classmethod
    def memory(cls) -> SettingsStore:
        """A store that forgets everything when it goes away."""
        return cls(None)

    @property
    def persistent(self) -> bool:
        return self._qs is not None

    @property
    def location(self) -> str:
        return self._qs.fileName() if self._qs is not None else "(memory)"

    # -- raw text values --------------------------------------------------------------------------
    def get_text(self, key: str) -> str | None:
        if self._qs is None:
            return self._memory.get(key)
        try:
            value = self._qs.value(key)
        except Exception:  # a value Qt cannot decode is as good as absent
            log.warning("ignoring unreadable setting %s", key)
            return None
        return value if isinstance(value, str) else None

    def set_text(self, key: str, value: str | None) -> None:
        if self._qs is None:
            if value is None:
                self._memory.pop(key, None)
            else:
                self._memory[key] = value
            return
        if value is None:
            self._qs.remove(key)
        else:
            self._qs.setValue(key, value)

    def sync(self) -> None:
        if self._qs is not None:
            self._qs.sync()

    def clear(self) -> None:
        if self._qs is None:
            self._memory.clear()
        else:
            self._qs.clear()

    # -- window -----------------------------------------------------------------------------------
    def window_blob(self, key: str) -> QtCore.QByteArray | None:
        """``geometry`` or ``state`` of the main window, as saveGeometry/saveState made them."""
        text = self.get_text(f"window/{key}")
        if not text:
            return None
        blob = QtCore.QByteArray.fromBase64(text.encode("ascii", "replace"))
        return blob if not blob.isEmpty() else None

    def set_window_blob(self, key: str, blob: QtCore.QByteArray) -> None:
        self.set_text(f"window/{key}", bytes(blob.toBase64().data()).decode("ascii"))

    # -- the session ------------------------------------------------------------------------------
    def save_session(self, session: Session) -> None:
        self.set_text(FORMAT_KEY, str(FORMAT_VERSION))
        self.set_text("rig/mode", session.rig_mode)
        self.set_text("rig/planned", session.planned_rig_toml)
        self.set_text("model/ref", session.model_ref)
        self.set_text("model/quant", session.model_quant)
        self.set_text("settings", _settings_to_json(session.settings) if session.settings else None)
        self.set_text("window/tab", session.tab)
        self.set_text("run/folders", json.dumps(list(session.run_folders)) if session.run_folders else None)
        self.sync()

    def load_session(self) -> Session:
        """The stored session; every part that is missing or unreadable is ``None``."""
        if self.get_text(FORMAT_KEY) not in (None, str(FORMAT_VERSION)):
            return Session()  # written by a newer Rigfit in a format this one cannot know
        mode = self.get_text("rig/mode")
        planned = self.get_text("rig/planned")
        ref = self.get_text("model/ref")
        quant = self.get_text("model/quant")
        settings_text = self.get_text("settings")
        tab = self.get_text("window/tab")
        return Session(
            run_folders=_folders_from_json(self.get_text("run/folders")),
            rig_mode=mode if mode in (RIG_DETECTED, RIG_PLANNED) else None,
            planned_rig_toml=planned or None,
            model_ref=ref.strip() if ref and ref.strip() else None,
            model_quant=quant.strip() if quant and quant.strip() else None,
            settings=_settings_from_json(settings_text) if settings_text else None,
            tab=tab or None,
        )


__all__ = ["REMEMBERED_SETTINGS", "RIG_DETECTED", "RIG_PLANNED", "Session", "SettingsStore"]
