"""What the window remembers between runs (QSettings, organisation "Rigfit"): window geometry and
state, the current tab, the rig (detected, or the planned rig as rig-file text), the model and quant,
and the load settings (context, split, split mode, KV type, flash attention, GPU layers).

Every value is stored as text (JSON for structured values, base64 for Qt's geometry blobs), so the
INI and native back ends read back the same thing. Reading never raises: a corrupt value, a model
file that is gone or a split for another GPU count reads as "not stored" and the window starts with
its default for that value.

Nothing the user saved is lost: a settings file written by a newer Rigfit (a higher ``format``) is
read as empty and never written (:attr:`SettingsStore.read_only`); an entry this version cannot read
is kept as it was when the window saves, unless the user chose a new value for it (the window's
fallback default does not count). :attr:`Session.problems` says, in one line each, what could not
be read, for the window to tell the user once. Tests point the store at a temporary INI file
(:meth:`SettingsStore.at`), and tests/conftest.py points the user's configuration folder at a
temporary one for every test.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Collection
from dataclasses import dataclass, field, fields
from pathlib import Path

from PySide6 import QtCore

from app.core import limits
from app.core.errors import RigfitError, one_line
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
MAX_CTX = limits.MAX_CTX
# Window keys the window may ask save_session to leave as they are (see MainWindow.save_session).
KEEP_RIG = "rig"  # rig/mode, rig/planned, and the split and main GPU that belong to that rig
KEEP_MODEL = "model"  # model/ref and model/quant


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
    # What could not be read back, one line each (not part of equality: it describes the reading).
    problems: tuple[str, ...] = field(default=(), compare=False)


def _settings_to_json(settings: Settings) -> str:
    data: dict[str, object] = {}
    for name in REMEMBERED_SETTINGS:
        value = getattr(settings, name)
        data[name] = list(value) if isinstance(value, tuple) else value
    return json.dumps(data, sort_keys=True)


def _settings_from_json(text: str) -> Settings | None:
    """Read the remembered settings back; a field that is missing or wrong keeps its default."""
    return _read_settings(text)[0]


def _read_settings(text: str) -> tuple[Settings | None, dict[str, object]]:
    """The settings, and the raw stored value of each field that could not be read (kept on save)."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return None, {}
    if not isinstance(data, dict):
        return None, {}
    values: dict[str, object] = {}
    ctx = data.get("ctx")
    if isinstance(ctx, int) and not isinstance(ctx, bool) and 1 <= ctx <= MAX_CTX:
        values["ctx"] = ctx
    mode = data.get("split_mode")
    if mode in SPLIT_MODES:
        values["split_mode"] = mode
    split = data.get("tensor_split")
    if isinstance(split, list) and split:
        # A split this version cannot use is kept as stored; the default is used meanwhile.
        with contextlib.suppress(RigfitError):
            values["tensor_split"] = limits.check_split(split)
    main_gpu = data.get("main_gpu")
    if isinstance(main_gpu, int) and not isinstance(main_gpu, bool) and 0 <= main_gpu < 64:
        values["main_gpu"] = main_gpu
    ngl = data.get("n_gpu_layers")
    if isinstance(ngl, int) and not isinstance(ngl, bool) and -1 <= ngl <= limits.INT32_MAX:
        values["n_gpu_layers"] = ngl
    fa = data.get("flash_attn")
    if isinstance(fa, bool):
        values["flash_attn"] = fa
    for key in ("type_k", "type_v"):
        if data.get(key) in KV_TYPES:
            values[key] = data[key]
    known = {f.name for f in fields(Settings)}
    unread = {k: v for k, v in data.items() if k in REMEMBERED_SETTINGS and k not in values and v is not None}
    return Settings(**{k: v for k, v in values.items() if k in known}), unread  # type: ignore[arg-type]


def _folders_from_json(text: str | None) -> tuple[str, ...] | None:
    if not text:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, list):
        return None
    return tuple(str(f) for f in data if isinstance(f, str) and f.strip()) or None


