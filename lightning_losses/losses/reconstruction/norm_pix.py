r"""MAE's reconstruction loss: the per-patch MSE on (per-patch normalised) target pixels.

*Masked Autoencoders Are Scalable Vision Learners*, He et al., CVPR 2022 (arXiv:2111.06377).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from lightning_losses.losses._numerics import upcast
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import (
    check_bool,
    check_number,
    check_reduction,
    check_same_shape,
    check_tensor,
)

__all__ = ["NormPixLoss", "norm_pix_loss"]


def _check_norm_pix_args(*, normalize: Any, eps: Any) -> dict[str, Any]:
    # The one validator of norm_pix_loss's hyperparameters: the functional and the class use it.
    return {
        "normalize": check_bool("normalize", normalize),
        "eps": check_number("eps", eps, low=0.0),
    }


def norm_pix_loss(
    input: Tensor,
    target: Tensor,
    *,
    normalize: bool = True,
    eps: float = 1e-6,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Per-patch reconstruction MSE on per-patch normalised pixels (MAE's `norm_pix_loss`).

    For image $n$, patch $l$ and its $P$ pixels,

    $$
    \ell_{n,l} = \frac{1}{P}\sum_{k=1}^{P}\Big(\hat x_{n,l,k} - \frac{x_{n,l,k} - \mu_{n,l}}
    {\sqrt{\sigma^2_{n,l} + \epsilon}}\Big)^2,
    $$

    with $\mu_{n,l}$ and $\sigma^2_{n,l}$ the mean and unbiased variance of the patch's $P$
    target pixels (as the authors' code); `normalize=False` uses the raw pixels $x_{n,l,k}$. A
    blank patch has $\sigma^2 = 0$ and normalises to zeros ($\epsilon$ keeps the division finite).
    The target is data (e.g. the patchified images), so only `input` gets a gradient in MAE;
    both arguments are differentiable here.

    In MAE only the masked patches count: take `reduction="none"` and average each image's masked
    patches, which [LossMixin][lightning_losses.mixins.LossMixin] does with
    `compute_loss(pred, target, element_mask=mask)`.

    Paper: *Masked Autoencoders Are Scalable Vision Learners*, He et al., CVPR 2022
    (arXiv:2111.06377).

    Args:
        input: `[N, L, P]` predicted pixels: `N` images, `L` patches, `P` pixels per patch.
        target: `[N, L, P]` target pixels (e.g. [patchify][lightning_losses.nn.patches.patchify]
            of the images).
        normalize: normalise each target patch by its own mean and variance.
        eps: $\epsilon \ge 0$, added to the variance.
        reduction: `"mean" | "sum" | "none"`: the mean or sum over all `N·L` patches, or the
            per-patch losses `[N, L]`.
        validate_args: accepted for the common signature; this loss has no host-syncing data
            check (shapes and dtypes are always checked).

    Returns:
        The reduced loss, or `[N, L]` with `reduction="none"` (float32 for half inputs).

    Raises:
        TypeError: non-floating inputs, `normalize` not a bool.
        ValueError: shapes differ or are not `[N, L, P]`, `P < 2` with `normalize`, `eps < 0`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import norm_pix_loss
        >>> target = torch.tensor([[[0.0, 2.0]]])  # one image, one patch of two pixels
        >>> norm_pix_loss(torch.zeros(1, 1, 2), target, normalize=False)
        tensor(2.)
        >>> norm_pix_loss(torch.tensor([[[-0.7071, 0.7071]]]), target, reduction="none")
        tensor([[0.]])
    """
    check_reduction(reduction)
    hp = _check_norm_pix_args(normalize=normalize, eps=eps)
    check_tensor("input", input, floating=True)
    check_tensor("target", target, floating=True)
    check_same_shape("input", input, "target", target)
    if input.ndim != 3:
        raise ValueError(f"input must have shape [N, L, P], got {tuple(input.shape)}")
    if hp["normalize"] and input.shape[-1] < 2:
        raise ValueError("normalize=True needs at least 2 pixels per patch (P ≥ 2)")
    input, target = upcast(input), upcast(target)
    if hp["normalize"]:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)  # unbiased, as the authors' code
        target = (target - mean) / (var + hp["eps"]).sqrt()
    return reduce_loss((input - target).pow(2).mean(dim=-1), reduction)


@register_loss("norm_pix")
class NormPixLoss(Loss):
    r"""MAE's reconstruction loss: per-patch MSE on per-patch normalised pixels (arXiv:2111.06377).

    See [norm_pix_loss][lightning_losses.functional.norm_pix_loss] for the formula.
    `forward(input, target)` with predicted and target pixels `[N, L, P]`; the target holds
    pixels, not class indices (`target_arg` is `None`).

    Args:
        normalize: normalise each target patch by its own mean and variance (MAE's default).
        eps: added to the variance.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: accepted for the common signature (no host-syncing checks here).

    Shape:
        - input, target: `[N, L, P]` (images, patches, pixels per patch).
        - output: scalar, or `[N, L]` with `reduction="none"` (one loss per patch of each image).

    Example:
        >>> import torch
        >>> from lightning_losses.losses import NormPixLoss
        >>> loss = NormPixLoss(normalize=False, reduction="none")
        >>> loss(torch.zeros(1, 2, 3), torch.ones(1, 2, 3))  # [N=1, L=2] per-patch losses
        tensor([[1., 1.]])
        >>> NormPixLoss()
        NormPixLoss(normalize=True, eps=1e-06, reduction='mean')
    """

    functional = staticmethod(norm_pix_loss)
    input_kind = InputKind.REGRESSION
    target_arg = None

    def __init__(
        self,
        normalize: bool = True,
        eps: float = 1e-6,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_norm_pix_args(normalize=normalize, eps=eps),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of predicted pixels `input [N, L, P]` against target pixels `target [N, L, P]`."""
        return self._call_functional(input, target)
