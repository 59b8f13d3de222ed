r"""Entropy minimisation with a class-proportion prior: source-free domain adaptation of segmenters.

From *Source-Relaxed Domain Adaptation for Image Segmentation* (Bateson, Kervadec, Dolz,
Lombaert, Ben Ayed, MICCAI 2020) and its journal version *Source-free domain
adaptation for image segmentation* (Medical Image Analysis 2022, arXiv:2108.03152). Checked
against the authors' code (`mathilde-b/SFDA`: `EntKLProp` in `losses.py`, `norm_soft_size` in
`utils.py`, the sum of its two terms in `main_sfda.py`, the settings of `prostate.make`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_losses.losses._numerics import upcast
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import (
    check_bool,
    check_number,
    check_reduction,
    check_tensor,
    check_weight_arg,
)

__all__ = ["PriorEntropyMinimizationLoss", "prior_entropy_minimization_loss"]


def _check_prior_entropy_args(
    *, lam: Any, weight: Any, power: Any, normalize_by_max: Any, eps: Any
) -> dict[str, Any]:
    # The one validator of the hyperparameters: the functional and the class use it.
    return {
        "lam": check_number("lam", lam, low=0.0),
        "weight": check_weight_arg(weight),
        "power": check_number("power", power, low=0.0, low_inclusive=False),
        "normalize_by_max": check_bool("normalize_by_max", normalize_by_max),
        "eps": check_number("eps", eps, low=0.0),
    }


def _check_non_negative_weight(weight: Tensor | None) -> None:
    if weight is not None and not bool((weight >= 0).all()):
        raise ValueError(f"weight must hold non-negative class weights, got {weight.tolist()}")


def predicted_class_proportions(
    probs: Tensor, *, power: float = 1.0, normalize_by_max: bool = True, eps: float = 1e-10
) -> Tensor:
    r"""Each image's predicted class proportions $\hat\tau_{n,c}$ from probabilities `[N, C, *]`.

    `normalize_by_max=True` is the authors' `norm_soft_size`: each pixel's probabilities are
    divided by their maximum over classes, raised to `power`, summed over the pixels and
    normalised over the classes. `normalize_by_max=False` with `power=1` is the plain mean
    softmax $\frac{1}{\lvert\Omega\rvert}\sum_i p_{i,c}$ of the papers' formula.
    """
    if normalize_by_max:
        probs = probs / (probs.amax(dim=1, keepdim=True) + eps)
    sizes = probs.pow(power).flatten(2).sum(-1)  # [N, C]
    return sizes / (sizes.sum(dim=1, keepdim=True) + eps)


def prior_entropy_minimization_loss(
    input: Tensor,
    prior: Tensor,
    *,
    lam: float = 1.0,
    weight: Tensor | None = None,
    power: float = 1.0,
    normalize_by_max: bool = True,
    eps: float = 1e-10,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Weighted pixel entropy + $\lambda$ KL of predicted class proportions to a prior.

    For image $n$ with softmax probabilities $p_{i,c}$ over its pixels $i \in \Omega$, class
    weights $w_c$ and the prior class proportions $\tau_{n,c}$ (e.g. from an auxiliary size
    regressor trained on the source domain),

    $$
    \ell_n = -\frac{1}{\lvert\Omega\rvert}\sum_{i\in\Omega}\sum_c w_c\,p_{i,c}\log p_{i,c}
        + \lambda\sum_c \hat\tau_{n,c}\big(\log(\hat\tau_{n,c} + \epsilon)
        - \log(\tau_{n,c} + \epsilon)\big),
    $$

    the second term $\mathrm{KL}(\hat\tau_n \,\Vert\, \tau_n)$ with the **predicted** proportions
    first, as in the authors' code, where $\hat\tau_{n,c}$ are the image's predicted class
    proportions: by default the code's `norm_soft_size` (each pixel's probabilities divided by
    their maximum over classes, to the power `power`, summed over the pixels, normalised over
    the classes); `normalize_by_max=False` with `power=1` gives the papers' plain mean softmax.
    A confident (one-hot) prediction whose proportions equal the prior has loss 0.

    Verified against `mathilde-b/SFDA` (`EntKLProp`): the entropy term is
    $-\sum w_c p\log p$ over all pixels divided by $\sum p$ (the number of pixels), the KL term
    is summed over classes and averaged over images, and the two are added with
    `lamb_se = lamb_consprior = 1` in the released experiments, so $\lambda = 1$ by default;
    those experiments weight the entropy of (background, foreground) by `weight=(0.1, 0.9)`
    (here no weighting by default, `weight=None`). The code's `log(p + 1e-10)` in the entropy is
    computed here exactly with `log_softmax` (the values differ by less than $10^{-9}$, and the
    gradient stays finite for saturated pixels).

    Papers: *Source-Relaxed Domain Adaptation for Image Segmentation*, Bateson et al., MICCAI 2020;
    *Source-free domain adaptation for image segmentation*, Bateson et al.,
    Medical Image Analysis 2022 (arXiv:2108.03152).

    Args:
        input: logits `[N, C, *spatial]` (softmax over `C ≥ 2`).
        prior: prior class proportions, `[N, C]` (one row per image) or `[C]` (shared); not
            differentiated.
        lam: $\lambda \ge 0$, the weight of the KL term.
        weight: optional class weights `[C]` (≥ 0) of the entropy term.
        power: exponent of the (normalised) probabilities in $\hat\tau$ (> 0).
        normalize_by_max: divide each pixel's probabilities by their maximum before summing
            (the authors' code) instead of the plain mean softmax.
        eps: $\epsilon \ge 0$ inside the logarithms of the KL term and the normalisations.
        reduction: `"mean" | "sum" | "none"` over images.
        validate_args: check that `prior` is finite and non-negative (a host sync).

    Returns:
        The reduced loss, or `[N]` with `reduction="none"` (float32 for half inputs).

    Raises:
        TypeError: non-floating `input` or `prior`.
        ValueError: `input` not `[N, C, *]` with `C ≥ 2`, `prior` not `[N, C]` or `[C]`,
            negative or non-finite `prior` (with `validate_args`), a `weight` of the wrong size,
            bad hyperparameters.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import prior_entropy_minimization_loss
        >>> logits = torch.zeros(1, 2, 2, 2)
        >>> logits[0, 0, 0] = 30.0  # confident: top row class 0, bottom row class 1
        >>> logits[0, 1, 1] = 30.0
        >>> prior_entropy_minimization_loss(logits, torch.tensor([0.5, 0.5])).abs() < 1e-6
        tensor(True)
        >>> bool(prior_entropy_minimization_loss(logits, torch.tensor([0.9, 0.1])) > 0.5)
        True
    """
    check_reduction(reduction)
    hp = _check_prior_entropy_args(
        lam=lam, weight=weight, power=power, normalize_by_max=normalize_by_max, eps=eps
    )
    check_tensor("input", input, floating=True)
    check_tensor("prior", prior, floating=True)
    if input.ndim < 3 or input.shape[1] < 2:
        raise ValueError(
            f"input must be logits [N, C, *spatial] with C ≥ 2, got {tuple(input.shape)}"
        )
    n, c = input.shape[:2]
    if prior.shape not in ((n, c), (c,)):
        raise ValueError(
            f"prior must have shape [N, C] = {(n, c)} or [C] = {(c,)}, got {tuple(prior.shape)}"
        )
    if hp["weight"] is not None and hp["weight"].shape != (c,):
        raise ValueError(
            f"weight must have {c} entries (one per class), got {hp['weight'].numel()}"
        )
    if validate_args:  # host syncs
        if not bool((torch.isfinite(prior) & (prior >= 0)).all()):
            raise ValueError("prior must hold finite, non-negative class proportions")
        _check_non_negative_weight(hp["weight"])
    x = upcast(input)
    log_p = torch.log_softmax(x, dim=1)
    p = log_p.exp()
    ent = -(p * log_p)  # [N, C, *]
    if hp["weight"] is not None:
        w = hp["weight"].to(dtype=ent.dtype, device=ent.device)
        ent = ent * w.view(1, c, *([1] * (ent.ndim - 2)))
    ent = ent.sum(1).flatten(1).mean(-1)  # [N]: mean over the image's pixels
    tau_hat = predicted_class_proportions(
        p, power=hp["power"], normalize_by_max=hp["normalize_by_max"], eps=hp["eps"]
    )
    tau = upcast(prior).detach().to(tau_hat.dtype).expand(n, c)
    kl = (tau_hat * ((tau_hat + hp["eps"]).log() - (tau + hp["eps"]).log())).sum(-1)
    return reduce_loss(ent + hp["lam"] * kl, reduction)


