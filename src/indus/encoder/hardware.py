"""What the hardware can do: bf16 support, peak FLOPs by device name, model FLOPs utilisation (MFU).

MFU = 6 * N * tokens/s / (peak FLOPs * devices), with N the non-embedding parameters (the Kaplan et al.
convention; attention-score and vocabulary-head FLOPs are left out, so it is a slight under-estimate).
"""

from __future__ import annotations

import torch

#: Dense bf16 tensor-core peak FLOP/s by device-name fragment (vendor data sheets; first match wins).
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989e12),
    ("H100", 989e12),  # SXM; the PCIe card is 756e12
    ("H800", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A10G", 70e12),
    ("A10", 125e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
    ("V100", 125e12),  # fp16 (no bf16 tensor cores)
    ("T4", 65e12),  # fp16
)


def peak_flops(device_name: str) -> float | None:
    """Dense bf16 peak FLOP/s for a GPU name such as ``NVIDIA H100 80GB HBM3``, or ``None`` when unknown."""
    upper = device_name.upper()
    for fragment, flops in PEAK_BF16_FLOPS:
        if fragment.upper() in upper:
            return flops
    return None


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX-512 BF16 or AMX), where bf16 autocast pays off."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast is worth using on ``device``."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_supports_bf16()
    return False


def device_name(device: torch.device) -> str:
    """A readable name of ``device``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def mfu(n_params: int, tokens_per_s: float, device: torch.device, world_size: int = 1) -> float | None:
    """Model FLOPs utilisation from ``6 N`` FLOPs per token, or ``None`` off-GPU or on an unknown GPU."""
    if device.type != "cuda":
        return None
    peak = peak_flops(device_name(device))
    return None if peak is None else 6.0 * n_params * tokens_per_s / (peak * world_size)
