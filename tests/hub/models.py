"""GGUF files the fake hub serves: a 128k-token vocabulary, a model split in three, the demo model.

* :func:`write_vocab128k` writes a llama-architecture GGUF with a Llama-3-sized BPE tokenizer
  (128256 tokens, 280000 merges, the sizes Llama 3's GGUF holds), whose header is about 7 MB, the
  size that makes planning a real model from the hub costly. Its tensor data is sparse (zeros that
  take no disk space) unless ``sparse=False``.
* :func:`write_split3` writes a tiny llama model as three parts with ``gguf``'s split writer, real
  data, loadable by llama.cpp.
* :func:`populate` puts them, and the demo model, in a :class:`~tests.hub.fake_hub.FakeHub`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter

from tests.hub.fake_hub import FakeHub
from tests.synth_gguf import SynthShape, _add_tokenizer, tensor_plan

VOCAB128K_REPO = "rigfit-test/Vocab128k-Instruct-GGUF"
VOCAB128K_FILE = "Vocab128k-Instruct-Q8_0.gguf"
SPLIT_REPO = "rigfit-test/Split3-GGUF"
SPLIT_PREFIX = "Split3-Q8_0"
DEMO_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
DEMO_FILE = "smollm2-135m-instruct-q4_1.gguf"
N_VOCAB_128K = 128256
N_MERGES_128K = 280000


def write_vocab128k(path: Path, *, sparse: bool = True) -> Path:
    """A 2-layer llama model with a Llama-3-sized BPE vocabulary (128256 tokens, 280000 merges)."""
    n_embd, n_layer, n_ff = 64, 2, 128
    w = GGUFWriter(str(path), "llama")
    w.add_name("Vocab128k Instruct")
    w.add_context_length(8192)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_rope_dimension_count(16)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(N_VOCAB_128K)
    w.add_file_type(7)  # MOSTLY_Q8_0
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    # Byte-level BPE spellings of Llama 3's lengths: about 7 bytes a token, 10 a merge.
    w.add_token_list([f"\u0120t{i:x}" for i in range(N_VOCAB_128K)])
    w.add_token_types([1] * N_VOCAB_128K)
    w.add_token_merges([f"\u0120t{i % 4096:x} {i // 4096:x}" for i in range(N_MERGES_128K)])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    q8 = GGMLQuantizationType.Q8_0
    f32 = GGMLQuantizationType.F32
    infos: list[tuple[str, tuple[int, ...], GGMLQuantizationType]] = [
        ("token_embd.weight", (n_embd, N_VOCAB_128K), q8)
    ]
    for i in range(n_layer):
        infos += [
            (f"blk.{i}.attn_norm.weight", (n_embd,), f32),
            (f"blk.{i}.attn_q.weight", (n_embd, n_embd), q8),
            (f"blk.{i}.attn_k.weight", (n_embd, n_embd // 2), q8),
            (f"blk.{i}.attn_v.weight", (n_embd, n_embd // 2), q8),
            (f"blk.{i}.attn_output.weight", (n_embd, n_embd), q8),
            (f"blk.{i}.ffn_norm.weight", (n_embd,), f32),
            (f"blk.{i}.ffn_gate.weight", (n_embd, n_ff), q8),
            (f"blk.{i}.ffn_up.weight", (n_embd, n_ff), q8),
            (f"blk.{i}.ffn_down.weight", (n_ff, n_embd), q8),
        ]
    infos += [("output_norm.weight", (n_embd,), f32), ("output.weight", (n_embd, N_VOCAB_128K), q8)]
    total = 0
    for name, ne, qtype in infos:
        n_bytes = int(np.prod(ne)) // 32 * 34 if qtype == q8 else int(np.prod(ne)) * 4
        w.add_tensor_info(name, tuple(reversed(ne)), np.dtype(np.float32), n_bytes, raw_dtype=qtype)
        total += GGUFWriter.ggml_pad(n_bytes, 32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    assert w.fout is not None
    fout = w.fout[0]
    w.write_padding(fout, fout.tell())
    data_offset = fout.tell()
    w.close()
    if sparse:
        with path.open("r+b") as f:
            f.truncate(data_offset + total)
    else:
        with path.open("ab") as f:
            rng = np.random.default_rng(0)
            left = total
            while left:
                n = min(left, 4 << 20)
                f.write(rng.integers(0, 255, n, dtype=np.uint8).tobytes())
                left -= n
    return path


def write_split3(folder: Path, prefix: str = SPLIT_PREFIX) -> list[Path]:
    """A 6-layer llama model (F32 norms, Q8_0 weights) in three parts: ``PREFIX-0000N-of-00003.gguf``."""
    shape = SynthShape(
        n_layer=6, n_embd=128, n_ff=256, n_head=4, n_head_kv=2, n_vocab=512, weight_type="Q8_0"
    )
    plan = tensor_plan(shape)
    per_part = -(-len(plan) // 3)
    w = GGUFWriter(str(folder / f"{prefix}.gguf"), "llama", split_max_tensors=per_part)
    w.add_name("Split3 test model")
    w.add_context_length(shape.n_ctx_train)
    w.add_embedding_length(shape.n_embd)
    w.add_block_count(shape.n_layer)
    w.add_feed_forward_length(shape.n_ff)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.kv_heads)
    w.add_rope_dimension_count(shape.head_size)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(7)
    _add_tokenizer(w, shape.n_vocab)
    rng = np.random.default_rng(1)
    from gguf import quants

    for name, ne, qtype in plan:
        values = rng.standard_normal(tuple(reversed(ne))).astype(np.float32) * 0.02
        if qtype == GGMLQuantizationType.F32:
            w.add_tensor(name, np.ones(tuple(reversed(ne)), dtype=np.float32))
        else:
            w.add_tensor(name, quants.quantize(values, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return sorted(folder.glob(f"{prefix}-*-of-00003.gguf"))


def populate(hub: FakeHub, folder: Path, *, demo: Path | None = None) -> None:
    """Write the synthetic models into ``folder`` and host them (and the demo model) on ``hub``."""
    folder.mkdir(parents=True, exist_ok=True)
    big = folder / VOCAB128K_FILE
    if not big.exists():
        write_vocab128k(big)
    hub.add_repo(VOCAB128K_REPO, {VOCAB128K_FILE: big}, downloads=50)
    split_dir = folder / "split3"
    split_dir.mkdir(exist_ok=True)
    parts = sorted(split_dir.glob(f"{SPLIT_PREFIX}-*-of-00003.gguf")) or write_split3(split_dir)
    hub.add_repo(SPLIT_REPO, {f"{SPLIT_PREFIX}/{p.name}": p for p in parts}, downloads=10)
    if demo is None:
        from app.core.demo import demo_model_path

        demo = demo_model_path()
    if demo is not None:
        hub.add_repo(DEMO_REPO, {DEMO_FILE: Path(demo)}, downloads=100)
