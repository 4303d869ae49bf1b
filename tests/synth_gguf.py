"""Synthetic llama-architecture GGUF files: real shapes, random weights, any vocabulary size.

A file written here loads, allocates and runs in llama.cpp exactly like a trained model of the same
shape (the text it generates is nonsense; memory and speed are real). It does not need the demo
model or any download, so it also works on the GPU machine.

API (other engineers reuse it: runner tests, GPU validation)::

    from tests.synth_gguf import SynthShape, write_llama_gguf, synth_model_spec

    shape = SynthShape(n_layer=4, n_embd=256, n_ff=768, n_head=8, n_head_kv=2, n_vocab=1024,
                       weight_type="Q4_0", tied=False, n_ctx_train=4096)
    written = write_llama_gguf(tmp_path / "tiny.gguf", shape)
    written.path            # the file
    written.tensors         # ((name, ggml shape, ggml type id, file offset), ...) in file order
    spec = synth_model_spec(written)   # app.core.model_spec.ModelSpec built from what was written

``SynthShape`` fields: ``n_layer``, ``n_embd``, ``n_ff``, ``n_head``, ``n_head_kv`` (GQA when below
``n_head``), ``n_vocab`` (>= 259: the tokenizer needs its 3 special and 256 byte tokens),
``head_dim`` (default ``n_embd // n_head``), ``weight_type`` (ggml type name of the 2-D weights:
``Q4_0``, ``Q8_0``, ``F16``, ``Q4_K``...), ``embd_type`` / ``output_type`` (default: ``weight_type``),
``tied`` (no ``output.weight``: llama.cpp reuses ``token_embd`` for the output layer),
``n_ctx_train`` and ``seed``.

How it is fast: each tensor's data is one random row quantized with ``gguf.quants`` and tiled over
all rows (an 8B-shaped Q4_0 file takes seconds). Types ``gguf.quants`` cannot quantize (K-quants,
IQ types) get zero blocks: still valid data of the right size. Norm weights are F32 ones.

The tokenizer is a synthetic SentencePiece ("llama") vocabulary: ``<unk>``, ``<s>``, ``</s>``, the
256 byte tokens ``<0x00>``..``<0xFF>``, then filler pieces ``▁t<i>``, with scores and token types,
so any vocabulary size from 259 up works.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType, TokenType
from gguf import quants as gguf_quants
from gguf.constants import GGML_QUANT_SIZES

from app.core.model_spec import ModelSpec, TensorInfo

N_SPECIAL_AND_BYTE_TOKENS = 3 + 256

# general.file_type written for a given weight type (informational only for llama.cpp).
_FILE_TYPE = {
    "F32": LlamaFileType.ALL_F32,
    "F16": LlamaFileType.MOSTLY_F16,
    "BF16": LlamaFileType.MOSTLY_BF16,
    "Q4_0": LlamaFileType.MOSTLY_Q4_0,
    "Q4_1": LlamaFileType.MOSTLY_Q4_1,
    "Q5_0": LlamaFileType.MOSTLY_Q5_0,
    "Q5_1": LlamaFileType.MOSTLY_Q5_1,
    "Q8_0": LlamaFileType.MOSTLY_Q8_0,
    "Q4_K": LlamaFileType.MOSTLY_Q4_K_M,
    "Q5_K": LlamaFileType.MOSTLY_Q5_K_M,
    "Q6_K": LlamaFileType.MOSTLY_Q6_K,
}


@dataclass(frozen=True)
class SynthShape:
    """The architecture of a synthetic llama model."""

    n_layer: int = 2
    n_embd: int = 256
    n_ff: int = 512
    n_head: int = 4
    n_head_kv: int | None = None  # None: same as n_head (no GQA)
    n_vocab: int = 512
    head_dim: int | None = None  # None: n_embd // n_head
    weight_type: str = "Q4_0"
    embd_type: str | None = None  # None: weight_type
    output_type: str | None = None  # None: weight_type
    tied: bool = False
    n_ctx_train: int = 4096
    seed: int = 0
    chat_template: str | None = None  # tokenizer.chat_template, when the model should have one

    @property
    def kv_heads(self) -> int:
        return self.n_head if self.n_head_kv is None else self.n_head_kv

    @property
    def head_size(self) -> int:
        return self.head_dim if self.head_dim is not None else self.n_embd // self.n_head


@dataclass(frozen=True)
class SynthModel:
    """What :func:`write_llama_gguf` wrote."""

    path: Path
    shape: SynthShape
    tensors: tuple[tuple[str, tuple[int, ...], int, int], ...]  # name, ggml shape, type id, data offset
    data_offset: int  # where the tensor data section starts in the file

    @property
    def file_size_bytes(self) -> int:
        return self.path.stat().st_size


def _qtype(name: str) -> GGMLQuantizationType:
    return GGMLQuantizationType[name.upper()]


def tensor_plan(shape: SynthShape) -> list[tuple[str, tuple[int, ...], GGMLQuantizationType]]:
    """Names, ggml shapes (``ne0`` first) and types of every tensor, in file order."""
    s = shape
    w = _qtype(s.weight_type)
    q_dim = s.n_head * s.head_size
    kv_dim = s.kv_heads * s.head_size
    f32 = GGMLQuantizationType.F32
    plan: list[tuple[str, tuple[int, ...], GGMLQuantizationType]] = [
        ("token_embd.weight", (s.n_embd, s.n_vocab), _qtype(s.embd_type or s.weight_type)),
    ]
    for i in range(s.n_layer):
        p = f"blk.{i}."
        plan += [
            (p + "attn_norm.weight", (s.n_embd,), f32),
            (p + "attn_q.weight", (s.n_embd, q_dim), w),
            (p + "attn_k.weight", (s.n_embd, kv_dim), w),
            (p + "attn_v.weight", (s.n_embd, kv_dim), w),
            (p + "attn_output.weight", (q_dim, s.n_embd), w),
            (p + "ffn_norm.weight", (s.n_embd,), f32),
            (p + "ffn_gate.weight", (s.n_embd, s.n_ff), w),
            (p + "ffn_up.weight", (s.n_embd, s.n_ff), w),
            (p + "ffn_down.weight", (s.n_ff, s.n_embd), w),
        ]
    plan.append(("output_norm.weight", (s.n_embd,), f32))
    if not s.tied:
        plan.append(("output.weight", (s.n_embd, s.n_vocab), _qtype(s.output_type or s.weight_type)))
    return plan


def _row_bytes(qtype: GGMLQuantizationType, ne0: int, rng: np.random.Generator, ones: bool) -> np.ndarray:
    """One row of ``ne0`` values in ``qtype``'s byte layout."""
    values = np.ones(ne0, dtype=np.float32) if ones else rng.standard_normal(ne0).astype(np.float32) * 0.02
    if qtype == GGMLQuantizationType.F32:
        return values.view(np.uint8)
    if qtype == GGMLQuantizationType.F16:
        return values.astype(np.float16).view(np.uint8)
    block, type_size = GGML_QUANT_SIZES[qtype]
    if ne0 % block:
        raise ValueError(f"row length {ne0} is not a multiple of {qtype.name}'s block size {block}")
    try:
        return gguf_quants.quantize(values.reshape(1, ne0), qtype).reshape(-1)
    except NotImplementedError:
        # gguf cannot quantize this type (K-quants, IQ types): zero blocks have the right size.
        return np.zeros(ne0 // block * type_size, dtype=np.uint8)


def _add_tokenizer(writer: GGUFWriter, n_vocab: int) -> None:
    if n_vocab < N_SPECIAL_AND_BYTE_TOKENS:
        raise ValueError(
            f"n_vocab must be at least {N_SPECIAL_AND_BYTE_TOKENS} (3 special + 256 byte tokens)"
        )
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"\u2581t{i}" for i in range(n_vocab - len(tokens))]
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i) for i in range(n_vocab - N_SPECIAL_AND_BYTE_TOKENS)]
    types = [int(TokenType.UNKNOWN), int(TokenType.CONTROL), int(TokenType.CONTROL)]
    types += [int(TokenType.BYTE)] * 256 + [int(TokenType.NORMAL)] * (n_vocab - N_SPECIAL_AND_BYTE_TOKENS)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)


