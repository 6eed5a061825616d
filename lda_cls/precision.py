"""Which autocast dtype a run trains in: SOLVER.AMP, where the device runs it natively.

CUDA takes "bf16" and "fp16" as asked. A CPU takes "bf16" only where it has bf16 arithmetic
(x86 AVX-512 BF16 or AMX, Arm BF16); elsewhere bf16 is emulated and slower than fp32, so
the run falls back to fp32. "fp16" on a CPU falls back to fp32 as well (no native fp16
convolutions there). torch has no public query for native bf16 on a CPU (mkldnn's
``_is_mkldnn_bf16_supported`` is true on any AVX-512 CPU, emulated or not), hence the
CPU flags are read from /proc/cpuinfo.
"""
from typing import Optional, Tuple

import torch

__all__ = ["AMP_DTYPES", "cpu_has_native_bf16", "autocast_dtype_for"]

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}
# /proc/cpuinfo flags of native bf16 arithmetic: x86 ("flags") and Arm ("Features").
_NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


def cpu_has_native_bf16(cpuinfo_path: str = "/proc/cpuinfo") -> bool:
    try:
        with open(cpuinfo_path) as handle:
            text = handle.read()
    except OSError:  # not Linux: no way to tell, so fp32 (correct everywhere)
        return False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features") and _NATIVE_BF16_FLAGS & set(value.split()):
            return True
    return False


def autocast_dtype_for(amp: str, device: torch.device,
                       native_cpu_bf16: Optional[bool] = None) -> Tuple[Optional[torch.dtype], str]:
    """(autocast dtype or None for fp32, a line for the log saying which and why)."""
    if amp not in AMP_DTYPES:
        raise ValueError(f"SOLVER.AMP must be one of {sorted(AMP_DTYPES)}, got {amp!r}")
    wanted = AMP_DTYPES[amp]
    if wanted is None:
        return None, "precision: fp32 (SOLVER.AMP none)"
    if device.type == "cuda":
        return wanted, f"precision: {amp} autocast on {device}"
    if device.type == "cpu" and wanted is torch.bfloat16:
        native = cpu_has_native_bf16() if native_cpu_bf16 is None else native_cpu_bf16
        if native:
            return wanted, "precision: bf16 autocast on the CPU (native bf16 arithmetic)"
        return None, "precision: fp32 (SOLVER.AMP bf16, but this CPU has no native bf16: emulated bf16 is slower)"
    return None, f"precision: fp32 (SOLVER.AMP {amp} does not run natively on {device.type})"
