"""llama.cpp's load rules in one place: each broken rule is a Problem with a stable code, and the
planner, the advice and the runner's checks all report the same code for the same rule."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.core import rules
from app.core.catalog import catalog_spec
from app.core.placement import plan
from app.core.plan_advice import plan_advice, settings_advice
from app.core.rig import VENDOR_INTEL, Rig
from app.core.settings import Settings
from app.hardware.catalog import parse_rig_expression
from app.runner.protocol import LoadSettings

NVLINK = parse_rig_expression("2x RTX 3090 nvlink")
ONE = parse_rig_expression("RTX 4090")
LLAMA_8B = catalog_spec("llama-3.1-8b", "Q4_K_M")
DEEPSEEK = catalog_spec("deepseek-v3", "Q4_K_M")
CPU_ONLY = Rig(gpus=())


@pytest.mark.parametrize(
    ("rig", "spec", "settings", "code", "concerns"),
    [
        (NVLINK, LLAMA_8B, Settings(split_mode="columns"), rules.CODE_UNKNOWN_SPLIT_MODE, ("split_mode",)),
        (NVLINK, LLAMA_8B, Settings(ctx=0), rules.CODE_CTX_TOO_SMALL, ("ctx",)),
        (NVLINK, LLAMA_8B, Settings(tensor_split=(1.0,)), rules.CODE_SPLIT_LENGTH, ("tensor_split",)),
        (NVLINK, LLAMA_8B, Settings(tensor_split=(1.0, -1.0)), rules.CODE_SPLIT_NEGATIVE, ("tensor_split",)),
        (NVLINK, LLAMA_8B, Settings(tensor_split=(0.0, 0.0)), rules.CODE_SPLIT_ALL_ZERO, ("tensor_split",)),
        (NVLINK, LLAMA_8B, Settings(main_gpu=2), rules.CODE_MAIN_GPU_MISSING, ("main_gpu",)),
        (CPU_ONLY, LLAMA_8B, Settings(main_gpu=1), rules.CODE_MAIN_GPU_MISSING, ("main_gpu",)),
        (
            NVLINK,
            LLAMA_8B,
            Settings(type_v="q8_0", flash_attn=False),
            rules.CODE_QUANT_V_NEEDS_FA,
            ("type_v", "flash_attn"),
        ),
        (
            NVLINK,
            LLAMA_8B,
            Settings(split_mode="tensor", flash_attn=False),
            rules.CODE_TENSOR_NEEDS_FA,
            ("split_mode", "flash_attn"),
        ),
        (NVLINK, DEEPSEEK, Settings(split_mode="tensor"), rules.CODE_TENSOR_ARCH, ("split_mode",)),
        (ONE, DEEPSEEK, Settings(type_k="q8_0"), rules.CODE_MLA_KV_TYPES, ("type_k", "type_v")),
        (
            ONE,
            replace(LLAMA_8B, head_dim_k=72, head_dim_v=72),
            Settings(type_k="q8_0", type_v="q8_0"),
            rules.CODE_KV_HEAD_SIZE,
            ("type_k",),
        ),
    ],
)
def test_plan_refuses_each_rule_with_its_code(
    rig: Rig, spec: object, settings: Settings, code: str, concerns: tuple[str, ...]
) -> None:
    with pytest.raises(rules.RuleError) as caught:
        plan(rig, spec, settings)  # type: ignore[arg-type]
    problem = caught.value.problem
    assert problem.code == code and problem.concerns == concerns and problem.is_error
    assert str(caught.value) == problem.message and problem.message.strip()


def test_a_row_split_plan_is_no_and_carries_the_rule_not_a_note_to_parse() -> None:
    p = plan(NVLINK, LLAMA_8B, Settings(split_mode="row"))
    assert p.status == "no"
    assert rules.codes(p.problems) == (rules.CODE_ROW_UNAVAILABLE,)
    assert [q.code for q in rules.refusals(p.problems)] == [rules.CODE_ROW_UNAVAILABLE]
    # notes stay the display text: the model's notes, then each problem's message
    assert p.notes[-1] == p.problems[-1].message and "split buffers" in p.notes[-1]
    # an Intel (SYCL) rig has split buffers: no such problem there
    intel = replace(NVLINK, gpus=tuple(replace(g, vendor=VENDOR_INTEL) for g in NVLINK.gpus))
    assert rules.CODE_ROW_UNAVAILABLE not in rules.codes(
        plan(intel, LLAMA_8B, Settings(split_mode="row")).problems
    )


def test_memory_findings_have_codes_too_and_are_not_refusals() -> None:
    big = catalog_spec("llama-3.3-70b", "Q8_0")
    p = plan(ONE, big, Settings())
    found = rules.codes(p.problems)
    assert rules.CODE_GPU_OVER_CAPACITY in found
    assert found[-1] in (rules.CODE_FITS_WITH_OFFLOAD, rules.CODE_DOES_NOT_FIT)
    assert rules.refusals(p.problems) == ()
    assert rules.codes(plan(CPU_ONLY, LLAMA_8B, Settings()).problems)[0] == rules.CODE_NO_GPU
    need = plan(ONE, LLAMA_8B, Settings(ctx=4096)).devices[0].total_mib
    snug = replace(ONE, gpus=(replace(ONE.gpus[0], vram_total_mib=need / 0.95, vram_free_mib=None),))
    tight = plan(snug, LLAMA_8B, Settings(ctx=4096))
    assert tight.status == "tight" and rules.codes(tight.problems) == (rules.CODE_VRAM_TIGHT,)
    assert tight.problems[0].gpu == 0 and "less than 10%" in tight.problems[0].message


def test_advice_reports_the_same_code_as_the_rule() -> None:
    for rig, spec, settings in (
        (NVLINK, LLAMA_8B, Settings(split_mode="row")),
        (NVLINK, LLAMA_8B, Settings(split_mode="tensor", flash_attn=False)),
        (ONE, LLAMA_8B, Settings(split_mode="tensor")),
    ):
        problems = rules.load_problems(rig, spec, settings)
        advice = settings_advice(rig, spec, settings)
        assert [a.code for a in advice] == [p.code for p in problems]
        assert all(a.level == p.severity for a, p in zip(advice, problems, strict=True))
    row_plan = plan(NVLINK, LLAMA_8B, Settings(split_mode="row"))
    codes = [a.code for a in plan_advice(NVLINK, LLAMA_8B, row_plan.settings, row_plan)]
    assert rules.CODE_ROW_UNAVAILABLE in codes and rules.CODE_DOES_NOT_FIT not in codes


def test_split_mode_problems_name_only_what_the_mode_breaks() -> None:
    assert [p.code for p in rules.split_mode_problems(NVLINK, None, Settings(), "row")] == [
        rules.CODE_ROW_UNAVAILABLE
    ]
    no_fa = Settings(flash_attn=False)
    assert [p.code for p in rules.split_mode_problems(NVLINK, LLAMA_8B, no_fa, "tensor")] == [
        rules.CODE_TENSOR_NEEDS_FA
    ]
    assert rules.split_mode_problems(NVLINK, LLAMA_8B, no_fa, "layer") == ()
    # a quantized V cache without flash attention is the KV cache's problem, not the split mode's
    bad_kv = Settings(type_v="q8_0", flash_attn=False)
    assert rules.split_mode_problems(NVLINK, LLAMA_8B, bad_kv, "layer") == ()
    assert [p.code for p in rules.split_mode_problems(CPU_ONLY, LLAMA_8B, Settings(), "layer")] == [
        rules.CODE_NO_GPU
    ]


def test_runtime_rules_follow_what_llama_cpp_sees_on_this_machine() -> None:
    assert rules.runtime_problems("layer", (1.0,), 0, 2) == ()  # shorter than the GPUs: fine there
    assert rules.codes(rules.runtime_problems("layer", (1.0, 1.0, 1.0), 0, 2)) == (rules.CODE_SPLIT_LENGTH,)
    assert rules.codes(rules.runtime_problems("tensor", None, 0, 0)) == (rules.CODE_SPLIT_NEEDS_GPU,)
    assert rules.codes(rules.runtime_problems("none", None, 3, 2)) == (rules.CODE_MAIN_GPU_MISSING,)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"tensor_split": ()}, rules.CODE_SPLIT_EMPTY),
        ({"tensor_split": (1.0, float("nan"))}, rules.CODE_SPLIT_NEGATIVE),
        ({"n_ctx": 0}, rules.CODE_CTX_TOO_SMALL),
        ({"type_k": "q5_1"}, rules.CODE_UNKNOWN_KV_TYPE),
        ({"main_gpu": -1}, rules.CODE_MAIN_GPU_MISSING),
    ],
)
def test_the_worker_checks_its_load_settings_with_the_same_rules(
    change: dict[str, object], code: str
) -> None:
    load = LoadSettings(model_path="/m.gguf", **change)  # type: ignore[arg-type]
    assert rules.first_error(load.problems()) is not None
    assert rules.codes(load.problems())[0] == code
    with pytest.raises(rules.RuleError):
        load.validate()


def test_sentence_makes_advice_text_from_a_message() -> None:
    assert rules.sentence("tensor split needs flash attention") == "Tensor split needs flash attention."
    assert rules.sentence("Already a sentence.") == "Already a sentence."


# ------------------------------------------------------------------------------------------------
# llama.cpp RPC devices
# ------------------------------------------------------------------------------------------------

REMOTE = parse_rig_expression("RTX 4090 + rpc(RTX 3090 @ 10GbE)")


def test_tensor_split_over_a_network_is_a_rule_the_plan_and_the_advice_both_report() -> None:
    settings = Settings(split_mode="tensor")
    p = plan(REMOTE, LLAMA_8B, settings)
    assert rules.CODE_RPC_TENSOR_SPLIT in rules.codes(p.problems)
    problem = next(q for q in p.problems if q.code == rules.CODE_RPC_TENSOR_SPLIT)
    assert problem.severity == rules.SEVERITY_WARNING and problem.concerns == ("split_mode",)
    assert rules.refusals(p.problems) == ()  # it loads, slowly
    advice = [a for a in plan_advice(REMOTE, LLAMA_8B, settings, p) if a.code == rules.CODE_RPC_TENSOR_SPLIT]
    assert len(advice) == 1 and advice[0].level == rules.SEVERITY_WARNING
    # the layer split over the same rig, and tensor split over local GPUs only, break no such rule
    assert rules.CODE_RPC_TENSOR_SPLIT not in rules.codes(plan(REMOTE, LLAMA_8B, Settings()).problems)
    assert rules.CODE_RPC_TENSOR_SPLIT not in rules.codes(plan(NVLINK, LLAMA_8B, settings).problems)


def test_a_planned_remote_machine_plans_but_does_not_run() -> None:
    assert plan(REMOTE, LLAMA_8B, Settings()).status in ("fits", "tight")
    (problem,) = rules.planned_remote_problems(REMOTE)
    assert problem.code == rules.CODE_RPC_PLANNED_DEVICE and problem.gpu == 1 and problem.is_error
    with pytest.raises(rules.RuleError) as caught:
        LoadSettings.for_rig(REMOTE, "/m.gguf", Settings())
    assert caught.value.problem.code == rules.CODE_RPC_PLANNED_DEVICE
    assert rules.planned_remote_problems(ONE) == ()


def test_rpc_runtime_rules_have_codes() -> None:
    assert rules.rpc_unavailable().code == rules.CODE_RPC_UNAVAILABLE
    gone = rules.rpc_unreachable("10.0.0.5:50052: nothing is listening there")
    assert gone.code == rules.CODE_RPC_UNREACHABLE and gone.message.startswith(
        "the RPC server 10.0.0.5:50052"
    )