@register_loss("prior_entropy_minimization", aliases=("ent_kl_prop",))
class PriorEntropyMinimizationLoss(Loss):
    r"""Source-free domain adaptation loss: entropy + $\lambda$ KL to a class-proportion prior.

    Bateson et al., MICCAI 2020 / MedIA 2022 (arXiv:2108.03152), checked
    against the authors' `EntKLProp`; see
    [prior_entropy_minimization_loss][lightning_losses.functional.prior_entropy_minimization_loss].
    `forward(input, prior)` with logits `[N, C, *spatial]` and prior proportions `[N, C]` or
    `[C]`: no labels, the target domain is unlabelled.

    Args:
        lam: weight of the KL term (the authors' 1).
        weight: optional entropy class weights `[C]` (the authors' prostate runs: `(0.1, 0.9)`).
        power: exponent in the predicted proportions.
        normalize_by_max: the authors' max-normalised proportions (default) or the plain mean
            softmax.
        eps: inside the logarithms and the normalisations.
        reduction: `"mean" | "sum" | "none"` (over images).
        validate_args: check the prior's values (a host sync).

    Shape:
        - input: `[N, C, *spatial]` logits; prior: `[N, C]` or `[C]`.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import PriorEntropyMinimizationLoss
        >>> loss = PriorEntropyMinimizationLoss(weight=torch.tensor([0.1, 0.9]))
        >>> loss(torch.zeros(2, 2, 4, 4), torch.tensor([0.5, 0.5]))  # uniform: entropy only
        tensor(0.3466)
    """

    functional = staticmethod(prior_entropy_minimization_loss)
    input_kind = InputKind.DENSE
    target_arg = None

    def __init__(
        self,
        lam: float = 1.0,
        weight: Tensor | None = None,
        power: float = 1.0,
        normalize_by_max: bool = True,
        eps: float = 1e-10,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        hparams = _check_prior_entropy_args(
            lam=lam, weight=weight, power=power, normalize_by_max=normalize_by_max, eps=eps
        )
        _check_non_negative_weight(hparams["weight"])
        super().__init__(reduction=reduction, validate_args=validate_args, **hparams)

    def forward(self, input: Tensor, prior: Tensor) -> Tensor:
        """Loss of logits `input [N, C, *]` against prior class proportions `prior [N, C]`/`[C]`."""
        return self._call_functional(input, prior)
