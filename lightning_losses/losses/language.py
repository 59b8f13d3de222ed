"""Language-model losses: the logit z-loss.

Paper:
    Small-scale proxies for large-scale Transformer training instabilities
    (Wortsman et al., ICLR 2024, arXiv:2309.14322) — output-logit divergence and the z-loss
    (introduced in PaLM, Chowdhery et al. 2022, arXiv:2204.02311).

Language-model logits put the vocabulary **last**: ``[B, T, V]`` or ``[N, V]`` (as Hugging Face
models return them), unlike the ``[N, C, *]`` convention of the classification losses.
"""

from __future__ import annotations

from torch import Tensor

from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses._validation import (
    check_number,
    check_reduction,
    check_tensor,
    upcast,
)
from lightning_losses.losses.base import Loss
from lightning_losses.losses.examples import classification_example
from lightning_losses.registry import register_loss

__all__ = ["ZLoss", "z_loss"]


def z_loss(
    input: Tensor,
    target: Tensor | None = None,
    *,
    coeff: float = 1e-4,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Logit z-loss, :math:`\ell_t = c \cdot \left(\log \sum_v e^{z_{t,v}}\right)^2`.

    Pushes the softmax normaliser towards 1 (log Z → 0), which keeps output logits from
    drifting and stabilises large-scale training. Usually added to the cross-entropy as an
    auxiliary term: ``LossMixin.compute_loss(..., aux={"z_loss": z_loss(logits, labels)})``.
    The gradient is :math:`2c \log Z \cdot \mathrm{softmax}(z)`.

    Paper: *Small-scale proxies for large-scale Transformer training instabilities*,
    Wortsman et al. (arXiv:2309.14322); from PaLM (arXiv:2204.02311).

    Args:
        input: logits ``[*, V]`` (vocabulary last).
        target: optional token ids ``[*]``; positions equal to ``ignore_index`` are excluded.
        coeff: :math:`c \ge 0` (default 1e-4).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"`` (``none`` returns ``[*]``).

    Example:
        >>> import torch
        >>> from lightning_losses.functional import z_loss
        >>> z_loss(torch.zeros(2, 3, 4), coeff=1.0)  # (log 4)^2
        tensor(1.9218)
    """
    check_reduction(reduction)
    check_tensor("input", input, floating=True)
    coeff = check_number("coeff", coeff, low=0.0)
    if input.ndim < 1 or input.shape[-1] < 1:
        raise ValueError(f"input must have shape [*, V] with V ≥ 1, got {tuple(input.shape)}")
    valid = None
    if target is not None:
        check_tensor("target", target, floating=False)
        if target.shape != input.shape[:-1]:
            raise ValueError(
                f"target must have shape input.shape[:-1] = {tuple(input.shape[:-1])}, "
                f"got {tuple(target.shape)}"
            )
        valid = (target != ignore_index).reshape(-1)
        flat = target.reshape(-1)
        bad = valid & ((flat < 0) | (flat >= input.shape[-1]))
        if bad.any():
            raise ValueError(
                f"target contains token id {int(flat[bad][0])} outside [0, {input.shape[-1]})"
            )
    lse = upcast(input).logsumexp(-1)
    rows = coeff * lse.reshape(-1).square()
    return reduce_loss(rows, reduction, valid=valid, out_shape=lse.shape)


@register_loss(
    "z_loss",
    aliases=("zloss",),
    functional=z_loss,
    example=classification_example,
    invalid_kwargs=({"coeff": -1.0},),
    ignore_index=True,
    family="F · language model",
)
class ZLoss(Loss):
    r"""Logit z-loss :math:`c\,(\log Z)^2` (arXiv:2309.14322). Vocabulary dimension last.

    See :func:`~lightning_losses.functional.z_loss`.

    Args:
        coeff: coefficient (default 1e-4).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import ZLoss
        >>> ZLoss(coeff=1e-4)(torch.zeros(4, 8), torch.tensor([1, 2, -100, 3]))
        tensor(0.0004)
    """

    def __init__(
        self, coeff: float = 1e-4, ignore_index: int = -100, reduction: str = "mean"
    ) -> None:
        super().__init__(reduction)
        self.coeff = check_number("coeff", coeff, low=0.0)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor | None = None) -> Tensor:
        return z_loss(
            input,
            target,
            coeff=self.coeff,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )
