"""What the capacity plan assumes of devices: dense peaks the GPU time is quoted against, and a GPU's sort rate."""
from __future__ import annotations

#: Device peaks (dense, TFLOP/s) the GPU time is quoted against, and the default utilisation of that peak.
DEVICE_PEAK_TFLOPS = {"h200-bf16": 989.0, "a100-bf16": 312.0, "cpu": 1.0}
DEFAULT_UTILISATION = 0.3
#: Elements per second a GPU sorts (torch.sort of float32 rows, a stated assumption, not measured here).
GPU_SORT_RATE = 2.0e9
#: A cluster node, when not given: like the GPU machines this project is lent (one GPU, 16 CPU cores).
DEFAULT_GPUS_PER_NODE = 1
DEFAULT_CPUS_PER_NODE = 16
#: The driver's network link when not given (Gbit/s): every recording result passes through it.
DEFAULT_DRIVER_GBIT = 10.0
