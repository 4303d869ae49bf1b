"""The Run tab's model picker: which model file the tab runs.

The bundled demo model, "Open file…" (Ctrl+O), a ``.gguf`` dropped on the tab, and the GGUF files
:mod:`app.runner.discovery` finds in the Hugging Face, LM Studio, Ollama and llama.cpp caches and in
folders the user adds (searched on the thread pool the first time the tab is shown). Headers are read
on the pool; the choice goes to ``state.model``; a bad file says why in one line under the picker,
never in a dialog, and the last good choice stays.
"""

from __future__ import annotations

import html
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from PySide6 import QtCore, QtGui, QtWidgets

from app.runner.discovery import FoundModel, ScanResult, discover_models
from app.ui.glossary import tip
from app.ui.state import AppState, ModelChoice
from app.ui.tasks import TaskRunner
from app.ui.theme import TEXT_ERROR, TEXT_MUTED, fmt_size, muted_text, tint

DEMO_REF = "demo"
DEMO_LABEL = "SmolLM2-135M-Instruct (demo)"
GGUF_FILTER = "GGUF models (*.gguf);;All files (*)"
Discover = Callable[[Sequence[str], Callable[[], bool]], ScanResult]


def choice_for(ref: str, label: str | None = None) -> ModelChoice:
    """Read a model's header (pool thread) and make the tab's choice of it."""
    from app.core.model_source import load_model_spec

    spec = load_model_spec(ref)
    name = label or (DEMO_LABEL if ref == DEMO_REF else spec.name or Path(ref).name)
    return ModelChoice(ref=ref, spec=spec, quant=spec.file_type or "", label=name)


def dropped_model(mime: QtCore.QMimeData) -> str | None:
    """The one local model file in a drag: a ``.gguf``, or a file that starts with the GGUF magic."""
    if not mime.hasUrls():
        return None
    files = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
    if len(files) != 1:
        return None
    path = files[0]
    if path.lower().endswith(".gguf"):
        return path
    try:
        with open(path, "rb") as f:
            return path if f.read(4) == b"GGUF" else None
    except OSError:
        return None


def model_summary_html(choice: ModelChoice | None) -> str:
    """What the picker says about the chosen model (rich text)."""
    if choice is None:
        return "No model chosen: pick the demo model, a file found below, or open one."
    spec = choice.spec
    parts = [f"<b>{html.escape(choice.label or spec.name)}</b>"]
    if choice.quant:
        parts.append(html.escape(choice.quant))
    if spec.file_size_bytes:
        parts.append(fmt_size(spec.file_size_bytes))
    parts.append(f"{spec.n_layer} layers")
    text = " · ".join(parts)
    if choice.is_file and choice.path:
        text += f"<br><small>{html.escape(choice.path)}</small>"
    else:
        text += (
            "<br>This model comes from the catalog: Rigfit can plan it, but there is no file to run. "
            "Download the GGUF, then open it (Ctrl+O)."
        )
    for note in spec.notes:
        text += f"<br><small>{html.escape(note)}</small>"
    return text


