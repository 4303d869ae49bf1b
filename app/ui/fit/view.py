"""The Fit tab: which models fit this rig, at which quantization — one row per model, one column per quant.

:class:`FitView` lays out the rig header, the :class:`~app.ui.fit.filters.FilterBar`, the context
choice, the table (:class:`~app.ui.fit.table.FitTableModel` behind a
:class:`~app.ui.fit.filters.FitFilterProxy`) and the legend; a double-click (or Enter) picks the model
and quant for the other tabs. Its own concern is keeping the table current: it is recomputed on the
task runner (never on the GUI thread) when the rig, the context, the KV cache type, flash attention or
the split mode change, and when local GGUF files are added (their headers are read there too); a
result for a rig or context the user has already left is dropped (keyed tasks).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import replace

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.fit.quality import DEFAULT_PREFERENCE, PREFERENCES
from app.core.model_spec import ModelSpec
from app.core.plan import STATUS_FITS, STATUS_NO, STATUS_OFFLOAD, STATUS_TIGHT
from app.core.settings import Settings
from app.ui.fit.filters import FilterBar, FitFilterProxy
from app.ui.fit.frozen import FrozenColumnTable
from app.ui.fit.table import (
    COL_BEST,
    COL_MODEL,
    COL_PARAMS,
    QUANT_ROLE,
    REF_ROLE,
    FitResult,
    FitTableModel,
    compute_fit,
)
from app.ui.glossary import tip
from app.ui.state import CONTEXT_CHOICES, AppState
from app.ui.tasks import TaskRunner
from app.ui.theme import TEXT_MUTED, tint
from app.ui.widgets import LinkHeader, legend, rig_summary, status_legend

PREFER_LABELS = {"balanced": "Balanced", "quality": "Quality", "speed": "Speed"}


class FitView(QtWidgets.QWidget):
    """The Fit tab (see the module docstring)."""

    model_chosen = QtCore.Signal(str, str)  # ref (catalog id or file path), quant
    rig_link_activated = QtCore.Signal()
    table_ready = QtCore.Signal(object)  # FitResult

    def __init__(self, state: AppState, tasks: TaskRunner, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("fitView")
        self.state = state
        self.tasks = tasks
        self._local: dict[str, ModelSpec] = {}  # path -> spec (id made unique by the path)
        self._local_pending: list[str] = []  # paths whose headers are still to be read
        self._unreadable: dict[str, str] = {}  # path -> why its header could not be read (one row each)
        self._warmed = False
        self._active = False  # computes only once activated (shown, or the window asked after start-up)
        self._computing = False
        self._last_key: tuple[object, ...] | None = None
        self._result: FitResult | None = None
        self._error = ""
        self._prefer = DEFAULT_PREFERENCE
        self._build()
        state.rig_changed.connect(self._on_state_changed)
        state.settings_changed.connect(self._on_state_changed)
        self._sync_ctx_combo(state.settings.ctx)
        self._update_header()

    # ------------------------------------------------------------------------------------------ build
    def _build(self) -> None:
        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(8, 8, 8, 8)
        top = QtWidgets.QHBoxLayout()
        self.rig_header = LinkHeader("Rig:", "hardware")
        self.rig_header.setObjectName("fitRigHeader")
        self.rig_header.link_activated.connect(lambda _target: self.rig_link_activated.emit())
        top.addWidget(self.rig_header, 1)
        self.status_label = QtWidgets.QLabel("")
        self.status_label.setObjectName("fitStatus")
        self.status_label.setWordWrap(True)
        self.status_label.setAlignment(
            QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter
        )
        top.addWidget(self.status_label, 1)
        outer.addLayout(top)

        filters = QtWidgets.QHBoxLayout()
        self.model = FitTableModel(self)
        self.model.set_palette(self.palette())
        self.proxy = FitFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self.filters = FilterBar(self.proxy)
        filters.addWidget(self.filters, 1)
        ctx_label = QtWidgets.QLabel("Context")
        ctx_label.setToolTip(tip("context"))
        filters.addWidget(ctx_label)
        self.ctx_combo = QtWidgets.QComboBox()
        self.ctx_combo.setObjectName("fitContext")
        self.ctx_combo.setToolTip(tip("context"))
        for ctx in CONTEXT_CHOICES:
            self.ctx_combo.addItem(f"{ctx // 1024}K", ctx)
        ctx_label.setBuddy(self.ctx_combo)
        filters.addWidget(self.ctx_combo)
        prefer_label = QtWidgets.QLabel("Best fit")
        prefer_label.setToolTip(tip("best_quant"))
        filters.addWidget(prefer_label)
        self.prefer_combo = QtWidgets.QComboBox()
        self.prefer_combo.setObjectName("fitPrefer")
        for key in PREFERENCES:
            self.prefer_combo.addItem(PREFER_LABELS[key], key)
            self.prefer_combo.setItemData(
                self.prefer_combo.count() - 1, tip(f"prefer_{key}"), QtCore.Qt.ItemDataRole.ToolTipRole
            )
        self.prefer_combo.setCurrentIndex(self.prefer_combo.findData(DEFAULT_PREFERENCE))
        self.prefer_combo.setToolTip(tip(f"prefer_{DEFAULT_PREFERENCE}"))
        prefer_label.setBuddy(self.prefer_combo)
        filters.addWidget(self.prefer_combo)
        outer.addLayout(filters)

        self.table = FrozenColumnTable()
        self.table.setObjectName("fitTable")
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(-1, QtCore.Qt.SortOrder.AscendingOrder)  # catalog order until asked
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectItems)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(False)
        self.table.setAlternatingRowColors(False)
        self.table.verticalHeader().setVisible(False)
        line = self.fontMetrics().lineSpacing()
        self.table.verticalHeader().setDefaultSectionSize(2 * line + 8)
        self.table.verticalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Fixed)
        header = self.table.horizontalHeader()
        header.setHighlightSections(False)
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Interactive)
        # Wide enough for the longest cell text, in bold (the starred best cell is bold): an offload
        # cell's "offload 8.8 tok/s" (the regular font's width cut a best offload cell to "offload 1.0 t…").
        bold = QtGui.QFont(self.font())
        bold.setBold(True)
        widest = max(
            QtGui.QFontMetrics(bold).horizontalAdvance(t) for t in ("★ 888.8 GiB", "offload 88.8 tok/s")
        )
        header.setDefaultSectionSize(widest + 16)
        header.setStretchLastSection(False)
        self.table.setHorizontalScrollMode(QtWidgets.QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.table.doubleClicked.connect(self._on_double_clicked)
        # Enter picks the current cell too; not via `activated`, which some desktops fire on a single
        # click and every platform fires along with doubleClicked.
        self.table.installEventFilter(self)
        outer.addWidget(self.table, 1)

        bottom = QtWidgets.QHBoxLayout()
        self.legend = status_legend(self.palette())
        bottom.addWidget(self.legend)
        self.empty_legend = self._empty_legend()
        bottom.addWidget(self.empty_legend)
        star = QtWidgets.QLabel("★ best quantization for this rig")
        star.setToolTip(tip("best_quant"))
        bottom.addWidget(star)
        hint = QtWidgets.QLabel(
            "Double-click a cell (or press Enter) to plan it on the Split tab; right-click it to get the model"
        )
        hint.setWordWrap(True)
        hint.setAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
        tint(hint, TEXT_MUTED)
        bottom.addWidget(hint, 1)
        outer.addLayout(bottom)

        self.ctx_combo.activated.connect(self._on_ctx_chosen)
        self.prefer_combo.activated.connect(self._on_prefer_chosen)
        self.setTabOrder(self.filters.last_widget, self.ctx_combo)
        self.setTabOrder(self.ctx_combo, self.prefer_combo)
        self.setTabOrder(self.prefer_combo, self.table)

    def _empty_legend(self) -> QtWidgets.QWidget:
        base = self.palette().color(QtGui.QPalette.ColorRole.Base)
        return legend([(base, "Empty: not published", tip("status_empty"))])

    # ------------------------------------------------------------------------------------------ API
    @property
    def result(self) -> FitResult | None:
        """The table shown now (None before the first computation finished)."""
        return self._result

    @property
    def busy(self) -> bool:
        return self._computing

    @property
    def error_text(self) -> str:
        return self._error

    def add_local_models(self, models: Iterable[ModelSpec | str | os.PathLike[str]]) -> None:
        """Show local GGUF files as rows: specs already read, or paths (read off the GUI thread)."""
        changed = False
        for item in models:
            if isinstance(item, ModelSpec):
                if item.source != "gguf" or not item.paths:
                    continue
                path = item.remote or str(item.paths[0])  # hf:REPO/FILE for a file on the hub
                if item.remote and str(item.paths[0]) in self._local:
                    continue  # on the hub, and downloaded already: the local row stands for it
                if path not in self._local:
                    # A unique id per file: two files of one model must be two rows.
                    self._local[path] = replace(item, id=f"file:{path}")
                    changed = True
            else:
                path = str(item)
                if (
                    path not in self._local
                    and path not in self._local_pending
                    and path not in self._unreadable
                ):
                    self._local_pending.append(path)
                    changed = True
            changed = self._drop_remote_row_of(path) or changed
        if changed and self._active:
            self.recompute(force=True)

    def _drop_remote_row_of(self, path: str) -> bool:
        """A file planned from the hub has arrived at ``path``: its "on the hub" row goes."""
        remote = [
            k for k, spec in self._local.items() if spec.remote and spec.paths and str(spec.paths[0]) == path
        ]
        for key in remote:
            del self._local[key]
        return bool(remote)

    def local_paths(self) -> tuple[str, ...]:
        return tuple(self._local)

    def recompute(self, force: bool = False) -> None:
        """Recompute the table for the state's rig and settings on the task runner."""
        rig = self.state.rig
        if rig is None:
            return
        settings = self._table_settings(self.state.settings)
        prefer = self._prefer
        key = (rig, settings, tuple(self._local), tuple(self._local_pending), prefer)
        if not force and key == self._last_key:
            return
        self._last_key = key
        local = list(self._local.items())
        pending = list(self._local_pending)
        known_bad = list(self._unreadable.items())
        first = not self._warmed
        self._computing = True
        self._error = ""
        self.status_label.setText("Preparing the model catalog (first time only)…" if first else "Computing…")

        def work() -> tuple[FitResult, list[tuple[str, ModelSpec]], list[tuple[str, str]]]:
            read, failed = _read_local(pending)
            result = compute_fit(
                rig, settings, local + read, first_run=first, failed=known_bad + failed, prefer=prefer
            )
            return result, read, failed

        self.tasks.submit(work, self._on_computed, self._on_failed, key="fit-table")

    def shutdown(self) -> None:
        """Forget the table in flight (the window is closing)."""
        self.tasks.cancel("fit-table")
        self._computing = False

    def select_cell(self, ref: str, quant: str) -> QtCore.QModelIndex:
        """The view index of a model's quant cell (invalid when it is not shown)."""
        row = self.model.row_of(ref)
        if row < 0 or quant not in self.model.quants:
            return QtCore.QModelIndex()
        return self.proxy.mapFromSource(self.model.index(row, self.model.column_of(quant)))

    # ------------------------------------------------------------------------------------------ internals
    @staticmethod
    def _table_settings(settings: Settings) -> Settings:
        # The table answers "what fits": llama.cpp's own split and every layer offloaded; the split
        # sliders and the GPU-layer count are the Split tab's business.
        return replace(settings, tensor_split=None, n_gpu_layers=-1)

    def _on_state_changed(self, _value: object) -> None:
        self._sync_ctx_combo(self.state.settings.ctx)
        self._update_header()
        if self._active:
            self.recompute()

    def activate(self) -> None:
        """Start computing: now, and again whenever the rig or the context changes. The window calls
        it once it is on screen, so the first table (the catalog warm-up takes seconds) neither
        delays the window nor waits for the user to open the tab."""
        self._active = True
        self.recompute()

    def showEvent(self, event: QtGui.QShowEvent) -> None:
        super().showEvent(event)
        if not self._active:
            self.activate()

    def _on_computed(self, value: object) -> None:
        assert isinstance(value, tuple)
        result: FitResult = value[0]
        read: list[tuple[str, ModelSpec]] = value[1]
        failed: list[tuple[str, str]] = value[2]
        self._computing = False
        self._warmed = True
        for path, spec in read:
            self._local[path] = spec
            if path in self._local_pending:
                self._local_pending.remove(path)
        for path, message in failed:
            self._unreadable[path] = message
            if path in self._local_pending:
                self._local_pending.remove(path)
        if read or failed:
            # The pending paths are now known specs: the key the next change compares with moves on.
            self._last_key = (
                result.rig,
                self._table_settings(self.state.settings),
                tuple(self._local),
                tuple(self._local_pending),
                result.prefer,
            )
        self._result = result
        fresh = self.model.rowCount() == 0
        self.model.set_result(result)
        if fresh:
            self._size_columns()
        self.filters.update_families(result)
        self.proxy.invalidate()
        shown = sum(1 for r in result.rows if any(c.status != STATUS_NO for c in r.cells.values()))
        unreadable = [r for r in result.rows if r.unreadable]
        text = f"{shown} of {len(result.rows) - len(unreadable)} models load on this rig at {result.ctx:,} tokens"
        if unreadable:
            # The rows say which; their tooltips say why.
            text += f" · {len(unreadable)} unreadable ({', '.join(r.name for r in unreadable[:3])}"
            text += ", …)" if len(unreadable) > 3 else ")"
        self.status_label.setText(text)
        self.table_ready.emit(result)

    def _size_columns(self) -> None:
        fm = self.table.fontMetrics()
        names = [r.name for r in self.model.model_rows] or ["Model"]
        widest = max(fm.horizontalAdvance(n) for n in names) + 16
        self.table.setColumnWidth(COL_MODEL, min(widest, fm.horizontalAdvance("M" * 22)))
        self.table.setColumnWidth(COL_PARAMS, fm.horizontalAdvance("888.8B") + 16)
        self.table.setColumnWidth(COL_BEST, fm.horizontalAdvance("offload 888 tok/s") + 20)

    def _on_failed(self, message: str) -> None:
        self._computing = False
        self._error = message
        self.status_label.setText(f"No fit table: {message}")

    def _update_header(self) -> None:
        self.rig_header.set_summary(rig_summary(self.state.rig))

    def _sync_ctx_combo(self, ctx: int) -> None:
        index = self.ctx_combo.findData(ctx)
        if index < 0:
            # A context typed on the Split tab: show it as one more choice.
            label = f"{ctx // 1024}K" if ctx % 1024 == 0 else f"{ctx:,}"
            self.ctx_combo.addItem(label, ctx)
            index = self.ctx_combo.count() - 1
        if index != self.ctx_combo.currentIndex():
            self.ctx_combo.blockSignals(True)
            self.ctx_combo.setCurrentIndex(index)
            self.ctx_combo.blockSignals(False)

    @property
    def prefer(self) -> str:
        """What "best fit" means now: ``balanced``, ``quality`` or ``speed``."""
        return self._prefer

    def set_prefer(self, prefer: str) -> None:
        """Choose what "best fit" means and recompute the table (RigfitError for an unknown one)."""
        from app.core.fit.quality import check_preference

        check_preference(prefer)
        index = self.prefer_combo.findData(prefer)
        if self.prefer_combo.currentIndex() != index:
            self.prefer_combo.setCurrentIndex(index)
        self.prefer_combo.setToolTip(tip(f"prefer_{prefer}"))
        if prefer != self._prefer:
            self._prefer = prefer
            if self._active:
                self.recompute()

    def _on_prefer_chosen(self, index: int) -> None:
        prefer = self.prefer_combo.itemData(index)
        if isinstance(prefer, str):
            self.set_prefer(prefer)

    def _on_ctx_chosen(self, index: int) -> None:
        ctx = self.ctx_combo.itemData(index)
        if isinstance(ctx, int) and ctx != self.state.settings.ctx:
            self.state.update_settings(ctx=ctx)

    def _on_double_clicked(self, index: QtCore.QModelIndex) -> None:
        self.choose(index)

    def eventFilter(self, watched: QtCore.QObject, event: QtCore.QEvent) -> bool:
        if (
            watched is self.table
            and event.type() == QtCore.QEvent.Type.KeyPress
            and isinstance(event, QtGui.QKeyEvent)
            and event.key() in (QtCore.Qt.Key.Key_Return, QtCore.Qt.Key.Key_Enter)
        ):
            return self.choose(self.table.currentIndex())
        return super().eventFilter(watched, event)

    def choose(self, index: QtCore.QModelIndex) -> bool:
        """Pick the model and quant of a view index for the other tabs; False for an empty cell."""
        if not index.isValid():
            return False
        ref = index.data(REF_ROLE)
        quant = index.data(QUANT_ROLE)
        if not ref or not quant:
            return False
        source = self.proxy.mapToSource(index)
        row = self.model.row_at(source.row())
        # A local file has one quant, the file's own: load_model_spec reads it from the file.
        self.model_chosen.emit(str(ref), "" if row.local else str(quant))
        return True

    def _replace_legends(self) -> None:
        """Recolour the legend's swatches for a new palette (a switch between light and dark)."""
        from app.ui.theme import status_background
        from app.ui.widgets import Swatch

        palette = self.palette()
        swatches = self.legend.findChildren(Swatch)
        for swatch, status in zip(
            swatches, (STATUS_FITS, STATUS_TIGHT, STATUS_OFFLOAD, STATUS_NO), strict=False
        ):
            swatch.set_color(status_background(status, palette))
        for swatch in self.empty_legend.findChildren(Swatch):
            swatch.set_color(palette.color(QtGui.QPalette.ColorRole.Base))

    def changeEvent(self, event: QtCore.QEvent) -> None:
        if event.type() == QtCore.QEvent.Type.PaletteChange:
            self.model.set_palette(self.palette())
            self._replace_legends()
        super().changeEvent(event)


def _read_local(paths: Sequence[str]) -> tuple[list[tuple[str, ModelSpec]], list[tuple[str, str]]]:
    """Read the headers of local GGUF files (pool thread); failures come back as (path, message)."""
    from app.core.errors import RigfitError, one_line
    from app.core.model_source import load_gguf_spec

    read: list[tuple[str, ModelSpec]] = []
    failed: list[tuple[str, str]] = []
    for path in paths:
        try:
            spec = load_gguf_spec(path)
        except RigfitError as exc:
            failed.append((path, one_line(exc)))
            continue
        except Exception as exc:
            # Whatever one file does to the reader, it is that file's row, never the whole table.
            failed.append((path, one_line(f"Rigfit could not read this file ({type(exc).__name__}: {exc})")))
            continue
        read.append((path, replace(spec, id=f"file:{path}")))
    return read, failed


__all__ = ["FitView"]
