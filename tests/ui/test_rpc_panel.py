"""The Hardware tab's RPC panel: remote hosts (real CPU-backed servers, a dead port, a silent one),
"what if" planned remote GPUs, and starting and stopping a local server; nothing left running."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from app.hardware.catalog import load_gpu_catalog
from app.runner.ggml import rpc_available
from app.runner.rpc import free_port
from app.ui.hardware.rpc_panel import STATE_FAILED, STATE_OK, RpcPanel
from app.ui.hardware.view import MODE_PLANNED, HardwareView
from tests.ui.ui_guard import assert_quiet

pytestmark = [
    pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints\(\)"),
    pytest.mark.skipif(not rpc_available(), reason="llama-cpp-python without the RPC backend"),
]


@pytest.fixture
def view(qtbot: QtBot) -> Any:
    widget = HardwareView()
    qtbot.addWidget(widget)
    yield widget
    widget.rpc_panel.shutdown()
    assert_quiet(widget)


def _settle(qtbot: QtBot, panel: RpcPanel) -> None:
    qtbot.waitUntil(lambda: not panel.tasks.busy, timeout=15000)


def test_a_reachable_host_adds_its_devices_to_the_rig(
    qtbot: QtBot, view: HardwareView, rpc_cpu_servers: list[Any]
) -> None:
    panel = view.rpc_panel
    endpoint = rpc_cpu_servers[0].endpoint
    with qtbot.waitSignal(view.rig_changed, timeout=15000, check_params_cb=lambda rig: rig.n_gpus == 3):
        assert panel.add_host(f"{endpoint}=CPU")
    (row,) = panel.hosts
    assert row.state == STATE_OK
    rig = view.current_rig()
    assert [g.name for g in rig.gpus][-1] == f"CPU @ {endpoint}"
    assert rig.gpus[-1].remote is not None and rig.gpus[-1].remote.endpoint == endpoint
    assert panel.table.item(0, 1).text().startswith(f"CPU @ {endpoint}:")
    card = view.cards[-1]
    assert card.pcie_label.text().startswith(f"Remote (llama.cpp RPC) at {endpoint} over loopback")
    assert card.remove_button is None  # edited in the panel, not as a planned card
    with qtbot.waitSignal(view.rig_changed, timeout=5000):
        panel.remove_host(f"{endpoint}=CPU")
    assert view.current_rig().n_gpus == 2 and not panel.hosts


def test_an_unreachable_host_is_shown_as_such(qtbot: QtBot, view: HardwareView) -> None:
    panel = view.rpc_panel
    dead = f"127.0.0.1:{free_port()}"
    panel.add_host(dead)
    _settle(qtbot, panel)
    (row,) = panel.hosts
    assert row.state == STATE_FAILED and "nothing is listening" in row.message
    assert panel.table.item(0, 1).text().startswith("unreachable:")
    assert view.current_rig().n_gpus == 2  # the demo rig, nothing added


def test_a_silent_host_does_not_hang_the_window(qtbot: QtBot, view: HardwareView) -> None:
    panel = view.rpc_panel
    panel.timeout_s = 0.5
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # accepts, never answers: a server busy with another client
        endpoint = f"127.0.0.1:{silent.getsockname()[1]}"
        panel.add_host(endpoint)
        assert panel.hosts[0].state == "asking"  # the GUI thread did not wait
        _settle(qtbot, panel)
    assert panel.hosts[0].state == STATE_FAILED and "one client at a time" in panel.hosts[0].message


def test_bad_input_is_one_line(qtbot: QtBot, view: HardwareView) -> None:
    panel = view.rpc_panel
    assert not panel.add_host("not a host")
    assert "HOST:PORT" in panel.message_label.text() and not panel.hosts
    assert panel.add_host(f"127.0.0.1:{free_port()}")
    assert not panel.add_host(panel.hosts[0].text)
    assert "already in the list" in panel.message_label.text()
    _settle(qtbot, panel)


def test_what_if_adds_a_planned_remote_gpu(qtbot: QtBot, view: HardwareView) -> None:
    panel = view.rpc_panel
    panel.plan_gpu_combo.setCurrentIndex(panel.plan_gpu_combo.findData("rtx-4090"))
    panel.plan_link_combo.setCurrentIndex(panel.plan_link_combo.findData("1GbE"))
    with qtbot.waitSignal(view.rig_changed, timeout=5000):
        panel.plan_button.click()
    rig = view.current_rig()
    assert view.mode == MODE_PLANNED
    assert rig.name == "2x RTX 3090 + rpc(RTX 4090 @ 1GbE)"
    # a local GPU added afterwards still goes before the remote one
    view.add_planned_gpu("rtx-3060-12gb")
    assert [g.name for g in view.current_rig().gpus] == ["RTX 3090", "RTX 3090", "RTX 3060 12GB", "RTX 4090"]


def test_start_and_stop_a_local_server(qtbot: QtBot, view: HardwareView) -> None:
    panel = view.rpc_panel
    panel.port_spin.setValue(free_port())
    panel.devices_edit.setText("CPU")
    assert panel.start_server()
    qtbot.waitUntil(lambda: panel.serve_button.text() == "Stop server", timeout=30000)
    assert panel.serving and panel.server_status.text().startswith("Serving on 127.0.0.1:")
    panel.stop_server()
    qtbot.waitUntil(
        lambda: panel.serve_button.text() == "Start server" and panel.serve_button.isEnabled(), timeout=15000
    )
    assert not panel.serving and panel.server_status.text() == "Not serving."


def test_the_network_needs_the_trusted_box_and_shows_the_warning(qtbot: QtBot, view: HardwareView) -> None:
    panel = view.rpc_panel
    panel.host_edit.setText("0.0.0.0")
    assert panel.warning_label.isVisibleTo(panel) and panel.trust_check.isVisibleTo(panel)
    assert "Never expose the RPC server to an open network!" in panel.warning_label.text()
    assert not panel.start_server()
    assert "--allow-network" in panel.server_status.text() or "no password" in panel.server_status.text()
    panel.host_edit.setText("127.0.0.1")
    assert not panel.warning_label.isVisibleTo(panel)


def test_a_taken_port_is_said_plainly(qtbot: QtBot, view: HardwareView) -> None:
    panel = view.rpc_panel
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        panel.port_spin.setValue(holder.getsockname()[1])
        panel.devices_edit.setText("CPU")
        panel.start_server()
        qtbot.waitUntil(lambda: panel.serve_button.isEnabled(), timeout=30000)
    assert "already in use" in panel.server_status.text() and not panel.serving


def test_catalog_fills_the_what_if_list(qtbot: QtBot) -> None:
    panel = RpcPanel()
    qtbot.addWidget(panel)
    panel.set_catalog(load_gpu_catalog())
    assert panel.plan_gpu_combo.currentData() == "rtx-4090"
    panel.shutdown()
    assert_quiet(panel)


def test_a_planned_remote_card_has_no_slot_or_bridge(qtbot: QtBot, view: HardwareView) -> None:
    view.add_planned_remote("rtx-4090", "10GbE")
    card = view.cards[-1]
    assert card.gpu.remote is not None and card.slot_combo is None and card.nvlink_check is None
    assert card.remove_button is not None
    with qtbot.waitSignal(view.rig_changed, timeout=5000):
        card.remove_button.click()
    assert not view.current_rig().remote_gpus
