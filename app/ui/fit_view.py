"""The Fit tab: which models fit this rig, at which quantization — one row per model, one column per quant.

Each cell shows the total memory and the predicted speed, coloured by status (fits, tight, offload,
does not fit) with the palette's colours; the tooltip adds the largest context and the offload. The
best quant of each model (the highest quality that fits, :mod:`app.core.fit`) carries a star. A
search box and filters (status, size, family) narrow the rows; a double-click picks the model and
quant for the other tabs.

The table is a :class:`QAbstractTableModel` behind a :class:`QSortFilterProxyModel`: ~30 rows × ~26
columns of values, no widget per cell. It is recomputed on the task runner (never on the GUI thread)
when the rig, the context, the KV cache type, flash attention or the split mode change; a result for
a rig or context the user has already left is dropped (keyed tasks).
"""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from app.core.model_spec import ModelSpec
from app.core.plan import STATUS_FITS, STATUS_NO, STATUS_OFFLOAD, STATUS_TIGHT
from app.core.rig import Rig
from app.core.settings import Settings
from app.ui.glossary import tip
from app.ui.state import AppState
from app.ui.tasks import TaskRunner
from app.ui.widgets import (
    STATUS_WORDS,
    LinkHeader,
    muted_text,
    rig_summary,
    status_background,
    status_legend,
)

log = logging.getLogger(__name__)

CONTEXT_CHOICES: tuple[int, ...] = (2048, 4096, 8192, 16384, 32768, 65536, 131072)
STATUS_ORDER = {STATUS_FITS: 0, STATUS_TIGHT: 1, STATUS_OFFLOAD: 2, STATUS_NO: 3}

FILTER_ANY = "any"
FILTER_FITS = "fits"  # some quant fits with every layer on the GPUs (fits or tight)
FILTER_COMFORTABLE = "comfortable"  # some quant fits with 10% to spare
FILTER_RUNS = "runs"  # some quant loads, offload included
STATUS_FILTERS: tuple[tuple[str, str, frozenset[str]], ...] = (
    (FILTER_ANY, "Any status", frozenset({STATUS_FITS, STATUS_TIGHT, STATUS_OFFLOAD, STATUS_NO})),
    (FILTER_COMFORTABLE, "Fits with room to spare", frozenset({STATUS_FITS})),
    (FILTER_FITS, "Fits on the GPUs", frozenset({STATUS_FITS, STATUS_TIGHT})),
    (FILTER_RUNS, "Runs (CPU offload included)", frozenset({STATUS_FITS, STATUS_TIGHT, STATUS_OFFLOAD})),
)
SIZE_FILTERS: tuple[tuple[str, str, float, float], ...] = (
    ("any", "Any size", 0.0, float("inf")),
    ("small", "Up to 4B", 0.0, 4.5),
    ("medium", "4B – 16B", 4.5, 16.5),
    ("large", "16B – 40B", 16.5, 40.5),
    ("xl", "40B – 130B", 40.5, 130.5),
    ("xxl", "Over 130B", 130.5, float("inf")),
)
FAMILY_ANY = "any"
FAMILY_LOCAL = "local"
# Catalog ids start with the family's name; a few need mapping to the name users know.
_FAMILY_NAMES = {
    "llama": "Llama",
    "qwen2.5": "Qwen",
    "qwen3": "Qwen",
    "qwen2": "Qwen",
    "qwen": "Qwen",
    "deepseek": "DeepSeek",
    "mistral": "Mistral",
    "mixtral": "Mistral",
    "gemma": "Gemma",
    "phi": "Phi",
    "gpt": "gpt-oss",
    "smollm2": "SmolLM",
    "smollm": "SmolLM",
}

# Roles beyond Qt's: what the proxy sorts and filters on, and what a double-click picks.
SORT_ROLE = QtCore.Qt.ItemDataRole.UserRole + 1
STATUS_ROLE = QtCore.Qt.ItemDataRole.UserRole + 2
QUANT_ROLE = QtCore.Qt.ItemDataRole.UserRole + 3
REF_ROLE = QtCore.Qt.ItemDataRole.UserRole + 4

