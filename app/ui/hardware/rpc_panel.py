"""Other machines in the Hardware tab: llama.cpp RPC servers, to serve and to use.

* **Serve this computer**: start and stop ``rigfit rpc-server`` (llama.cpp's RPC server, in its own
  process) for this machine's devices. Any address but 127.0.0.1 needs the "trusted network" box
  ticked and shows llama.cpp's warning: the protocol has no password and no encryption.
* **Remote machines**: add ``HOST:PORT[=RTX 4090|CPU][@10GbE]``, test, remove. Each host is asked
  for its devices on a pool thread with a timeout; an unreachable or busy host is shown as such and
  the window never waits for it. Answering hosts' devices join the rig the tab shows
  (:meth:`RpcPanel.remote_devices`), so the Fit, Split and Run tabs plan with them.
* **What if**: a planned GPU on another PC over a chosen link (``rpc(RTX 4090 @ 1GbE)``), added to
  the planned rig.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from PySide6 import QtCore, QtWidgets

from app.core.errors import RigfitError
from app.core.rig import Gpu
from app.ui.tasks import TaskRunner
from app.ui.theme import TEXT_ERROR, tint

QUERY_TIMEOUT_S = 3.0
STATE_ASKING = "asking"
STATE_OK = "ok"
STATE_FAILED = "failed"


@dataclass(frozen=True)
class HostRow:
    """A remote host as the panel knows it: its spec text and the last answer."""

    text: str
    state: str
    devices: tuple[Gpu, ...] = ()
    message: str = ""


def _ask(text: str, timeout_s: float) -> tuple[Gpu, ...]:
    """Runs on a pool thread: the host's devices, or RigfitError with the reason."""
    from app.hardware.rpc import parse_spec, query_server, remote_devices

    spec = parse_spec(text)
    info = query_server(spec.endpoint, timeout_s)
    if not info.devices:
        raise RigfitError(f"{spec.endpoint}: the server exposes no devices")
    return remote_devices(spec, info)


class _Lines(QtCore.QObject):
    """Carries the server's output from its reader thread to the GUI thread."""

    line = QtCore.Signal(str)


