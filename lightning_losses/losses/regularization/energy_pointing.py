r"""The model-guidance energy loss: the share of positive attribution outside the object's boxes.

From *Studying How to Efficiently and Effectively Guide Models with Explanations* (Rao, Böhle,
Parchami-Araghi, Schiele; ICCV 2023, arXiv:2303.11932), checked against the authors' code
(`sukrutrao/Model-Guidance`, `losses.py`, `EnergyPointingGameBBMultipleLoss`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_losses.losses._numerics import upcast
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_number, check_reduction, check_tensor

__all__ = ["EnergyPointingLoss", "energy_pointing_loss"]


def _check_energy_args(*, eps: Any) -> dict[str, Any]:
    # The one validator of energy_pointing_loss's hyperparameters: the functional and the class.
    return {"eps": check_number("eps", eps, low=0.0)}


def energy_pointing_loss(
    input: Tensor,
    target: Tensor,
    *,
    eps: float = 1e-7,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Model-guidance energy loss: one minus the share of positive attribution inside the boxes.

    For image $n$ with attribution map $A_n$ (e.g. the B-cos or GradCAM map of the class being
    guided) and box mask $M_n$ (1 inside the union of that class's boxes, 0 outside),

    $$
    \ell_n = 1 - \frac{\sum_{p} M_{n,p}\, A^{+}_{n,p}}{\sum_{p} A^{+}_{n,p}},
    \qquad A^{+} = \max(A, 0).
    $$

    It is 0 when all positive attribution lies inside the boxes and 1 when none does; negative
    attribution is ignored (it neither helps nor hurts), so the model is not pushed to make the
    background negative. This is the energy pointing game (EPG) score turned into a loss.

    **Empty maps.** As in the authors' code, when the positive energy $\sum_p A^{+}_{n,p}$ is
    below `eps` the ratio is not taken and $\ell_n = 1 - \sum_p M_{n,p} A^{+}_{n,p}$; an
    all-zero (or all-negative) map therefore gives exactly **1** (no NaN) and a zero gradient
    ($\max(A, 0)$ has gradient 0 at and below 0, as the authors' `clamp`); a map with tiny
    positive values inside the box gets gradient $-1$ there. The branch is a `torch.where`, so
    it compiles as one graph.

    **Reduction.** The authors sum $\ell_n$ over the images of a batch (`reduction="sum"`) and
    add it with weight $\lambda$ to the classification loss; `"mean"` divides that by $N$
    (rescale $\lambda$ accordingly).

    Paper: *Studying How to Efficiently and Effectively Guide Models with Explanations*, Rao et
    al., ICCV 2023 (arXiv:2303.11932).

    Args:
        input: `[N, *]` attribution maps (e.g. `[N, H, W]`), differentiable.
        target: `[N, *]` box masks of the same shape: bool, or numbers in $[0, 1]$ (a soft mask
            weighs each pixel's energy).
        eps: positive energy below which the map counts as empty ($\ge 0$; the authors' `1e-7`).
        reduction: `"mean" | "sum" | "none"` over the `N` images.
        validate_args: check that a numeric mask lies in $[0, 1]$ (a host sync).

    Returns:
        The reduced loss in $[0, 1]$ per image, or `[N]` with `reduction="none"` (float32 for
        half inputs).

    Raises:
        TypeError: `input` is not floating, or `target` is not a tensor.
        ValueError: shapes differ or `input` is not batched; a mask value outside $[0, 1]$;
            `eps < 0`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import energy_pointing_loss
        >>> attr = torch.tensor([[[1.0, 3.0], [-2.0, 0.0]]])  # one 2x2 map
        >>> box = torch.tensor([[[False, True], [False, False]]])
        >>> energy_pointing_loss(attr, box)  # 3 of the 4 units of positive energy in the box
        tensor(0.2500)
        >>> energy_pointing_loss(torch.zeros(1, 2, 2), box)  # empty map: 1, not NaN
        tensor(1.)
    """
    check_reduction(reduction)
    hp = _check_energy_args(eps=eps)
    check_tensor("input", input, floating=True)
    check_tensor("target", target)
    if input.ndim < 2:
        raise ValueError(f"input must be batched attribution maps [N, *], got {tuple(input.shape)}")
    if target.shape != input.shape:
        raise ValueError(
            f"target (box mask) must have the shape of input {tuple(input.shape)}, got "
            f"{tuple(target.shape)}"
        )
    if validate_args and target.dtype != torch.bool and bool(((target < 0) | (target > 1)).any()):
        raise ValueError("target (box mask) must be bool or hold values in [0, 1]")
    x = upcast(input).flatten(1)
    mask = target.flatten(1).to(x.dtype)
    pos = x.clamp_min(0.0)
    inside = (pos * mask).sum(dim=1)
    total = pos.sum(dim=1)
    empty = total < hp["eps"]
    # The authors' rule for an empty map: no division (1 - inside); `where` keeps one graph.
    ratio = inside / torch.where(empty, torch.ones_like(total), total)
    return reduce_loss(1.0 - ratio, reduction)


@register_loss("energy_pointing", aliases=("energy_loss", "model_guidance_energy"))
class EnergyPointingLoss(Loss):
    r"""Model-guidance energy loss: positive attribution outside the boxes (arXiv:2303.11932).

    See [energy_pointing_loss][lightning_losses.functional.energy_pointing_loss] for the formula
    and the empty-map rule. Add it to the task loss: `loss = bce + lam * energy(attr, box_mask)`,
    where `attr` is a differentiable attribution map of the guided class (computed with
    `create_graph=True` for gradient-based attributions).

    Args:
        eps: positive energy below which a map counts as empty.
        reduction: `"mean" | "sum" | "none"` (the authors sum over the batch).
        validate_args: check that numeric masks lie in $[0, 1]$.

    Shape:
        - input: `[N, *]` attribution maps; target: `[N, *]` box masks (bool or in $[0, 1]$).
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import EnergyPointingLoss
        >>> box = torch.zeros(2, 4, 4, dtype=torch.bool)
        >>> box[:, 1:3, 1:3] = True
        >>> EnergyPointingLoss(reduction="none")(box.float(), box)  # all energy inside: 0
        tensor([0., 0.])
        >>> EnergyPointingLoss()
        EnergyPointingLoss(eps=1e-07, reduction='mean')
    """

    functional = staticmethod(energy_pointing_loss)
    input_kind = InputKind.ATTRIBUTION
    target_arg = None

    def __init__(
        self, eps: float = 1e-7, reduction: str = "mean", validate_args: bool = True
    ) -> None:
        super().__init__(
            reduction=reduction, validate_args=validate_args, **_check_energy_args(eps=eps)
        )

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of attribution maps `input [N, *]` against box masks `target [N, *]`."""
        return self._call_functional(input, target)
