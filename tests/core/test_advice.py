"""Rig advice: lane warnings judged by the slot's maximum, never by an idle link's current value."""

from __future__ import annotations

from dataclasses import replace

from app.core.advice import Advice, rig_advice
from app.core.rig import Gpu, PcieLink, Rig


def _gpu(index: int, pcie: PcieLink, vendor: str = "nvidia") -> Gpu:
    return Gpu(index=index, name=f"GPU{index}", vram_total_mib=24576.0, vendor=vendor, pcie=pcie)


FULL = PcieLink(gen=4, width=16, max_gen=4, max_width=16, gpu_max_gen=4, gpu_max_width=16)
X4_SLOT = PcieLink(gen=4, width=4, max_gen=4, max_width=4, gpu_max_gen=4, gpu_max_width=16)


def _codes(advice: tuple[Advice, ...]) -> list[tuple[str, str, int | None]]:
    return [(a.code, a.level, a.gpu) for a in advice]


def test_narrow_slot_in_a_multi_gpu_rig_is_a_warning_naming_the_gpu() -> None:
    rig = Rig(gpus=(_gpu(0, FULL), _gpu(1, X4_SLOT)))
    (advice,) = rig_advice(rig)
    assert (advice.code, advice.level, advice.gpu) == ("pcie-narrow-slot", "warning", 1)
    assert "Gen4 x4" in advice.message and "Gen4 x16" in advice.message
    assert "35-40% slower" in advice.message and "layer split" in advice.message
    assert "7.9 of 31.5 GB/s" in advice.message


def test_narrow_slot_on_a_single_gpu_is_only_an_info() -> None:
    assert _codes(rig_advice(Rig(gpus=(_gpu(0, X4_SLOT),)))) == [("pcie-narrow-slot", "info", 0)]


def test_idle_downclocked_link_alone_is_not_a_warning() -> None:
    idle = replace(FULL, gen=1, width=16)
    rig = Rig(gpus=(_gpu(0, idle), _gpu(1, idle)), source="detected")
    assert _codes(rig_advice(rig)) == [("pcie-idle-downclock", "info", None)]


def test_planned_rigs_do_not_talk_about_idle_links() -> None:
    assert rig_advice(Rig(gpus=(_gpu(0, replace(FULL, gen=1)),), source="planned")) == ()


def test_older_slot_generation_at_full_width_is_an_info() -> None:
    older = PcieLink(gen=3, width=16, max_gen=3, max_width=16, gpu_max_gen=4, gpu_max_width=16)
    assert _codes(rig_advice(Rig(gpus=(_gpu(0, FULL), _gpu(1, older))))) == [
        ("pcie-slot-older-gen", "info", 1)
    ]


def test_unknown_link_fields_give_no_advice() -> None:
    assert rig_advice(Rig(gpus=(_gpu(0, PcieLink()), _gpu(1, PcieLink())))) == ()


def test_non_nvidia_gpu_is_planning_only() -> None:
    rig = Rig(gpus=(_gpu(0, FULL), _gpu(1, FULL, vendor="amd")))
    assert _codes(rig_advice(rig)) == [("planning-only-gpu", "info", 1)]


def test_lost_gpu_is_an_error_first() -> None:
    rig = Rig(gpus=(_gpu(0, FULL),), status_code="gpu-lost", notes=("GPU 1 is lost (fell off the bus)",))
    assert rig_advice(rig)[0] == Advice("gpu-lost", "error", "GPU 1 is lost (fell off the bus)", None)