_NO_PARENT = QtCore.QModelIndex()
COL_MODEL = 0
COL_PARAMS = 1
COL_BEST = 2
FIRST_QUANT_COL = 3


def family_of(model_id: str, architecture: str = "") -> str:
    """The family a model belongs to, in the words users know (Llama, Qwen, Mistral...)."""
    head = model_id.lower().split("-")[0]
    if head in _FAMILY_NAMES:
        return _FAMILY_NAMES[head]
    arch = architecture.lower()
    for key, name in _FAMILY_NAMES.items():
        if arch.startswith(key):
            return name
    return head.capitalize() if head else "Other"


@dataclass(frozen=True)
class FitModelRow:
    """One row of the table: a model and its cells by quant."""

    key: str  # catalog id, or the file path of a local model
    ref: str  # what load_model_spec takes to open it again
    name: str
    params_b: float | None
    family: str
    local: bool
    cells: dict[str, Any]  # quant -> app.core.fit.FitRow
    best: str | None  # the best quant, None when nothing loads


@dataclass(frozen=True)
class FitResult:
    """What the background computation hands the GUI: the table and the rows built from it."""

    rig: Rig
    ctx: int
    settings: Settings
    quants: tuple[str, ...]
    rows: tuple[FitModelRow, ...]
    first_run: bool = False


def compute_fit(
    rig: Rig, settings: Settings, local: Sequence[tuple[str, ModelSpec]], first_run: bool = False
) -> FitResult:
    """Build the fit table for ``rig`` at ``settings`` (its ctx, KV types, flash attention, split mode)
    plus the local model files. Runs on a pool thread."""
    from app.core.catalog import load_model_catalog
    from app.core.fit import fit_table, quality_rank

    ctx = settings.ctx
    table = fit_table(rig, ctx, settings, extra_specs=[spec for _, spec in local])
    entries = {e.id: e for e in load_model_catalog()}
    local_by_id = {spec.id: (path, spec) for path, spec in local}
    grouped: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    for r in table.rows:
        if r.model not in grouped:
            grouped[r.model] = {}
            order.append(r.model)
        grouped[r.model][r.quant] = r
    rows: list[FitModelRow] = []
    quants: set[str] = set()
    architectures: dict[str, str] = {}
    for model in order:
        cells = grouped[model]
        quants.update(cells)
        best = next((q for q, r in cells.items() if r.best), None)
        if model in local_by_id:
            path, spec = local_by_id[model]
            architectures[model] = spec.architecture
            rows.append(
                FitModelRow(
                    key=path,
                    ref=path,
                    name=(
                        f"{spec.name} ({Path(path).name})" if Path(path).name not in spec.name else spec.name
                    )
                    + (" · on the hub" if spec.remote else ""),
                    params_b=spec.n_params / 1e9 if spec.n_params else None,
                    family=family_of(spec.name, spec.architecture),
                    local=True,
                    cells=cells,
                    best=best,
                )
            )
            continue
        entry = entries.get(model)
        architectures[model] = entry.architecture if entry is not None else ""
        rows.append(
            FitModelRow(
                key=model,
                ref=model,
                name=entry.name if entry is not None else next(iter(cells.values())).name,
                params_b=entry.params_b if entry is not None else None,
                family=family_of(model, architectures[model]),
                local=False,
                cells=cells,
                best=best,
            )
        )
    ordered = tuple(sorted(quants, key=lambda q: (quality_rank(q), q)))
    return FitResult(rig, ctx, table.settings, ordered, tuple(rows), first_run)


