"""Small GGUF files for the model-input tests, written with the ``gguf`` package from a ModelSpec.

``write_spec_gguf`` writes every tensor of a spec (random F16 data, F32 norms/biases, MXFP4 bytes
for gpt-oss experts) with the metadata llama.cpp's loader needs for that architecture, so
``llama_model_quantize`` can quantize the file and ``app.core.gguf_spec`` can read it back.
``llama_quantize`` runs llama.cpp's real quantizer (CPU) and returns the written file.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter

from app.core.arch import ArchParams, build_spec, per_layer, swa_pattern
from app.core.model_spec import ModelSpec
from app.core.quant import F16, F32, MXFP4, file_type, tensor_nbytes


def small_params(arch: str, **overrides: object) -> ArchParams:
    """Tiny but rule-exercising parameters for one architecture (8 layers, 256-wide)."""
    n_layer = int(overrides.pop("n_layer", 8))  # type: ignore[call-overload]
    base: dict[str, object] = {
        "architecture": arch,
        "n_layer": n_layer,
        "n_embd": 256,
        "n_vocab": 512,
        "n_head": per_layer(4, n_layer),
        "n_head_kv": per_layer(1, n_layer),
        "n_ff": per_layer(512, n_layer),
        "head_dim_k": 64,
        "head_dim_v": 64,
        "n_ctx_train": 4096,
    }
    if arch == "qwen2":
        base["attn_bias"] = True
    if arch == "qwen3moe":
        base.update(n_expert=16, n_expert_used=4, n_ff_expert=256)
    if arch in ("gemma2", "gemma3"):
        base.update(tied_embeddings=True, sliding_window=128)
        base["swa_layers"] = swa_pattern(n_layer, 2 if arch == "gemma2" else 6)
    if arch == "gpt-oss":
        base.update(
            n_embd=320,
            n_head=per_layer(8, n_layer),
            n_head_kv=per_layer(2, n_layer),
            n_ff=per_layer(320, n_layer),
            head_dim_k=32,
            head_dim_v=32,
            attn_bias=True,
            attn_out_bias=True,
            n_expert=4,
            n_expert_used=2,
            n_ff_expert=320,
            sliding_window=128,
            swa_layers=swa_pattern(n_layer, 2),
        )
    if arch == "deepseek2":
        base.update(
            n_head_kv=per_layer(1, n_layer),
            head_dim_k=256 + 32,
            head_dim_v=256,
            n_expert=8,
            n_expert_used=2,
            n_ff_expert=256,
            n_expert_shared=1,
            n_layer_dense_lead=1,
            expert_bias=True,
            q_lora_rank=128,
            kv_lora_rank=256,
            qk_rope_head_dim=32,
            head_dim_k_mla=64 + 32,
            head_dim_v_mla=64,
        )
    base.update(overrides)
    for key in ("n_head", "n_head_kv", "n_ff"):
        if isinstance(base[key], int):
            base[key] = per_layer(base[key], n_layer)  # type: ignore[arg-type]
    return ArchParams(**base)  # type: ignore[arg-type]


def _meta(w: GGUFWriter, spec: ModelSpec, params: ArchParams | None) -> None:
    a = spec.architecture
    w.add_uint32(f"{a}.block_count", spec.n_layer)
    w.add_uint32(f"{a}.context_length", spec.n_ctx_train or 4096)
    w.add_uint32(f"{a}.embedding_length", spec.n_embd)
    if len(set(spec.n_ff)) == 1:
        w.add_uint32(f"{a}.feed_forward_length", spec.n_ff[0])
    else:
        w.add_array(f"{a}.feed_forward_length", list(spec.n_ff))
    w.add_uint32(f"{a}.attention.head_count", spec.n_head[0])
    if len(set(spec.n_head_kv)) == 1:
        w.add_uint32(f"{a}.attention.head_count_kv", spec.n_head_kv[0])
    else:
        w.add_array(f"{a}.attention.head_count_kv", list(spec.n_head_kv))
    w.add_uint32(f"{a}.attention.key_length", spec.head_dim_k)
    w.add_uint32(f"{a}.attention.value_length", spec.head_dim_v)
    w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_float32(f"{a}.rope.freq_base", 10000.0)
    if spec.n_expert:
        w.add_uint32(f"{a}.expert_count", spec.n_expert)
        w.add_uint32(f"{a}.expert_used_count", spec.n_expert_used)
    if spec.n_ff_expert:
        w.add_uint32(f"{a}.expert_feed_forward_length", spec.n_ff_expert)
    if a == "deepseek2":
        w.add_uint32(f"{a}.expert_shared_count", spec.n_expert_shared)
        w.add_uint32(f"{a}.leading_dense_block_count", spec.n_layer_dense_lead)
        w.add_uint32(f"{a}.attention.q_lora_rank", spec.q_lora_rank)
        w.add_uint32(f"{a}.attention.kv_lora_rank", spec.kv_lora_rank)
        w.add_uint32(f"{a}.attention.key_length_mla", spec.head_dim_k_mla)
        w.add_uint32(f"{a}.attention.value_length_mla", spec.head_dim_v_mla)
        w.add_uint32(f"{a}.rope.dimension_count", spec.qk_rope_head_dim)
        w.add_uint32(f"{a}.vocab_size", spec.n_vocab)
    if spec.sliding_window:
        w.add_uint32(f"{a}.attention.sliding_window", spec.sliding_window)
    # A SentencePiece vocabulary llama.cpp accepts: <unk>, <s>, </s>, the 256 byte tokens, fillers.
    n_tokens = spec.n_vocab
    if n_tokens < 259:
        raise ValueError("the test vocabulary needs at least 259 tokens")
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"\u2581t{i}" for i in range(n_tokens - len(tokens))]
    types = [2, 3, 3] + [6] * 256 + [1] * (n_tokens - 259)
    w.add_string("tokenizer.ggml.model", "llama")
    w.add_token_list(tokens)
    w.add_token_scores([-float(i) for i in range(n_tokens)])
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)


def write_spec_gguf(path: Path, spec: ModelSpec, params: ArchParams | None = None, seed: int = 0) -> Path:
    """Write ``spec`` (tensor names, shapes, types) as a GGUF file with random data."""
    rng = np.random.default_rng(seed)
    w = GGUFWriter(str(path), spec.architecture)
    w.add_name(spec.name)
    w.add_file_type(file_type(spec.file_type or "F16").ftype)
    _meta(w, spec, params)
    for t in spec.tensors:
        np_shape = tuple(reversed(t.shape))
        if t.ggml_type == F32:
            data = rng.standard_normal(np_shape, dtype=np.float32) * 0.02 + (1.0 if "norm" in t.name else 0.0)
            w.add_tensor(t.name, data.astype(np.float32))
        elif t.ggml_type == F16:
            w.add_tensor(t.name, (rng.standard_normal(np_shape, dtype=np.float32) * 0.02).astype(np.float16))
        elif t.ggml_type == MXFP4:
            raw = np.zeros(tensor_nbytes(MXFP4, t.shape), dtype=np.uint8)
            raw = raw.reshape(*np_shape[:-1], -1)
            w.add_tensor(t.name, raw, raw_dtype=GGMLQuantizationType.MXFP4)
        else:
            raw = np.zeros(tensor_nbytes(t.ggml_type, t.shape), dtype=np.uint8).reshape(*np_shape[:-1], -1)
            w.add_tensor(t.name, raw, raw_dtype=GGMLQuantizationType(t.ggml_type))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def small_spec(arch: str, **overrides: object) -> tuple[ArchParams, ModelSpec]:
    """Parameters and the F16 spec generated from them."""
    params = small_params(arch, **overrides)
    # (a name containing "phi3" would make llama.cpp look for Phi-3 special tokens)
    spec = build_spec(params, id=f"tiny-{arch}", name="tiny test model", source="config")
    return params, spec


def llama_quantize(
    src: Path, dst: Path, ftype: str, *, imatrix: bool, tensors: ModelSpec | None = None
) -> Path:
    """Quantize ``src`` to ``dst`` with llama.cpp's own quantizer (llama_model_quantize, CPU).

    With ``imatrix`` every tensor gets a flat importance matrix (ones), which is what llama-quantize
    needs for the IQ1/IQ2/IQ3_XXS mixes; its values do not change the chosen types.
    """
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = file_type(ftype).ftype
    params.nthread = 1
    params.allow_requantize = True
    keep: list[object] = []
    if imatrix:
        assert tensors is not None
        entries = (llama_cpp.llama_model_imatrix_data * (len(tensors.tensors) + 1))()
        for i, t in enumerate(tensors.tensors):
            n = t.shape[0] * (t.shape[2] if len(t.shape) > 2 else 1)
            buf = (ctypes.c_float * n)(*([1.0] * n))
            name = t.name.encode()
            keep += [buf, name]
            entries[i].name = name
            entries[i].data = ctypes.cast(buf, ctypes.POINTER(ctypes.c_float))
            entries[i].size = n
        entries[len(tensors.tensors)].name = None
        keep.append(entries)
        params.imatrix = ctypes.cast(entries, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize failed for {ftype}")
    return dst


def llama_loads(path: Path) -> bool:
    """True when llama.cpp (CPU) loads the file: every tensor name and shape is what it expects."""
    import llama_cpp

    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        return False
    llama_cpp.llama_model_free(model)
    return True
