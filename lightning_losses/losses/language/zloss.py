r"""The logit z-loss: $c \cdot (\log Z)^2$ per token, an auxiliary term for stable LM training.

*Small-scale proxies for large-scale Transformer training instabilities*, Wortsman et al.,
ICLR 2024 (arXiv:2309.14322); introduced in PaLM, Chowdhery et al. 2022 (arXiv:2204.02311).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from lightning_losses.losses._classification import prepare_classification
from lightning_losses.losses._numerics import upcast
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import (
    check_ignore_index,
    check_number,
    check_reduction,
    check_tensor,
)

__all__ = ["ZLoss", "z_loss"]


def z_loss_from_lse(lse: Tensor, coeff: float) -> Tensor:
    r"""The z-loss of each row from its log-normaliser: $c \cdot (\log Z)^2$ (the formula, once).

    Shared with the fused cross-entropy + z-loss, which reuses the log-sum-exp of its CE.
    """
    return coeff * lse.square()


def _check_z_loss_args(*, coeff: Any, ignore_index: Any) -> dict[str, Any]:
    # The one validator of z_loss's hyperparameters: the functional and the class use it.
    return {
        "coeff": check_number("coeff", coeff, low=0.0),
        "ignore_index": check_ignore_index(ignore_index),
    }


def z_loss(
    input: Tensor,
    target: Tensor | None = None,
    *,
    coeff: float = 1e-4,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Logit z-loss, $\ell_t = c \cdot \big(\log \sum_v e^{z_{t,v}}\big)^2$.

    Pushes the softmax normaliser towards 1 ($\log Z \to 0$), which keeps output logits from
    drifting and stabilises large-scale training. Usually added to the cross-entropy as an
    auxiliary term: `LossMixin.compute_loss(..., aux={"z_loss": z_loss(logits, labels)})`.
    The gradient is $2c \log Z \cdot \mathrm{softmax}(z)$.

    The vocabulary is dimension 1, as for `F.cross_entropy` and every loss of the catalog:
    Hugging Face's `[B, T, V]` logits are passed as `logits.transpose(1, 2)` (a view; no copy is
    made when the last dimension is the vocabulary in memory).

    Paper: *Small-scale proxies for large-scale Transformer training instabilities*,
    Wortsman et al. (arXiv:2309.14322); from PaLM (arXiv:2204.02311).

    Args:
        input: logits `[N, V, *]` (vocabulary at dimension 1).
        target: optional token ids `[N, *]`; positions equal to `ignore_index` are excluded
            from the value, the mean and the gradient (exactly zero gradient, even for NaN/inf
            logits). Without it every position counts.
        coeff: $c \ge 0$ (default 1e-4).
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N, *]`).
        validate_args: check the token-id range of `target` (a host sync).

    Returns:
        The reduced loss, or `[N, *]` with `reduction="none"`.

    Raises:
        ValueError: bad shapes, `coeff < 0`, a token id outside `[0, V)`.
        TypeError: non-floating logits, non-integer `target`, `ignore_index` not an int.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import z_loss
        >>> z_loss(torch.zeros(2, 4, 3), coeff=1.0)  # [N=2, V=4, T=3]: (log 4)^2
        tensor(1.9218)
        >>> logits = torch.zeros(2, 3, 8)  # Hugging Face layout [B, T, V]
        >>> z_loss(logits.transpose(1, 2), torch.tensor([[1, 2, -100], [0, 0, 0]])).shape
        torch.Size([])
    """
    check_reduction(reduction)
    hp = _check_z_loss_args(coeff=coeff, ignore_index=ignore_index)
    check_tensor("input", input, floating=True)
    if input.ndim < 2 or input.shape[1] < 1:
        raise ValueError(
            f"input must have shape [N, V, *] (vocabulary at dim 1) with V ≥ 1, "
            f"got {tuple(input.shape)}"
        )
    if target is None:
        lse = upcast(input).logsumexp(1)
        return reduce_loss(z_loss_from_lse(lse, hp["coeff"]), reduction)
    batch = prepare_classification(
        input,
        target,
        ignore_index=hp["ignore_index"],
        allow_soft=False,
        validate_args=validate_args,
    )
    rows = z_loss_from_lse(batch.logits.logsumexp(-1), hp["coeff"])
    return reduce_loss(rows, reduction, valid=batch.valid, out_shape=batch.out_shape)


@register_loss("z_loss", aliases=("zloss",))
class ZLoss(Loss):
    r"""Logit z-loss $c\,(\log Z)^2$ (arXiv:2309.14322), vocabulary at dimension 1.

    See [z_loss][lightning_losses.functional.z_loss] for the formula.
    `forward(input, target=None)` with logits `[N, V, *]` and optional token ids `[N, *]`.

    Args:
        coeff: coefficient $c \ge 0$ (default 1e-4).
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: check the token-id range of `target` on every call (a host sync).

    Shape:
        - input: `[N, V, *]` logits; target (optional): `[N, *]` token ids.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import ZLoss
        >>> ZLoss(coeff=1e-4)(torch.zeros(4, 8), torch.tensor([1, 2, -100, 3]))
        tensor(0.0004)
        >>> ZLoss()
        ZLoss(coeff=0.0001, ignore_index=-100, reduction='mean')
    """

    functional = staticmethod(z_loss)
    input_kind = InputKind.SEQUENCES

    def __init__(
        self,
        coeff: float = 1e-4,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_z_loss_args(coeff=coeff, ignore_index=ignore_index),
        )

    def forward(self, input: Tensor, target: Tensor | None = None) -> Tensor:
        """z-loss of logits `input [N, V, *]`; optional token ids `target [N, *]`."""
        return self._call_functional(input, target)
