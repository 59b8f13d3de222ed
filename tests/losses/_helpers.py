"""Shared helpers for the family tests: compare value AND gradient of two loss callables."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

DTYPES = (torch.float32, torch.float64)


def tol(dtype: torch.dtype) -> dict[str, float]:
    return (
        {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}
    )


def assert_value_and_grad(
    ours: Callable[[Tensor], Tensor],
    ref: Callable[[Tensor], Tensor],
    logits: Tensor,
    **tolerances: float,
) -> None:
    """``ours(x)`` and ``ref(x)`` agree in value and in the gradient of a random projection."""
    x1 = logits.detach().clone().requires_grad_(True)
    x2 = logits.detach().clone().requires_grad_(True)
    a, b = ours(x1), ref(x2)
    kw = tolerances or tol(logits.dtype)
    torch.testing.assert_close(a, b, **kw)
    g = torch.Generator().manual_seed(123)
    proj = torch.randn(a.shape, generator=g, dtype=a.dtype)
    (ga,) = torch.autograd.grad((a * proj).sum(), x1)
    (gb,) = torch.autograd.grad((b * proj).sum(), x2)
    torch.testing.assert_close(ga, gb, **kw)


def randn(
    *shape: int, dtype: torch.dtype = torch.float32, seed: int = 0, scale: float = 2.0
) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)


def randint(high: int, *shape: int, seed: int = 1) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, high, shape, generator=g)


# Logit shapes of the classification tests: [N, C], [N, C, L], [N, C, H, W].
SHAPES = [(8, 5), (4, 3, 6), (2, 4, 3, 5)]


def class_target(shape: tuple[int, ...], seed: int = 1) -> Tensor:
    """Random class indices `[N, *]` for logits of `shape` `[N, C, *]`."""
    n, c, *rest = shape
    return randint(c, n, *rest, seed=seed)
