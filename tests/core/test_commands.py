"""Command export: exact argv per tool, the -ts round trip, quoting, and what each tool cannot do."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from app.core.catalog import catalog_spec
from app.core.commands import (
    export_commands,
    llama_server_command,
    ollama_command,
    vllm_command,
    with_article,
)
from app.core.model_source import load_model_spec
from app.core.placement import plan
from app.core.settings import Settings
from app.core.split import slot_counts
from app.hardware.catalog import parse_rig_expression
from tests.synth_gguf import SynthShape, write_llama_gguf

MIXED = parse_rig_expression("RTX 3090 + RTX 3060")
NVLINK = parse_rig_expression("2x RTX 3090 nvlink")
PAIR = parse_rig_expression("2x RTX 3090")
ONE = parse_rig_expression("RTX 4090")
L70_IQ2 = catalog_spec("llama-3.3-70b", "IQ2_XS")
L70_Q4 = catalog_spec("llama-3.3-70b", "Q4_K_M")
Q32 = catalog_spec("qwen2.5-32b", "Q4_K_M")
GEMMA = catalog_spec("gemma-3-27b", "Q4_K_M")


def _cmds(rig, spec, settings=None):  # type: ignore[no-untyped-def]
    s = settings or Settings()
    return export_commands(rig, spec, plan(rig, spec, s))


def test_llama_server_and_bench_for_a_mixed_pair() -> None:
    c = _cmds(MIXED, L70_IQ2)
    assert c["llama-server"].argv == (
        "llama-server",
        "-m",
        "llama-3.3-70b-IQ2_XS.gguf",
        "-c",
        "8192",
        "-ngl",
        "81",
        "-sm",
        "layer",
        "-ts",
        "54,27",
        "-fa",
        "on",
        "-np",
        "1",
    )
    assert c["llama-bench"].argv == (
        "llama-bench",
        "-m",
        "llama-3.3-70b-IQ2_XS.gguf",
        "-ngl",
        "81",
        "-sm",
        "layer",
        "-ts",
        "54/27",
        "-fa",
        "1",
        "-p",
        "512",
        "-n",
        "128",
    )
    assert any("no -c" in n for n in c["llama-bench"].notes)


def test_the_exported_tensor_split_reproduces_the_planned_layers() -> None:
    p = plan(MIXED, L70_IQ2, Settings())  # default split: by free VRAM
    argv = llama_server_command(MIXED, L70_IQ2, p).argv
    ts = tuple(float(x) for x in argv[argv.index("-ts") + 1].split(","))
    again = plan(MIXED, L70_IQ2, Settings(tensor_split=ts))
    assert [d.layers for d in again.devices] == [d.layers for d in p.devices]
    assert slot_counts(L70_IQ2.n_layer, ts) == tuple(int(x) for x in ts)


def test_offload_exports_the_fitting_layer_count_and_kv_types() -> None:
    c = _cmds(ONE, L70_Q4, Settings(type_k="q8_0", type_v="q8_0"))
    assert c["llama-server"].argv == (
        "llama-server",
        "-m",
        "llama-3.3-70b-Q4_K_M.gguf",
        "-c",
        "8192",
        "-ngl",
        "45",
        "-fa",
        "on",
        "-ctk",
        "q8_0",
        "-ctv",
        "q8_0",
        "-np",
        "1",
    )
    assert dict(c["ollama"].env) == {"OLLAMA_FLASH_ATTENTION": "1", "OLLAMA_KV_CACHE_TYPE": "q8_0"}
    assert c["exllamav2"].refused and "CPU" in c["exllamav2"].refused
    assert any("no vLLM equivalent" in n for n in c["vllm"].notes)


def test_split_mode_none_batches_and_the_sliding_window_cache() -> None:
    s = Settings(split_mode="none", main_gpu=1, n_batch=1024, n_ubatch=1024)
    c = _cmds(PAIR, GEMMA, s)
    assert c["llama-server"].argv == (
        "llama-server",
        "-m",
        "gemma-3-27b-Q4_K_M.gguf",
        "-c",
        "8192",
        "-ngl",
        "63",
        "-sm",
        "none",
        "-mg",
        "1",
        "-fa",
        "on",
        "-b",
        "1024",
        "-ub",
        "1024",
        "-np",
        "1",
        "--swa-full",
    )
    assert dict(c["ollama"].env) == {"CUDA_VISIBLE_DEVICES": "1", "OLLAMA_FLASH_ATTENTION": "1"}
    assert dict(c["vllm"].env) == {"CUDA_VISIBLE_DEVICES": "1"}
    assert c["exllamav2"].argv[c["exllamav2"].argv.index("-gs") + 1] == "0,15.5"


def test_tensor_split_over_nvlink_for_llama_and_vllm() -> None:
    c = _cmds(NVLINK, Q32, Settings(split_mode="tensor"))
    assert c["llama-server"].argv[c["llama-server"].argv.index("-sm") + 1] == "tensor"
    assert "-ts" not in c["llama-server"].argv  # the meta device splits evenly without one
    assert c["vllm"].argv == (
        "vllm",
        "serve",
        "Qwen/Qwen2.5-32B-Instruct",
        "--tensor-parallel-size",
        "2",
        "--max-model-len",
        "8192",
    )
    assert c["vllm"].refused is None


def test_vllm_refuses_tensor_parallel_for_unequal_vram_and_pipelines_instead() -> None:
    cmd = vllm_command(MIXED, L70_IQ2, plan(MIXED, L70_IQ2, Settings()))
    assert cmd.refused is not None and "unequal VRAM" in cmd.refused
    assert cmd.argv == (
        "vllm",
        "serve",
        "meta-llama/Llama-3.3-70B-Instruct",
        "--pipeline-parallel-size",
        "2",
        "--max-model-len",
        "8192",
    )
    assert dict(cmd.env) == {"VLLM_PP_LAYER_PARTITION": "54,26"}
    assert cmd.text.startswith("# vLLM tensor parallelism refused")
    assert any("BF16" in n for n in cmd.notes)


def test_ollama_gets_a_modelfile_and_says_what_it_cannot_express() -> None:
    cmd = ollama_command(MIXED, L70_IQ2, plan(MIXED, L70_IQ2, Settings()))
    assert cmd.argv == ("ollama", "serve")
    assert dict(cmd.env) == {"OLLAMA_SCHED_SPREAD": "1", "OLLAMA_FLASH_ATTENTION": "1"}
    assert cmd.files == (
        ("Modelfile", "FROM llama-3.3-70b-IQ2_XS.gguf\nPARAMETER num_ctx 8192\nPARAMETER num_gpu 81\n"),
    )
    assert cmd.steps == (
        ("ollama", "create", "llama-3.3-70b-iq2-xs", "-f", "Modelfile"),
        ("ollama", "run", "llama-3.3-70b-iq2-xs"),
    )
    assert any("cannot take a tensor split" in n for n in cmd.notes)
    assert "cat > Modelfile <<'EOF'" in cmd.text and "\nEOF\n" in cmd.text


def test_a_gguf_path_with_spaces_is_quoted(tmp_path: Path) -> None:
    folder = tmp_path / "my models"
    folder.mkdir()
    written = write_llama_gguf(
        folder / "tiny model.gguf",
        SynthShape(n_layer=2, n_embd=256, n_ff=512, n_head=4, n_vocab=512, weight_type="Q8_0"),
    )
    spec = load_model_spec(str(written.path))
    c = _cmds(ONE, spec)
    assert c["llama-server"].argv[2] == str(written.path)
    assert f"-m '{written.path}'" in c["llama-server"].command_line
    assert "stands for" not in c["llama-server"].text  # a real file needs no placeholder note
    assert "--tokenizer" in c["vllm"].argv
    # The placeholder reads as written: no apostrophe for the shell quoting to garble.
    assert "--tokenizer '<Hugging Face repository of the base model>'" in c["vllm"].command_line
    assert "'\"'\"'" not in c["vllm"].text


def test_placeholders_read_as_english() -> None:
    iq3 = _cmds(PAIR, catalog_spec("llama-3.3-70b", "IQ3_M"))["llama-server"].text
    assert "stands for an IQ3_M GGUF of Llama 3.3 70B Instruct" in iq3
    assert "stands for a Q4_K_M GGUF" in _cmds(PAIR, L70_Q4)["llama-server"].text
    assert [with_article(w) for w in ("IQ2_XS", "F16", "BF16", "Q8_0", "MXFP4", "TQ1_0", "")] == [
        "an IQ2_XS", "an F16", "a BF16", "a Q8_0", "an MXFP4", "a TQ1_0", "a",
    ]  # fmt: skip


def test_a_placeholder_says_how_to_get_the_file() -> None:
    from dataclasses import replace

    from app.core.catalog import find_entry

    repo = find_entry("llama-3.3-70b").gguf_repos[0].repo
    iq3 = _cmds(PAIR, catalog_spec("llama-3.3-70b", "IQ3_M"))["llama-server"].text
    assert f"'rigfit pull {repo} --quant IQ3_M'" in iq3 and "'rigfit search llama-3.3-70b'" in iq3
    # Planned from its header on the hub: the file is known, so the note names it exactly.
    remote = replace(
        L70_Q4, remote="hf:someone/Llama-3.3-70B-GGUF/L70-Q4_K_M.gguf", paths=("/hf/cache/L70-Q4_K_M.gguf",)
    )
    text = _cmds(PAIR, remote)["llama-server"].text
    assert "'rigfit pull hf:someone/Llama-3.3-70B-GGUF/L70-Q4_K_M.gguf' downloads it" in text
    assert "stands for" not in text


def test_row_split_and_cpu_only_plans_say_what_happens() -> None:
    row = _cmds(NVLINK, Q32, Settings(split_mode="row"))
    assert any("does not load" in n for n in row["llama-server"].notes)
    assert row["llama-server"].argv[row["llama-server"].argv.index("-mg") + 1] == "0"
    from app.core.rig import Host, Rig

    cpu = Rig(gpus=(), host=Host(ram_available_mib=65536.0))
    small = catalog_spec("llama-3.2-1b", "Q4_K_M")
    c = _cmds(cpu, small)
    assert c["llama-server"].argv[c["llama-server"].argv.index("-ngl") + 1] == "0"
    assert "-sm" not in c["llama-server"].argv
    assert c["exllamav2"].refused and "GPU" in c["exllamav2"].refused


def test_every_tool_is_exported_and_pure() -> None:
    p = plan(MIXED, L70_IQ2, Settings())
    first = export_commands(MIXED, L70_IQ2, p)
    second = export_commands(MIXED, L70_IQ2, replace(p))
    assert list(first) == ["llama-server", "llama-bench", "ollama", "vllm", "exllamav2"]
    assert first == second
