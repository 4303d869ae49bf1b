"""Plan advice: the recommended split mode per topology, and each advice code where it belongs.

(tests/core/test_advice.py covers the rig advice of app.core.advice; this file the plan advice.)
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.core.advice import Advice
from app.core.catalog import catalog_spec
from app.core.placement import plan
from app.core.plan_advice import plan_advice, recommended_split_mode, settings_advice
from app.core.rig import VENDOR_AMD, Gpu, Host, PcieLink, Rig
from app.core.settings import Settings
from app.hardware.catalog import parse_rig_expression

LLAMA_70B = catalog_spec("llama-3.3-70b", "Q4_K_M")
LLAMA_8B = catalog_spec("llama-3.1-8b", "Q4_K_M")
DEEPSEEK = catalog_spec("deepseek-v3", "IQ1_S")


def _advise(expr: str | Rig, spec: object, settings: Settings | None = None) -> tuple[Advice, ...]:
    rig = parse_rig_expression(expr) if isinstance(expr, str) else expr
    s = settings or Settings()
    return plan_advice(rig, spec, s, plan(rig, spec, s))  # type: ignore[arg-type]


def _codes(advice: tuple[Advice, ...]) -> list[str]:
    return [a.code for a in advice]


def _one(advice: tuple[Advice, ...], code: str) -> Advice:
    found = [a for a in advice if a.code == code]
    assert len(found) == 1, _codes(advice)
    return found[0]


@pytest.mark.parametrize(
    ("expr", "spec", "mode"),
    [
        ("2x RTX 3090 nvlink", LLAMA_70B, "tensor"),
        ("2x RTX 3090", LLAMA_70B, "layer"),
        ("RTX 3090 + RTX 3060", LLAMA_70B, "layer"),
        ("RTX 4090", LLAMA_70B, "layer"),
        ("8x H100 nvlink", DEEPSEEK, "layer"),  # no tensor split for deepseek2 in llama.cpp
        ("8x H100 nvlink", LLAMA_70B, "tensor"),
    ],
)
def test_recommended_split_mode_follows_the_topology(expr: str, spec: object, mode: str) -> None:
    got, reason = recommended_split_mode(parse_rig_expression(expr), spec)  # type: ignore[arg-type]
    assert got == mode
    assert reason and "row" not in got


def test_nvidia_with_amd_runs_on_one_vendor_and_several_machines_use_layers() -> None:
    rig = parse_rig_expression("RTX 3090 + RX 7900 XTX")
    mode, reason = recommended_split_mode(rig, LLAMA_70B)
    assert mode == "none" and "RTX 3090" in reason and "AMD" in reason
    two_boxes = replace(parse_rig_expression("2x RTX 3090 nvlink"), machines=2)
    assert recommended_split_mode(two_boxes, LLAMA_70B)[0] == "layer"
    assert recommended_split_mode(Rig(gpus=()), LLAMA_8B)[0] == "none"


def test_a_model_that_fits_one_gpu_is_recommended_there_and_warned_about() -> None:
    rig = parse_rig_expression("RTX 3090 + RTX 3060")
    mode, reason = recommended_split_mode(rig, LLAMA_8B, Settings())
    assert mode == "none" and "GPU 0" in reason
    advice = _advise(rig, LLAMA_8B)
    warn = _one(advice, "fits-one-gpu")
    assert warn.level == "warning" and warn.gpu == 0 and "slower" in warn.message
    # Over NVLink the tensor split of a model that fits one GPU is not called slower when it is not.
    nv = parse_rig_expression("2x RTX 3090 nvlink")
    assert "fits-one-gpu" not in _codes(_advise(nv, LLAMA_8B, Settings(split_mode="tensor")))


def test_the_slower_card_of_a_mixed_pair_is_named_with_its_share_of_the_time() -> None:
    adv = _one(
        _advise("RTX 3090 + RTX 3060", catalog_spec("llama-3.3-70b", "IQ2_XS")), "slow-card-bottleneck"
    )
    assert (
        adv.gpu == 1
        and "360 GB/s" in adv.message
        and "936 GB/s" in adv.message
        and "% of each token" in adv.message
    )
    assert "slow-card-bottleneck" not in _codes(_advise("2x RTX 3090", LLAMA_70B))


def test_mixed_vendors_holding_layers_is_an_error() -> None:
    rig = parse_rig_expression("RTX 3090 + RX 7900 XTX")
    adv = _one(_advise(rig, LLAMA_70B), "mixed-vendors")
    assert adv.level == "error" and "ROCm" in adv.message
    assert "mixed-vendors" not in _codes(_advise(rig, LLAMA_8B, Settings(split_mode="none", main_gpu=0)))


def test_split_mode_requirements_are_reported_without_a_plan() -> None:
    nv = parse_rig_expression("2x RTX 3090 nvlink")
    codes = _codes(settings_advice(nv, LLAMA_70B, Settings(split_mode="tensor", flash_attn=False)))
    assert codes == ["tensor-needs-flash-attn"]
    assert _codes(settings_advice(nv, DEEPSEEK, Settings(split_mode="tensor"))) == ["tensor-unsupported-arch"]
    row = settings_advice(nv, LLAMA_70B, Settings(split_mode="row"))
    assert _codes(row) == ["row-split-unavailable"] and "0.3.36" in row[0].message
    assert _codes(settings_advice(nv, LLAMA_70B, Settings(type_v="q8_0", flash_attn=False))) == [
        "quantized-v-needs-flash-attn"
    ]
    one = parse_rig_expression("RTX 4090")
    assert _codes(settings_advice(one, LLAMA_8B, Settings(split_mode="tensor"))) == ["tensor-single-gpu"]
    assert _codes(settings_advice(one, DEEPSEEK, Settings(type_k="q8_0"))) == ["mla-kv-types"]
    odd_head = replace(LLAMA_8B, head_dim_k=72, head_dim_v=72)
    assert _codes(settings_advice(one, odd_head, Settings(type_k="q8_0", type_v="q8_0"))) == [
        "kv-type-head-size"
    ]
    assert settings_advice(nv, LLAMA_70B, Settings()) == ()


def test_row_split_plan_is_no_with_the_reason_not_a_generic_does_not_fit() -> None:
    advice = _advise("2x RTX 3090 nvlink", LLAMA_8B, Settings(split_mode="row"))
    assert "row-split-unavailable" in _codes(advice) and "does-not-fit" not in _codes(advice)


def test_offload_tight_and_host_ram_are_explained() -> None:
    off = _one(_advise("RTX 4090", LLAMA_70B), "offload-slow")
    assert "layers run on the CPU" in off.message and "tok/s" in off.message
    tight = _advise("2x RTX 3090", LLAMA_70B, Settings(ctx=16384))
    assert "vram-tight" in _codes(tight)
    small_ram = Rig(gpus=parse_rig_expression("RTX 3060").gpus, host=Host(ram_available_mib=8 * 1024.0))
    ram = _one(_advise(small_ram, LLAMA_70B), "host-ram-short")
    assert ram.level == "error" and "GiB available" in ram.message
    huge = _advise("RTX 3060", DEEPSEEK)
    assert "host-ram-short" in _codes(huge)


def test_power_supply_size_and_cables() -> None:
    advice = _advise("2x RTX 3090", LLAMA_70B)
    psu = _one(advice, "psu-size")
    # 2 x 350 W + 250 W = 950 W peak, x 1.3 = 1235 W -> 1250 W.
    assert "950 W" in psu.message and "1250 W" in psu.message
    cables = [a for a in advice if a.code == "pcie-cables"]
    assert [a.gpu for a in cables] == [0, 1] and all("separate PCIe cable" in a.message for a in cables)
    sixteen = _one(_advise("RTX 4090", LLAMA_8B), "pcie-cables")
    assert "12VHPWR" in sixteen.message
    assert "psu-size" not in _codes(_advise("8x H100 nvlink", LLAMA_70B))  # SXM: a server's power shelf


def test_other_tools_multi_gpu_advice() -> None:
    mixed = _codes(_advise("RTX 3090 + RTX 3060", LLAMA_70B))
    assert {"vllm-unequal-vram", "ollama-multi-gpu", "vulkan-multi-gpu"} <= set(mixed)
    equal = _codes(_advise("2x RTX 3090", LLAMA_70B))
    assert "vllm-unequal-vram" not in equal and "ollama-multi-gpu" in equal
    assert "ollama-multi-gpu" not in _codes(_advise("RTX 4090", LLAMA_8B))


def test_rig_advice_is_included_and_every_advice_is_well_formed() -> None:
    rig = parse_rig_expression("RTX 3090 + RTX 3090@x4")
    advice = _advise(rig, LLAMA_70B)
    assert "pcie-narrow-slot" in _codes(advice)
    assert advice[0].code == "split-mode"
    for a in advice:
        assert a.level in ("info", "warning", "error") and a.message.strip() and a.code


def test_planning_only_amd_gpu_alone_gets_no_vendor_error() -> None:
    amd = Rig(
        gpus=(
            Gpu(
                index=0,
                name="RX 7900 XTX",
                vram_total_mib=24560.0,
                vendor=VENDOR_AMD,
                bandwidth_gbps=960.0,
                pcie=PcieLink(gen=4, width=16, max_gen=4, max_width=16),
            ),
        ),
        host=Host(ram_available_mib=65536.0),
    )
    assert "mixed-vendors" not in _codes(_advise(amd, LLAMA_8B))
