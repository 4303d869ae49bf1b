"""The Fit tab's filters: which rows the table shows (search text, status, size, family).

:class:`FitFilterProxy` sits between the table model and the view and also sorts on the model's
sort role; :class:`FilterBar` holds the search box and the three filter lists that drive it.
"""

from __future__ import annotations

from PySide6 import QtCore, QtWidgets

from app.core.plan import STATUS_FITS, STATUS_NO, STATUS_OFFLOAD, STATUS_TIGHT
from app.ui.fit.table import SORT_ROLE, FitResult, FitTableModel

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
        if row.unreadable:
            # Shown under "Any status" only: it is no answer to "what fits".
            return STATUS_NO in self._statuses
        return any(c.status in self._statuses for c in row.cells.values())


class FilterBar(QtWidgets.QWidget):
    """The search box and the status, size and family lists, driving ``proxy``."""

    def __init__(self, proxy: FitFilterProxy, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.proxy = proxy
        row = QtWidgets.QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.search = QtWidgets.QLineEdit()
        self.search.setObjectName("fitSearch")
        self.search.setPlaceholderText("Search models…")
        self.search.setClearButtonEnabled(True)
        self.search.setMinimumWidth(120)
        row.addWidget(self.search, 1)
        self.status_filter = QtWidgets.QComboBox()
        self.status_filter.setObjectName("fitStatusFilter")
        for key, label, _ in STATUS_FILTERS:
            self.status_filter.addItem(label, key)
        self.status_filter.setToolTip("Show only models with at least one quantization in this state")
        row.addWidget(self.status_filter)
        self.size_filter = QtWidgets.QComboBox()
        self.size_filter.setObjectName("fitSizeFilter")
        for key, label, _, _ in SIZE_FILTERS:
            self.size_filter.addItem(label, key)
        self.size_filter.setToolTip("Model size, in billions of parameters")
        row.addWidget(self.size_filter)
        self.family_filter = QtWidgets.QComboBox()
        self.family_filter.setObjectName("fitFamilyFilter")
        self.family_filter.addItem("All families", FAMILY_ANY)
        row.addWidget(self.family_filter)

        self.search.textChanged.connect(proxy.set_text)
        self.status_filter.currentIndexChanged.connect(self._on_status_filter)
        self.size_filter.currentIndexChanged.connect(self._on_size_filter)
        self.family_filter.currentIndexChanged.connect(
            lambda _i: proxy.set_family(str(self.family_filter.currentData()))
        )
        self.setTabOrder(self.search, self.status_filter)
        self.setTabOrder(self.status_filter, self.size_filter)
        self.setTabOrder(self.size_filter, self.family_filter)

    @property
    def last_widget(self) -> QtWidgets.QWidget:
        """The last filter in keyboard order (the tab's own widgets follow it)."""
        return self.family_filter

    def update_families(self, result: FitResult) -> None:
        """The family list for the models of ``result`` (and "Local files" when there are any)."""
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

    def _on_status_filter(self, index: int) -> None:
        self.proxy.set_statuses(STATUS_FILTERS[max(0, index)][2])

    def _on_size_filter(self, index: int) -> None:
        _, _, low, high = SIZE_FILTERS[max(0, index)]
        self.proxy.set_size(low, high)


__all__ = [
    "FAMILY_ANY",
    "FAMILY_LOCAL",
    "SIZE_FILTERS",
    "STATUS_FILTERS",
    "FilterBar",
    "FitFilterProxy",
]
