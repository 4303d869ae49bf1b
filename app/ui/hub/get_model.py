""" "Get this model": the repository and file for a quant, their size and the plan, then the download.

From a Fit cell the catalog's GGUF repositories are tried in order and the first with a file of the
cell's quant is chosen; from the model picker the user searches the hub (or types ``OWNER/REPO``).
Before anything is downloaded the dialog shows the file, its exact size, the free disk, and the plan
on the current rig and settings, made from the file's header read over HTTP (a few MB), marked as
remote. Every hub call runs on the thread pool; a stale answer (the user picked another repository
meanwhile) is dropped.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from PySide6 import QtCore, QtWidgets

from app.core.model_spec import ModelSpec
from app.core.plan import Plan
from app.core.rig import Rig
from app.core.settings import Settings
from app.hub.listing import RemoteModel, RepoListing
from app.ui.hub.downloads import DownloadManager
from app.ui.state import AppState
from app.ui.tasks import TaskRunner
from app.ui.theme import STATUS_WORDS, fmt_gib, fmt_gib_of, fmt_size


@dataclass(frozen=True)
class RemotePlan:
    """What the dialog shows before a download: the spec from the remote header and its plan."""

    spec: ModelSpec
    plan: Plan | None
    plan_error: str
    free_bytes: int
    on_disk_bytes: int
    cache_dir: str


def _search(text: str) -> list[tuple[str, str]]:
    """``(repo, where it came from)``: the catalog's repositories first, then the hub's search."""
    from app.hub.catalog import catalog_gguf_repos
    from app.hub.listing import search_repos

    query = text.strip()
    if "/" in query and " " not in query:
        return [(query.removeprefix("hf:"), "typed")]
    found = catalog_gguf_repos(query)
    seen = {r.lower() for r, _ in found}
    for hit in search_repos(query, 12):
        if hit.repo.lower() not in seen:
            found.append((hit.repo, f"hub search, {hit.downloads:,} downloads"))
            seen.add(hit.repo.lower())
    return found


def _plan_remote(listing: RepoListing, model: RemoteModel, rig: Rig | None, settings: Settings) -> RemotePlan:
    from app.core.errors import RigfitError
    from app.core.placement import plan as make_plan
    from app.hub.config import hub_config
    from app.hub.download import plan_download
    from app.hub.remote import remote_spec

    cfg = hub_config()
    spec = remote_spec(listing, model, config=cfg)
    disk = plan_download(listing, model, config=cfg)
    result: Plan | None = None
    error = ""
    if rig is not None:
        try:
            result = make_plan(rig, spec, settings)
        except RigfitError as exc:
            error = str(exc)
    return RemotePlan(spec, result, error, disk.free_bytes, disk.on_disk_bytes, str(cfg.cache_dir))


def describe_plan(rp: RemotePlan, rig: Rig | None) -> str:
    """The plan in a few lines of rich text."""
    spec = rp.spec
    where = "planned from its header on the hub (not downloaded)" if spec.remote else "already downloaded"
    lines = [f"<b>{spec.name}</b> {spec.file_type or ''}: {where}"]
    if rp.plan is None:
        lines.append(rp.plan_error or "no rig to plan for yet")
    else:
        p = rp.plan
        on = rig.name if rig is not None and rig.name else "this rig"
        lines.append(f"On {on} at context {p.settings.ctx}: <b>{STATUS_WORDS.get(p.status, p.status)}</b>")
        for d in p.devices:
            lines.append(f"GPU {d.index} {d.name}: {fmt_gib_of(d.total_mib, d.capacity_mib)}")
        if p.host.total_mib > 0 or not p.devices:
            lines.append(f"System RAM: {fmt_gib(p.host.total_mib)}")
    return "<br>".join(lines)


class GetModelDialog(QtWidgets.QDialog):
    """Choose a repository and file, see the plan, start the download."""

    download_started = QtCore.Signal(int)  # the DownloadManager entry id
    plan_requested = QtCore.Signal(str)  # an hf: reference to plan on the Split tab
    planned = QtCore.Signal(object)  # the ModelSpec read from a remote header
    use_requested = QtCore.Signal(str)  # "Use it": the path of a file already downloaded

    def __init__(
        self,
        state: AppState,
        tasks: TaskRunner,
        manager: DownloadManager,
        parent: QtWidgets.QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("getModelDialog")
        self.setWindowTitle("Get a model from Hugging Face")
        self.state = state
        self.tasks = tasks
        self.manager = manager
        self.quant: str | None = None
        self.listing: RepoListing | None = None
        self.remote_plan: RemotePlan | None = None
        self._chosen: tuple[RepoListing, RemoteModel] | None = None
        self._note = ""  # why the file shown is not of the quant asked for (kept above the file's lines)
        self._build()

    def _build(self) -> None:
        layout = QtWidgets.QVBoxLayout(self)
        search_row = QtWidgets.QHBoxLayout()
        self.search_edit = QtWidgets.QLineEdit()
        self.search_edit.setObjectName("hubSearch")
        self.search_edit.setPlaceholderText("Model name (llama 3.2 1b) or repository (OWNER/NAME)")
        self.search_edit.returnPressed.connect(self.search)
        search_row.addWidget(self.search_edit, 1)
        self.search_button = QtWidgets.QPushButton("Search")
        self.search_button.clicked.connect(self.search)
        search_row.addWidget(self.search_button)
        layout.addLayout(search_row)
        form = QtWidgets.QFormLayout()
        self.repo_combo = QtWidgets.QComboBox()
        self.repo_combo.setObjectName("hubRepo")
        self.repo_combo.activated.connect(self._on_repo_chosen)
        form.addRow("Repository", self.repo_combo)
        self.file_combo = QtWidgets.QComboBox()
        self.file_combo.setObjectName("hubFile")
        self.file_combo.activated.connect(self._on_file_chosen)
        form.addRow("File", self.file_combo)
        layout.addLayout(form)
        self.info = QtWidgets.QLabel("")
        self.info.setObjectName("hubInfo")
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.info)
        self.plan_label = QtWidgets.QLabel("")
        self.plan_label.setObjectName("hubPlan")
        self.plan_label.setWordWrap(True)
        self.plan_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignTop | QtCore.Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.plan_label, 1)
        buttons = QtWidgets.QDialogButtonBox()
        self.download_button = buttons.addButton("Download", QtWidgets.QDialogButtonBox.ButtonRole.AcceptRole)
        self.download_button.setObjectName("hubDownload")
        self.download_button.setEnabled(False)
        self.download_button.clicked.connect(self.start_download)
        self.split_button = buttons.addButton(
            "Plan on the Split tab", QtWidgets.QDialogButtonBox.ButtonRole.ActionRole
        )
        self.split_button.setObjectName("hubPlanSplit")
        self.split_button.setToolTip("Move the split between your GPUs for this file before downloading it")
        self.split_button.setEnabled(False)
        self.split_button.clicked.connect(self._plan_on_split)
        buttons.addButton(QtWidgets.QDialogButtonBox.StandardButton.Close).clicked.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(620, 420)

    # -- entry points ----------------------------------------------------------------------------
    def for_catalog(self, model_id: str, quant: str) -> None:
        """A Fit cell: the catalog's repositories of ``model_id``, the first holding ``quant``."""
        from app.core.catalog import find_entry
        from app.hub.catalog import source_label

        self.quant = quant
        entry = find_entry(model_id)
        # Not the quant in the title: the repository may not have it, and another file is offered then.
        self.setWindowTitle(f"Get {entry.name}")
        self.search_edit.setText(entry.name)
        self.repo_combo.clear()
        self.file_combo.clear()
        self.download_button.setEnabled(False)
        self.split_button.setEnabled(False)
        self._chosen = None
        self._note = ""
        for r in entry.gguf_repos:
            self.repo_combo.addItem(f"{r.repo}  ({source_label(r)})", r.repo)
        if not entry.gguf_repos:
            self._say(f"The catalog knows no GGUF repository for {entry.name}: search the hub above.")
            return
        self._say(f"Looking for a {quant} file in {entry.name}'s GGUF repositories…")

        def work() -> tuple[RepoListing, RemoteModel | None, str]:
            from app.hub.catalog import QuantNotInCatalogRepos, find_for_quant

            try:
                listing, model, _ = find_for_quant(model_id, quant)
            except QuantNotInCatalogRepos as exc:
                if exc.listing is None:
                    raise
                # The cell's quant is missing, but its other files may fit too: offer them.
                return exc.listing, None, f"{exc}. Its other files are listed below."
            return listing, model, ""

        self.tasks.submit(work, self._on_found, self._on_failed, key="hub-lookup")

    def for_search(self, text: str = "") -> None:
        """The model picker: search the hub (the catalog's repositories for a known model first)."""
        self.search_edit.setText(text)
        if text.strip():
            self.search()
        else:
            self._say("Type a model name or a repository id, then Search.")

    def search(self) -> None:
        text = self.search_edit.text().strip()
        if not text:
            return
        self._note = ""
        self._say(f"Searching the hub for '{text}'…")
        self.repo_combo.clear()
        self.file_combo.clear()
        self.download_button.setEnabled(False)
        self.tasks.submit(lambda: _search(text), self._on_searched, self._on_failed, key="hub-lookup")

    # -- results ---------------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        self.info.setText(text)
        self.plan_label.setText("")

    def _on_failed(self, message: str) -> None:
        self._say(message)
        self.download_button.setEnabled(False)

    def _on_searched(self, found: object) -> None:
        assert isinstance(found, list)
        self.repo_combo.clear()
        for repo, where in found:
            self.repo_combo.addItem(f"{repo}  ({where})", repo)
        if not found:
            self._say(f"No GGUF repository on the hub matches '{self.search_edit.text().strip()}'.")
            return
        self._on_repo_chosen(0)

    def _on_repo_chosen(self, index: int) -> None:
        repo = self.repo_combo.itemData(index)
        if not repo:
            return
        self._note = ""
        self._say(f"Listing {repo}…")
        self.file_combo.clear()
        self.download_button.setEnabled(False)

        def work() -> tuple[RepoListing, RemoteModel | None]:
            from app.hub.listing import list_repo

            listing = list_repo(str(repo))
            chosen = listing.for_quant(self.quant) if self.quant else None
            return listing, chosen

        self.tasks.submit(work, self._on_found, self._on_failed, key="hub-lookup")

    def _on_found(self, value: object) -> None:
        listing, chosen, *note = value  # type: ignore[misc]
        assert isinstance(listing, RepoListing)
        self._note = html.escape(note[0]) if note else ""
        self.listing = listing
        index = self.repo_combo.findData(listing.repo)
        if index < 0:
            self.repo_combo.addItem(listing.repo, listing.repo)
            index = self.repo_combo.count() - 1
        self.repo_combo.setCurrentIndex(index)
        self.file_combo.clear()
        for i, m in enumerate(listing.models):
            if m.complete:
                self.file_combo.addItem(m.describe(), i)
        if self.file_combo.count() == 0:
            self._say(f"{listing.repo} holds no complete GGUF model.")
            return
        pick = listing.models.index(chosen) if isinstance(chosen, RemoteModel) else 0
        self.file_combo.setCurrentIndex(max(0, self.file_combo.findData(pick)))
        if self.quant and chosen is None and not self._note:
            self._note = f"{listing.repo} has no {self.quant} file; pick another file or repository."
        self._on_file_chosen(self.file_combo.currentIndex())

    def _on_file_chosen(self, index: int) -> None:
        if self.listing is None or index < 0:
            return
        model = self.listing.models[int(self.file_combo.itemData(index))]
        listing = self.listing
        parts = f" in {model.n_parts} parts" if model.n_parts > 1 else ""
        self.info.setText(
            self._noted(
                f"{listing.repo}: <b>{model.first.path}</b><br>{model.quant or 'quant unknown'}, "
                f"{fmt_size(model.size_bytes)}{parts}. Reading its header to plan it…"
            )
        )
        self.plan_label.setText("")
        self.download_button.setEnabled(False)
        self.split_button.setEnabled(False)
        rig, settings = self.state.rig, self.state.settings
        self.tasks.submit(
            lambda: _plan_remote(listing, model, rig, settings),
            lambda rp: self._on_planned(listing, model, rp),
            self._on_plan_failed,
            key="hub-plan",
        )

    def _on_plan_failed(self, message: str) -> None:
        self.plan_label.setText(f"Cannot plan this file: {message}")
        self.download_button.setEnabled(self.listing is not None)

    def _noted(self, text: str) -> str:
        return f"{self._note}<br><br>{text}" if self._note else text

    def _on_planned(self, listing: RepoListing, model: RemoteModel, rp: object) -> None:
        assert isinstance(rp, RemotePlan)
        self.remote_plan = rp
        self._chosen = (listing, model)
        need = model.size_bytes - rp.on_disk_bytes
        kept = f" in {model.n_parts} parts" if model.n_parts > 1 else ""
        kept += f", {fmt_size(rp.on_disk_bytes)} already here" if rp.on_disk_bytes else ""
        self.info.setText(
            self._noted(
                f"{listing.repo}: <b>{model.first.path}</b><br>{model.quant or 'quant unknown'}, "
                f"{fmt_size(model.size_bytes)}{kept}; into {rp.cache_dir} ({fmt_size(rp.free_bytes)} free)"
                + ("" if need < rp.free_bytes else " <b>not enough free disk</b>")
            )
        )
        self.plan_label.setText(describe_plan(rp, self.state.rig))
        self.planned.emit(rp.spec)
        self.download_button.setEnabled(True)
        self.split_button.setEnabled(True)
        self.download_button.setText("Download" if rp.spec.remote else "Use it")

    def _plan_on_split(self) -> None:
        if self._chosen is not None:
            self.plan_requested.emit(self._chosen[1].ref)
            self.accept()

    def start_download(self) -> None:
        if self._chosen is None:
            return
        listing, model = self._chosen
        rp = self.remote_plan
        if rp is not None and not rp.spec.remote and rp.spec.paths:
            # Already in the cache: straight to the Run tab, no download entry or window for it.
            self.use_requested.emit(rp.spec.paths[0])
            self.accept()
            return
        entry_id = self.manager.start(listing, model)
        self.download_started.emit(entry_id)
        self.accept()

    def shutdown(self) -> None:
        self.tasks.cancel("hub-lookup")
        self.tasks.cancel("hub-plan")