def _fmt_tok_s(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 100:
        return f"{value:.0f} tok/s"
    if value >= 10:
        return f"{value:.0f} tok/s"
    return f"{value:.1f} tok/s"


def _fmt_ctx(value: int | None) -> str:
    if value is None:
        return "not even 256 tokens"
    if value >= 1024 and value % 1024 == 0:
        return f"{value // 1024}K tokens ({value:,})"
    return f"{value:,} tokens"


class FitTableModel(QtCore.QAbstractTableModel):
    """Rows: models; columns: model, size, best quant, then one per quant (best quality first)."""

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: tuple[FitModelRow, ...] = ()
        self._quants: tuple[str, ...] = ()
        self._ctx = 0
        self._palette = QtGui.QPalette()
        self._bold = QtGui.QFont()
        self._bold.setBold(True)

    # -- contents ---------------------------------------------------------------------------------
    @property
    def quants(self) -> tuple[str, ...]:
        return self._quants

    @property
    def model_rows(self) -> tuple[FitModelRow, ...]:
        return self._rows

    def set_palette(self, palette: QtGui.QPalette) -> None:
        self._palette = QtGui.QPalette(palette)
        if self._rows:
            self.dataChanged.emit(self.index(0, 0), self.index(self.rowCount() - 1, self.columnCount() - 1))

    def set_result(self, result: FitResult) -> None:
        same_shape = [r.key for r in result.rows] == [
            r.key for r in self._rows
        ] and result.quants == self._quants
        self._ctx = result.ctx
        if same_shape:
            # Same rows and columns: update values in place so selection and scroll position stay.
            self._rows = result.rows
            if self._rows:
                self.dataChanged.emit(
                    self.index(0, 0), self.index(self.rowCount() - 1, self.columnCount() - 1)
                )
            return
        self.beginResetModel()
        self._rows = result.rows
        self._quants = result.quants
        self.endResetModel()

    def row_at(self, row: int) -> FitModelRow:
        return self._rows[row]

    def quant_at(self, column: int) -> str | None:
        i = column - FIRST_QUANT_COL
        return self._quants[i] if 0 <= i < len(self._quants) else None

    def column_of(self, quant: str) -> int:
        return FIRST_QUANT_COL + self._quants.index(quant)

    def row_of(self, key: str) -> int:
        for i, r in enumerate(self._rows):
            if r.key == key:
                return i
        return -1

    # -- Qt model ---------------------------------------------------------------------------------
    def rowCount(self, parent: QtCore.QModelIndex | QtCore.QPersistentModelIndex = _NO_PARENT) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QtCore.QModelIndex | QtCore.QPersistentModelIndex = _NO_PARENT) -> int:
        return 0 if parent.isValid() else FIRST_QUANT_COL + len(self._quants)

    def headerData(
        self, section: int, orientation: QtCore.Qt.Orientation, role: int = QtCore.Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != QtCore.Qt.Orientation.Horizontal:
            return None
        if role == QtCore.Qt.ItemDataRole.DisplayRole:
            if section == COL_MODEL:
                return "Model"
            if section == COL_PARAMS:
                return "Params"
            if section == COL_BEST:
                return "Best fit"
            return self.quant_at(section)
        if role == QtCore.Qt.ItemDataRole.ToolTipRole:
            if section == COL_PARAMS:
                return "Parameters, in billions"
            if section == COL_BEST:
                return tip("best_quant")
            quant = self.quant_at(section)
            if quant is not None:
                return f"{quant}\n\n{tip('quantization')}"
        return None

    def flags(self, index: QtCore.QModelIndex | QtCore.QPersistentModelIndex) -> QtCore.Qt.ItemFlag:
        if not index.isValid():
            return QtCore.Qt.ItemFlag.NoItemFlags
        base = QtCore.Qt.ItemFlag.ItemIsEnabled | QtCore.Qt.ItemFlag.ItemIsSelectable
        quant = self.quant_at(index.column())
        if quant is not None and quant not in self._rows[index.row()].cells:
            return QtCore.Qt.ItemFlag.ItemIsEnabled  # nothing published at this quant
        return base

    def _cell(
        self, index: QtCore.QModelIndex | QtCore.QPersistentModelIndex
    ) -> tuple[FitModelRow, str | None, Any]:
        row = self._rows[index.row()]
        quant = row.best if index.column() == COL_BEST else self.quant_at(index.column())
        cell = row.cells.get(quant) if quant is not None else None
        return row, quant, cell

    def data(
        self,
        index: QtCore.QModelIndex | QtCore.QPersistentModelIndex,
        role: int = QtCore.Qt.ItemDataRole.DisplayRole,
    ) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row, quant, cell = self._cell(index)
        col = index.column()
        if role == REF_ROLE:
            return row.ref
        if role == QUANT_ROLE:
            return quant if cell is not None else (row.best if col < FIRST_QUANT_COL else None)
        if col == COL_MODEL:
            return self._model_data(row, role)
        if col == COL_PARAMS:
            if role == QtCore.Qt.ItemDataRole.DisplayRole:
                if not row.params_b:
                    return "?"
                return f"{row.params_b * 1000:.0f}M" if row.params_b < 1 else f"{row.params_b:.3g}B"
            if role == SORT_ROLE:
                return row.params_b or 0.0
            if role == QtCore.Qt.ItemDataRole.TextAlignmentRole:
                return int(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
            return None
        if cell is None:
            if role == QtCore.Qt.ItemDataRole.DisplayRole:
                return "—" if col == COL_BEST else ""
            if role == QtCore.Qt.ItemDataRole.TextAlignmentRole:
                return int(QtCore.Qt.AlignmentFlag.AlignCenter)
            if role == SORT_ROLE:
                return 1e9
            if role == QtCore.Qt.ItemDataRole.ToolTipRole and col == COL_BEST:
                return f"{row.name}: no quantization loads on this rig at this context"
            return None
        if role == QtCore.Qt.ItemDataRole.DisplayRole:
            loads = cell.status != STATUS_NO
            star = "★ " if cell.best and col != COL_BEST else ""
            if col == COL_BEST:
                return f"{quant} · {_fmt_tok_s(cell.decode_tok_s)}" if loads else "—"
            speed_text = _fmt_tok_s(cell.decode_tok_s) if loads else "no"
            return f"{star}{cell.total_gib:.1f} GiB\n{speed_text}"
        if role == QtCore.Qt.ItemDataRole.BackgroundRole:
            return QtGui.QBrush(status_background(cell.status, self._palette))
        if role == QtCore.Qt.ItemDataRole.ForegroundRole:
            return QtGui.QBrush(self._palette.color(QtGui.QPalette.ColorRole.Text))
        if role == QtCore.Qt.ItemDataRole.FontRole:
            return self._bold if cell.best else None
        if role == QtCore.Qt.ItemDataRole.TextAlignmentRole:
            return int(QtCore.Qt.AlignmentFlag.AlignCenter)
        if role == STATUS_ROLE:
            return cell.status
        if role == SORT_ROLE:
            # Fitting cells first, then by speed (fast first), then by size.
            tok_s = float(cell.decode_tok_s or 0.0)
            return STATUS_ORDER.get(cell.status, 9) * 1e6 - min(tok_s, 9e5)
        if role == QtCore.Qt.ItemDataRole.ToolTipRole:
            return self._cell_tooltip(row, quant or "", cell)
        if role == QtCore.Qt.ItemDataRole.AccessibleTextRole:
            return (
                f"{row.name} {quant}: {STATUS_WORDS.get(cell.status, cell.status)}, {cell.total_gib:.1f} GiB"
            )
        return None

    def _model_data(self, row: FitModelRow, role: int) -> Any:
        if role == QtCore.Qt.ItemDataRole.DisplayRole:
            return row.name
        if role == SORT_ROLE:
            return row.name.lower()
        if role == QtCore.Qt.ItemDataRole.ToolTipRole:
            where = f"\nFile: {row.ref}" if row.local else f"\nCatalog id: {row.ref}"
            return f"{row.name} ({row.family}){where}\nDouble-click to plan it with its best quantization."
        if role == QtCore.Qt.ItemDataRole.FontRole and row.local:
            font = QtGui.QFont()
            font.setItalic(True)
            return font
        return None

    def _cell_tooltip(self, row: FitModelRow, quant: str, cell: Any) -> str:
        status = STATUS_WORDS.get(cell.status, cell.status)
        lines = [
            f"<b>{html.escape(row.name)} · {html.escape(quant)}</b>" + (" ★ best fit" if cell.best else ""),
            f"{html.escape(status)}: {html.escape(tip('status_' + cell.status))}",
            f"Total {cell.total_gib:.1f} GiB at {self._ctx:,} tokens of context "
            f"(weights {cell.weights_gib:.1f} GiB)",
            f"Largest context with every layer on the GPUs: {_fmt_ctx(cell.max_ctx)}",
        ]
        if cell.decode_tok_s is not None:
            lines.append(f"Predicted ≈ {_fmt_tok_s(cell.decode_tok_s)}")
        if cell.status == STATUS_OFFLOAD and cell.n_gpu_layers is not None:
            lines.append(f"Runs with n_gpu_layers = {cell.n_gpu_layers}; the other layers run on the CPU")
        if cell.note:
            lines.append(html.escape(cell.note))
        lines.append("<i>Double-click to plan it on the Split tab.</i>")
        return "<br>".join(lines)


class FitFilterProxy(QtCore.QSortFilterProxyModel):
    """Filters rows by search text, status, size and family; sorts by :data:`SORT_ROLE`."""

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self._text = ""
        self._statuses: frozenset[str] = STATUS_FILTERS[0][2]
        self._size = (0.0, float("inf"))
        self._family = FAMILY_ANY

    def _refilter(self) -> None:
        # Qt 6.10 deprecated invalidateRowsFilter() for begin/endFilterChange(); 6.8 has only the former.
        if hasattr(self, "beginFilterChange") and hasattr(QtCore.QSortFilterProxyModel, "Direction"):
            self.beginFilterChange()
            self.endFilterChange(QtCore.QSortFilterProxyModel.Direction.Rows)
        else:
            self.invalidateRowsFilter()

    def set_text(self, text: str) -> None:
        self._text = text.strip().lower()
        self._refilter()

    def set_statuses(self, statuses: frozenset[str]) -> None:
        self._statuses = statuses
        self._refilter()

    def set_size(self, low_b: float, high_b: float) -> None:
        self._size = (low_b, high_b)
        self._refilter()

    def set_family(self, family: str) -> None:
        self._family = family
        self._refilter()

    def filterAcceptsRow(
        self, source_row: int, source_parent: QtCore.QModelIndex | QtCore.QPersistentModelIndex
    ) -> bool:
        model = self.sourceModel()
        if not isinstance(model, FitTableModel):
            return True
        row = model.row_at(source_row)
        if self._text and self._text not in row.name.lower() and self._text not in row.key.lower():
            return False
        if self._family == FAMILY_LOCAL:
            if not row.local:
                return False
        elif self._family != FAMILY_ANY and row.family != self._family:
            return False
        low, high = self._size
        if (low > 0 or high != float("inf")) and (row.params_b is None or not low <= row.params_b < high):
            return False
        return any(c.status in self._statuses for c in row.cells.values())


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
        self._warmed = False
        self._active = False  # computes only once activated (shown, or the window asked after start-up)
        self._computing = False
        self._last_key: tuple[object, ...] | None = None
        self._result: FitResult | None = None
        self._error = ""
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
        self.search = QtWidgets.QLineEdit()
        self.search.setObjectName("fitSearch")
        self.search.setPlaceholderText("Search models…")
        self.search.setClearButtonEnabled(True)
        self.search.setMinimumWidth(120)
        filters.addWidget(self.search, 1)
        self.status_filter = QtWidgets.QComboBox()
        self.status_filter.setObjectName("fitStatusFilter")
        for key, label, _ in STATUS_FILTERS:
            self.status_filter.addItem(label, key)
        self.status_filter.setToolTip("Show only models with at least one quantization in this state")
        filters.addWidget(self.status_filter)
        self.size_filter = QtWidgets.QComboBox()
        self.size_filter.setObjectName("fitSizeFilter")
        for key, label, _, _ in SIZE_FILTERS:
            self.size_filter.addItem(label, key)
        self.size_filter.setToolTip("Model size, in billions of parameters")
        filters.addWidget(self.size_filter)
        self.family_filter = QtWidgets.QComboBox()
        self.family_filter.setObjectName("fitFamilyFilter")
        self.family_filter.addItem("All families", FAMILY_ANY)
        filters.addWidget(self.family_filter)
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
        outer.addLayout(filters)

        self.model = FitTableModel(self)
        self.model.set_palette(self.palette())
        self.proxy = FitFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self.table = QtWidgets.QTableView()
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
        header.setDefaultSectionSize(self.fontMetrics().horizontalAdvance("★ 888.8 GiB") + 16)
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
        star = QtWidgets.QLabel("★ best quantization for this rig")
        star.setToolTip(tip("best_quant"))
        bottom.addWidget(star)
        hint = QtWidgets.QLabel(
            "Double-click a cell (or press Enter) to plan it on the Split tab; right-click it to get the model"
        )
        hint.setWordWrap(True)
        hint.setAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
        pal = hint.palette()
        pal.setColor(QtGui.QPalette.ColorRole.WindowText, muted_text(pal))
        hint.setPalette(pal)
        bottom.addWidget(hint, 1)
        outer.addLayout(bottom)

        self.search.textChanged.connect(self.proxy.set_text)
        self.status_filter.currentIndexChanged.connect(self._on_status_filter)
        self.size_filter.currentIndexChanged.connect(self._on_size_filter)
        self.family_filter.currentIndexChanged.connect(
            lambda _i: self.proxy.set_family(str(self.family_filter.currentData()))
        )
        self.ctx_combo.activated.connect(self._on_ctx_chosen)
        self.setTabOrder(self.search, self.status_filter)
        self.setTabOrder(self.status_filter, self.size_filter)
        self.setTabOrder(self.size_filter, self.family_filter)
        self.setTabOrder(self.family_filter, self.ctx_combo)
        self.setTabOrder(self.ctx_combo, self.table)

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
                if path not in self._local:
                    # A unique id per file: two files of one model must be two rows.
                    self._local[path] = replace(item, id=f"file:{path}")
                    changed = True
            else:
                path = str(item)
                if path not in self._local and path not in self._local_pending:
                    self._local_pending.append(path)
                    changed = True
        if changed and self._active:
            self.recompute(force=True)

    def local_paths(self) -> tuple[str, ...]:
        return tuple(self._local)

    def recompute(self, force: bool = False) -> None:
        """Recompute the table for the state's rig and settings on the task runner."""
        rig = self.state.rig
        if rig is None:
            return
        settings = self._table_settings(self.state.settings)
        key = (rig, settings, tuple(self._local), tuple(self._local_pending))
        if not force and key == self._last_key:
            return
        self._last_key = key
        local = list(self._local.items())
        pending = list(self._local_pending)
        first = not self._warmed
        self._computing = True
        self._error = ""
        self.status_label.setText("Preparing the model catalog (first time only)…" if first else "Computing…")

        def work() -> tuple[FitResult, list[tuple[str, ModelSpec]], list[tuple[str, str]]]:
            read, failed = _read_local(pending)
            result = compute_fit(rig, settings, local + read, first_run=first)
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
        for path, _message in failed:
            if path in self._local_pending:
                self._local_pending.remove(path)
        if read or failed:
            # The pending paths are now known specs: the key the next change compares with moves on.
            self._last_key = (
                result.rig,
                self._table_settings(self.state.settings),
                tuple(self._local),
                tuple(self._local_pending),
            )
        self._result = result
        fresh = self.model.rowCount() == 0
        self.model.set_result(result)
        if fresh:
            self._size_columns()
        self._update_families(result)
        self.proxy.invalidate()
        shown = sum(1 for r in result.rows if any(c.status != STATUS_NO for c in r.cells.values()))
        text = f"{shown} of {len(result.rows)} models load on this rig at {result.ctx:,} tokens"
        if failed:
            text += " · " + "; ".join(f"{Path(p).name}: {m}" for p, m in failed)
        self.status_label.setText(text)
        self.table_ready.emit(result)

    def _size_columns(self) -> None:
        fm = self.table.fontMetrics()
        names = [r.name for r in self.model.model_rows] or ["Model"]
        widest = max(fm.horizontalAdvance(n) for n in names) + 16
        self.table.setColumnWidth(COL_MODEL, min(widest, fm.horizontalAdvance("M" * 22)))
        self.table.setColumnWidth(COL_PARAMS, fm.horizontalAdvance("888.8B") + 16)
        self.table.setColumnWidth(COL_BEST, fm.horizontalAdvance("Q4_K_M · 888 tok/s") + 20)

    def _on_failed(self, message: str) -> None:
        self._computing = False
        self._error = message
        self.status_label.setText(f"No fit table: {message}")

    def _update_families(self, result: FitResult) -> None:
        families = sorted({r.family for r in result.rows if not r.local})
        current = self.family_filter.currentData()
        wanted = [(FAMILY_ANY, "All families"), *((f, f) for f in families)]
        if any(r.local for r in result.rows):
            wanted.append((FAMILY_LOCAL, "Local files"))
        existing = [
            (self.family_filter.itemData(i), self.family_filter.itemText(i))
            for i in range(self.family_filter.count())
        ]
        if existing == wanted:
            return
        self.family_filter.blockSignals(True)
        self.family_filter.clear()
        for key, label in wanted:
            self.family_filter.addItem(label, key)
        index = self.family_filter.findData(current)
        self.family_filter.setCurrentIndex(max(0, index))
        self.family_filter.blockSignals(False)
        self.proxy.set_family(str(self.family_filter.currentData()))

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

    def _on_ctx_chosen(self, index: int) -> None:
        ctx = self.ctx_combo.itemData(index)
        if isinstance(ctx, int) and ctx != self.state.settings.ctx:
            self.state.update_settings(ctx=ctx)

    def _on_status_filter(self, index: int) -> None:
        self.proxy.set_statuses(STATUS_FILTERS[max(0, index)][2])

    def _on_size_filter(self, index: int) -> None:
        _, _, low, high = SIZE_FILTERS[max(0, index)]
        self.proxy.set_size(low, high)

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

    def changeEvent(self, event: QtCore.QEvent) -> None:
        if event.type() == QtCore.QEvent.Type.PaletteChange:
            self.model.set_palette(self.palette())
        super().changeEvent(event)


def _read_local(paths: Sequence[str]) -> tuple[list[tuple[str, ModelSpec]], list[tuple[str, str]]]:
    """Read the headers of local GGUF files (pool thread); failures come back as (path, message)."""
    from app.core.errors import RigfitError
    from app.core.model_source import load_gguf_spec

    read: list[tuple[str, ModelSpec]] = []
    failed: list[tuple[str, str]] = []
    for path in paths:
        try:
            spec = load_gguf_spec(path)
        except RigfitError as exc:
            failed.append((path, str(exc)))
            continue
        read.append((path, replace(spec, id=f"file:{path}")))
    return read, failed


__all__ = [
    "CONTEXT_CHOICES",
    "FitFilterProxy",
    "FitModelRow",
    "FitResult",
    "FitTableModel",
    "FitView",
    "compute_fit",
    "family_of",
]
