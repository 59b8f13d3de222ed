r"""Patches and patch masks of masked image modeling: layout, mask counts, random masks.

Images are cut into $L$ non-overlapping $p \times p$ patches in row-major order
([patchify][lightning_losses.nn.patches.patchify], the layout of *Masked Autoencoders Are
Scalable Vision Learners*, He et al., CVPR 2022, arXiv:2111.06377). A mask is a boolean `[B, L]`
tensor, True = masked, with the same number of masked patches in every image (the encoder
batches the visible patches): [random_patch_mask][lightning_losses.nn.patches.random_patch_mask]
draws MAE's uniform masks, hard-patch mining
([HardPatchMining][lightning_losses.callbacks.HardPatchMining]) writes its own, and
[masked_rows][lightning_losses.nn.patches.masked_rows] gathers per-patch values at the masked
positions.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_losses.losses._numerics import upcast
from lightning_losses.validation import check_int, check_number, check_same_shape, check_tensor

__all__ = [
    "check_patch_mask",
    "check_patch_rows",
    "masked_rows",
    "num_masked",
    "patchify",
    "random_patch_mask",
]


def num_masked(num_patches: int, mask_ratio: float) -> int:
    """How many of `num_patches` are masked: $M = L - \\lfloor L (1 - \\rho) \\rfloor$ (as MAE).

    Args:
        num_patches: $L$.
        mask_ratio: $\\rho \\in [0, 1)$.

    Returns:
        $M$.

    Example:
        >>> from lightning_losses.nn.patches import num_masked
        >>> num_masked(16, 0.75), num_masked(64, 0.75), num_masked(49, 0.75)
        (12, 48, 37)
    """
    check_int("num_patches", num_patches, low=1)
    mask_ratio = check_number("mask_ratio", mask_ratio, low=0.0, high=1.0, high_inclusive=False)
    return num_patches - int(num_patches * (1 - mask_ratio))


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """`[B, C, H, W]` images to `[B, L, p·p·C]` patches, row-major (MAE's layout).

    Args:
        images: `[B, C, H, W]`, with `H` and `W` multiples of `patch_size`.
        patch_size: $p$.

    Returns:
        `[B, (H/p)(W/p), p·p·C]`.

    Raises:
        ValueError: not 4-D, or sides not divisible by `patch_size`.

    Example:
        >>> import torch
        >>> from lightning_losses.nn.patches import patchify
        >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
        >>> patchify(x, 2)[0, 1]
        tensor([2., 3., 6., 7.])
    """
    check_tensor("images", images, floating=True)
    p = check_int("patch_size", patch_size, low=1)
    if images.ndim != 4 or images.shape[2] % p or images.shape[3] % p:
        raise ValueError(
            f"images must be [B, C, H, W] with H and W multiples of patch_size={p}, "
            f"got {tuple(images.shape)}"
        )
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // p, p, w // p, p)
    return torch.einsum("bchpwq->bhwpqc", x).reshape(b, (h // p) * (w // p), p * p * c)


def random_patch_mask(
    batch_size: int,
    num_patches: int,
    mask_ratio: float,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Uniformly random masks with exactly `num_masked(L, mask_ratio)` True per row (MAE's).

    Args:
        batch_size: $B$.
        num_patches: $L$.
        mask_ratio: $\\rho \\in [0, 1)$.
        generator: CPU generator for the draw (`None`: the global one).
        device: where the mask goes.

    Returns:
        `BoolTensor[B, L]`, True = masked.

    Example:
        >>> import torch
        >>> from lightning_losses.nn.patches import random_patch_mask
        >>> m = random_patch_mask(3, 16, 0.75, generator=torch.Generator().manual_seed(0))
        >>> m.sum(1).tolist()
        [12, 12, 12]
    """
    n_mask = num_masked(num_patches, mask_ratio)
    noise = torch.rand(batch_size, num_patches, generator=generator)
    ids = noise.argsort(dim=1, descending=True)[:, :n_mask]
    mask = torch.zeros(batch_size, num_patches, dtype=torch.bool)
    mask.scatter_(1, ids, True)
    return mask.to(device) if device is not None else mask


def check_patch_mask(mask: Tensor, batch_size: int, num_patches: int) -> int:
    """Check a `[B, L]` patch mask and return how many patches it masks per image.

    Args:
        mask: `[B, L]` bool, True = masked.
        batch_size: $B$.
        num_patches: $L$.

    Returns:
        The number of masked patches of every image, $M < L$.

    Raises:
        TypeError: `mask` is not a bool tensor.
        ValueError: a wrong shape, unequal counts across images, or every patch masked.

    Example:
        >>> import torch
        >>> from lightning_losses.nn.patches import check_patch_mask
        >>> check_patch_mask(torch.tensor([[True, False, True], [False, True, True]]), 2, 3)
        2
    """
    check_tensor("mask", mask)
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor [B, L] (True = masked), got {mask.dtype}")
    if mask.shape != (batch_size, num_patches):
        raise ValueError(
            f"mask must have shape [B, L] = {(batch_size, num_patches)}, got {tuple(mask.shape)}"
        )
    counts = mask.sum(1)
    if batch_size and bool((counts != counts[0]).any()):
        raise ValueError(
            "mask must mask the same number of patches in every image (the encoder batches the "
            f"visible patches), got counts {sorted(set(counts.tolist()))}"
        )
    n_mask = int(counts[0]) if batch_size else 0
    if n_mask == num_patches:
        raise ValueError("mask hides every patch; at least one patch must stay visible")
    return n_mask


def masked_rows(values: Tensor, mask: Tensor) -> Tensor:
    """`[B, L]` values at the masked positions, `[B, M]` in patch order (equal counts per row).

    Args:
        values: `[B, L]`.
        mask: `[B, L]` bool with the same number of True per row.

    Returns:
        `[B, M]`.

    Example:
        >>> import torch
        >>> from lightning_losses.nn.patches import masked_rows
        >>> mask = torch.tensor([[1, 0, 1], [0, 1, 1]]).bool()
        >>> masked_rows(torch.tensor([[1, 2, 3], [4, 5, 6]]), mask)
        tensor([[1, 3],
                [5, 6]])
    """
    b = values.shape[0]
    return values[mask].reshape(b, -1)


def check_patch_rows(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Check a pair of `[B, M]` per-patch rows (e.g. predicted vs true patch losses).

    Args:
        pred: `[B, M]` floating values, one row per image.
        target: `[B, M]` floating values.

    Returns:
        `(pred, target)` upcast to float32 from half precision, `target` detached.

    Raises:
        TypeError: non-floating inputs.
        ValueError: shapes differ or are not `[B, M]`.

    Example:
        >>> import torch
        >>> from lightning_losses.nn.patches import check_patch_rows
        >>> pred, target = check_patch_rows(torch.zeros(2, 3).half(), torch.ones(2, 3))
        >>> pred.dtype, target.requires_grad
        (torch.float32, False)
    """
    check_tensor("pred", pred, floating=True)
    check_tensor("target", target, floating=True)
    check_same_shape("pred", pred, "target", target)
    if pred.ndim != 2:
        raise ValueError(
            f"pred must have shape [B, M] (one row per image), got {tuple(pred.shape)}"
        )
    return upcast(pred), upcast(target).detach()
