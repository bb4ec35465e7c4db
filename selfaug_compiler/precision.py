"""Which device and dtype a run will use: one decision, shared by the run and by `validate`.

Standard library only (no torch): ``selfaug validate`` shows the dtype and memory the run will
use, and must not import torch. ``models.loading.resolve_dtype`` asks ``dtype_name`` with what
torch reports about the device; ``validate`` asks it with what this module finds without torch.

``dtype: auto`` is bf16 on CUDA devices that support it (compute capability 8.0 or newer), fp16
on older CUDA devices, bf16 on CPUs with native bf16 instructions (``avx512_bf16`` or
``amx_bf16``: detected from the CPU flags, never assumed), else fp32. ``SELFAUG_CPU_BF16=0|1``
overrides the CPU detection.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
from pathlib import Path

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty elsewhere or when unreadable)."""
    if platform.system() != "Linux":
        return set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    flags: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            flags.update(value.split())
    return flags


def cpu_bf16_from_flags(flags: set[str] | str) -> bool:
    """True when these CPU flags include a native bf16 matmul instruction set.

    ``SELFAUG_CPU_BF16=0|1`` overrides whatever the flags say.
    """
    forced = os.environ.get("SELFAUG_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    names = set(flags.split()) if isinstance(flags, str) else flags
    return any(flag in names for flag in CPU_BF16_FLAGS)


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when this CPU runs bf16 matmuls natively (AVX512-BF16 or AMX), not emulated."""
    return cpu_bf16_from_flags(cpu_flags())


def dtype_name(preference: str, device: str, *, cuda_bf16: bool | None = None, cpu_bf16: bool | None = None) -> str:
    """The dtype (``float32`` | ``bfloat16`` | ``float16``) a model is used in on ``device``.

    ``cuda_bf16``: whether the CUDA device supports bf16 (None: assume it does, as every current
    data-centre GPU does). ``cpu_bf16``: native bf16 on this CPU (None: detect it).
    """
    if preference != "auto":
        return preference
    if device.startswith("cuda"):
        return "bfloat16" if cuda_bf16 is not False else "float16"
    return "bfloat16" if (cpu_has_fast_bf16() if cpu_bf16 is None else cpu_bf16) else "float32"


def dtype_reason(dtype: str, device: str, preference: str) -> str:
    """A few words on why ``dtype`` was chosen (for `validate`'s memory line)."""
    if preference != "auto":
        return "as the recipe sets"
    if device.startswith("cuda"):
        return "auto on a CUDA device" + ("" if dtype == "bfloat16" else " without bf16")
    if os.environ.get("SELFAUG_CPU_BF16") in ("0", "1"):
        return f"auto, SELFAUG_CPU_BF16={os.environ['SELFAUG_CPU_BF16']}"
    if dtype == "bfloat16":
        return "auto: this CPU has native bf16"
    return "auto: no " + "/".join(CPU_BF16_FLAGS) + " on this CPU"


def visible_cuda_devices() -> int:
    """NVIDIA GPUs this process would see, found without torch (0 when none or unknown).

    Counts the driver's ``/proc/driver/nvidia/gpus`` entries, limited by ``CUDA_VISIBLE_DEVICES``.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    gpus = Path("/proc/driver/nvidia/gpus")
    try:
        found = len(list(gpus.iterdir())) if gpus.is_dir() else 0
    except OSError:
        found = 0
    if visible is not None:
        found = min(found, len([v for v in visible.split(",") if v.strip()]))
    return found


def resolve_device_name(preference: str = "auto") -> str:
    """What ``execution.device`` resolves to on this machine, without torch (the run asks torch)."""
    if preference != "auto":
        return preference
    return "cuda" if visible_cuda_devices() > 0 else "cpu"


@functools.lru_cache(maxsize=1)
def cuda_bf16_supported() -> bool | None:
    """Whether the first visible CUDA device supports bf16, from ``nvidia-smi`` (None: unknown)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.split()
        return float(out[0]) >= 8.0 if out else None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def planned_precision(preference: str, device_preference: str = "auto") -> tuple[str, str, str]:
    """(device, dtype, why) a run of a recipe will use on this machine, found without torch."""
    device = resolve_device_name(device_preference)
    cuda_bf16 = cuda_bf16_supported() if device.startswith("cuda") and preference == "auto" else None
    dtype = dtype_name(preference, device, cuda_bf16=cuda_bf16)
    return device, dtype, dtype_reason(dtype, device, preference)
