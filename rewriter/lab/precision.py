"""The number format training and evaluation run in: ``--precision {auto,fp32,bf16,fp16}``.

bf16 autocast halves the bytes every convolution moves and runs on the bf16 units of CPUs that have them
(Intel AMX-BF16, AVX512-BF16 on Intel and AMD) and of GPUs from Ampere on; fp16 needs a gradient scaler
(its range is too small for raw gradients) and is only offered on GPUs; ``channels_last`` (NHWC) lets the
oneDNN and cuDNN convolution kernels read their inputs without reordering. ``auto`` chooses bf16 +
channels_last where bf16 is native, fp16 + channels_last on a GPU without bf16, and fp32 elsewhere, and says
which and why. Weights stay fp32 (autocast casts per op), so a model trained in bf16 is saved as any other.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from .train_records import TrainError

__all__ = ["PRECISIONS", "Precision", "native_bf16", "resolve_precision"]

Name = Literal["fp32", "bf16", "fp16"]
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of native bf16 arithmetic


@dataclass(frozen=True)
class Precision:
    """A resolved precision: the autocast format (fp32: none), whether tensors go channels_last, and why."""

    name: Name = "fp32"
    channels_last: bool = False
    reason: str = "fp32 as asked"

    @property
    def label(self) -> str:
        return self.name + (" + channels_last" if self.channels_last else "")

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=_DTYPES[self.name])

    def scaler(self, device: torch.device) -> torch.amp.GradScaler | None:
        """A gradient scaler for fp16 (None otherwise)."""
        return torch.amp.GradScaler(device.type) if self.name == "fp16" else None

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` in this memory format (in place, as ``Module.to`` is)."""
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x


@functools.cache
def native_bf16(device_type: str = "cpu", cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the device computes in bf16 natively: a CUDA device that reports bf16 support, or a CPU
    whose flags (Linux's ``cpuinfo``) list AMX-BF16 or AVX512-BF16."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type != "cpu":
        return False
    try:
        flags = Path(cpuinfo).read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def resolve_precision(requested: str, device: torch.device | str) -> Precision:
    """The precision to run ``requested`` in on ``device``; ``auto`` chooses by the hardware.

    Raises:
        TrainError: an unknown name, or fp16 on a CPU (no scaler-free fp16 training there).
    """
    device = torch.device(device)
    if requested not in PRECISIONS:
        raise TrainError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    gpu = device.type == "cuda"
    if requested == "fp16" and not gpu:
        raise TrainError("precision fp16 needs a CUDA device; on a CPU use bf16 (where native) or fp32")
    if requested != "auto":
        return Precision(requested, channels_last=requested != "fp32" or gpu, reason=f"{requested} as asked")
    if native_bf16(device.type):
        where = "this GPU" if gpu else f"this CPU ({' or '.join(CPU_BF16_FLAGS)})"
        return Precision("bf16", channels_last=True, reason=f"auto: {where} computes bf16 natively")
    if gpu:
        return Precision("fp16", channels_last=True, reason="auto: this GPU has no bf16; fp16 with a scaler")
    return Precision("fp32", reason="auto: this CPU has no native bf16 (no AMX-BF16 or AVX512-BF16)")
