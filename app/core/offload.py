"""When not every layer fits on the GPUs: the placement that loads, and the most GPU layers that fit.

:func:`app.core.placement.plan` keeps the requested placement in ``plan.devices`` when the settings
overflow a GPU (a split slider shows the overflow) and names the ``n_gpu_layers`` that fits in
``plan.fit_n_gpu_layers``. What a user runs, and what the window draws, is the placement with that
count: :func:`loading_plan`. :func:`most_gpu_layers` answers the opposite question for settings
that already keep layers on the CPU: would more of them fit now (after a smaller KV cache, say)?
"""

from __future__ import annotations

from dataclasses import replace

from app.core.memory import profile
from app.core.model_spec import ModelSpec
from app.core.placement import plan as make_plan
from app.core.placement import plan_profile
from app.core.plan import STATUS_OFFLOAD, Plan
from app.core.rig import Rig
from app.core.settings import Settings

ALL_GPU_LAYERS = -1  # llama.cpp's n_gpu_layers for every layer, the output layer included


def loading_plan(rig: Rig, spec: ModelSpec, plan: Plan) -> Plan:
    """The placement that loads: ``plan`` itself, or, when its settings overflow a GPU and fewer GPU
    layers fit, the plan with ``plan.fit_n_gpu_layers`` (layers and their KV cache in system RAM)."""
    if plan.fit_n_gpu_layers is None:
        return plan
    # plan() checked these settings already; another n_gpu_layers count breaks none of its rules.
    return plan_profile(rig, profile(spec), replace(plan.settings, n_gpu_layers=plan.fit_n_gpu_layers))


def most_gpu_layers(rig: Rig, spec: ModelSpec, settings: Settings) -> int | None:
    """The most GPU layers that fit with ``settings`` otherwise as they are: :data:`ALL_GPU_LAYERS`
    when every layer does, a count when only that many do, ``None`` when not even none fits (or the
    rig has no GPU). Raises :class:`~app.core.errors.RigfitError` for settings llama.cpp refuses."""
    if rig.n_gpus == 0:
        return None
    full = make_plan(rig, spec, replace(settings, n_gpu_layers=ALL_GPU_LAYERS))
    if full.fits:
        return ALL_GPU_LAYERS
    if full.status == STATUS_OFFLOAD and full.fit_n_gpu_layers is not None:
        return full.fit_n_gpu_layers
    return None


def keeps_layers_on_cpu(plan: Plan) -> bool:
    """Whether ``plan``'s own settings leave repeating layers or the output layer on the CPU."""
    return bool(plan.devices) and (plan.layers_on_cpu > 0 or not any(d.has_output for d in plan.devices))


__all__ = ["ALL_GPU_LAYERS", "keeps_layers_on_cpu", "loading_plan", "most_gpu_layers"]
