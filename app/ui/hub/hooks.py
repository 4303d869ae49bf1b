"""How the hub's widgets join the window, so the main window needs only a few lines.

:class:`HubHooks` owns the :class:`~app.ui.hub.downloads.DownloadManager`, the downloads window and
the "Get this model" dialog. It adds the menu entries (File → Get a model from Hugging Face…,
Downloads), a status-bar button that shows how many downloads run, "Get this model…" on the Fit
table's cells (right-click, or Ctrl+D), and, when a download finishes, picks the model in the Run tab.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6 import QtCore, QtGui, QtWidgets

if TYPE_CHECKING:  # imported when first used: huggingface_hub would hold the window's start back
    from app.ui.hub.downloads import DownloadManager
    from app.ui.hub.downloads_view import DownloadsWindow
    from app.ui.hub.get_model import GetModelDialog


class HubHooks(QtCore.QObject):
    """The hub's part of the main window (``window`` is a :class:`~app.ui.main_window.MainWindow`)."""

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self._manager: DownloadManager | None = None
        self._downloads: DownloadsWindow | None = None
        self.dialog: GetModelDialog | None = None

        self.get_action = QtGui.QAction("&Get a model from Hugging Face…", window)
        self.get_action.triggered.connect(lambda: self.get_model())
        self.downloads_action = QtGui.QAction("&Downloads", window)
        self.downloads_action.triggered.connect(self.show_downloads)
        file_menu = next(
            (a.menu() for a in window.menuBar().actions() if a.menu() and "File" in a.text()), None
        )
        if file_menu is not None:
            first = file_menu.actions()[1] if len(file_menu.actions()) > 1 else None
            file_menu.insertActions(first, [self.get_action, self.downloads_action])

        self.status_button = QtWidgets.QToolButton()
        self.status_button.setObjectName("downloadsStatus")
        self.status_button.setAutoRaise(True)
        self.status_button.clicked.connect(self.show_downloads)
        self.status_button.hide()
        window.statusBar().addPermanentWidget(self.status_button)

        for name, hook in (("_fit_tab", self._hook_fit), ("_run_tab", self._hook_run)):
            tab = getattr(window, name, None)
            if tab is not None:
                if tab.is_created:
                    hook(tab.content())
                tab.created.connect(hook)

    @property
    def manager(self) -> DownloadManager:
        if self._manager is None:
            from app.ui.hub.downloads import DownloadManager

            self._manager = DownloadManager(self)
            self._manager.changed.connect(self._update_status)
            self._manager.finished.connect(self._on_finished)
        return self._manager

    @property
    def downloads(self) -> DownloadsWindow:
        if self._downloads is None:
            from app.ui.hub.downloads_view import DownloadsWindow

            self._downloads = DownloadsWindow(self.manager, self.window)
            self._downloads.panel.use_requested.connect(self.use_in_run_tab)
        return self._downloads

    # -- the Run tab's model picker -------------------------------------------------------------
    def _hook_run(self, view: object) -> None:
        button = getattr(getattr(view, "picker", None), "hub_button", None)
        if isinstance(button, QtWidgets.QPushButton):
            button.clicked.connect(lambda: self.get_model())

    # -- the Fit table ---------------------------------------------------------------------------
    def _hook_fit(self, view: object) -> None:
        table = getattr(view, "table", None)
        if not isinstance(table, QtWidgets.QTableView):
            return
        action = QtGui.QAction("Get this model…", table)
        action.setObjectName("fitGetModel")
        action.setShortcut(QtGui.QKeySequence("Ctrl+D"))
        action.setShortcutContext(QtCore.Qt.ShortcutContext.WidgetShortcut)
        action.triggered.connect(lambda: self.get_from_fit_cell(table.currentIndex()))
        table.addAction(action)
        table.setContextMenuPolicy(QtCore.Qt.ContextMenuPolicy.ActionsContextMenu)

    def get_from_fit_cell(self, index: QtCore.QModelIndex) -> bool:
        """ "Get this model" for a catalog cell of the Fit table; False for a cell it does not apply to."""
        from app.ui.fit.table import QUANT_ROLE, REF_ROLE

        if not index.isValid():
            return False
        ref, quant = index.data(REF_ROLE), index.data(QUANT_ROLE)
        if ref and str(ref).startswith("hf:"):  # a file on the hub shown as a row: its repository
            self.get_model(search="/".join(str(ref)[3:].split("/")[:2]))
            return True
        if not ref or not quant or "/" in str(ref) or str(ref).lower().endswith(".gguf"):
            self._say("That row is a file on this computer already: double-click it to use it")
            return False
        self.get_model(str(ref), str(quant))
        return True

    # -- actions ---------------------------------------------------------------------------------
    def get_model(
        self, model_id: str | None = None, quant: str | None = None, search: str = ""
    ) -> GetModelDialog:
        """Open "Get this model" for a catalog model and quant, or as a search."""
        from app.ui.hub.get_model import GetModelDialog

        if self.dialog is not None:
            self.dialog.shutdown()
            self.dialog.deleteLater()
        dialog = GetModelDialog(self.window.state, self.window.tasks, self.manager, self.window)
        dialog.download_started.connect(lambda _id: self.show_downloads())
        dialog.use_requested.connect(self.use_in_run_tab)
        dialog.plan_requested.connect(lambda ref: self.window.load_model(ref, then_show="split"))
        dialog.planned.connect(self._show_in_fit)
        self.dialog = dialog
        if model_id is not None and quant is not None:
            dialog.for_catalog(model_id, quant)
        else:
            dialog.for_search(search)
        dialog.open()
        return dialog

    def _say(self, text: str) -> None:
        # The status line, not statusBar().showMessage(text, timeout): that one runs a timer.
        label = getattr(self.window, "status_text", None)
        if isinstance(label, QtWidgets.QLabel):
            label.setText(text)

    def _show_in_fit(self, spec: object) -> None:
        """A file planned from the hub becomes a row of the Fit table, marked "on the hub"."""
        fit_tab = getattr(self.window, "_fit_tab", None)
        view = fit_tab.content_if_created() if fit_tab is not None else None
        adder = getattr(view, "add_local_models", None)
        if callable(adder) and getattr(spec, "remote", ""):
            adder([spec])

    def show_downloads(self) -> None:
        if self.downloads.isVisible():
            self.downloads.raise_()
        self.downloads.show()

    def use_in_run_tab(self, path: str) -> None:
        """Pick a downloaded file in the Run tab (read off the GUI thread, like any file)."""
        self.window.show_tab("run")
        run = self.window.run_view
        opener = getattr(run, "open_model_file", None)
        if callable(opener):
            opener(path)
        else:  # no Run tab in this build: select it for the other tabs
            self.window.load_model(path)
        rescan = getattr(getattr(run, "picker", run), "rescan", None)
        if callable(rescan):
            rescan()

    def _on_finished(self, entry: object) -> None:
        path = getattr(entry, "path", "")
        if path:
            entry_title = getattr(entry, "title", path)
            self._say(f"Downloaded {entry_title}")
            self.use_in_run_tab(path)

    def _update_status(self, _entry: object = None) -> None:
        if self._manager is None:
            return
        active = self._manager.active_count()
        if active:
            self.status_button.setText(f"Downloads: {active} running")
            self.status_button.show()
        elif self._manager.entries():
            self.status_button.setText("Downloads")
            self.status_button.show()

    def shutdown(self) -> None:
        """Stop the downloads (each keeps what arrived) and the dialog's work; the window is closing."""
        if self.dialog is not None:
            self.dialog.shutdown()
        if self._manager is not None:
            self._manager.shutdown()
