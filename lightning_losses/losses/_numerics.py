"""Numerics shared by the loss math: the dtype every loss computes in."""

from __future__ import annotations

import torch
from torch import Tensor


def upcast(x: Tensor) -> Tensor:
    """Half/bf16 -> float32 for the loss math; float32/float64 are kept."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