class ModelPicker(QtWidgets.QGroupBox):
    """Picks ``state.model`` from the demo, a file, a drop or the local models found.

    ``discover(folders, should_stop)`` finds local models (default: every known cache plus
    ``folders``); with ``scan_on_show`` the search runs the first time the picker is shown.
    """

    models_discovered = QtCore.Signal(object)  # list of the paths of the complete GGUF models found
    extra_folders_changed = QtCore.Signal(object)  # list: the user's added folders, for the session store
    model_read_failed = QtCore.Signal(str)  # a chosen file could not be read (the inline message)
    scan_finished = QtCore.Signal(object)  # ScanResult

    def __init__(
        self,
        state: AppState,
        tasks: TaskRunner,
        *,
        discover: Discover | None = None,
        extra_folders: Iterable[str] = (),
        scan_on_show: bool = True,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__("Model", parent)
        self.state = state
        self.tasks = tasks
        self._discover: Discover = discover or (
            lambda folders, stop: discover_models(extra_folders=folders, should_stop=stop)
        )
        self._extra_folders: list[str] = list(dict.fromkeys(extra_folders))
        self._scan_on_show = scan_on_show
        self._scanned = False
        self._scanning = False
        self._stop_scan = threading.Event()  # read by the scan on the pool thread
        self._shut_down = False
        self._found: tuple[FoundModel, ...] = ()
        self._reading = ""  # the reference whose header is being read
        self.file_dialog: QtWidgets.QFileDialog | None = None
        self.folder_dialog: QtWidgets.QFileDialog | None = None
        self._build()
        state.model_changed.connect(self._show_model)
        self._show_model(state.model)

    def _build(self) -> None:
        layout = QtWidgets.QVBoxLayout(self)
        self.model_label = QtWidgets.QLabel()
        self.model_label.setObjectName("modelLabel")
        self.model_label.setWordWrap(True)
        self.model_label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.model_label)
        self.model_error = QtWidgets.QLabel()
        self.model_error.setObjectName("modelError")
        self.model_error.setWordWrap(True)
        self.model_error.hide()
        tint(self.model_error, TEXT_ERROR)
        layout.addWidget(self.model_error)

        buttons = QtWidgets.QHBoxLayout()
        self.demo_button = QtWidgets.QPushButton("Use the demo model")
        self.demo_button.setToolTip(
            "SmolLM2-135M-Instruct (Q4_1, 98 MB), bundled with Rigfit: loads in a second, even on a CPU."
        )
        self.open_button = QtWidgets.QPushButton("Open file…")
        self.open_button.setToolTip(
            "Open a GGUF model file (Ctrl+O). You can also drop a .gguf file on the window."
        )
        self.add_folder_button = QtWidgets.QPushButton("Add folder…")
        self.add_folder_button.setToolTip("Search another folder for GGUF files, now and on every start.")
        self.rescan_button = QtWidgets.QPushButton("Search again")
        for b in (self.demo_button, self.open_button, self.add_folder_button, self.rescan_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout.addLayout(buttons)

        self.found_tree = QtWidgets.QTreeWidget()
        self.found_tree.setObjectName("foundModels")
        self.found_tree.setHeaderLabels(["Model", "Size", "Quant", "Found in"])
        self.found_tree.setRootIsDecorated(False)
        self.found_tree.setUniformRowHeights(True)
        self.found_tree.setAlternatingRowColors(True)
        self.found_tree.setToolTip("GGUF files already on this computer. Click one to pick it.")
        header = self.found_tree.header()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.Interactive)
        header.resizeSection(0, 300)
        header.setSectionResizeMode(1, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.found_tree.headerItem().setToolTip(2, tip("quantization"))
        layout.addWidget(self.found_tree, 1)
        self.scan_label = QtWidgets.QLabel("Local models are searched when this tab is first shown.")
        self.scan_label.setObjectName("scanLabel")
        self.scan_label.setWordWrap(True)
        tint(self.scan_label, TEXT_MUTED)
        layout.addWidget(self.scan_label)
        self._fill_found(())

        self.demo_button.clicked.connect(self.use_demo_model)
        self.open_button.clicked.connect(self.open_model_dialog)
        self.add_folder_button.clicked.connect(self.add_folder_dialog)
        self.rescan_button.clicked.connect(self.rescan)
        self.found_tree.itemClicked.connect(self._on_found_clicked)
        self.found_tree.itemActivated.connect(self._on_found_clicked)

    # ------------------------------------------------------------------------------------------ picking
    def use_demo_model(self) -> None:
        """Pick the bundled demo model (its header is read on the pool)."""
        self._read_model(DEMO_REF, DEMO_LABEL)

    def open_model_dialog(self) -> None:
        """ "Open file…" (Ctrl+O): a non-blocking file dialog; the chosen file is read like any other."""
        if self.file_dialog is None:
            dialog = QtWidgets.QFileDialog(self, "Open a GGUF model")
            dialog.setObjectName("openModelDialog")
            dialog.setFileMode(QtWidgets.QFileDialog.FileMode.ExistingFile)
            dialog.setNameFilter(GGUF_FILTER)
            dialog.fileSelected.connect(self.open_model_file)
            self.file_dialog = dialog
        current = self.state.model
        start = Path(current.path).parent if current is not None and current.path else Path.home()
        self.file_dialog.setDirectory(str(start))
        self.file_dialog.open()

    def open_model_file(self, path: str | os.PathLike[str]) -> None:
        """Pick a model file (a dropped file, the dialog's choice, a discovered file)."""
        text = os.fspath(path)
        if not text:
            return
        found = next((m for m in self._found if m.path == text), None)
        self._read_model(text, found.name if found is not None else None)

    def add_folder_dialog(self) -> None:
        """ "Add folder…": a folder to search for GGUF files, remembered by the window's session."""
        if self.folder_dialog is None:
            dialog = QtWidgets.QFileDialog(self, "Search a folder for GGUF models")
            dialog.setObjectName("addFolderDialog")
            dialog.setFileMode(QtWidgets.QFileDialog.FileMode.Directory)
            dialog.setOption(QtWidgets.QFileDialog.Option.ShowDirsOnly, True)
            dialog.fileSelected.connect(self.add_folder)
            self.folder_dialog = dialog
        self.folder_dialog.setDirectory(str(Path.home()))
        self.folder_dialog.open()

    def add_folder(self, folder: str | os.PathLike[str]) -> None:
        """Search ``folder`` too, now and on every start (the window's session remembers it)."""
        text = os.fspath(folder)
        if text and text not in self._extra_folders:
            self._extra_folders.append(text)
            self.extra_folders_changed.emit(list(self._extra_folders))
        self.rescan()

    def extra_folders(self) -> list[str]:
        return list(self._extra_folders)

    def set_extra_folders(self, folders: Iterable[str]) -> None:
        """The user's folders from the last session (searched at the next scan)."""
        self._extra_folders = list(dict.fromkeys(str(f) for f in folders if f))

    def _read_model(self, ref: str, label: str | None) -> None:
        if self._shut_down:
            return
        self._reading = ref
        shown = label or (DEMO_LABEL if ref == DEMO_REF else Path(ref).name)
        self.model_error.hide()
        self.model_label.setText(f"Reading <b>{html.escape(shown)}</b>…")
        self.tasks.submit(
            lambda: choice_for(ref, label), self._on_model_read, self._on_model_failed, key="run-model"
        )

    def _on_model_read(self, choice: object) -> None:
        assert isinstance(choice, ModelChoice)
        self._reading = ""
        self.model_error.hide()
        if choice == self.state.model:
            self._show_model(choice)  # the same model again: the state stays silent, the label not
        self.state.set_model(choice)

    def _on_model_failed(self, message: str) -> None:
        self._reading = ""
        self._show_model_error(message)
        self._show_model(self.state.model)
        self.model_read_failed.emit(message)

    def _show_model_error(self, message: str) -> None:
        self.model_error.setText(f"Could not open that model: {message}")
        self.model_error.show()

    def _show_model(self, choice: object) -> None:
        if self._reading:
            return  # "Reading …" stays until the read reports back
        self.model_label.setText(model_summary_html(choice if isinstance(choice, ModelChoice) else None))

    def _on_found_clicked(self, item: QtWidgets.QTreeWidgetItem, column: int = 0) -> None:
        data = item.data(0, QtCore.Qt.ItemDataRole.UserRole)
        if data == DEMO_REF:
            self.use_demo_model()
        elif isinstance(data, FoundModel):
            if not data.complete:
                self._show_model_error(
                    f"{data.name} is split into {data.parts} files and {data.missing_parts} "
                    "of them are missing (still downloading?)"
                )
                return
            self._read_model(data.path, data.name)

    # ------------------------------------------------------------------------------------------ scanning
    def showEvent(self, event: QtGui.QShowEvent) -> None:
        super().showEvent(event)
        if self._scan_on_show and not self._scanned:
            self.rescan()

    def rescan(self) -> None:
        """Search the known caches and the user's folders for GGUF files (on the pool)."""
        if self._scanning or self._shut_down:
            return
        self._scanned = True
        self._scanning = True
        self._stop_scan.clear()
        self.rescan_button.setEnabled(False)
        self.scan_label.setText("Searching for GGUF files on this computer…")
        folders = list(self._extra_folders)
        discover = self._discover
        stop = self._stop_scan

        def scan() -> ScanResult:
            return discover(folders, stop.is_set)

        self.tasks.submit(scan, self._on_scanned, self._on_scan_failed, key="run-scan")

    def _on_scanned(self, result: object) -> None:
        assert isinstance(result, ScanResult)
        self._scanning = False
        self.rescan_button.setEnabled(True)
        self._found = result.models
        self._fill_found(result.models)
        if result.models:
            sources = sorted({m.source_label for m in result.models})
            n = len(result.models)
            text = f"{n} model file{'s' if n != 1 else ''} found ({', '.join(sources)})."
        else:
            text = (
                "No GGUF files found in the Hugging Face, LM Studio, Ollama or llama.cpp folders. "
                "Open a file or add a folder."
            )
        if result.unreadable:
            n = len(result.unreadable)
            text += f" {n} folder{'s' if n != 1 else ''} could not be read."
            self.scan_label.setToolTip("\n".join(result.unreadable))
        if result.truncated:
            text += " The search stopped early: there were too many files."
        self.scan_label.setText(text)
        self.models_discovered.emit([m.path for m in result.models if m.complete])
        self.scan_finished.emit(result)

    def _on_scan_failed(self, message: str) -> None:
        self._scanning = False
        self.rescan_button.setEnabled(True)
        self.scan_label.setText(f"The search for local models failed: {message}")
        self.scan_finished.emit(ScanResult(models=()))

    def _fill_found(self, models: Sequence[FoundModel]) -> None:
        tree = self.found_tree
        tree.clear()
        demo = QtWidgets.QTreeWidgetItem([DEMO_LABEL, _demo_size(), "Q4_1", "bundled with Rigfit"])
        demo.setData(0, QtCore.Qt.ItemDataRole.UserRole, DEMO_REF)
        demo.setToolTip(0, "A tiny model for trying Rigfit out; it loads in a second, even on the CPU.")
        tree.addTopLevelItem(demo)
        for m in models:
            where = f"{m.source_label} · {m.where}"
            size = fmt_size(m.size_bytes)
            if m.parts > 1:
                size += f" ({m.parts} files)"
            item = QtWidgets.QTreeWidgetItem([m.name, size, m.quant or "?", where])
            item.setData(0, QtCore.Qt.ItemDataRole.UserRole, m)
            item.setToolTip(0, m.path)
            item.setToolTip(3, m.path)
            if not m.complete:
                item.setText(1, f"{size}, {m.missing_parts} missing")
                item.setForeground(0, QtGui.QBrush(muted_text(self.palette())))
            tree.addTopLevelItem(item)

    # ------------------------------------------------------------------------------------------ closing
    def shutdown(self) -> None:
        """Stop the scan and drop the header read in flight (the tab is closing)."""
        self._shut_down = True
        self._stop_scan.set()
        self.tasks.cancel("run-model")
        self.tasks.cancel("run-scan")


def _demo_size() -> str:
    from app.core.demo import demo_model_path

    path = demo_model_path()
    try:
        return fmt_size(path.stat().st_size) if path is not None else "not installed"
    except OSError:
        return "?"


__all__ = ["DEMO_LABEL", "DEMO_REF", "ModelPicker", "choice_for", "dropped_model", "model_summary_html"]
