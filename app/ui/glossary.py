"""Every term the window uses, explained in plain words, for tooltips and the legend.

One place for the wording, so the Fit and Split tabs (and the Run tab) say the same thing about a
term. Keys are short ids; :func:`tip` returns the text, ready for ``setToolTip``.
"""

from __future__ import annotations

GLOSSARY: dict[str, str] = {
    "tensor_split": (
        "Tensor split: how much of the model each GPU gets, as shares that add up to 100%. "
        "llama.cpp hands out whole layers by these shares, so a small change may move no layer at all "
        "and a bigger one moves a whole layer."
    ),
    "split_mode": (
        "Split mode: how one model is spread over several GPUs.\n"
        "• Layer: each GPU holds whole layers and works on its layers in turn. Little traffic between "
        "the cards, so it works well over plain PCIe.\n"
        "• Row: every layer's big weight matrices are cut by rows across the GPUs, which all work at "
        "once. Lots of traffic between the cards.\n"
        "• Tensor: tensor parallelism; weights and KV cache of every layer are split by heads, all GPUs "
        "work on every token at once. Fastest with NVLink; needs flash attention.\n"
        "• None: the whole model on one GPU (the main GPU)."
    ),
    "mode_layer": (
        "Layer split: each GPU holds whole layers; the token passes GPU 0's layers, then GPU 1's. "
        "Light traffic between cards, so PCIe is enough. llama.cpp's default."
    ),
    "mode_row": (
        "Row split: the big weight matrices of every layer are cut by rows across all GPUs. "
        "The cards talk to each other for every layer, so slow PCIe links hurt."
    ),
    "mode_tensor": (
        "Tensor split (tensor parallelism): weights and KV cache of every layer are split by heads; all "
        "GPUs work on every token at the same time. Best with NVLink. Needs flash attention."
    ),
    "mode_none": "No split (split mode none): the whole model on the main GPU; other GPUs stay idle.",
    "kv_cache": (
        "KV cache: the model's memory of the conversation so far (keys and values for every token of "
        "the context, in every layer). It grows with the context length and lives with its layer's GPU."
    ),
    "kv_type": (
        "KV cache type: how precisely the cache is stored. f16 is full quality; q8_0 halves it with "
        "almost no loss; q4_0 quarters it with a small loss. A quantized V cache needs flash attention."
    ),
    "quantization": (
        "Quantization: how many bits each weight is stored with. Q8_0 ≈ 8.5 bits (near original "
        "quality), Q4_K_M ≈ 4.8 bits (the usual choice), Q2/IQ2 ≈ 2.5 bits (noticeably worse). Fewer "
        "bits: smaller and faster, but less accurate."
    ),
    "flash_attention": (
        "Flash attention: computes attention in small tiles instead of one big matrix. Smaller compute "
        "buffers, usually faster; needed for a quantized V cache and for tensor split."
    ),
    "pcie_width": (
        "PCIe width: how many lanes connect the card to the computer (x16, x8, x4...). An x16-long slot "
        "is often wired x4. Layer split barely notices; row and tensor split slow down on narrow links."
    ),
    "nvlink": (
        "NVLink: a bridge cable (or switch) joining GPUs directly, several times faster than PCIe. It "
        "makes tensor/row split worthwhile; layer split gains little from it."
    ),
    "gpu_layers": (
        "GPU layers (n_gpu_layers): how many layers go to the GPUs; the rest run on the CPU from system "
        'RAM, much more slowly. "all" puts every layer, the output layer included, on the GPUs.'
    ),
    "context": (
        "Context: how many tokens (pieces of words) the model keeps in view — the prompt plus the reply. "
        "8192 tokens is roughly 6000 words. Longer contexts need a bigger KV cache."
    ),
    "weights": "Weights: the model's parameters, as stored in the file, for the layers on this device.",
    "compute": (
        "Compute buffer: scratch memory llama.cpp reserves for the intermediate results of one batch."
    ),
    "overhead": (
        "Overhead: memory the GPU driver takes that llama.cpp does not see (CUDA context, cuBLAS "
        "workspace): about 0.6 GiB per GPU in use once the model is generating."
    ),
    "host": (
        "Host: what stays in system RAM: the token embeddings (always), layers not offloaded, and "
        "small buffers for the CPU's part of the work."
    ),
    "status_fits": "Fits: every layer on the GPUs with at least 10% of each GPU's VRAM to spare.",
    "status_tight": "Tight: fits, but some GPU keeps less than 10% of its VRAM free; other programs may push it over.",
    "status_offload": "Offload: fits only with some layers left on the CPU, which makes it several times slower.",
    "status_no": "Does not fit: not even with layers moved to the CPU.",
    "tok_s": (
        "Predicted generation speed in tokens per second (a token is about ¾ of a word), averaged over a "
        "conversation that fills the context. A planning figure: expect tens of percent either way."
    ),
    "max_ctx": "Largest context: the longest context at which everything still fits on the GPUs.",
    "lock": "Lock: keep this GPU's share fixed while you move the other sliders.",
    "main_gpu": "Main GPU: the GPU that holds the whole model with split mode none.",
    "best_quant": (
        "★ Best quant: the quantization of this model to pick on this rig at this context, by the "
        "Best fit preference (balanced, quality or speed). Quants that fit the GPUs come before those "
        "that need CPU offload. Point at a starred cell to see why it is the pick."
    ),
    "prefer_balanced": (
        "Balanced: the fastest quantization that is as good as the best one that fits. Q8_0 rather "
        "than F16 or BF16: about twice the speed for a perplexity change of +0.003 in llama.cpp's "
        "table; never a step down in quality for speed."
    ),
    "prefer_quality": "Quality: the highest-quality quantization that fits, whatever its speed.",
    "prefer_speed": (
        "Speed: the fastest quantization that fits and keeps 4-bit quality (Q4_0 or better); below "
        "that perplexity climbs steeply."
    ),
    "ram_bandwidth": (
        "RAM read bandwidth: how fast the CPU reads system memory. Layers running on the CPU (no GPU, "
        "or layers a GPU rig leaves in system RAM) read their weights once per token at this speed, so "
        "it sets their tokens per second. Measured once on this computer (one thread summing 512 MiB, "
        "best of 5, about a second) and kept; a planned host assumes 60 GB/s (dual-channel DDR5)."
    ),
    "status_empty": "Empty cell: nobody published this model at that quantization.",
}


def tip(key: str) -> str:
    """The plain-words explanation of ``key`` (empty when there is none)."""
    return GLOSSARY.get(key, "")


__all__ = ["GLOSSARY", "tip"]
