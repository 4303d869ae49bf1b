"""Finding local GGUF files: fake Hugging Face, LM Studio, Ollama and llama.cpp trees in tmp_path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from app.core.model_source import load_model_spec
from app.runner import discovery as D
from app.runner.discovery import (
    SOURCE_FOLDER,
    SOURCE_HF,
    SOURCE_LLAMA_CPP,
    SOURCE_LMSTUDIO,
    SOURCE_OLLAMA,
    SearchRoot,
    default_roots,
    discover_models,
    guess_quant,
)
from tests.synth_gguf import SynthShape, write_llama_gguf

GGUF_BYTES = b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 56  # the scan reads the magic only


def _gguf(path: Path, size: int = len(GGUF_BYTES)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(GGUF_BYTES + b"\x00" * max(0, size - len(GGUF_BYTES)))
    return path


def _link(link: Path, target: Path) -> Path:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))
    return link


def _by_name(models: tuple[D.FoundModel, ...]) -> dict[str, D.FoundModel]:
    return {m.name: m for m in models}


# -- Hugging Face ------------------------------------------------------------------------------------


def _hf_repo(hub: Path, repo: str) -> Path:
    return hub / ("models--" + repo.replace("/", "--"))


def test_hf_cache_lists_each_snapshot_file_once_under_its_repository(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    repo = _hf_repo(hub, "bartowski/Llama-3.2-1B-Instruct-GGUF")
    blob = _gguf(repo / "blobs" / ("a" * 64), size=1000)
    # Two revisions link the same blob: one model, not two.
    _link(repo / "snapshots" / "rev1" / "Llama-3.2-1B-Instruct-Q4_K_M.gguf", blob)
    _link(repo / "snapshots" / "rev2" / "Llama-3.2-1B-Instruct-Q4_K_M.gguf", blob)
    # A download in progress: the link points at a blob that is not there yet.
    (repo / "snapshots" / "rev2" / "Llama-3.2-1B-Instruct-Q8_0.gguf").symlink_to("../../blobs/missing")
    (hub / ".locks" / "models--x").mkdir(parents=True)

    result = discover_models([SearchRoot(str(hub), SOURCE_HF)], home=tmp_path)

    assert len(result.models) == 1
    model = result.models[0]
    assert model.name == "Llama-3.2-1B-Instruct-Q4_K_M"
    assert model.where == "bartowski/Llama-3.2-1B-Instruct-GGUF"
    assert model.source == SOURCE_HF and model.source_label == "Hugging Face cache"
    assert model.size_bytes == 1000  # the blob's size, through the symlink
    assert model.quant == "Q4_K_M"
    assert Path(model.path).parent.parent.name == "snapshots"
    assert result.searched == (SearchRoot(str(hub), SOURCE_HF),)


def test_a_split_model_shows_once_with_all_parts_counted(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "Qwen2.5-72B-Instruct-GGUF"
    for i in (1, 2, 3):
        _gguf(folder / f"qwen2.5-72b-instruct-q4_k_m-0000{i}-of-00003.gguf", size=100 * i)
    _gguf(folder / "other-00001-of-00002.gguf", size=50)  # part 2 was never downloaded

    models = _by_name(
        discover_models([SearchRoot(str(tmp_path / "models"), SOURCE_FOLDER)], home=tmp_path).models
    )

    assert set(models) == {"qwen2.5-72b-instruct-q4_k_m", "other"}
    qwen = models["qwen2.5-72b-instruct-q4_k_m"]
    assert qwen.parts == 3 and qwen.complete and qwen.size_bytes == 600
    assert qwen.path.endswith("-00001-of-00003.gguf")
    assert qwen.quant == "Q4_K_M"
    other = models["other"]
    assert other.parts == 2 and other.missing_parts == 1 and not other.complete


# -- LM Studio ---------------------------------------------------------------------------------------


def test_lm_studio_models_are_found_by_publisher_and_projectors_and_fakes_are_left_out(
    tmp_path: Path,
) -> None:
    models_dir = tmp_path / ".lmstudio" / "models"
    repo = models_dir / "lmstudio-community" / "Qwen2.5-7B-Instruct-GGUF"
    _gguf(repo / "Qwen2.5-7B-Instruct-Q8_0.gguf", size=4096)
    _gguf(repo / "mmproj-model-f16.gguf")  # a vision projector: not runnable on its own
    (repo / "README.gguf").write_text("not a model")  # a .gguf name without the magic

    result = discover_models([SearchRoot(str(models_dir), SOURCE_LMSTUDIO)], home=tmp_path)

    assert [m.name for m in result.models] == ["Qwen2.5-7B-Instruct-Q8_0"]
    found = result.models[0]
    assert found.where == "lmstudio-community/Qwen2.5-7B-Instruct-GGUF"
    assert found.source_label == "LM Studio" and found.quant == "Q8_0" and found.size_bytes == 4096


# -- Ollama ------------------------------------------------------------------------------------------


def _digest(text: str) -> str:
    return "sha256:" + (text * 64)[:64]


def _blob(models: Path, digest: str) -> Path:
    return models / "blobs" / digest.replace(":", "-")


def _manifest(models: Path, rel: str, layers: list[tuple[str, str]], config: str | None = None) -> None:
    path = models / "manifests" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "layers": [{"mediaType": media, "digest": digest, "size": 1} for media, digest in layers],
    }
    if config:
        data["config"] = {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config}
    path.write_text(json.dumps(data))


def test_ollama_blobs_are_named_from_their_manifests_and_carry_the_quant_of_the_config(
    tmp_path: Path,
) -> None:
    models = tmp_path / ".ollama" / "models"
    model_digest, projector, config, license_ = _digest("a"), _digest("b"), _digest("c"), _digest("d")
    shape = SynthShape(n_layer=1, n_embd=64, n_ff=128, n_head=2, n_head_kv=1, n_vocab=300, weight_type="Q4_0")
    (models / "blobs").mkdir(parents=True)
    write_llama_gguf(_blob(models, model_digest), shape)
    _gguf(_blob(models, projector))
    _blob(models, config).write_text(json.dumps({"model_format": "gguf", "file_type": "Q4_0"}))
    _blob(models, license_).write_text("MIT License ...")
    orphan = _gguf(_blob(models, _digest("e")), size=300)
    model_layer = ("application/vnd.ollama.image.model", model_digest)
    license_layer = ("application/vnd.ollama.image.license", license_)
    _manifest(models, "registry.ollama.ai/library/tinyllama/latest", [model_layer, license_layer], config)
    _manifest(models, "registry.ollama.ai/library/tinyllama/1.1b", [model_layer], config)
    _manifest(
        models,
        "registry.ollama.ai/library/llava/7b",
        [("application/vnd.ollama.image.projector", projector)],
    )
    (models / "manifests" / "registry.ollama.ai" / "library" / "broken").mkdir()
    (models / "manifests" / "registry.ollama.ai" / "library" / "broken" / "latest").write_text("{not json")

    result = discover_models([SearchRoot(str(models), SOURCE_OLLAMA)], home=tmp_path)

    found = _by_name(result.models)
    assert set(found) == {"tinyllama:1.1b, tinyllama:latest", f"{orphan.name[:19]}…"}
    tiny = found["tinyllama:1.1b, tinyllama:latest"]
    assert tiny.path == str(_blob(models, model_digest))
    assert tiny.quant == "Q4_0" and tiny.source == SOURCE_OLLAMA and tiny.where == "~/.ollama/models"
    assert tiny.size_bytes == _blob(models, model_digest).stat().st_size
    assert found[f"{orphan.name[:19]}…"].where.endswith("(in no manifest)")
    # The blob has no extension, yet it is a model Rigfit can read.
    spec = load_model_spec(tiny.path)
    assert spec.n_layer == 1 and spec.source == "gguf"


def test_ollama_names_other_namespaces_and_registries_like_ollama_list(tmp_path: Path) -> None:
    models = tmp_path / "ollama"
    user_model, hf_model = _digest("1"), _digest("2")
    _gguf(_blob(models, user_model))
    _gguf(_blob(models, hf_model))
    _manifest(
        models, "registry.ollama.ai/someone/phi3/mini", [("application/vnd.ollama.image.model", user_model)]
    )
    _manifest(
        models,
        "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF/Q4_K_M",
        [("application/vnd.ollama.image.model", hf_model)],
    )

    found = _by_name(discover_models([SearchRoot(str(models), SOURCE_OLLAMA)], home=tmp_path).models)

    assert set(found) == {"someone/phi3:mini", "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"}
    # No config blob: the tag still names the quant.
    assert found["hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"].quant == "Q4_K_M"


# -- llama.cpp, user folders, limits -------------------------------------------------------------------


def test_llama_cpp_cache_and_user_folders_are_searched_with_the_default_roots(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _gguf(
        home / ".cache" / "llama.cpp" / "bartowski_SmolLM2-135M-Instruct-GGUF_SmolLM2-135M-Instruct-Q4_1.gguf"
    )
    mine = _gguf(tmp_path / "disk" / "models" / "mistral-7b-instruct-v0.3.Q5_K_M.gguf")

    result = discover_models(
        default_roots(environ={}, home=home, platform="linux"), [tmp_path / "disk"], home=home
    )

    found = _by_name(result.models)
    cached = found["bartowski_SmolLM2-135M-Instruct-GGUF_SmolLM2-135M-Instruct-Q4_1"]
    assert (
        cached.source == SOURCE_LLAMA_CPP and cached.where == "~/.cache/llama.cpp" and cached.quant == "Q4_1"
    )
    own = found["mistral-7b-instruct-v0.3.Q5_K_M"]
    assert own.source == SOURCE_FOLDER and own.where == str(mine.parent) and own.quant == "Q5_K_M"
    # Caches first, the user's folders last.
    assert [m.source for m in result.models] == [SOURCE_LLAMA_CPP, SOURCE_FOLDER]


def test_default_roots_follow_the_environment_variables(tmp_path: Path) -> None:
    env = {
        "HF_HUB_CACHE": "/data/hf",
        "OLLAMA_MODELS": "/data/ollama",
        "LLAMA_CACHE": "/data/llama",
        "XDG_CACHE_HOME": "/xdg",
    }
    roots = default_roots(environ=env, home="/home/u", platform="linux")
    assert roots[0] == SearchRoot("/data/hf", SOURCE_HF)
    assert SearchRoot("/home/u/.cache/huggingface/hub", SOURCE_HF) in roots
    assert SearchRoot("/data/ollama", SOURCE_OLLAMA) in roots
    assert SearchRoot("/usr/share/ollama/.ollama/models", SOURCE_OLLAMA) in roots
    assert SearchRoot("/data/llama", SOURCE_LLAMA_CPP) in roots
    assert SearchRoot("/home/u/.lmstudio/models", SOURCE_LMSTUDIO) in roots
    assert SearchRoot("/home/u/.cache/lm-studio/models", SOURCE_LMSTUDIO) in roots

    hf_home = default_roots(environ={"HF_HOME": "/hfh"}, home="/home/u", platform="linux")
    assert hf_home[0] == SearchRoot("/hfh/hub", SOURCE_HF)
    plain = default_roots(environ={}, home="/home/u", platform="linux")
    assert SearchRoot("/home/u/.cache/llama.cpp", SOURCE_LLAMA_CPP) in plain
    assert len({r.path for r in plain}) == len(plain)  # the HF default is not listed twice


def test_default_roots_on_windows_and_macos_use_their_cache_folders() -> None:
    win = default_roots(
        environ={"LOCALAPPDATA": r"C:\Users\u\AppData\Local"}, home=r"C:\Users\u", platform="win32"
    )
    paths = {Path(r.path) for r in win}
    assert Path(r"C:\Users\u\AppData\Local") / "llama.cpp" in paths
    assert Path(r"C:\Users\u") / ".lmstudio" / "models" in paths
    assert Path(r"C:\Users\u") / ".ollama" / "models" in paths
    assert not any("usr/share" in r.path for r in win)
    mac = default_roots(environ={}, home="/Users/u", platform="darwin")
    assert SearchRoot("/Users/u/Library/Caches/llama.cpp", SOURCE_LLAMA_CPP) in mac


def test_depth_is_bounded_and_symlink_loops_end(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _gguf(root / "a" / "shallow-Q4_0.gguf")
    deep = root.joinpath(*["d"] * 8)
    _gguf(deep / "deep-Q4_0.gguf")
    (root / "a" / "loop").symlink_to(root)  # a folder that contains itself

    result = discover_models([SearchRoot(str(root), SOURCE_FOLDER)], max_depth=4, home=tmp_path)

    assert [m.name for m in result.models] == ["shallow-Q4_0"]
    assert not result.truncated


def test_unreadable_folders_are_skipped_and_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    _gguf(root / "ok" / "fine.gguf")
    locked = root / "locked"
    _gguf(locked / "hidden.gguf")
    real_scandir = os.scandir

    def scandir(path: str) -> object:
        if os.path.abspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    # Tests run as root, where chmod 000 would not lock anything out.
    monkeypatch.setattr(D.os, "scandir", scandir)
    result = discover_models([SearchRoot(str(root), SOURCE_FOLDER)], home=tmp_path)
    assert [m.name for m in result.models] == ["fine"]
    assert result.unreadable == (str(locked),)


def test_the_scan_stops_at_the_entry_limit_or_when_asked(tmp_path: Path) -> None:
    root = tmp_path / "many"
    for i in range(30):
        _gguf(root / f"d{i:02d}" / f"m{i:02d}.gguf")
    full = discover_models([SearchRoot(str(root), SOURCE_FOLDER)], home=tmp_path)
    assert len(full.models) == 30 and not full.truncated

    limited = discover_models([SearchRoot(str(root), SOURCE_FOLDER)], max_entries=10, home=tmp_path)
    assert limited.truncated and len(limited.models) < 30

    asked = discover_models([SearchRoot(str(root), SOURCE_FOLDER)], should_stop=lambda: True, home=tmp_path)
    assert asked.truncated and asked.models == ()


def test_the_scan_never_parses_a_gguf_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import app.core.gguf_reader as reader

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the scan must not parse headers")

    monkeypatch.setattr(reader, "read_gguf", forbidden)
    monkeypatch.setattr(reader, "read_gguf_file", forbidden)
    _gguf(tmp_path / "m" / "x-Q4_0.gguf")
    assert [m.name for m in discover_models([SearchRoot(str(tmp_path / "m"), SOURCE_FOLDER)]).models] == [
        "x-Q4_0"
    ]


def test_missing_roots_are_quietly_ignored_and_a_file_given_as_a_folder_is_reported(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    result = discover_models(
        [SearchRoot(str(tmp_path / "nowhere"), SOURCE_HF), SearchRoot(str(not_a_folder), SOURCE_FOLDER)]
    )
    assert result.models == () and result.searched == ()
    assert result.unreadable == (str(not_a_folder),)


@pytest.mark.parametrize(
    ("name", "quant"),
    [
        ("Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf", "Q4_K_M"),
        ("ggml-model-f16.gguf", "F16"),
        ("Qwen3-30B-A3B-UD-Q4_K_XL.gguf", "Q4_K_XL"),
        ("mistral-7b-instruct-v0.3.IQ4_XS.gguf", "IQ4_XS"),
        ("gpt-oss-20b-mxfp4.gguf", "MXFP4"),
        ("phi-4-BF16.gguf", "BF16"),
        ("model.gguf", None),
        ("superQ4_0.gguf", None),  # part of a longer word is not a quant
    ],
)
def test_quant_is_read_from_the_file_name(name: str, quant: str | None) -> None:
    assert guess_quant(name) == quant


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_fifos_and_deeply_nested_manifests_do_not_stall_or_break_the_search(tmp_path: Path) -> None:
    models = tmp_path / ".ollama" / "models"
    (models / "blobs").mkdir(parents=True)
    os.mkfifo(models / "blobs" / f"sha256-{'f' * 64}")  # a blob that is a pipe: never opened
    deep = models / "manifests" / "registry.ollama.ai" / "library" / "deep"
    deep.mkdir(parents=True)
    (deep / "latest").write_text("[" * 100000 + "]" * 100000)
    os.mkfifo(deep / "pipe")
    folder = tmp_path / "mine"
    folder.mkdir()
    os.mkfifo(folder / "pipe.gguf")
    real = _gguf(folder / "real.gguf")
    result = discover_models([SearchRoot(str(models), SOURCE_OLLAMA)], [folder], home=tmp_path)
    assert [m.path for m in result.models] == [str(real)]
