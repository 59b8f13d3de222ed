"""Numerics shared by the loss math: the dtype every loss computes in."""

from __future__ import annotations

import torch
from torch import Tensor


def upcast(x: Tensor) -> Tensor:
    """Half/bf16 -> float32 for the loss math; float32/float64 are kept."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def softplus_from_sigmoid(x: Tensor, p: Tensor) -> Tensor:
    r"""$\operatorname{softplus}(x) = \log(1 + e^x)$ given $p = \sigma(x)$, in a new tensor.

    $\operatorname{softplus}(x) = \max(x, 0) - \log\sigma(|x|)$ and $\sigma(|x|) = \max(p, 1 - p)$:
    one `log` of a value in $[1/2, 1]$ (absolute error of a few ulp of 1) reusing a sigmoid the
    caller needs anyway for the gradient, where `F.softplus` and
    `F.binary_cross_entropy_with_logits` evaluate `log1p(exp(·))`, several times slower on CPU.

    Example:
        >>> import torch
        >>> x = torch.tensor([-30.0, 0.0, 2.0, 30.0])
        >>> softplus_from_sigmoid(x, torch.sigmoid(x))
        tensor([ 0.0000,  0.6931,  2.1269, 30.0000])
    """
    m = torch.rsub(p, 1.0)
    log_m = torch.maximum(m, p, out=m).log_()
    return x.clamp_min(0.0).sub_(log_m)