class RpcPanel(QtWidgets.QGroupBox):
    """The panel (see the module docstring). ``devices_changed`` fires when the remote devices in
    the rig change; ``planned_remote_requested(catalog_id, link_name)`` asks for a planned one."""

    devices_changed = QtCore.Signal()
    planned_remote_requested = QtCore.Signal(str, str)

    def __init__(self, parent: QtWidgets.QWidget | None = None, timeout_s: float = QUERY_TIMEOUT_S) -> None:
        super().__init__("Other machines (llama.cpp RPC)", parent)
        self.setObjectName("rpcPanel")
        self.timeout_s = timeout_s
        self.tasks = TaskRunner(parent=self)
        self.tasks.pool.setObjectName("rpcPanelPool")
        self._hosts: list[HostRow] = []
        self._server: object | None = None  # app.runner.rpc.ServerProcess while one runs
        self._lines = _Lines(self)
        self._lines.line.connect(self._on_server_line)
        self._build()
        app = QtWidgets.QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    # ------------------------------------------------------------------------------------------ build
    def _build(self) -> None:
        from app.core.rpc import NETWORK_LINKS

        outer = QtWidgets.QVBoxLayout(self)

        serve = QtWidgets.QHBoxLayout()
        serve.addWidget(QtWidgets.QLabel("Serve this computer on"))
        self.host_edit = QtWidgets.QLineEdit("127.0.0.1")
        self.host_edit.setObjectName("rpcServeHost")
        self.host_edit.setMaximumWidth(130)
        self.host_edit.textChanged.connect(self._update_warning)
        serve.addWidget(self.host_edit)
        self.port_spin = QtWidgets.QSpinBox()
        self.port_spin.setObjectName("rpcServePort")
        self.port_spin.setRange(1, 65535)
        self.port_spin.setValue(50052)
        serve.addWidget(self.port_spin)
        self.devices_edit = QtWidgets.QLineEdit()
        self.devices_edit.setObjectName("rpcServeDevices")
        self.devices_edit.setPlaceholderText("devices: all GPUs, else CPU")
        self.devices_edit.setToolTip("Device names as llama.cpp knows them, e.g. CUDA0,CUDA1 or CPU")
        serve.addWidget(self.devices_edit)
        self.cache_check = QtWidgets.QCheckBox("cache tensors")
        self.cache_check.setToolTip(
            "Keep received tensors on disk, so loading the same model again sends less"
        )
        serve.addWidget(self.cache_check)
        self.trust_check = QtWidgets.QCheckBox("this network is trusted")
        self.trust_check.setObjectName("rpcTrust")
        self.trust_check.hide()
        serve.addWidget(self.trust_check)
        self.serve_button = QtWidgets.QPushButton("Start server")
        self.serve_button.setObjectName("rpcServe")
        self.serve_button.clicked.connect(self._on_serve_clicked)
        serve.addWidget(self.serve_button)
        outer.addLayout(serve)
        self.warning_label = QtWidgets.QLabel("")
        self.warning_label.setObjectName("rpcWarning")
        self.warning_label.setWordWrap(True)
        tint(self.warning_label, TEXT_ERROR)
        self.warning_label.hide()
        outer.addWidget(self.warning_label)
        self.server_status = QtWidgets.QLabel("Not serving.")
        self.server_status.setObjectName("rpcServerStatus")
        self.server_status.setWordWrap(True)
        self.server_status.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        outer.addWidget(self.server_status)

        add = QtWidgets.QHBoxLayout()
        add.addWidget(QtWidgets.QLabel("Use a remote machine"))
        self.host_input = QtWidgets.QLineEdit()
        self.host_input.setObjectName("rpcHostInput")
        self.host_input.setPlaceholderText("HOST:PORT, e.g. 192.168.1.20:50052=RTX 4090@1GbE")
        self.host_input.returnPressed.connect(self._on_add_clicked)
        add.addWidget(self.host_input, 1)
        self.add_button = QtWidgets.QPushButton("Add")
        self.add_button.setObjectName("rpcAddHost")
        self.add_button.clicked.connect(self._on_add_clicked)
        add.addWidget(self.add_button)
        outer.addLayout(add)
        self.message_label = QtWidgets.QLabel("")
        self.message_label.setObjectName("rpcMessage")
        self.message_label.setWordWrap(True)
        self.message_label.hide()
        outer.addWidget(self.message_label)

        self.table = QtWidgets.QTableWidget(0, 3)
        self.table.setObjectName("rpcHosts")
        self.table.setHorizontalHeaderLabels(["Host", "Devices", ""])
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.NoSelection)
        self.table.horizontalHeader().setSectionResizeMode(1, QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().hide()
        self.table.hide()
        outer.addWidget(self.table)

        plan = QtWidgets.QHBoxLayout()
        plan.addWidget(QtWidgets.QLabel("What if: plan a GPU on another PC"))
        self.plan_gpu_combo = QtWidgets.QComboBox()
        self.plan_gpu_combo.setObjectName("rpcPlanGpu")
        self.plan_gpu_combo.setEditable(True)
        self.plan_gpu_combo.setInsertPolicy(QtWidgets.QComboBox.InsertPolicy.NoInsert)
        plan.addWidget(self.plan_gpu_combo, 1)
        plan.addWidget(QtWidgets.QLabel("over"))
        self.plan_link_combo = QtWidgets.QComboBox()
        self.plan_link_combo.setObjectName("rpcPlanLink")
        for name, link in NETWORK_LINKS.items():
            if name != "loopback":
                self.plan_link_combo.addItem(f"{name} ({link.bandwidth_gbps:g} GB/s)", name)
        plan.addWidget(self.plan_link_combo)
        self.plan_button = QtWidgets.QPushButton("Add to planned rig")
        self.plan_button.setObjectName("rpcPlanAdd")
        self.plan_button.clicked.connect(self._on_plan_clicked)
        plan.addWidget(self.plan_button)
        outer.addLayout(plan)

        from app.runner.ggml import rpc_available

        if not rpc_available():
            self.serve_button.setEnabled(False)
            from app.core.rules import rpc_unavailable, sentence

            self.server_status.setText(
                sentence(rpc_unavailable().message)
                + " It cannot serve or use remote machines; planning with remote GPUs still works."
            )

    def set_catalog(self, entries: Sequence[object]) -> None:
        """The GPUs offered for "what if" (catalog entries with ``id`` and ``name``)."""
        self.plan_gpu_combo.clear()
        for entry in entries:
            self.plan_gpu_combo.addItem(str(getattr(entry, "name", "")), getattr(entry, "id", None))
        self.plan_gpu_combo.setCurrentIndex(max(0, self.plan_gpu_combo.findData("rtx-4090")))

    # ------------------------------------------------------------------------------------------ hosts
    @property
    def hosts(self) -> tuple[HostRow, ...]:
        return tuple(self._hosts)

    def remote_devices(self) -> tuple[Gpu, ...]:
        """The devices of every host that answered, in the order the hosts were added."""
        return tuple(d for h in self._hosts if h.state == STATE_OK for d in h.devices)

    def add_host(self, text: str) -> bool:
        """Add a host and ask it (in the background). False, with a message, for bad input."""
        from app.hardware.rpc import MAX_RPC_SERVERS, parse_spec

        text = " ".join(text.split())
        if len(self._hosts) >= MAX_RPC_SERVERS:
            self._message(f"at most {MAX_RPC_SERVERS} RPC servers")
            return False
        try:
            spec = parse_spec(text)
        except RigfitError as exc:
            self._message(str(exc))
            return False
        if any(parse_spec(h.text).endpoint == spec.endpoint for h in self._hosts):
            self._message(f"{spec.endpoint} is already in the list")
            return False
        self._message("")
        self._hosts.append(HostRow(text, STATE_ASKING))
        self._ask(text)
        self._fill()
        return True

    def test_host(self, text: str) -> None:
        """Ask a listed host again."""
        self._replace(text, HostRow(text, STATE_ASKING))
        self._ask(text)
        self._fill()
        self.devices_changed.emit()

    def remove_host(self, text: str) -> None:
        had_devices = any(h.text == text and h.devices for h in self._hosts)
        self.tasks.cancel(f"host:{text}")
        self._hosts = [h for h in self._hosts if h.text != text]
        self._fill()
        if had_devices:
            self.devices_changed.emit()

    def _ask(self, text: str) -> None:
        timeout = self.timeout_s
        self.tasks.submit(
            lambda: _ask(text, timeout),
            lambda devices: self._answered(text, devices),
            lambda message: self._failed(text, message),
            key=f"host:{text}",
        )

    def _answered(self, text: str, devices: object) -> None:
        assert isinstance(devices, tuple)
        if self._replace(text, HostRow(text, STATE_OK, devices)):
            self._fill()
            self.devices_changed.emit()

    def _failed(self, text: str, message: str) -> None:
        if self._replace(text, HostRow(text, STATE_FAILED, (), message)):
            self._fill()
            self.devices_changed.emit()

    def _replace(self, text: str, row: HostRow) -> bool:
        for i, h in enumerate(self._hosts):
            if h.text == text:
                self._hosts[i] = row
                return True
        return False

    def _fill(self) -> None:
        table = self.table
        table.setRowCount(len(self._hosts))
        for r, h in enumerate(self._hosts):
            table.setItem(r, 0, QtWidgets.QTableWidgetItem(h.text))
            if h.state == STATE_ASKING:
                text = "asking…"
            elif h.state == STATE_OK:
                text = ", ".join(
                    f"{d.name}: {d.vram_free_mib or d.vram_total_mib:,.0f} MiB free" for d in h.devices
                )
            else:
                text = f"unreachable: {h.message}" if "busy" not in h.message else h.message
            item = QtWidgets.QTableWidgetItem(text)
            item.setToolTip(html.escape(text))
            table.setItem(r, 1, item)
            buttons = QtWidgets.QWidget()
            row = QtWidgets.QHBoxLayout(buttons)
            row.setContentsMargins(0, 0, 0, 0)
            test = QtWidgets.QPushButton("Test")
            test.setObjectName("rpcTest")
            test.setEnabled(h.state != STATE_ASKING)
            test.clicked.connect(_bind(self.test_host, h.text))
            remove = QtWidgets.QPushButton("Remove")
            remove.setObjectName("rpcRemove")
            remove.clicked.connect(_bind(self.remove_host, h.text))
            row.addWidget(test)
            row.addWidget(remove)
            table.setCellWidget(r, 2, buttons)
        table.setVisible(bool(self._hosts))
        table.resizeColumnToContents(0)

    def _message(self, text: str) -> None:
        self.message_label.setText(text)
        self.message_label.setVisible(bool(text))

    def _on_add_clicked(self) -> None:
        if self.add_host(self.host_input.text()):
            self.host_input.clear()

    def _on_plan_clicked(self) -> None:
        index = self.plan_gpu_combo.currentIndex()
        text = self.plan_gpu_combo.currentText().strip()
        catalog_id = self.plan_gpu_combo.itemData(index) if index >= 0 else None
        if catalog_id is None or self.plan_gpu_combo.itemText(index) != text:
            from app.hardware.catalog import find_gpu

            try:
                catalog_id = find_gpu(text).id
            except RigfitError as exc:
                self._message(str(exc))
                return
        self._message("")
        self.planned_remote_requested.emit(str(catalog_id), str(self.plan_link_combo.currentData()))

    # ------------------------------------------------------------------------------------------ server
    @property
    def serving(self) -> bool:
        server = self._server
        return server is not None and bool(getattr(server, "running", False))

    def _update_warning(self) -> None:
        from app.hardware.rpc import is_loopback
        from app.runner.rpc import NETWORK_WARNING

        host = self.host_edit.text().strip()
        exposed = bool(host) and not is_loopback(host)
        self.trust_check.setVisible(exposed)
        if not exposed:
            self.trust_check.setChecked(False)
        self.warning_label.setText(
            html.escape(NETWORK_WARNING.format(host=host)).replace("\n", "<br>")
            + "<br>Anyone who can reach this port can use this computer's devices and read what they hold."
            if exposed
            else ""
        )
        self.warning_label.setVisible(exposed)

    def _on_serve_clicked(self) -> None:
        if self.serving:
            self.stop_server()
        else:
            self.start_server()

    def start_server(self) -> bool:
        """Start the server with the panel's settings (the answer comes back on the GUI thread)."""
        from app.runner.rpc import ServerOptions, ServerProcess

        devices = tuple(d.strip() for d in self.devices_edit.text().split(",") if d.strip())
        options = ServerOptions(
            host=self.host_edit.text().strip(),
            port=self.port_spin.value(),
            devices=devices,
            cache=self.cache_check.isChecked(),
            allow_network=self.trust_check.isChecked(),
        )
        try:
            server = ServerProcess(options, on_line=self._lines.line.emit)
            server.start()
        except RigfitError as exc:
            self.server_status.setText(str(exc))
            return False
        self._server = server
        self.serve_button.setEnabled(False)
        self.server_status.setText(f"Starting the server on {server.endpoint}…")
        self.tasks.submit(
            lambda: server.wait_serving(timeout_s=60.0),
            lambda info: self._serving(server, info),
            lambda message: self._not_serving(server, message),
            key="server",
        )
        return True

    def _serving(self, server: object, info: object) -> None:
        if server is not self._server:
            return
        devices = ", ".join(f"{d.total_mib:,.0f} MiB" for d in getattr(info, "devices", ()))
        endpoint = getattr(server, "endpoint", "")
        self.server_status.setText(
            f"Serving on {endpoint} ({devices}). On the other computer: rigfit run --rpc {endpoint} … "
            f"or llama-server --rpc {endpoint}"
        )
        self.serve_button.setText("Stop server")
        self.serve_button.setEnabled(True)

    def _not_serving(self, server: object, message: str) -> None:
        if server is not self._server:
            return
        stop = getattr(server, "stop", None)
        if callable(stop):
            self.tasks.submit(stop, lambda _code: None)
        self._server = None
        self.server_status.setText(f"The server did not start: {message}")
        self.serve_button.setText("Start server")
        self.serve_button.setEnabled(True)

    def stop_server(self) -> None:
        server = self._server
        if server is None:
            return
        self._server = None
        self.tasks.cancel("server")
        self.serve_button.setEnabled(False)
        self.server_status.setText("Stopping the server…")
        stop = getattr(server, "stop")  # noqa: B009 - the attribute of an untyped object
        self.tasks.submit(stop, self._stopped, lambda message: self._stopped(None))

    def _stopped(self, _code: object) -> None:
        self.server_status.setText("Not serving.")
        self.serve_button.setText("Start server")
        self.serve_button.setEnabled(True)

    def _on_server_line(self, line: str) -> None:
        if line.startswith("Accepted client connection"):
            self.server_status.setToolTip("A client is connected")
        elif line.startswith("Client connection closed"):
            self.server_status.setToolTip("")

    def shutdown(self) -> None:
        """Stop the server (if any) and wait for the background work: the window is closing."""
        server = self._server
        self._server = None
        if server is not None:
            getattr(server, "stop")()  # noqa: B009
        self.tasks.shutdown(timeout_ms=int((self.timeout_s + 5) * 1000))


def _bind(fn: Callable[[str], None], text: str) -> Callable[[], None]:
    return lambda: fn(text)
