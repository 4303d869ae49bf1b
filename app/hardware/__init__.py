"""Hardware detection (NVML, sysfs, psutil), the GPU catalog, rig expressions and telemetry. No Qt."""