def write_llama_gguf(path: str | Path, shape: SynthShape) -> SynthModel:
    """Write a llama-architecture GGUF of ``shape`` to ``path`` and describe what was written."""
    path = Path(path)
    s = shape
    if s.n_head % s.kv_heads:
        raise ValueError("n_head must be a multiple of n_head_kv")
    rng = np.random.default_rng(s.seed)
    plan = tensor_plan(s)

    writer = GGUFWriter(path, "llama")
    writer.add_name(f"synthetic llama {s.n_layer}x{s.n_embd}")
    writer.add_context_length(s.n_ctx_train)
    writer.add_embedding_length(s.n_embd)
    writer.add_block_count(s.n_layer)
    writer.add_feed_forward_length(s.n_ff)
    writer.add_head_count(s.n_head)
    writer.add_head_count_kv(s.kv_heads)
    writer.add_rope_dimension_count(s.head_size)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    if s.head_dim is not None:
        writer.add_key_length(s.head_size)
        writer.add_value_length(s.head_size)
    writer.add_vocab_size(s.n_vocab)
    writer.add_file_type(int(_FILE_TYPE.get(s.weight_type.upper(), LlamaFileType.GUESSED)))
    writer.add_quantization_version(2)
    _add_tokenizer(writer, s.n_vocab)
    if s.chat_template is not None:
        writer.add_chat_template(s.chat_template)

    rows: dict[tuple[GGMLQuantizationType, int, bool], np.ndarray] = {}
    for name, ne, qtype in plan:
        n_bytes = GGML_QUANT_SIZES[qtype][1] * int(np.prod(ne)) // GGML_QUANT_SIZES[qtype][0]
        # gguf's writer takes numpy order (reversed ggml order) for the shape of raw byte tensors.
        writer.add_tensor_info(name, tuple(reversed(ne)), np.dtype(np.float32), n_bytes, raw_dtype=qtype)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    assert writer.fout is not None
    fout = writer.fout[0]
    writer.write_padding(fout, fout.tell())
    data_offset = fout.tell()
    written: list[tuple[str, tuple[int, ...], int, int]] = []
    for name, ne, qtype in plan:
        ones = name.endswith("norm.weight")
        key = (qtype, ne[0], ones)
        if key not in rows:
            rows[key] = _row_bytes(qtype, ne[0], rng, ones)
        row = rows[key]
        n_rows = int(np.prod(ne[1:])) if len(ne) > 1 else 1
        written.append((name, ne, int(qtype), fout.tell() - data_offset))
        # Write in slabs so an 8B-sized tensor never needs its full size in memory twice.
        slab_rows = max(1, (64 << 20) // max(1, row.nbytes))
        slab = np.tile(row, min(slab_rows, n_rows)).tobytes()
        full, rest = divmod(n_rows, slab_rows)
        for _ in range(full):
            fout.write(slab)
        if rest:
            fout.write(slab[: rest * row.nbytes])
        writer.write_padding(fout, row.nbytes * n_rows)
    writer.close()
    return SynthModel(path=path, shape=s, tensors=tuple(written), data_offset=data_offset)


def tensor_layout(shape: SynthShape) -> tuple[tuple[str, tuple[int, ...], int, int], ...]:
    """(name, ggml shape, type id, data offset) of every tensor, as :func:`write_llama_gguf` lays them out."""
    out: list[tuple[str, tuple[int, ...], int, int]] = []
    offset = 0
    for name, ne, qtype in tensor_plan(shape):
        block, size = GGML_QUANT_SIZES[qtype]
        n_bytes = size * int(np.prod(ne)) // block
        out.append((name, ne, int(qtype), offset))
        offset += GGUFWriter.ggml_pad(n_bytes, 32)
    return tuple(out)


def shape_model_spec(shape: SynthShape, model_id: str = "synthetic") -> ModelSpec:
    """The :class:`ModelSpec` a synthetic model of ``shape`` has, without writing the file."""
    return _spec(shape, tensor_layout(shape), model_id, (), 0)


def synth_model_spec(model: SynthModel) -> ModelSpec:
    """The :class:`ModelSpec` of a written synthetic model, built from what was written (no reading)."""
    return _spec(model.shape, model.tensors, model.path.stem, (str(model.path),), model.file_size_bytes)


def _spec(
    s: SynthShape,
    layout: tuple[tuple[str, tuple[int, ...], int, int], ...],
    model_id: str,
    paths: tuple[str, ...],
    size: int,
) -> ModelSpec:
    tensors = tuple(TensorInfo(name=name, shape=ne, ggml_type=t, offset=off) for name, ne, t, off in layout)
    return ModelSpec(
        id=model_id,
        name=f"synthetic llama {s.n_layer}x{s.n_embd}",
        architecture="llama",
        n_layer=s.n_layer,
        n_embd=s.n_embd,
        n_vocab=s.n_vocab,
        n_head=(s.n_head,) * s.n_layer,
        n_head_kv=(s.kv_heads,) * s.n_layer,
        n_ff=(s.n_ff,) * s.n_layer,
        head_dim_k=s.head_size,
        head_dim_v=s.head_size,
        n_ctx_train=s.n_ctx_train,
        tensors=tensors,
        tied_embeddings=s.tied,
        file_type=s.weight_type.upper(),
        source="gguf",
        paths=paths,
        file_size_bytes=size,
    )
