"""Parsing llama.cpp's buffer, layer and error lines (recorded from real runs)."""

from __future__ import annotations

from app.runner.logparse import (
    BufferSize,
    error_reason,
    gpu_index,
    is_host_device,
    parse_buffer_line,
    parse_load_log,
)

# From the demo model on the CPU build (llama-cpp-python 0.3.36).
CPU_LOAD = [
    "load_tensors: loading model tensors, this can take a while... (load_mode = mmap)",
    "load_tensors:   CPU_Mapped model buffer size =    92.10 MiB",
    "llama_context:        CPU  output buffer size =     0.19 MiB",
    "llama_kv_cache:        CPU KV buffer size =    45.00 MiB",
    "llama_kv_cache: size =   45.00 MiB (  2048 cells,  30 layers,  1/1 seqs), K (f16):   22.50 MiB, V (f16):   22.50 MiB",
    "sched_reserve:        CPU compute buffer size =   102.51 MiB",
]

# The 8B-shaped run on the H200 (DEVICE.md), in llama.cpp's format.
GPU_LOAD = [
    "load_tensors: offloading output layer to GPU",
    "load_tensors: offloading 31 repeating layers to GPU",
    "load_tensors: offloaded 33/33 layers to GPU",
    "load_tensors:   CPU_Mapped model buffer size =   108.00 MiB",
    "load_tensors:        CUDA0 model buffer size =  3853.02 MiB",
    "llama_context:  CUDA_Host  output buffer size =     0.19 MiB",
    "llama_kv_cache:      CUDA0 KV buffer size =  1024.00 MiB",
    "sched_reserve:      CUDA0 compute buffer size =   116.01 MiB",
    "sched_reserve:  CUDA_Host compute buffer size =    24.01 MiB",
]


def test_buffer_line_gives_device_kind_and_size() -> None:
    assert parse_buffer_line("load_tensors:   CPU_Mapped model buffer size =    92.10 MiB") == BufferSize(
        "CPU_Mapped", "model", 92.10
    )
    assert parse_buffer_line("llama_context:        CPU  output buffer size =     0.19 MiB") == BufferSize(
        "CPU", "output", 0.19
    )
    assert parse_buffer_line("llama_kv_cache: size =   45.00 MiB (  2048 cells, ...)") is None
    assert parse_buffer_line("sched_reserve: graph: nodes = 936, splits = 1") is None


def test_cpu_load_log_gives_every_buffer_once() -> None:
    report = parse_load_log(CPU_LOAD)
    assert report.buffers == (
        BufferSize("CPU_Mapped", "model", 92.10),
        BufferSize("CPU", "output", 0.19),
        BufferSize("CPU", "KV", 45.00),
        BufferSize("CPU", "compute", 102.51),
    )
    assert report.offloaded_layers is None
    assert report.total_mib("CPU") == 45.00 + 102.51 + 0.19


def test_gpu_load_log_gives_offload_counts_and_per_device_buffers() -> None:
    report = parse_load_log(GPU_LOAD)
    assert report.offloaded_layers == 33 and report.offloadable_layers == 33
    assert BufferSize("CUDA0", "model", 3853.02) in report.buffers
    assert BufferSize("CUDA_Host", "compute", 24.01) in report.buffers
    assert round(report.total_mib("CUDA0"), 2) == round(3853.02 + 1024.00 + 116.01, 2)


def test_model_and_kv_buffers_add_up_but_a_re_reserved_compute_buffer_replaces() -> None:
    lines = [
        "load_tensors:   CPU_Mapped model buffer size =  1000.00 MiB",  # split GGUF: one mapping per file
        "load_tensors:   CPU_Mapped model buffer size =   500.00 MiB",
        "llama_kv_cache:      CUDA0 KV buffer size =    64.00 MiB",  # SWA model: two caches
        "llama_kv_cache:      CUDA0 KV buffer size =    16.00 MiB",
        "sched_reserve:      CUDA0 compute buffer size =   300.00 MiB",
        "sched_reserve:      CUDA0 compute buffer size =   280.00 MiB",
    ]
    report = parse_load_log(lines)
    assert report.buffers == (
        BufferSize("CPU_Mapped", "model", 1500.0),
        BufferSize("CUDA0", "KV", 80.0),
        BufferSize("CUDA0", "compute", 280.0),
    )


def test_layer_assignment_lines_count_layers_per_device() -> None:
    lines = [
        f"load_tensors: layer {i:3d} assigned to device CUDA{0 if i < 20 else 1}, is_swa = 0"
        for i in range(33)
    ]
    report = parse_load_log(lines)
    assert report.layers_per_device() == {"CUDA0": 20, "CUDA1": 13}
    assert report.layer_devices[-1] == "CUDA1"  # the output layer is the last slot


def test_host_and_gpu_device_names() -> None:
    for host in ("CPU", "CPU_Mapped", "CPU_REPACK", "CUDA_Host"):
        assert is_host_device(host) and gpu_index(host) is None
    assert gpu_index("CUDA0") == 0 and gpu_index("CUDA12") == 12 and gpu_index("ROCm1") == 1
    assert gpu_index("Meta(CUDA0,CUDA1)") is None


def test_error_reason_prefers_the_line_that_names_the_cause() -> None:
    not_gguf = [
        "gguf_init_from_reader: invalid magic characters: 'hell', expected 'GGUF'",
        "llama_model_load: error loading model: llama_model_loader: failed to load model from /tmp/x.gguf",
        "llama_model_load_from_file_impl: failed to load model",
    ]
    assert error_reason(not_gguf) == "invalid magic characters: 'hell', expected 'GGUF'"
    truncated = [
        "llama_model_load: error loading model: tensor 'blk.15.attn_output.weight' data is not within the file"
        " bounds, model is corrupted or incomplete",
        "llama_model_load_from_file_impl: failed to load model",
    ]
    assert error_reason(truncated).startswith("tensor 'blk.15.attn_output.weight' data is not within")
    no_memory = [
        "ggml_aligned_malloc: insufficient memory (attempted to allocate 219729.38 MB)",
        "ggml_backend_cpu_buffer_type_alloc_buffer: failed to allocate buffer of size 230402949120",
        "alloc_tensor_range: failed to allocate CPU buffer of size 230402949120",
        "llama_init_from_model: failed to initialize the context: failed to allocate buffer for kv cache",
    ]
    assert error_reason(no_memory) == (
        "failed to allocate buffer for kv cache (insufficient memory (attempted to allocate 219729.38 MB))"
    )
    assert error_reason([]) is None
