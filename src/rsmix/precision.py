"""The numeric precision of a run's model (``--precision``): which ones exist, where each can run,
whether this CPU computes bfloat16 natively, and the one autocast context the harness wraps around
the model's forward passes (training, CAM, evaluation).

- ``fp32``: no autocast.
- ``bf16``: ``torch.autocast`` to bfloat16 on CPU or CUDA; no loss scaler (bfloat16 has float32's
  exponent range). Fast on CPUs with AMX or AVX512-BF16 and on CUDA GPUs from Ampere on; elsewhere
  it is emulated and may be slower than fp32.
- ``fp16``: ``torch.autocast`` to float16 with a ``GradScaler``; CUDA only.
- ``auto`` (the default of new runs): bf16 where it is native (a CPU with AMX or AVX512-BF16, a
  CUDA GPU with bfloat16), fp32 elsewhere. A run records what it chose; a resumed run keeps its
  recorded precision.

Only the model runs under autocast. The input pipeline, the saliency detectors and the mixing
operators run outside it, in their own dtypes, so their outputs are the same in every precision;
the loss is computed in float32 from the logits.
"""

from __future__ import annotations

import platform
from contextlib import nullcontext
from functools import lru_cache
from typing import Any, ContextManager, Dict

import torch

__all__ = [
    "PRECISIONS",
    "PRECISION_CHOICES",
    "autocast",
    "check_precision",
    "cpu_bf16_flags",
    "cpu_name",
    "emulation_warning",
    "hardware",
    "native_bf16",
    "resolve_precision",
    "scaler_needed",
]

PRECISIONS = ("fp32", "bf16", "fp16")  # what a run records
PRECISION_CHOICES = ("auto", *PRECISIONS)  # what a user may ask for
# bf16 autocast where bfloat16 is emulated, against fp32, measured (benchmarks/train_step.py, issue 28):
# AMD EPYC (Zen 3, AVX2), fast_resnet@128, 7 against 73 images/s.
_EMULATED_SLOWDOWN = "about 10x slower than fp32 (measured on an AMD EPYC: fast_resnet@128, 7 against 73 images/s)"
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# The CPU features with which bfloat16 matrix products run in hardware (x86): Intel AMX tiles or
# AVX512-BF16 dot products. torch.cpu.get_capabilities() reads them from cpuinfo.
_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_name() -> str:
    """This CPU's model name (``model name`` in ``/proc/cpuinfo``), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def hardware(device: torch.device) -> Dict[str, Any]:
    """What a result was measured on: the CPU and its bfloat16 flags, torch's threads, the device
    (and the GPU's name on CUDA). Written beside every run's metrics: runs of one study may come
    from different machines, and their times compare only on the same one."""
    info: Dict[str, Any] = {"cpu": cpu_name(), **cpu_bf16_flags(), "threads": torch.get_num_threads()}
    info["device"] = str(device)
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def cpu_bf16_flags() -> Dict[str, bool]:
    """``{"amx_bf16": …, "avx512_bf16": …}`` of this CPU (False where torch cannot tell)."""
    try:
        caps: Dict[str, Any] = dict(torch.cpu.get_capabilities())
    except Exception:  # an old torch or an unknown CPU: nothing is known to be native
        caps = {}
    return {flag: bool(caps.get(flag, False)) for flag in _BF16_FLAGS}


@lru_cache(maxsize=1)
def native_bf16() -> bool:
    """True when this CPU computes bfloat16 in hardware (AMX or AVX512-BF16)."""
    return any(cpu_bf16_flags().values())


def check_precision(precision: str, device: str) -> str:
    """A one-line reason why ``precision`` cannot run on ``device``, or "" when it can (the device
    name is assumed valid; whether CUDA is present is the device check's job)."""
    if precision not in PRECISION_CHOICES:
        return f"unknown precision {precision!r}; accepted: {', '.join(PRECISION_CHOICES)}"
    if precision == "fp16" and not device.startswith("cuda"):
        return "precision fp16 needs a CUDA device (--device cuda); on CPU use --precision bf16"
    return ""


def emulation_warning(precision: str, device: torch.device) -> str:
    """The one-line warning for bf16 on a CPU without native bfloat16, or ""."""
    if precision != "bf16" or device.type != "cpu" or native_bf16():
        return ""
    return (
        "warning: this CPU has no native bfloat16 (neither amx_bf16 nor avx512_bf16): --precision bf16 is "
        f"emulated here, {_EMULATED_SLOWDOWN}; use --precision fp32 (or auto, which chooses fp32 here)"
    )


def resolve_precision(precision: str, device: str) -> str:
    """``precision`` itself, or for ``"auto"`` what it chooses on ``device``: bf16 where bfloat16
    is native (this CPU's AMX or AVX512-BF16; a CUDA GPU with bfloat16), else fp32."""
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        native = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    else:
        native = native_bf16()
    return "bf16" if native else "fp32"


def autocast(device: torch.device, precision: str) -> ContextManager[Any]:
    """The context the model's forward runs in: autocast to ``precision`` on ``device``'s type
    (a no-op for fp32)."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[precision])


def scaler_needed(precision: str) -> bool:
    """float16 gradients underflow without loss scaling; bfloat16's and float32's do not."""
    return precision == "fp16"
