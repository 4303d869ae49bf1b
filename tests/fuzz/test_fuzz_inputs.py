"""Fuzzing what users type and save: rig files, the window's remembered settings, command lines.

In-process: a rig file is a rig or one RigfitError; remembered settings always read (a bad field
keeps its default); a command line exits 0 or 2 with one line, and what ``run`` would send to the
worker is checked before it gets there.
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.cli import build_parser, main
from app.core import limits
from app.core.errors import RigfitError
from app.core.settings import Settings
from app.hardware.rigfile import rig_from_toml, rig_to_toml
from tests.fuzz.conftest import scaled
from tests.fuzz.harness import CASES, exercise_spec, measured
from tests.fuzz.strategies import EDGE_FLOATS, EDGE_INTS, json_values

toml_scalars = st.one_of(
    st.sampled_from([str(v) for v in EDGE_INTS] + ["nan", "inf", "-inf", "1e308", "0.5", "true", '""']),
    st.integers(-(2**70), 2**70).map(str),
    st.text(max_size=12).map(lambda s: json.dumps(s)),
    st.sampled_from(["[]", "[1, 2]", "[[0, 1]]", '["avx2"]', "{}", "[" * 50 + "]" * 50]),
)
GPU_KEYS = (
    "catalog", "name", "slot_width", "slot_gen", "vram_free_mib", "vram_total_mib", "overhead_mib",
    "power_limit_w", "vendor", "bandwidth_gbps", "pcie_gen", "pcie_width", "tdp_w", "fp16_tflops",
    "architecture", "fan_curve",
)  # fmt: skip
HOST_KEYS = ("cpu_name", "cores_physical", "cores_logical", "ram_total_mib", "ram_available_mib", "cpu_flags")

# A numpy warning (a division by zero, an overflow in a cast) is a wrong result on its way: fail on it.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


@st.composite
def rig_files(draw: st.DrawFn) -> str:
    """A rig file: mostly a real one (catalog GPUs, sane overrides), with hostile values now and then."""
    hostile = draw(st.integers(0, 2)) == 0
    sane = {"slot_width": ["16", "8", "4"], "vram_free_mib": ["1024.0", "8000.0"], "slot_gen": ["3", "4"]}
    lines = [f"format = {draw(st.sampled_from(['1', '2', '1.0', 'nan']) if hostile else st.just('1'))}"]
    if hostile and draw(st.booleans()):
        lines.append(
            f"nvlink = {draw(st.sampled_from(['[[0, 1]]', '[[0, 99]]', '[[-1]]', '[]', '[[0, 0]]']))}"
        )
    if hostile and draw(st.booleans()):
        lines.append("[host]")
        for key in draw(st.lists(st.sampled_from(HOST_KEYS), max_size=3, unique=True)):
            lines.append(f"{key} = {draw(toml_scalars)}")
    for _ in range(draw(st.integers(0 if hostile else 1, 4))):
        lines.append("[[gpu]]")
        if draw(st.booleans()):
            ids = ["rtx-3090", "rtx-4090", "rtx-3060"] + (["rtx-6090", "h100-sxm"] if hostile else [])
            lines.append(f'catalog = "{draw(st.sampled_from(ids))}"')
        else:
            total = draw(toml_scalars) if hostile else draw(st.sampled_from(["24576.0", "8192"]))
            lines.append(f'name = "custom"\nvram_total_mib = {total}')
        keys = GPU_KEYS if hostile else tuple(sane)
        for key in draw(st.lists(st.sampled_from(keys), max_size=2, unique=True)):
            lines.append(f"{key} = {draw(toml_scalars) if hostile else draw(st.sampled_from(sane[key]))}")
    text = "\n".join(lines) + "\n"
    if hostile and draw(st.integers(0, 4)) == 0:  # now and then, a cut or a stray byte
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.sampled_from(["", "\x00", "[", '"', "\ufffd"]))
    return text


@scaled(30)
@given(rig_files())
@measured
def test_fuzzed_rig_files_load_or_are_one_error(text: str) -> None:
    try:
        rig = rig_from_toml(text, "fuzz.toml")
    except RigfitError as exc:
        assert str(exc).strip()
        CASES["rig-file:refused"] += 1
        return
    for gpu in rig.gpus:
        assert math.isfinite(gpu.vram_total_mib) and gpu.vram_total_mib >= 0
        if gpu.vram_free_mib is not None:
            assert 0 <= gpu.vram_free_mib <= gpu.vram_total_mib
    # What loads saves and loads back the same.
    again = rig_from_toml(rig_to_toml(rig), "again.toml")
    assert [g.name for g in again.gpus] == [g.name for g in rig.gpus]
    from app.core.catalog import catalog_spec

    CASES[
        f"rig-file:{exercise_spec(catalog_spec('llama-3.2-1b', 'Q4_K_M'), rig, Settings(ctx=4096), with_table=False)}"
    ] += 1


@scaled(30)
@given(st.one_of(json_values.map(json.dumps), st.dictionaries(
    st.sampled_from(["ctx", "split_mode", "tensor_split", "main_gpu", "n_gpu_layers", "flash_attn", "type_k", "type_v"]),
    json_values, max_size=8).map(json.dumps), st.text(max_size=30)))  # fmt: skip
@measured
def test_remembered_settings_always_read(text: str) -> None:
    pytest.importorskip("PySide6")
    from app.ui.settings_store import _read_settings

    settings, unread = _read_settings(text)
    if settings is not None:
        limits.check_settings(settings)  # whatever is read is within the ranges
        assert set(unread) <= {
            "ctx",
            "split_mode",
            "tensor_split",
            "main_gpu",
            "n_gpu_layers",
            "flash_attn",
            "type_k",
            "type_v",
        }
    CASES[f"settings-store:{'read' if settings is not None else 'not a settings object'}"] += 1


number_text = st.one_of(
    st.integers(-2, 70000).map(str),  # mostly numbers a user would type
    st.integers(-2, 70000).map(str),
    st.sampled_from([str(v) for v in EDGE_INTS] + [repr(f) for f in EDGE_FLOATS] + ["", " ", "1_000", "0x10", "١٢", "1e3"]),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True).map(repr),
    st.text(max_size=8),
)  # fmt: skip
split_text = st.one_of(
    st.lists(number_text, min_size=1, max_size=5).map(",".join),
    st.sampled_from(["even", "vram", "max-ctx", ""]),
)


@scaled(30)
@given(
    options=st.dictionaries(st.sampled_from(["--ctx", "--ngl", "--main-gpu", "--ubatch", "--split"]), number_text, max_size=4),
    rig=st.sampled_from(["RTX 3090", "2x RTX 3090", "RTX 4090 + RTX 3060@x4"]),
)  # fmt: skip
@measured
def test_fuzzed_plan_command_lines_exit_0_or_2_in_one_line(options: dict[str, str], rig: str) -> None:
    args = ["plan", "--model", "llama-3.2-1b", "--quant", "Q4_K_M", "--rig", rig, "--json"]
    for flag, value in options.items():
        args.append(f"{flag}={value}")
    out_buf, err_buf = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out_buf), contextlib.redirect_stderr(err_buf):
        code = main(args)
    out, err = out_buf.getvalue(), err_buf.getvalue()
    assert code in (0, 2), (code, err)
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("rigfit: "), err
        CASES["cli-plan:refused"] += 1
        return
    data = json.loads(out)
    for d in data["devices"]:
        for key in ("weights_mib", "kv_mib", "compute_mib", "total_mib"):
            assert math.isfinite(d[key]) and d[key] >= 0
    assert all(0 <= r <= 1 for r in data["tensor_split"])
    CASES["cli-plan:planned"] += 1


@scaled(60)
@given(
    st.dictionaries(
        st.sampled_from(["--ctx", "--ngl", "--main-gpu", "--threads", "--batch", "--ubatch", "--max-tokens",
                         "--temperature", "--top-p", "--seed", "--split"]),
        number_text, max_size=5),
    st.text(max_size=40),
)  # fmt: skip
@measured
def test_what_run_sends_the_worker_is_always_in_range(options: dict[str, str], prompt: str) -> None:
    """``rigfit run`` up to the moment the worker gets the request: parse, build, validate."""
    from app.commands.run import settings_from_args
    from app.runner import protocol as P
    from app.runner.options import parse_split

    parser, _ = build_parser()
    argv = ["run", "--model", "demo", "--prompt", prompt] + [f"{k}={v}" for k, v in options.items()]
    try:
        args = parser.parse_args(argv)
        split = parse_split(args.split) if args.split is not None else None
        settings = settings_from_args(args, args.split_mode, split)
        load = P.LoadSettings.from_settings("/m.gguf", settings, n_threads=args.threads, seed=args.seed)
        load.validate()
        chat = P.ChatRequest(
            messages=(P.ChatMessage("user", args.prompt),),
            temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens, seed=args.seed,
        )  # fmt: skip
        chat.validate()
    except SystemExit as exc:
        assert exc.code == 2
        CASES["cli-run:refused by argparse"] += 1
        return
    except RigfitError:
        CASES["cli-run:refused"] += 1
        return
    # What passed fits llama.cpp's C types: int32 / uint32 fields, float32 ratios that add up.
    assert 1 <= load.n_ctx <= limits.MAX_CTX and 1 <= load.n_batch <= limits.MAX_BATCH
    assert -1 <= load.n_gpu_layers < 2**31 and 0 <= load.main_gpu < limits.MAX_GPUS
    assert load.n_threads is None or 1 <= load.n_threads <= limits.MAX_THREADS
    assert chat.seed is None or 0 <= chat.seed < 2**32
    if load.tensor_split is not None:
        import numpy as np

        assert math.isfinite(float(np.float32(sum(load.tensor_split))))
    P.encode({"type": "load", "settings": load.to_message()})
    P.encode({"type": "chat", **chat.to_message()})
    CASES["cli-run:accepted"] += 1
