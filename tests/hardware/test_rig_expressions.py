"""Rig expressions: `2x RTX 3090`, `RTX 3090 + RTX 3060`, `2x RTX 3090 nvlink`, `RTX 4090 + RTX 4090@x4`."""

from __future__ import annotations

import pytest

from app.core.advice import rig_advice
from app.core.errors import RigfitError, UnknownName
from app.hardware.catalog import DEFAULT_PLANNED_HOST, parse_rig_expression


def test_two_3090s() -> None:
    rig = parse_rig_expression("2x RTX 3090")
    assert [g.name for g in rig.gpus] == ["RTX 3090", "RTX 3090"]
    assert [g.index for g in rig.gpus] == [0, 1]
    assert all(g.planned and g.catalog_id == "rtx-3090" for g in rig.gpus)
    assert rig.topology == (("X", "PHB"), ("PHB", "X"))
    assert rig.source == "planned" and rig.status_code == "planned"
    assert rig.vram_total_mib == 2 * 24576
    assert rig.host == DEFAULT_PLANNED_HOST
    assert rig.name == "2x RTX 3090"


def test_a_3090_and_a_3060() -> None:
    rig = parse_rig_expression("RTX 3090 + RTX 3060")
    assert [g.catalog_id for g in rig.gpus] == ["rtx-3090", "rtx-3060-12gb"]
    assert [g.bandwidth_gbps for g in rig.gpus] == [936, 360]


def test_nvlinked_3090s_are_nv4_with_bridge_bandwidth() -> None:
    rig = parse_rig_expression("2x RTX 3090 nvlink")
    assert rig.topology == (("X", "NV4"), ("NV4", "X"))
    assert all(g.nvlink.links == 4 and g.nvlink.version == 3 for g in rig.gpus)
    assert rig.gpus[0].nvlink.bandwidth_gbps == pytest.approx(56.25)
    assert rig.name == "2x RTX 3090 nvlink"


def test_slot_width_limits_the_second_4090_and_draws_the_lane_warning() -> None:
    rig = parse_rig_expression("RTX 4090 + RTX 4090@x4")
    a, b = rig.gpus
    assert (a.pcie.max_width, b.pcie.max_width, b.pcie.gpu_max_width) == (16, 4, 16)
    assert b.pcie.slot_limited and not a.pcie.slot_limited
    assert b.pcie.describe() == "Gen4 x4 (card supports x16)"
    (warning,) = [x for x in rig_advice(rig) if x.level == "warning"]
    assert (warning.code, warning.gpu) == ("pcie-narrow-slot", 1)
    assert rig.name == "RTX 4090 + RTX 4090@x4"


@pytest.mark.parametrize(
    "expr",
    [
        "2x RTX 3090",
        "2X rtx3090",
        "2 x 3090",
        "2×3090",
        "2*GeForce RTX 3090",
        "  2x   RTX 3090  ",
        "2xrtx 3090",
    ],
)
def test_spelling_and_spacing_do_not_matter(expr: str) -> None:
    assert parse_rig_expression(expr) == parse_rig_expression("2x RTX 3090")


def test_modifiers_combine_and_the_link_is_what_both_ends_allow() -> None:
    rig = parse_rig_expression("RTX 3060 @ gen3 x4 + rtx 5090@gen4")
    small, big = rig.gpus
    assert (small.pcie.max_gen, small.pcie.max_width) == (3, 4)
    assert (big.pcie.max_gen, big.pcie.max_width, big.pcie.gpu_max_gen) == (4, 16, 5)
    assert parse_rig_expression("RTX 3060@x4@gen3") == parse_rig_expression("RTX 3060@gen3x4")
    # A slot wider than the card changes nothing.
    assert parse_rig_expression("RTX 4060@x16").gpus[0].pcie.max_width == 8


def test_four_bridged_cards_pair_up_and_sxm_cards_share_the_switch() -> None:
    four = parse_rig_expression("4x RTX 3090 nvlink")
    assert four.topology[0][1] == four.topology[2][3] == "NV4"
    assert four.topology[0][2] == four.topology[1][3] == "PHB"
    hgx = parse_rig_expression("8x H100 nvlink")
    assert all(hgx.topology[i][j] == "NV18" for i in range(8) for j in range(8) if i != j)


def test_mixed_rig_with_an_amd_card_notes_it_is_for_planning_only() -> None:
    rig = parse_rig_expression("RTX 3090 + RX 7900 XTX")
    assert rig.gpus[1].vendor == "amd"
    (advice,) = rig_advice(rig)
    assert advice.code == "planning-only-gpu" and "planning only" in advice.message


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("RTX 3095", r"unknown GPU 'RTX 3095'; did you mean RTX 3090"),
        ("2x 4060 ti", r"could be several GPUs: RTX 4060 Ti 8GB, RTX 4060 Ti 16GB"),
        ("RTX 4090 x4", r"for a slot width write 'RTX 4090@x4'"),
        ("2x RTX 4090 nvlink", "RTX 4090 has no NVLink connector"),
        ("3x RTX 3090 nvlink", "in pairs"),
        ("RTX 3090 nvlink", "in pairs"),
        ("RTX 3090@x3", "x1, x2, x4, x8 or x16"),
        ("RTX 3090@gen9", "gen1 to gen6"),
        ("RTX 3090@wide", "don't understand '@wide'"),
        ("", "empty rig expression"),
        ("RTX 3090 + + RTX 3060", "empty part"),
        ("0x RTX 3090", "1 to 64"),
        ("65x RTX 3090", "1 to 64"),
        ("2x !!!", "empty GPU name"),
    ],
)
def test_bad_expressions_raise_a_clear_error(expr: str, message: str) -> None:
    with pytest.raises(RigfitError, match=message):
        parse_rig_expression(expr)


def test_unknown_names_are_unknown_name_errors() -> None:
    with pytest.raises(UnknownName):
        parse_rig_expression("2x Voodoo 5")