class SettingsStore:
    """A typed face on QSettings (or on a dict, when nothing should persist)."""

    def __init__(self, qsettings: QtCore.QSettings | None = None) -> None:
        self._qs = qsettings
        self._memory: dict[str, str] = {}
        # Set by load_session: a newer format is never written; unreadable entries are kept.
        self.read_only = False
        self._kept: dict[str, str] = {}  # key -> stored text this version could not read
        self._kept_fields: dict[str, object] = {}  # settings field -> stored value it could not read
        self._stored_settings: dict[str, object] = {}  # the settings JSON as stored (for kept fields)

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
    def kept_keys(self) -> frozenset[str]:
        """Keys that :meth:`load_session` could not read: kept as stored unless replaced."""
        return frozenset(self._kept)

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
        if self.read_only:
            return  # a newer Rigfit's settings: never overwritten
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
        if self._qs is not None and not self.read_only:
            self._qs.sync()

    def clear(self) -> None:
        if self.read_only:
            return
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
    def save_session(self, session: Session, keep: Collection[str] = ()) -> None:
        """Remember ``session``. Entries that could not be read at start are written back as they were
        unless the session holds a new choice for them; ``keep`` (:data:`KEEP_RIG`,
        :data:`KEEP_MODEL`) leaves the window's unreadable rig or unloadable model as stored."""
        if self.read_only:
            return
        keep = set(keep)
        self.set_text(FORMAT_KEY, str(FORMAT_VERSION))
        if KEEP_RIG not in keep:
            self._set_or_keep("rig/mode", session.rig_mode)
            self.set_text("rig/planned", session.planned_rig_toml)
        if KEEP_MODEL not in keep:
            self.set_text("model/ref", session.model_ref)
            self.set_text("model/quant", session.model_quant)
        self.set_text("settings", self._settings_text(session.settings, keep_rig=KEEP_RIG in keep))
        self._set_or_keep("window/tab", session.tab)
        folders = json.dumps(list(session.run_folders)) if session.run_folders else None
        self._set_or_keep("run/folders", folders)
        self.sync()

    def _set_or_keep(self, key: str, value: str | None) -> None:
        # An entry that could not be read stays as it was while the window has nothing new for it.
        if value is None and key in self._kept:
            return
        self.set_text(key, value)

    def _settings_text(self, settings: Settings | None, keep_rig: bool) -> str | None:
        kept = self._kept.get("settings")
        if kept is not None and (
            settings is None or _settings_to_json(settings) == _settings_to_json(Settings())
        ):
            return kept  # unreadable, and the window still has only the defaults it fell back to
        if settings is None:
            return None
        data = json.loads(_settings_to_json(settings))
        defaults = json.loads(_settings_to_json(Settings()))
        for name, raw in self._kept_fields.items():
            if data.get(name) == defaults.get(name):  # still the default it fell back to: keep
                data[name] = raw
        if keep_rig:
            # The split and main GPU belong to the rig that could not be read: they stay with it.
            for name in ("tensor_split", "main_gpu"):
                if name in self._stored_settings:
                    data[name] = self._stored_settings[name]
        return json.dumps(data, sort_keys=True)

    def load_session(self) -> Session:
        """The stored session; every part that is missing or unreadable is ``None``.

        A store written in a newer format reads as empty and becomes :attr:`read_only`.
        """
        self._kept = {}
        self._kept_fields = {}
        self._stored_settings = {}
        fmt = self.get_text(FORMAT_KEY)
        if fmt not in (None, str(FORMAT_VERSION)):
            self.read_only = True
            return Session(
                problems=(
                    f"Your settings were saved by a newer Rigfit (settings format {one_line(fmt, 20)}); "
                    f"this version does not change them, so nothing you change now is remembered "
                    f"({self.location}).",
                )
            )
        problems: list[str] = []
        mode = self._read("rig/mode", problems)
        planned = self._read("rig/planned", problems)
        ref = self._read("model/ref", problems)
        quant = self._read("model/quant", problems)
        settings_text = self._read("settings", problems)
        tab = self._read("window/tab", problems)
        folders_text = self._read("run/folders", problems)
        if mode is not None and mode not in (RIG_DETECTED, RIG_PLANNED):
            self._keep("rig/mode", mode, "the remembered rig choice", problems)
            mode = None
        settings: Settings | None = None
        if settings_text:
            settings, unread = _read_settings(settings_text)
            if settings is None:
                self._keep("settings", settings_text, "the remembered load settings", problems)
            else:
                self._stored_settings = json.loads(settings_text)
                self._kept_fields = unread
                if unread:
                    names = ", ".join(sorted(unread))
                    problems.append(f"Some remembered settings could not be read ({names}); they are kept.")
        folders = _folders_from_json(folders_text)
        if folders_text and folders is None:
            self._keep("run/folders", folders_text, "the remembered model folders", problems)
        return Session(
            run_folders=folders,
            rig_mode=mode,
            planned_rig_toml=planned or None,
            model_ref=ref.strip() if ref and ref.strip() else None,
            model_quant=quant.strip() if quant and quant.strip() else None,
            settings=settings,
            tab=tab or None,
            problems=tuple(problems),
        )

    def _read(self, key: str, problems: list[str]) -> str | None:
        if self._qs is None:
            return self._memory.get(key)
        try:
            value = self._qs.value(key)
        except Exception:  # a value Qt cannot decode: kept as it is, never rewritten
            self._kept[key] = ""
            problems.append(f"The remembered value '{key}' could not be read; it is kept.")
            return None
        if value is not None and not isinstance(value, str):
            self._kept[key] = ""
            problems.append(f"The remembered value '{key}' could not be read; it is kept.")
            return None
        return value

    def _keep(self, key: str, text: str, what: str, problems: list[str]) -> None:
        self._kept[key] = text
        problems.append(f"{what[0].upper()}{what[1:]} could not be read; it is kept as it was.")


__all__ = [
    "KEEP_MODEL",
    "KEEP_RIG",
    "REMEMBERED_SETTINGS",
    "RIG_DETECTED",
    "RIG_PLANNED",
    "Session",
    "SettingsStore",
]
