r"""Dual focal loss for calibration.

From *Dual Focal Loss for Calibration*, Tao, Dong & Xu, ICML 2023 (arXiv:2305.13665). The
official code (`Linwei94/DualFocalLoss`, `Losses/dual_focal_loss.py`) pins the detail followed
here: the dual probability is the largest softmax probability **strictly below** the target's,
and gradients flow through both probabilities.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_losses.losses._classification import _TargetLogProb, prepare_classification
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_ignore_index, check_number, check_reduction

__all__ = ["DualFocalLoss", "dual_focal_loss"]


def _check_dual_focal_args(*, gamma: Any, ignore_index: Any) -> dict[str, Any]:
    return {
        "gamma": check_number("gamma", gamma, low=0.0),
        "ignore_index": check_ignore_index(ignore_index),
    }


def _dual_focal_expr(logits: Tensor, target: Tensor, gamma: float) -> Tensor:
    # The textbook rows through autograd: the twice-differentiable path (create_graph=True).
    log_p = logits.log_softmax(-1)
    p = log_p.exp()
    log_p_y = log_p.gather(-1, target[:, None]).squeeze(-1)
    p_y = p.gather(-1, target[:, None])
    zero = torch.zeros((), dtype=p.dtype, device=p.device)
    p_j = torch.where(p < p_y, p, zero).max(-1).values
    return -(p_j - torch.expm1(log_p_y)).clamp_min(0).pow(gamma) * log_p_y


class _DualFocal(torch.autograd.Function):
    r"""Rows $-(1 - p_y + p_j)^\gamma \log p_y$ `[M]`, value and gradient from one `softmax`.

    Forward: `_TargetLogProb`'s `softmax` pass gives $p$ and $\log p_y$ (exact where $p_y$
    underflows), then one masked row maximum gives $p_j$ and its index $j$. With
    $b = 1 - p_y + p_j$ and $L = \log p_y$, the gradient w.r.t. the logits is
    $A\,(e_y - p) + D\,(e_j - p)$, $A = \gamma b^{\gamma-1} L p_y - b^\gamma$,
    $D = -\gamma b^{\gamma-1} L p_j$: the backward is one multiply of the saved $p$ plus two
    scatters (autograd's graph of the expression keeps $\log p$, $p$ and the boolean mask, and
    runs some eight `[M, C]` passes in backward). Under `create_graph=True` the
    backward differentiates the expression instead (autograd's cost, only then).
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, target: Tensor, gamma: float) -> Tensor:
        log_p_y, p = _TargetLogProb.apply(logits, target)
        # p_y read from p itself: exp(log p_y) may differ in the last bit and let y compete.
        p_y = p.gather(-1, target[:, None]).squeeze(-1)
        # Official masking: only probabilities strictly smaller than p_y compete (p_j = 0 if none).
        zero = torch.zeros((), dtype=p.dtype, device=p.device)
        p_j, j = torch.where(p < p_y[:, None], p, zero).max(-1)
        b_raw = p_j - torch.expm1(log_p_y)  # 1 - p_y + p_j ∈ [0, 2]
        b = b_raw.clamp_min(0)
        b_pow = b.pow(gamma)
        ctx.save_for_backward(logits, target, p, j, log_p_y, p_y, p_j, b, b_raw >= 0)
        ctx.gamma = gamma
        return -b_pow * log_p_y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None]:
        logits, target, p, j, log_p_y, p_y, p_j, b, b_kept = ctx.saved_tensors
        gamma = ctx.gamma
        if torch.is_grad_enabled():  # create_graph=True: a differentiable backward
            with torch.enable_grad():
                out = _dual_focal_expr(logits, target, gamma)
            (g,) = torch.autograd.grad(out, logits, grad, create_graph=True)
            return g, None, None
        # dℓ/db = -γ b^(γ-1) L (0 through the clamp, and 0 at γ = 0 where b^(γ-1) may be inf).
        if gamma == 0.0:
            d_b = torch.zeros_like(b)
        else:
            d_b = b.pow(gamma - 1.0).mul_(log_p_y).mul_(-gamma) * b_kept
        a = (d_b * p_y).neg_().sub_(b.pow(gamma)).mul_(grad)  # coefficient of e_y - p
        d = (d_b * p_j).mul_(grad)  # coefficient of e_j - p
        out = p * (a + d).neg_()[:, None]
        out.scatter_add_(-1, target[:, None], a[:, None])
        out.scatter_add_(-1, j[:, None], d[:, None])
        return out, None, None


def dual_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    gamma: float = 5.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Dual focal loss, $\ell = -(1 - p_y + p_j)^{\gamma} \log p_y$.

    $p_j$ is the largest softmax probability strictly smaller than $p_y$ (0 if there is none),
    as the official code's mask `p_k < p_y` selects it: when $y$ is the arg-max this is the
    runner-up probability; when it is not, $p_j$ is the next probability *below* $p_y$, not the
    top non-target one. Both $p_y$ and $p_j$ receive gradients. `gamma=0` is cross-entropy.

    Paper: *Dual Focal Loss for Calibration*, Tao, Dong & Xu, ICML 2023 (arXiv:2305.13665).

    Args:
        input: logits `[N, C, *]`.
        target: class indices `[N, *]`.
        gamma: focusing parameter `≥ 0` (default 5.0, the paper's CIFAR setting; the official
            class default is 0, tune per dataset).
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N, *]`).
        validate_args: check the label range (a host sync).

    Returns:
        The reduced loss, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch, math
        >>> from lightning_losses.functional import dual_focal_loss
        >>> # p = (1/2, 1/4, 1/4), y = 0: p_j = 1/4, loss = (3/4)^2 · log 2
        >>> logits = torch.tensor([[math.log(2.0), 0.0, 0.0]])
        >>> dual_focal_loss(logits, torch.tensor([0]), gamma=2.0)
        tensor(0.3899)
    """
    check_reduction(reduction)
    hp = _check_dual_focal_args(gamma=gamma, ignore_index=ignore_index)
    batch = prepare_classification(
        input,
        target,
        ignore_index=hp["ignore_index"],
        allow_soft=False,
        validate_args=validate_args,
    )
    rows = _DualFocal.apply(batch.logits, batch.target, hp["gamma"])
    return reduce_loss(rows, reduction, valid=batch.valid, out_shape=batch.out_shape)


@register_loss("dual_focal", aliases=("dual_focal_loss",))
class DualFocalLoss(Loss):
    r"""Dual focal loss $-(1 - p_y + p_j)^\gamma \log p_y$, for calibrated confidences.

    See [dual_focal_loss][lightning_losses.functional.dual_focal_loss].

    Paper: *Dual Focal Loss for Calibration*, Tao, Dong & Xu, ICML 2023 (arXiv:2305.13665).

    Args:
        gamma: focusing parameter (default 5.0).
        ignore_index: target value that is ignored.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - input: `[N, C, *]` logits; target: `[N, *]` class indices.
        - output: scalar, or `[N, *]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import DualFocalLoss
        >>> DualFocalLoss(gamma=0.0)(torch.zeros(2, 4), torch.tensor([0, 1]))  # = CE = log 4
        tensor(1.3863)
    """

    functional = staticmethod(dual_focal_loss)
    input_kind = InputKind.CLASSIFICATION

    def __init__(
        self,
        gamma: float = 5.0,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_dual_focal_args(gamma=gamma, ignore_index=ignore_index),
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits `input [N, C, *]` against class indices `target [N, *]`."""
        return self._call_functional(input, target)
