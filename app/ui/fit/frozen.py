"""A table view whose first column stays put while the rest scrolls sideways (Qt's frozen-column
recipe): a second view on the same model and selection, showing column 0 only, laid over the left
edge of the first and scrolled vertically with it.

The Fit table has a column per quantization, wider than a laptop screen: without this, scrolling to
the Q2 columns scrolls the model names away and the numbers lose their row labels.
"""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

FROZEN_COLUMN = 0


class FrozenColumnTable(QtWidgets.QTableView):
    """A :class:`QTableView` with column 0 frozen (see the module docstring).

    ``frozen`` is the overlay view; it shares the model, the selection model and the sort order, and
    re-emits double-clicks through this view's ``doubleClicked`` so callers connect once.
    """

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.frozen = QtWidgets.QTableView(self)
        self.frozen.setObjectName("frozenColumn")
        self.frozen.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        self.frozen.verticalHeader().hide()
        self.frozen.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.Fixed)
        self.frozen.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.frozen.setVerticalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.frozen.setVerticalScrollMode(QtWidgets.QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.frozen.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        # A thin line on its right edge, where the scrolled columns slide under it.
        self.frozen.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        self.viewport().stackUnder(self.frozen)
        self.setHorizontalScrollMode(QtWidgets.QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setVerticalScrollMode(QtWidgets.QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.horizontalHeader().sectionResized.connect(self._on_section_resized)
        self.verticalHeader().sectionResized.connect(self._on_row_resized)
        self.frozen.verticalScrollBar().valueChanged.connect(self.verticalScrollBar().setValue)
        self.verticalScrollBar().valueChanged.connect(self.frozen.verticalScrollBar().setValue)
        self.frozen.doubleClicked.connect(self.doubleClicked.emit)
        self.frozen.horizontalHeader().sortIndicatorChanged.connect(self._on_frozen_sorted)
        self.horizontalHeader().sortIndicatorChanged.connect(self._on_sorted)

    # -- mirroring the main view ------------------------------------------------------------------------
    def setModel(self, model: QtCore.QAbstractItemModel | None) -> None:
        old = self.model()
        if old is not None:
            for signal in (old.modelReset, old.columnsInserted, old.layoutChanged):
                signal.disconnect(self._hide_scrolled_columns)
        super().setModel(model)
        self.frozen.setModel(model)
        self.frozen.setSelectionModel(self.selectionModel())
        if model is not None:
            for signal in (model.modelReset, model.columnsInserted, model.layoutChanged):
                signal.connect(self._hide_scrolled_columns)
        self._hide_scrolled_columns()

    def setSortingEnabled(self, enable: bool) -> None:
        super().setSortingEnabled(enable)
        self.frozen.setSortingEnabled(enable)

    def setWordWrap(self, on: bool) -> None:
        super().setWordWrap(on)
        self.frozen.setWordWrap(on)

    def setColumnWidth(self, column: int, width: int) -> None:
        super().setColumnWidth(column, width)
        if column == FROZEN_COLUMN:
            self.frozen.setColumnWidth(column, width)
            self._place_frozen()

    def _hide_scrolled_columns(self, *_args: object) -> None:
        model = self.model()
        count = model.columnCount() if model is not None else 0
        for column in range(count):
            self.frozen.setColumnHidden(column, column != FROZEN_COLUMN)
        self.frozen.setColumnWidth(FROZEN_COLUMN, self.columnWidth(FROZEN_COLUMN))
        self.frozen.verticalHeader().setDefaultSectionSize(self.verticalHeader().defaultSectionSize())
        self.frozen.horizontalHeader().setFixedHeight(self.horizontalHeader().height())
        self._place_frozen()

    def _on_section_resized(self, index: int, _old: int, new: int) -> None:
        if index == FROZEN_COLUMN:
            self.frozen.setColumnWidth(FROZEN_COLUMN, new)
            self._place_frozen()

    def _on_row_resized(self, index: int, _old: int, new: int) -> None:
        self.frozen.setRowHeight(index, new)

    def _on_frozen_sorted(self, column: int, order: QtCore.Qt.SortOrder) -> None:
        header = self.horizontalHeader()
        if header.sortIndicatorSection() != column or header.sortIndicatorOrder() != order:
            header.setSortIndicator(column, order)

    def _on_sorted(self, column: int, order: QtCore.Qt.SortOrder) -> None:
        header = self.frozen.horizontalHeader()
        if header.sortIndicatorSection() != column or header.sortIndicatorOrder() != order:
            header.blockSignals(True)
            header.setSortIndicator(column, order)
            header.blockSignals(False)
            header.viewport().update()

    def _place_frozen(self) -> None:
        frame = self.frameWidth()
        header = self.horizontalHeader()
        self.frozen.horizontalHeader().setFixedHeight(header.height())
        self.frozen.setGeometry(
            self.verticalHeader().width() + frame,
            frame,
            self.columnWidth(FROZEN_COLUMN),
            self.viewport().height() + header.height(),
        )
        self.frozen.setVisible(not self.isColumnHidden(FROZEN_COLUMN) and self.model() is not None)

    # -- Qt overrides ----------------------------------------------------------------------------------
    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        self._place_frozen()

    def updateGeometries(self) -> None:
        super().updateGeometries()
        if hasattr(self, "frozen"):  # Qt calls it from the base constructor, before ours has run
            self._place_frozen()

    def moveCursor(
        self, action: QtWidgets.QAbstractItemView.CursorAction, modifiers: QtCore.Qt.KeyboardModifier
    ) -> QtCore.QModelIndex:
        current = super().moveCursor(action, modifiers)
        # Moving left onto a cell hidden under the frozen column: scroll it into the open.
        if (
            action == QtWidgets.QAbstractItemView.CursorAction.MoveLeft
            and current.column() > FROZEN_COLUMN
            and self.visualRect(current).topLeft().x() < self.frozen.columnWidth(FROZEN_COLUMN)
        ):
            shift = self.visualRect(current).topLeft().x() - self.frozen.columnWidth(FROZEN_COLUMN)
            bar = self.horizontalScrollBar()
            bar.setValue(bar.value() + shift)
        return current

    def scrollTo(
        self,
        index: QtCore.QModelIndex | QtCore.QPersistentModelIndex,
        hint: QtWidgets.QAbstractItemView.ScrollHint = QtWidgets.QAbstractItemView.ScrollHint.EnsureVisible,
    ) -> None:
        # The frozen column is always in view: scrolling to it would only jerk the others sideways.
        if index.column() != FROZEN_COLUMN:
            super().scrollTo(index, hint)
        else:
            sideways = self.horizontalScrollBar().value()
            super().scrollTo(index, hint)
            self.horizontalScrollBar().setValue(sideways)


__all__ = ["FROZEN_COLUMN", "FrozenColumnTable"]
