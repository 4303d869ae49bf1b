"""Where the layers go when not every one fits on the GPUs, and whether more would fit now."""

from __future__ import annotations

from dataclasses import replace

from app.core.catalog import catalog_spec
from app.core.offload import ALL_GPU_LAYERS, keeps_layers_on_cpu, loading_plan, most_gpu_layers
from app.core.placement import plan
from app.core.settings import Settings
from app.hardware.catalog import parse_rig_expression

MIXED = parse_rig_expression("RTX 3090 + RTX 3060@x4")
L70 = catalog_spec("llama-3.3-70b", "Q4_K_M")
L8 = catalog_spec("llama-3.1-8b", "Q4_K_M")


def test_an_overflowing_plan_loads_with_the_layers_that_fit() -> None:
    asked = plan(MIXED, L70, Settings(tensor_split=(2.0, 1.0)))
    assert asked.status == "offload" and asked.fit_n_gpu_layers is not None
    assert any(not d.fits for d in asked.devices)  # as set, a GPU overflows (what the planner keeps)
    loads = loading_plan(MIXED, L70, asked)
    assert loads.settings.n_gpu_layers == asked.fit_n_gpu_layers
    assert all(d.fits for d in loads.devices) and loads.host.fits
    # The layers that do not fit are in system RAM, with their weights and KV cache.
    assert loads.layers_on_cpu == asked.n_layer + 1 - asked.fit_n_gpu_layers
    assert loads.host.layers == loads.layers_on_cpu and loads.host.kv_mib > 0
    assert loads.host.weights_mib > asked.host.weights_mib
    assert sum(d.layers for d in loads.devices) + loads.host.layers == asked.n_layer
    assert keeps_layers_on_cpu(loads) and not keeps_layers_on_cpu(plan(MIXED, L8, Settings()))
    fitting = plan(MIXED, L8, Settings())
    assert loading_plan(MIXED, L8, fitting) is fitting


def test_the_most_gpu_layers_follow_the_kv_cache() -> None:
    f16 = Settings(tensor_split=(2.0, 1.0))
    most_f16 = most_gpu_layers(MIXED, L70, f16)
    assert most_f16 == plan(MIXED, L70, f16).fit_n_gpu_layers
    # A q4_0 cache frees room: more layers fit than the count typed for the f16 cache.
    q4 = replace(f16, type_k="q4_0", type_v="q4_0", n_gpu_layers=most_f16 or 0)
    most_q4 = most_gpu_layers(MIXED, L70, q4)
    assert most_f16 is not None and most_q4 is not None and most_q4 > most_f16
    assert most_gpu_layers(MIXED, L8, Settings(n_gpu_layers=10)) == ALL_GPU_LAYERS
    assert (
        most_gpu_layers(
            parse_rig_expression("RTX 3060"), catalog_spec("llama-3.1-405b", "Q4_K_M"), Settings()
        )
        is None
    )
    cpu_only = replace(MIXED, gpus=())
    assert most_gpu_layers(cpu_only, L8, Settings()) is None
