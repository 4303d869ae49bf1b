"""The Split tab, offscreen: sliders, locks and presets move the layers and the bars; the split mode
follows the rig; the settings reach the plan; the advice and the exported commands follow the plan."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytestqt.qtbot import QtBot

from PySide6 import QtGui

from app.core.placement import layer_assignment
from app.core.plan import STATUS_NO
from app.core.rig import Rig
from app.core.split import preset_split, slot_counts, split_for_even_headroom, split_for_max_ctx
from app.hardware.catalog import parse_rig_expression
from app.hardware.nvml import load_fake
from app.hardware.probe import detect_rig
from app.ui.main_window import model_choice_for
from app.ui.split.gpu_rows import layers_text, percent_display
from app.ui.split.view import SplitView
from app.ui.state import AppState
from tests.ui.ui_guard import assert_quiet


@pytest.fixture
def state() -> AppState:
    s = AppState()
    s.set_rig(parse_rig_expression("2x RTX 3090"))
    return s


@pytest.fixture
def view(qtbot: QtBot, state: AppState) -> Iterator[SplitView]:
    widget = SplitView(state)
    qtbot.addWidget(widget)
    widget.resize(1400, 900)
    yield widget
    widget.flush()
    widget.shutdown()
    assert_quiet(widget)


def _pick(state: AppState, ref: str = "llama-3.1-8b", quant: str = "Q4_K_M") -> None:
    state.set_model(model_choice_for(ref, quant))


def _shares(view: SplitView) -> list[float]:
    return [row.spin.value() for row in view.gpus.rows]


def _ts(view: SplitView) -> str:
    view.flush()
    words = view.export.commands()["llama-server"].split()
    return words[words.index("-ts") + 1]


def test_a_slider_moves_layers_bars_split_and_the_command(view: SplitView, state: AppState) -> None:
    _pick(state)
    before = [row.bar.values for row in view.gpus.rows]
    ts_before = _ts(view)
    view.gpus.rows[0].slider.setValue(700)  # 70.0 %
    split = state.settings.tensor_split
    assert split is not None and split == pytest.approx((0.7, 0.3))
    plan = state.plan
    assert plan is not None
    slots = slot_counts(plan.n_layer, split)
    assert [d.layers + d.has_output for d in plan.devices] == list(slots)
    assert plan.devices[0].layers > plan.devices[1].layers
    assert _ts(view) == ",".join(map(str, slots)) != ts_before
    assert view.export.command_text.toPlainText() == view.export.commands()["llama-server"]
    from app.core.perf import estimate_speed

    speed = estimate_speed(state.rig, state.model.spec, plan).decode_tok_s  # type: ignore[union-attr]
    assert speed is not None and f"≈ {speed:.0f} tok/s" in view.load_settings.speed_label.text()
    assert view.load_settings.speed_label.text() in view.banner.status_label.text()
    assert view.gpus.rows[0].layers.text() == layers_text(
        plan.devices[0].layers, plan.devices[0].first_layer, plan.devices[0].has_output
    )
    after = [row.bar.values for row in view.gpus.rows]
    assert after[0].weights_mib > before[0].weights_mib and after[1].weights_mib < before[1].weights_mib
    assert after[0].weights_mib == pytest.approx(plan.devices[0].weights_mib)
    assert _shares(view) == [70.0, 30.0]
    assert view.gpus.rows[1].slider.value() == 300


def test_the_number_box_moves_the_split_too(view: SplitView, state: AppState) -> None:
    _pick(state)
    view.gpus.rows[1].spin.setValue(25.0)
    assert state.settings.tensor_split == pytest.approx((0.75, 0.25))
    assert view.gpus.rows[0].slider.value() == 750


def test_a_locked_gpu_keeps_its_share(qtbot: QtBot) -> None:
    state = AppState()
    state.set_rig(parse_rig_expression("3x RTX 3090"))
    view = SplitView(state)
    qtbot.addWidget(view)
    _pick(state, "llama-3.3-70b", "Q4_K_M")
    view.gpus.set_split((0.2, 0.3, 0.5))
    view.gpus.rows[2].lock.setChecked(True)
    view.gpus.rows[0].slider.setValue(400)
    split = state.settings.tensor_split
    assert split is not None and split[2] == pytest.approx(0.5) and split[0] == pytest.approx(0.4)
    assert sum(split) == pytest.approx(1.0)
    assert not view.gpus.rows[2].slider.isEnabled()
    # With every other GPU locked a slider cannot move at all.
    view.gpus.rows[1].lock.setChecked(True)
    assert not view.gpus.rows[0].slider.isEnabled()
    view.gpus.rows[1].lock.setChecked(False)
    assert view.gpus.rows[0].slider.isEnabled()
    view.flush()
    view.shutdown()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(moves=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1000)), min_size=1, max_size=12))
def test_the_shares_always_add_up_to_100(view: SplitView, moves: list[tuple[int, int]]) -> None:
    state = view.state
    if state.rig is None or state.rig.n_gpus != 4:
        state.set_rig(parse_rig_expression("4x RTX 3060"))
    for gpu, value in moves:
        view.gpus.rows[gpu].slider.setValue(value)
        split = state.settings.tensor_split
        assert split is not None and sum(split) == pytest.approx(1.0)
        assert sum(_shares(view)) == pytest.approx(100.0, abs=1e-9)
        assert all(s >= 0 for s in split)


def test_percent_display_adds_up_exactly() -> None:
    assert percent_display((1, 1, 1)) == (33.4, 33.3, 33.3)
    assert sum(percent_display((0.123, 0.456, 0.421))) == pytest.approx(100.0)
    assert percent_display((0, 0)) == (0.0, 0.0)


def test_presets_set_the_core_split(view: SplitView, qtbot: QtBot) -> None:
    state = AppState()
    state.set_rig(parse_rig_expression("RTX 3090 + RTX 3060"))
    mixed = SplitView(state)
    qtbot.addWidget(mixed)
    _pick(state, "qwen2.5-14b", "Q6_K")
    assert mixed.gpus.apply_preset("vram")
    assert state.settings.tensor_split == preset_split(state.rig, "vram")
    vram_bars = [row.bar.values.weights_mib for row in mixed.gpus.rows]
    vram_ts = _ts(mixed)
    assert mixed.gpus.apply_preset("even")
    assert state.settings.tensor_split == (0.5, 0.5)
    assert [row.bar.values.weights_mib for row in mixed.gpus.rows] != vram_bars
    assert _ts(mixed) != vram_ts
    assert mixed.gpus.apply_preset("context")
    best = split_for_max_ctx(state.rig, state.model.spec, state.settings)
    assert state.settings.tensor_split == tuple(float(c) for c in best.tensor_split)
    assert f"{best.max_ctx:,}" in mixed.banner.notes_label.text()
    plan = state.plan
    assert plan is not None
    assert [d.layers + int(d.has_output) for d in plan.devices] == list(best.slots)
    assert _ts(mixed) == ",".join(str(c) for c in best.slots)
    assert mixed.gpus.apply_preset("headroom")
    even = split_for_even_headroom(state.rig, state.model.spec, state.settings)
    assert state.settings.tensor_split == tuple(float(c) for c in even.tensor_split)
    mixed.flush()
    mixed.shutdown()


def test_optimiser_presets_need_a_model(view: SplitView) -> None:
    assert not view.gpus.preset_buttons["context"].isEnabled()
    assert not view.gpus.apply_preset("context")
    assert "pick a model" in view.banner.notes_label.text()


def _fake_rig(scenario: str, tmp_path: Path) -> Rig:
    return detect_rig(backend=load_fake(scenario), sysfs_root=tmp_path)


def test_the_recommended_mode_follows_the_rig(view: SplitView, state: AppState, tmp_path: Path) -> None:
    _pick(state, "llama-3.3-70b", "Q4_K_M")
    state.set_rig(_fake_rig("2x3090-nvlink", tmp_path))
    assert view.load_settings.mode_buttons["tensor"].text().endswith("recommended")
    assert view.load_settings.mode_buttons["tensor"].font().bold()
    assert "NVLink" in view.load_settings.mode_reason.text()
    state.set_rig(_fake_rig("3090+3060-x4", tmp_path))
    assert view.load_settings.mode_buttons["layer"].text().endswith("recommended")
    assert not view.load_settings.mode_buttons["tensor"].text().endswith("recommended")
    assert "unequal" in view.load_settings.mode_reason.text().lower()


def test_modes_that_cannot_work_here_are_disabled_with_the_reason(view: SplitView, state: AppState) -> None:
    _pick(state)
    row = view.load_settings.mode_buttons["row"]
    assert not row.isEnabled() and "not here" in row.text() and "split buffers" in row.toolTip()
    assert view.load_settings.mode_buttons["tensor"].isEnabled()
    view.load_settings.flash_attn.setChecked(False)
    assert not state.settings.flash_attn
    tensor = view.load_settings.mode_buttons["tensor"]
    assert not tensor.isEnabled() and "flash attention" in tensor.toolTip()
    view.load_settings.flash_attn.setChecked(True)
    assert view.load_settings.mode_buttons["tensor"].isEnabled()


def test_choosing_a_mode_replans(view: SplitView, state: AppState) -> None:
    _pick(state)
    view.load_settings.mode_buttons["none"].click()
    assert state.settings.split_mode == "none"
    plan = state.plan
    assert plan is not None and plan.devices[1].layers == 0 and not plan.devices[1].has_output
    assert not view.gpus.rows[0].slider.isEnabled()  # nothing to split
    assert view.load_settings.main_gpu.isVisibleTo(view)
    view.load_settings.main_gpu.setCurrentIndex(1)
    view.load_settings.main_gpu.activated.emit(1)
    assert state.settings.main_gpu == 1 and state.plan is not None and state.plan.devices[1].layers > 0
    view.load_settings.mode_buttons["layer"].click()
    assert state.settings.split_mode == "layer" and view.gpus.rows[0].slider.isEnabled()


def test_context_kv_type_and_gpu_layers_reach_the_plan(view: SplitView, state: AppState) -> None:
    _pick(state)
    kv_8k = state.plan.devices[0].kv_mib  # type: ignore[union-attr]
    view.load_settings.ctx_combo.setCurrentIndex(view.load_settings.ctx_combo.findData(32768))
    view.load_settings.ctx_combo.activated.emit(view.load_settings.ctx_combo.currentIndex())
    assert state.settings.ctx == 32768
    assert state.plan.devices[0].kv_mib == pytest.approx(4 * kv_8k, rel=0.05)  # type: ignore[union-attr]
    view.load_settings.ctx_combo.setEditText("12288")
    view.load_settings.ctx_combo.lineEdit().editingFinished.emit()
    assert state.settings.ctx == 12288
    view.load_settings.kv_combo.setCurrentIndex(view.load_settings.kv_combo.findData("q8_0"))
    view.load_settings.kv_combo.activated.emit(view.load_settings.kv_combo.currentIndex())
    assert (state.settings.type_k, state.settings.type_v) == ("q8_0", "q8_0")
    view.load_settings.ngl.setValue(10)
    assert state.settings.n_gpu_layers == 10
    plan = state.plan
    assert plan is not None and plan.host.layers == plan.n_layer + 1 - 10
    assert view.gpus.host_layers.text() == f"token embeddings + {layers_text(plan.host.layers, 0, False)}"


def test_an_impossible_setting_is_said_in_words(view: SplitView, state: AppState) -> None:
    _pick(state)
    state.update_settings(type_k="q8_0", type_v="q8_0")
    view.load_settings.flash_attn.setChecked(False)  # a quantized V cache needs flash attention
    assert state.plan is None
    assert (
        "Cannot plan" in view.banner.status_label.text()
        and "flash attention" in view.banner.status_label.text()
    )
    view.flush()
    assert "quantized-v-needs-flash-attn" in view.advice.advice_codes()


def test_advice_follows_the_plan(view: SplitView, state: AppState) -> None:
    _pick(state, "llama-3.2-1b", "Q4_K_M")
    view.flush()
    assert "fits-one-gpu" in view.advice.advice_codes()
    _pick(state, "llama-3.1-405b", "Q4_K_M")
    view.flush()
    assert view.banner.status == STATUS_NO
    # Why it does not load is an error-level advice (the GPUs, or the host RAM for the CPU's layers).
    assert {"does-not-fit", "host-ram-short"} & set(view.advice.advice_codes())
    errors = [view.advice.advice_list.item(i) for i in range(view.advice.advice_list.count())]
    assert any(item.toolTip().startswith("error:") for item in errors)


def test_moving_a_slider_updates_values_without_rebuilding_rows(view: SplitView, state: AppState) -> None:
    _pick(state)
    rows = list(view.gpus.rows)
    sliders = [row.slider for row in rows]
    for value in (100, 400, 650, 900):
        view.gpus.rows[0].slider.setValue(value)
    assert view.gpus.rows == rows and [row.slider for row in view.gpus.rows] == sliders
    assert view.updates >= 4


def test_the_layers_each_gpu_holds_match_llama_cpps_rule(view: SplitView, state: AppState) -> None:
    _pick(state, "llama-3.3-70b", "Q4_K_M")
    view.gpus.rows[0].slider.setValue(555)
    plan = state.plan
    assert plan is not None and state.settings.tensor_split is not None
    slots = layer_assignment(plan.n_layer, state.settings.tensor_split, -1)
    first = slots[: plan.n_layer].count(0)
    assert view.gpus.rows[0].layers.text() == f"{first} layers (0–{first - 1})"
    assert view.gpus.rows[1].layers.text().endswith("+ output")


def test_a_rig_without_gpus_shows_the_host_only(view: SplitView, state: AppState, tmp_path: Path) -> None:
    _pick(state)
    state.set_rig(_fake_rig("zero-gpus", tmp_path))
    assert view.gpus.rows == []
    assert state.plan is not None and state.plan.host.layers == state.plan.n_layer
    assert "layers" in view.gpus.host_layers.text()
    assert all(not b.isEnabled() for b in view.gpus.preset_buttons.values())


def test_copy_puts_the_command_on_the_clipboard(view: SplitView, state: AppState) -> None:
    _pick(state)
    view.flush()
    for tool in ("llama-server", "ollama", "vllm", "exllamav2"):
        view.export.set_tool(tool)
        text = view.copy_command()
        assert text and text == view.export.commands()[tool]
        assert QtGui.QGuiApplication.clipboard().text() == text
    assert (
        "OLLAMA" in view.export.commands()["ollama"]
        and "--tensor-parallel-size" in view.export.commands()["vllm"]
    )


def test_dark_palette_keeps_the_status_readable(view: SplitView, state: AppState) -> None:
    _pick(state)
    dark = QtGui.QPalette()
    for role, colour in (
        (QtGui.QPalette.ColorRole.Window, "#202124"),
        (QtGui.QPalette.ColorRole.Base, "#17181a"),
        (QtGui.QPalette.ColorRole.Text, "#e8eaed"),
        (QtGui.QPalette.ColorRole.WindowText, "#e8eaed"),
    ):
        dark.setColor(role, QtGui.QColor(colour))
    view.setPalette(dark)
    pal = view.banner.status_label.palette()
    background = pal.color(QtGui.QPalette.ColorRole.Window)
    text = pal.color(QtGui.QPalette.ColorRole.WindowText)
    assert background.lightness() < 110 and text.lightness() > 200
