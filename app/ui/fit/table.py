"""The Fit tab's table: one row per model, one column per quant, computed off the GUI thread.

:func:`compute_fit` (pool thread) turns :func:`app.core.fit.fit_table` into rows of
:class:`FitModelRow`; :class:`FitTableModel` shows them: ~30 rows × ~26 columns of values, no widget
per cell. Each cell shows the total memory and the predicted speed, coloured by status (fits, tight,
offload, does not fit) with the theme's colours and, where the colour alone would be the only sign,
the status in words ("offload", "does not fit"); the tooltip adds the largest context and the
offload. The best quant of each model under the user's preference (balanced, quality, speed:
:func:`app.core.fit.pick_best`) carries a star, and its tooltip says why it is the pick. An empty
cell is a quantization nobody published for that model; its tooltip says so.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui

from app.core.fit.quality import DEFAULT_PREFERENCE
from app.core.model_spec import ModelSpec
from app.core.plan import STATUS_FITS, STATUS_NO, STATUS_OFFLOAD, STATUS_TIGHT
from app.core.rig import Rig
from app.core.settings import Settings
from app.ui.glossary import tip
from app.ui.theme import STATUS_WORDS, fmt_tok_s, status_background

STATUS_ORDER = {STATUS_FITS: 0, STATUS_TIGHT: 1, STATUS_OFFLOAD: 2, STATUS_NO: 3}
# A row whose model could not be read or planned (a corrupt file): not a status of a cell.
STATUS_UNREADABLE = "unreadable"
UNREADABLE_TEXT = "unreadable"
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
    unreadable: str = ""  # why the model could not be read or planned (a row without cells)


@dataclass(frozen=True)
class FitResult:
    """What the background computation hands the GUI: the table and the rows built from it."""

    rig: Rig
    ctx: int
    settings: Settings
    quants: tuple[str, ...]
    rows: tuple[FitModelRow, ...]
    first_run: bool = False
    prefer: str = DEFAULT_PREFERENCE


def compute_fit(
    rig: Rig,
    settings: Settings,
    local: Sequence[tuple[str, ModelSpec]],
    first_run: bool = False,
    prefer: str = DEFAULT_PREFERENCE,
    failed: Sequence[tuple[str, str]] = (),
) -> FitResult:
    """Build the fit table for ``rig`` at ``settings`` (its ctx, KV types, flash attention, split mode)
    plus the local model files, each model's best quant chosen by ``prefer``. Runs on a pool thread.

    ``failed`` are local files whose header could not be read, as (path, message); they, and every
    model the table could not plan, are rows marked unreadable at the end of the table.
    """
    from app.core.catalog import load_model_catalog
    from app.core.fit import fit_table, quality_rank

    ctx = settings.ctx
    table = fit_table(rig, ctx, settings, extra_specs=[spec for _, spec in local], prefer=prefer)
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
    unreadable = [(u.path or u.model, u.name, u.source != "catalog", u.message) for u in table.unreadable]
    unreadable += [(path, Path(path).name, True, message) for path, message in failed]
    for key, name, is_file, message in unreadable:
        rows.append(
            FitModelRow(
                key=key,
                ref=key,
                name=name if not is_file or Path(key).name in name else f"{name} ({Path(key).name})",
                params_b=None,
                family=family_of(key if not is_file else ""),
                local=is_file,
                cells={},
                best=None,
                unreadable=message or "unreadable",
            )
        )
    ordered = tuple(sorted(quants, key=lambda q: (quality_rank(q), q)))
    return FitResult(rig, ctx, table.settings, ordered, tuple(rows), first_run, prefer)


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
        self._prefer = DEFAULT_PREFERENCE
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
        if result.prefer != self._prefer:
            self._prefer = result.prefer
            self.headerDataChanged.emit(QtCore.Qt.Orientation.Horizontal, COL_BEST, COL_BEST)
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
                return f"{tip('best_quant')}\n\n{tip('prefer_' + self._prefer)}"
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
        if row.unreadable:
            return self._unreadable_data(row, col, role)
        if cell is None:
            if role == QtCore.Qt.ItemDataRole.DisplayRole:
                return "—" if col == COL_BEST else ""
            if role == QtCore.Qt.ItemDataRole.TextAlignmentRole:
                return int(QtCore.Qt.AlignmentFlag.AlignCenter)
            if role == SORT_ROLE:
                return 1e9
            if role in (QtCore.Qt.ItemDataRole.ToolTipRole, QtCore.Qt.ItemDataRole.AccessibleTextRole):
                return self._empty_tooltip(row, quant, col)
            return None
        if role == QtCore.Qt.ItemDataRole.DisplayRole:
            return self._cell_text(quant, cell, col)
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

    @staticmethod
    def _cell_text(quant: str | None, cell: Any, col: int) -> str:
        """Memory and speed; offload and "does not fit" also say so in words (not by colour alone)."""
        loads = cell.status != STATUS_NO
        if col == COL_BEST:
            if not loads:
                return "—"
            where = "offload " if cell.status == STATUS_OFFLOAD else ""
            return f"{quant}\n{where}{fmt_tok_s(cell.decode_tok_s)}"
        star = "★ " if cell.best else ""
        if cell.status == STATUS_OFFLOAD:
            speed_text = f"offload {fmt_tok_s(cell.decode_tok_s)}"
        elif loads:
            speed_text = fmt_tok_s(cell.decode_tok_s)
        else:
            speed_text = "does not fit"
        return f"{star}{cell.total_gib:.1f} GiB\n{speed_text}"

    @staticmethod
    def _empty_tooltip(row: FitModelRow, quant: str | None, col: int) -> str:
        if col == COL_BEST:
            return f"{row.name}: no quantization loads on this rig at this context"
        if row.local:
            return (
                f"{row.name}: a file on this computer has one quantization, its own "
                f"({next(iter(row.cells), '?')}); there is no {quant} of it here"
            )
        return (
            f"{row.name} is not published at {quant}: no one offers a file of it at that "
            "quantization, so there is nothing to plan"
        )

    def _unreadable_data(self, row: FitModelRow, col: int, role: int) -> Any:
        # A model that could not be read or planned: "unreadable" in the Best column, the reason in
        # every cell's tooltip, nothing to pick.
        if role == QtCore.Qt.ItemDataRole.DisplayRole:
            return UNREADABLE_TEXT if col == COL_BEST else ""
        if role in (QtCore.Qt.ItemDataRole.ToolTipRole, QtCore.Qt.ItemDataRole.AccessibleTextRole):
            return f"{row.name}: {UNREADABLE_TEXT}. {row.unreadable}"
        if role == QtCore.Qt.ItemDataRole.TextAlignmentRole:
            return int(QtCore.Qt.AlignmentFlag.AlignCenter)
        if role == STATUS_ROLE:
            return STATUS_UNREADABLE
        if role == SORT_ROLE:
            return 2e9  # after every model that has a cell
        if role == QtCore.Qt.ItemDataRole.ForegroundRole:
            return QtGui.QBrush(self._palette.color(QtGui.QPalette.ColorRole.PlaceholderText))
        return None

    def _model_data(self, row: FitModelRow, role: int) -> Any:
        if role == QtCore.Qt.ItemDataRole.DisplayRole:
            return row.name
        if role == SORT_ROLE:
            return row.name.lower()
        if role == QtCore.Qt.ItemDataRole.ToolTipRole and row.unreadable:
            where = f"File: {row.ref}" if row.local else f"Catalog id: {row.ref}"
            return f"{row.name}: {UNREADABLE_TEXT}\n{where}\n{row.unreadable}"
        if role == QtCore.Qt.ItemDataRole.ToolTipRole:
            where = f"\nFile: {row.ref}" if row.local else f"\nCatalog id: {row.ref}"
            return f"{row.name} ({row.family}){where}\nDouble-click to plan it with its best quantization."
        if role == QtCore.Qt.ItemDataRole.FontRole and row.local:
            font = QtGui.QFont()
            font.setItalic(True)
            return font
        return None

    def _cell_tooltip(self, row: FitModelRow, quant: str, cell: Any) -> str:
        # The glossary's status text starts with the status word itself ("Fits: every layer...").
        status = tip("status_" + cell.status) or STATUS_WORDS.get(cell.status, cell.status)
        lines = [
            f"<b>{html.escape(row.name)} · {html.escape(quant)}</b>" + (" ★ best fit" if cell.best else ""),
        ]
        if cell.best and cell.best_reason:
            lines.append(f"★ {html.escape(cell.best_reason)}")
        lines += [
            html.escape(status),
            f"Total {cell.total_gib:.1f} GiB at {self._ctx:,} tokens of context "
            f"(weights {cell.weights_gib:.1f} GiB)",
            f"Largest context with every layer on the GPUs: {_fmt_ctx(cell.max_ctx)}",
        ]
        if cell.decode_tok_s is not None:
            lines.append(f"Predicted ≈ {fmt_tok_s(cell.decode_tok_s)}")
        if cell.status == STATUS_OFFLOAD and cell.n_gpu_layers is not None:
            lines.append(f"Runs with n_gpu_layers = {cell.n_gpu_layers}; the other layers run on the CPU")
        if cell.note:
            lines.append(html.escape(cell.note))
        lines.append("<i>Double-click to plan it on the Split tab.</i>")
        return "<br>".join(lines)


__all__ = [
    "COL_BEST",
    "COL_MODEL",
    "QUANT_ROLE",
    "REF_ROLE",
    "SORT_ROLE",
    "STATUS_ROLE",
    "STATUS_UNREADABLE",
    "UNREADABLE_TEXT",
    "FitModelRow",
    "FitResult",
    "FitTableModel",
    "compute_fit",
    "family_of",
]
