"""Label-noise-robust classification losses: GCE, comp-sum, SCE, normalized losses and APL.

Papers:
    Generalized Cross Entropy Loss for Training Deep Neural Networks with Noisy Labels
    (Zhang & Sabuncu, NeurIPS 2018, arXiv:1805.07836)
    Normalized Loss Functions for Deep Learning with Noisy Labels
    (Ma et al., ICML 2020, arXiv:2006.13554) — NCE, NFL, RCE/MAE passive terms, APL.
    Symmetric Cross Entropy for Robust Learning with Noisy Labels
    (Wang et al., ICCV 2019, arXiv:1908.06112) — SCE and its reverse cross-entropy term.
    Cross-Entropy Loss Functions: Theoretical Analysis and Applications
    (Mao, Mohri & Zhong, ICML 2023, arXiv:2304.07288) — the comp-sum family.
    Label Distributionally Robust Losses for Multi-class Classification: Consistency,
    Robustness and Adaptivity (Zhu, Ying & Yang, ICML 2023, arXiv:2112.14869) — LDR-KL.

Reference code followed where it pins a detail: ``HanxunH/Active-Passive-Losses`` (``loss.py``):
RCE clamps the one-hot target to ``[1e-4, 1]`` (so ``log 0`` becomes ``log 1e-4``) and NFL detaches
its focal weights. The LDR-KL authors' ``LDRLoss_V1`` softplus- and mean-normalises the logits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses._validation import (
    ClassificationBatch,
    check_choice,
    check_number,
    check_reduction,
    prepare_classification,
)
from lightning_losses.losses.base import Loss
from lightning_losses.losses.examples import classification_example
from lightning_losses.registry import register_loss

__all__ = [
    "ActivePassiveLoss",
    "CompSumLoss",
    "GeneralizedCrossEntropy",
    "LDRKLLoss",
    "MeanAbsoluteErrorLoss",
    "NormalizedCrossEntropy",
    "NormalizedFocalLoss",
    "ReverseCrossEntropy",
    "SymmetricCrossEntropy",
    "active_passive_loss",
    "comp_sum_loss",
    "generalized_cross_entropy",
    "ldr_kl_loss",
    "mean_absolute_error_loss",
    "normalized_cross_entropy",
    "normalized_focal_loss",
    "reverse_cross_entropy",
    "symmetric_cross_entropy",
]

_FAMILY = "A · label-noise robust"
DEFAULT_LOG_ZERO = math.log(1e-4)  # official APL/SCE code: one-hot clamped to [1e-4, 1]


# -- row-level cores: ClassificationBatch -> loss per row (before reduction) ---------------------


def _log_probs(batch: ClassificationBatch) -> tuple[Tensor, Tensor]:
    log_p = batch.logits.log_softmax(-1)
    return log_p, batch.at_target(log_p)


class _TargetLogProb(torch.autograd.Function):
    """``log_softmax(z)[y]`` with backward ``g · (e_y - p)`` from a saved ``p``.

    Autograd's ``gather`` + ``log_softmax`` backward materialises a dense ``[M, C]`` zero
    gradient and recomputes ``exp`` of the log-probabilities; saving ``p`` once makes the
    log-space losses (stable at logits ±1e4) as fast as a plain softmax implementation.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor) -> Tensor:  # type: ignore[override]
        log_p = logits.log_softmax(-1)
        out = log_p.gather(-1, target[:, None]).squeeze(-1)
        ctx.save_for_backward(log_p.exp_(), target)  # our own buffer: exp in place
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        p, target = ctx.saved_tensors
        g = p * -grad[:, None]
        g.scatter_add_(-1, target[:, None], grad[:, None])
        return g, None


def _log_p_y(batch: ClassificationBatch) -> Tensor:
    return _TargetLogProb.apply(batch.logits, batch.target)


def _gce_rows(batch: ClassificationBatch, q: float) -> Tensor:
    log_p_y = _log_p_y(batch)
    return -torch.expm1(q * log_p_y) / q  # (1 - p_y^q) / q without cancellation


def _nce_rows(batch: ClassificationBatch) -> Tensor:
    log_p, log_p_y = _log_probs(batch)
    return log_p_y / log_p.sum(-1)  # (-log p_y) / (-Σ_k log p_k)


def _nfl_rows(batch: ClassificationBatch, gamma: float, detach_focal_weights: bool) -> Tensor:
    log_p, log_p_y = _log_probs(batch)
    # (1 - p)^γ; log_softmax ≤ 0 so -expm1 ≥ 0. Detached weights (official code) are built
    # without autograd, in place, so nothing is saved for them.
    if detach_focal_weights:
        with torch.no_grad():
            weights = torch.expm1(log_p).neg_().pow_(gamma)
    else:
        weights = (-torch.expm1(log_p)).pow(gamma)
    w_y = batch.at_target(weights)
    return (w_y * log_p_y) / (weights * log_p).sum(-1)


def _ce_rows(batch: ClassificationBatch) -> Tensor:
    return -_log_p_y(batch)


def _comp_sum_rows(batch: ClassificationBatch, tau: float) -> Tensor:
    log_p_y = _log_p_y(batch)
    if tau == 1.0:
        return -log_p_y
    # Φ_τ(1/p_y - 1) = (p_y^{τ-1} - 1) / (1 - τ), via expm1 so τ → 1 stays accurate.
    return torch.expm1((tau - 1.0) * log_p_y) / (1.0 - tau)


def _mae_rows(batch: ClassificationBatch) -> Tensor:
    log_p_y = _log_p_y(batch)
    return -torch.expm1(log_p_y)  # 1 - p_y


def _rce_rows(batch: ClassificationBatch, log_zero: float) -> Tensor:
    # -Σ_k p_k log(clamp(onehot_k, e^{log_zero}, 1)) = -log_zero · (1 - p_y)
    return -log_zero * _mae_rows(batch)


def _check_log_zero(log_zero: float) -> float:
    return check_number("log_zero", log_zero, high=0.0, high_inclusive=False)


def _robust(rows_fn, input, target, ignore_index, reduction, scale=1.0) -> Tensor:
    check_reduction(reduction)
    batch = prepare_classification(input, target, ignore_index=ignore_index, allow_soft=False)
    rows = rows_fn(batch)
    if scale != 1.0:
        rows = scale * rows
    return reduce_loss(rows, reduction, valid=batch.valid, out_shape=batch.out_shape)


# -- functional API ------------------------------------------------------------------------------


def generalized_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    q: float = 0.7,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Generalized cross-entropy, :math:`\ell = (1 - p_y^q)/q`.

    Interpolates between cross-entropy (:math:`q \to 0`) and MAE :math:`1 - p_y` (:math:`q = 1`);
    bounded by :math:`1/q`, hence robust to label noise.

    Paper: *Generalized Cross Entropy Loss for Training Deep Neural Networks with Noisy Labels*,
    Zhang & Sabuncu, NeurIPS 2018 (arXiv:1805.07836).

    Args:
        input: logits ``[N, C, *]``.
        target: class indices ``[N, *]``.
        q: :math:`q \in (0, 1]` (default 0.7).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import generalized_cross_entropy
        >>> generalized_cross_entropy(torch.zeros(1, 2), torch.tensor([0]), q=1.0)  # 1 - 0.5
        tensor(0.5000)
    """
    q = check_number("q", q, low=0.0, high=1.0, low_inclusive=False)
    return _robust(lambda b: _gce_rows(b, q), input, target, ignore_index, reduction)


def normalized_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    scale: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Normalized cross-entropy, :math:`\ell = \dfrac{-\log p_y}{-\sum_k \log p_k} \in [0, 1]`.

    Symmetric: :math:`\sum_j \ell(z, j) = 1` for every :math:`z`, the condition for robustness to
    symmetric label noise. Paper: *Normalized Loss Functions for Deep Learning with Noisy
    Labels*, Ma et al., ICML 2020 (arXiv:2006.13554).

    Args:
        input: logits ``[N, C, *]``.
        target: class indices ``[N, *]``.
        scale: multiplier (the ``alpha`` of APL).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import normalized_cross_entropy
        >>> normalized_cross_entropy(torch.zeros(1, 4), torch.tensor([2]))  # uniform -> 1/C
        tensor(0.2500)
    """
    scale = check_number("scale", scale, low=0.0)
    return _robust(_nce_rows, input, target, ignore_index, reduction, scale)


def normalized_focal_loss(
    input: Tensor,
    target: Tensor,
    *,
    gamma: float = 0.5,
    scale: float = 1.0,
    detach_focal_weights: bool = True,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Normalized focal loss, :math:`\ell = \dfrac{(1-p_y)^\gamma \log p_y}{\sum_k (1-p_k)^\gamma \log p_k}`.

    ``gamma=0`` is NCE. As in the official code the focal weights :math:`(1-p)^\gamma` are
    detached (``detach_focal_weights=True``); the ``log p`` terms keep their gradients.
    Paper: Ma et al., ICML 2020 (arXiv:2006.13554).

    Args:
        input: logits ``[N, C, *]``.
        target: class indices ``[N, *]``.
        gamma: focusing parameter ``≥ 0`` (default 0.5).
        scale: multiplier.
        detach_focal_weights: follow the official code (True) or differentiate the weights.
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import normalized_focal_loss
        >>> normalized_focal_loss(torch.zeros(1, 4), torch.tensor([2]))
        tensor(0.2500)
    """
    gamma = check_number("gamma", gamma, low=0.0)
    scale = check_number("scale", scale, low=0.0)
    return _robust(
        lambda b: _nfl_rows(b, gamma, detach_focal_weights),
        input,
        target,
        ignore_index,
        reduction,
        scale,
    )


def reverse_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    scale: float = 1.0,
    log_zero: float = DEFAULT_LOG_ZERO,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Reverse cross-entropy, :math:`\ell = -\sum_k p_k \log \tilde t_k = -A\,(1 - p_y)`.

    :math:`\tilde t` is the one-hot target clamped to :math:`[e^{A}, 1]` with :math:`A` =
    ``log_zero``. The official SCE/APL code clamps at ``1e-4`` (:math:`A = \ln 10^{-4} \approx
    -9.21`, the default); the SCE paper's text uses :math:`A = -4`. The reference also clamps
    :math:`p_k \ge 10^{-7}`, which changes the value by at most :math:`C \cdot 10^{-7} |A|`; the
    closed form here does not.

    Paper: *Symmetric Cross Entropy for Robust Learning with Noisy Labels*, Wang et al.,
    ICCV 2019 (arXiv:1908.06112).

    Args:
        input: logits ``[N, C, *]``.
        target: class indices ``[N, *]``.
        scale: multiplier (the ``beta`` of APL/SCE).
        log_zero: :math:`A < 0`, the log of the clamped zero entries of the one-hot target.
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import reverse_cross_entropy
        >>> reverse_cross_entropy(torch.zeros(1, 2), torch.tensor([0]), log_zero=-4.0)
        tensor(2.)
    """
    scale = check_number("scale", scale, low=0.0)
    log_zero = _check_log_zero(log_zero)
    return _robust(lambda b: _rce_rows(b, log_zero), input, target, ignore_index, reduction, scale)


def mean_absolute_error_loss(
    input: Tensor,
    target: Tensor,
    *,
    scale: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""MAE on probabilities, :math:`\ell = 1 - p_y` (= :math:`\tfrac12\lVert p - e_y \rVert_1`).

    The passive loss of APL as written in the official code (the factor 2 of the L1 norm is
    absorbed in ``scale``). Paper: Ma et al., ICML 2020 (arXiv:2006.13554).

    Args:
        input: logits ``[N, C, *]``.
        target: class indices ``[N, *]``.
        scale: multiplier.
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import mean_absolute_error_loss
        >>> mean_absolute_error_loss(torch.zeros(1, 4), torch.tensor([0]))
        tensor(0.7500)
    """
    scale = check_number("scale", scale, low=0.0)
    return _robust(_mae_rows, input, target, ignore_index, reduction, scale)


def comp_sum_loss(
    input: Tensor,
    target: Tensor,
    *,
    tau: float = 1.0,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Comp-sum loss family :math:`\ell_\tau`, with CE, GCE and MAE as members.

    With :math:`u = \sum_{k \ne y} e^{z_k - z_y} = 1/p_y - 1`:

    .. math::
        \ell_\tau = \Phi_\tau(u) =
        \begin{cases} \log(1 + u) = -\log p_y & \tau = 1 \\
        \dfrac{(1+u)^{1-\tau} - 1}{1 - \tau} = \dfrac{p_y^{\tau-1} - 1}{1-\tau} & \tau \ne 1
        \end{cases}

    :math:`\tau = 0` is the sum-exponential loss :math:`1/p_y - 1`, :math:`\tau = 1` is
    cross-entropy, :math:`\tau \in (1, 2)` is exactly GCE with :math:`q = \tau - 1`,
    :math:`\tau = 2` is MAE :math:`1 - p_y`. For :math:`\tau < 1` the
    loss grows like :math:`p_y^{\tau-1}` and overflows for extremely wrong logits
    (:math:`\log p_y \lesssim -88/(1-\tau)` in float32); the bounded members are
    :math:`\tau \ge 1`.

    Paper: *Cross-Entropy Loss Functions: Theoretical Analysis and Applications*, Mao, Mohri &
    Zhong, ICML 2023 (arXiv:2304.07288).

    Args:
        input: logits ``[N, C, *]``.
        target: class indices ``[N, *]``.
        tau: :math:`\tau \in [0, 2]` (default 1.0 = cross-entropy).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import comp_sum_loss
        >>> logits, y = torch.zeros(1, 4), torch.tensor([0])  # p_y = 1/4
        >>> comp_sum_loss(logits, y, tau=0.0), comp_sum_loss(logits, y, tau=2.0)  # 1/p-1, 1-p
        (tensor(3.), tensor(0.7500))
    """
    tau = check_number("tau", tau, low=0.0, high=2.0)
    return _robust(lambda b: _comp_sum_rows(b, tau), input, target, ignore_index, reduction)


def symmetric_cross_entropy(
    input: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.1,
    beta: float = 1.0,
    log_zero: float = DEFAULT_LOG_ZERO,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Symmetric cross-entropy, :math:`\ell = \alpha\,\mathrm{CE} + \beta\,\mathrm{RCE}`.

    .. math:: \ell = -\alpha \log p_y - \beta A\,(1 - p_y)

    RCE is :func:`reverse_cross_entropy` with :math:`A` = ``log_zero`` (the official code clamps
    the one-hot target at ``1e-4``, :math:`A = \ln 10^{-4}`, the default; the paper's text uses
    :math:`A = -4`). Defaults are the paper's CIFAR-10 setting; CIFAR-100 uses
    ``alpha=6.0, beta=0.1``. ``alpha=1, beta=0`` is cross-entropy.

    Paper: *Symmetric Cross Entropy for Robust Learning with Noisy Labels*, Wang et al.,
    ICCV 2019 (arXiv:1908.06112).

    Args:
        input: logits ``[N, C, *]``.
        target: class indices ``[N, *]``.
        alpha: weight of the CE term (default 0.1).
        beta: weight of the RCE term (default 1.0).
        log_zero: :math:`A < 0` (default :math:`\ln 10^{-4}`).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import symmetric_cross_entropy
        >>> # p_y = 1/2: 0.1 * log 2 + 1.0 * 4 * 0.5
        >>> symmetric_cross_entropy(torch.zeros(1, 2), torch.tensor([1]), log_zero=-4.0)
        tensor(2.0693)
    """
    alpha = check_number("alpha", alpha, low=0.0)
    beta = check_number("beta", beta, low=0.0)
    log_zero = _check_log_zero(log_zero)

    def rows(batch: ClassificationBatch) -> Tensor:
        return alpha * _ce_rows(batch) + beta * _rce_rows(batch, log_zero)

    return _robust(rows, input, target, ignore_index, reduction)


LDR_SCORE_EPS = 1e-12  # floor of the softplus mean: all-very-negative logits stay finite


def _ldr_kl_rows(batch: ClassificationBatch, lam: float, margin: float, normalize: bool) -> Tensor:
    s = batch.logits
    if normalize:
        # Official code: positive scores softplus(z), divided by their mean over classes.
        s = F.softplus(s)
        s = s / s.mean(-1, keepdim=True).clamp_min(LDR_SCORE_EPS)
    s_y = s.gather(-1, batch.target[:, None])
    not_y = torch.ones_like(s).scatter(-1, batch.target[:, None], 0.0)
    diff = (margin * not_y + s - s_y) / lam
    return lam * (torch.logsumexp(diff, -1) - math.log(s.shape[-1]))


def ldr_kl_loss(
    input: Tensor,
    target: Tensor,
    *,
    lam: float = 1.0,
    margin: float = 2.0,
    normalize_scores: bool = True,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Label-distributionally-robust loss with a KL regulariser (LDR-KL).

    .. math::
        \ell = \lambda \log \frac1C \sum_k
        \exp\!\Big(\frac{s_k - s_y + c\,[k \ne y]}{\lambda}\Big)

    the worst case over label distributions :math:`q` of :math:`\sum_k q_k (s_k - s_y +
    c[k\ne y])` minus :math:`\lambda\,\mathrm{KL}(q \| \mathrm{uniform})`. With
    ``normalize_scores=True`` (the authors' code) the scores are
    :math:`s = \mathrm{softplus}(z) / \mathrm{mean}_k \mathrm{softplus}(z_k)`, which bounds them
    (:math:`0 \le s_k \le C`) and so bounds the loss — the source of its noise robustness;
    with ``False``, :math:`s = z` and ``lam=1, margin=0`` is :math:`\mathrm{CE} - \log C`.
    :math:`\lambda \to 0` approaches the max-margin (Crammer-Singer) hinge, :math:`\lambda \to
    \infty` the mean margin. The adaptive ALDR-KL variant keeps a learned :math:`\lambda_i`
    per training sample (state indexed by sample id) and is not provided as a plain loss.

    Paper: *Label Distributionally Robust Losses for Multi-class Classification: Consistency,
    Robustness and Adaptivity*, Zhu, Ying & Yang, ICML 2023 (arXiv:2112.14869).

    Args:
        input: logits ``[N, C, *]``.
        target: class indices ``[N, *]``.
        lam: KL regularisation :math:`\lambda > 0` (default 1.0, the authors' class default).
        margin: :math:`c \ge 0` (default 2.0, the authors' ``LDRLoss_V1`` default; tuned per
            dataset in the paper).
        normalize_scores: softplus + mean-normalise the logits as the authors' code (default).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import ldr_kl_loss
        >>> # equal logits: s = 1 for every class, loss = log((1 + (C-1) e^c) / C)
        >>> ldr_kl_loss(torch.zeros(1, 2), torch.tensor([0]), margin=1.0)  # log((1 + e) / 2)
        tensor(0.6201)
    """
    lam = check_number("lam", lam, low=0.0, low_inclusive=False)
    margin = check_number("margin", margin, low=0.0)
    normalize = bool(normalize_scores)
    return _robust(
        lambda b: _ldr_kl_rows(b, lam, margin, normalize), input, target, ignore_index, reduction
    )


ACTIVE_LOSSES = ("nce", "nfl")
PASSIVE_LOSSES = ("rce", "mae")


def active_passive_loss(
    input: Tensor,
    target: Tensor,
    *,
    active: str = "nce",
    passive: str = "rce",
    alpha: float = 1.0,
    beta: float = 1.0,
    gamma: float = 0.5,
    log_zero: float = DEFAULT_LOG_ZERO,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    r"""Active-Passive Loss, :math:`\ell = \alpha\,\ell_{\text{active}} + \beta\,\ell_{\text{passive}}`.

    Active ∈ {``"nce"``, ``"nfl"``} (normalized CE / focal), passive ∈ {``"rce"``, ``"mae"``}.
    Both terms are robust; the active one fits the labelled class, the passive one pushes other
    classes down, fixing the underfitting of a normalized loss alone. Defaults are the paper's
    CIFAR-10 NCE+RCE setting; CIFAR-100 uses ``alpha=10, beta=0.1``.

    Paper: *Normalized Loss Functions for Deep Learning with Noisy Labels*, Ma et al.,
    ICML 2020 (arXiv:2006.13554).

    Args:
        input: logits ``[N, C, *]``.
        target: class indices ``[N, *]``.
        active: ``"nce"`` or ``"nfl"``.
        passive: ``"rce"`` or ``"mae"``.
        alpha: weight of the active term.
        beta: weight of the passive term.
        gamma: NFL focusing parameter (only with ``active="nfl"``).
        log_zero: RCE's clamped log-zero (only with ``passive="rce"``).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import active_passive_loss
        >>> active_passive_loss(torch.zeros(1, 4), torch.tensor([0]), log_zero=-4.0)  # 0.25 + 3
        tensor(3.2500)
    """
    check_choice("active", active, ACTIVE_LOSSES)
    check_choice("passive", passive, PASSIVE_LOSSES)
    alpha = check_number("alpha", alpha, low=0.0)
    beta = check_number("beta", beta, low=0.0)
    gamma = check_number("gamma", gamma, low=0.0)
    log_zero = _check_log_zero(log_zero)

    def rows(batch: ClassificationBatch) -> Tensor:
        act = _nce_rows(batch) if active == "nce" else _nfl_rows(batch, gamma, True)
        pas = _rce_rows(batch, log_zero) if passive == "rce" else _mae_rows(batch)
        return alpha * act + beta * pas

    return _robust(rows, input, target, ignore_index, reduction)


# -- modules -------------------------------------------------------------------------------------


@register_loss(
    "gce",
    aliases=("generalized_cross_entropy",),
    functional=generalized_cross_entropy,
    example=classification_example,
    invalid_kwargs=({"q": 0.0}, {"q": 1.5}),
    ignore_index=True,
    family=_FAMILY,
)
class GeneralizedCrossEntropy(Loss):
    r"""Generalized cross-entropy :math:`(1 - p_y^q)/q` (Zhang & Sabuncu 2018, arXiv:1805.07836).

    See :func:`~lightning_losses.functional.generalized_cross_entropy`.

    Args:
        q: :math:`q \in (0, 1]` (default 0.7).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import GeneralizedCrossEntropy
        >>> GeneralizedCrossEntropy(q=0.7)(torch.zeros(2, 2), torch.tensor([0, 1]))
        tensor(0.5492)
    """

    def __init__(self, q: float = 0.7, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.q = check_number("q", q, low=0.0, high=1.0, low_inclusive=False)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return generalized_cross_entropy(
            input, target, q=self.q, ignore_index=self.ignore_index, reduction=self.reduction
        )


@register_loss(
    "nce",
    aliases=("normalized_cross_entropy",),
    functional=normalized_cross_entropy,
    example=classification_example,
    invalid_kwargs=({"scale": -1.0},),
    ignore_index=True,
    family=_FAMILY,
)
class NormalizedCrossEntropy(Loss):
    r"""Normalized cross-entropy (Ma et al. 2020, arXiv:2006.13554); value in ``[0, 1]``.

    Args:
        scale: multiplier (default 1.0).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import NormalizedCrossEntropy
        >>> NormalizedCrossEntropy()(torch.zeros(1, 5), torch.tensor([0]))
        tensor(0.2000)
    """

    def __init__(
        self, scale: float = 1.0, ignore_index: int = -100, reduction: str = "mean"
    ) -> None:
        super().__init__(reduction)
        self.scale = check_number("scale", scale, low=0.0)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return normalized_cross_entropy(
            input,
            target,
            scale=self.scale,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


@register_loss(
    "nfl",
    aliases=("normalized_focal",),
    functional=normalized_focal_loss,
    example=classification_example,
    invalid_kwargs=({"gamma": -1.0}, {"scale": -1.0}),
    ignore_index=True,
    gradcheck=False,
    family=_FAMILY,
    notes="gradient follows the official code (focal weights detached), so it is not the "
    "derivative of the value; tests gradcheck detach_focal_weights=False instead",
)
class NormalizedFocalLoss(Loss):
    r"""Normalized focal loss (Ma et al. 2020, arXiv:2006.13554); ``gamma=0`` is NCE.

    Args:
        gamma: focusing parameter (default 0.5).
        scale: multiplier (default 1.0).
        detach_focal_weights: detach :math:`(1-p)^\gamma` as the official code does (default True).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import NormalizedFocalLoss
        >>> NormalizedFocalLoss(gamma=0.5)(torch.zeros(1, 5), torch.tensor([0]))
        tensor(0.2000)
    """

    def __init__(
        self,
        gamma: float = 0.5,
        scale: float = 1.0,
        detach_focal_weights: bool = True,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.gamma = check_number("gamma", gamma, low=0.0)
        self.scale = check_number("scale", scale, low=0.0)
        self.detach_focal_weights = bool(detach_focal_weights)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return normalized_focal_loss(
            input,
            target,
            gamma=self.gamma,
            scale=self.scale,
            detach_focal_weights=self.detach_focal_weights,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


@register_loss(
    "rce",
    aliases=("reverse_cross_entropy",),
    functional=reverse_cross_entropy,
    example=classification_example,
    invalid_kwargs=({"log_zero": 0.5}, {"scale": -1.0}),
    ignore_index=True,
    family=_FAMILY,
)
class ReverseCrossEntropy(Loss):
    r"""Reverse cross-entropy :math:`-A(1-p_y)` (Wang et al. 2019, arXiv:1908.06112).

    Args:
        scale: multiplier (default 1.0).
        log_zero: :math:`A < 0` (default :math:`\ln 10^{-4}`, the official code's clamp).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import ReverseCrossEntropy
        >>> ReverseCrossEntropy(log_zero=-4.0)(torch.zeros(1, 2), torch.tensor([1]))
        tensor(2.)
    """

    def __init__(
        self,
        scale: float = 1.0,
        log_zero: float = DEFAULT_LOG_ZERO,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.scale = check_number("scale", scale, low=0.0)
        self.log_zero = _check_log_zero(log_zero)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return reverse_cross_entropy(
            input,
            target,
            scale=self.scale,
            log_zero=self.log_zero,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


@register_loss(
    "mae",
    aliases=("mean_absolute_error",),
    functional=mean_absolute_error_loss,
    example=classification_example,
    invalid_kwargs=({"scale": -1.0},),
    ignore_index=True,
    family=_FAMILY,
)
class MeanAbsoluteErrorLoss(Loss):
    r"""MAE on class probabilities, :math:`1 - p_y` (the APL passive term, arXiv:2006.13554).

    Args:
        scale: multiplier (default 1.0).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import MeanAbsoluteErrorLoss
        >>> MeanAbsoluteErrorLoss()(torch.zeros(1, 2), torch.tensor([1]))
        tensor(0.5000)
    """

    def __init__(
        self, scale: float = 1.0, ignore_index: int = -100, reduction: str = "mean"
    ) -> None:
        super().__init__(reduction)
        self.scale = check_number("scale", scale, low=0.0)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return mean_absolute_error_loss(
            input,
            target,
            scale=self.scale,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


@register_loss(
    "apl",
    aliases=("active_passive", "nce_rce"),
    functional=active_passive_loss,
    example=classification_example,
    invalid_kwargs=({"active": "ce"}, {"passive": "kl"}, {"alpha": -1.0}, {"log_zero": 1.0}),
    ignore_index=True,
    family=_FAMILY,
)
class ActivePassiveLoss(Loss):
    r"""Active-Passive Loss :math:`\alpha\,\ell_{\text{active}} + \beta\,\ell_{\text{passive}}` (arXiv:2006.13554).

    Default NCE+RCE with the paper's CIFAR-10 weights ``alpha=1, beta=1``.
    See :func:`~lightning_losses.functional.active_passive_loss`.

    Args:
        active: ``"nce"`` (default) or ``"nfl"``.
        passive: ``"rce"`` (default) or ``"mae"``.
        alpha: active weight (default 1.0; CIFAR-100: 10.0).
        beta: passive weight (default 1.0; CIFAR-100: 0.1).
        gamma: NFL focusing parameter (default 0.5).
        log_zero: RCE's clamped log-zero (default :math:`\ln 10^{-4}`).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import ActivePassiveLoss
        >>> ActivePassiveLoss(active="nce", passive="mae")(torch.zeros(1, 4), torch.tensor([0]))
        tensor(1.)
    """

    def __init__(
        self,
        active: str = "nce",
        passive: str = "rce",
        alpha: float = 1.0,
        beta: float = 1.0,
        gamma: float = 0.5,
        log_zero: float = DEFAULT_LOG_ZERO,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.active = check_choice("active", active, ACTIVE_LOSSES)
        self.passive = check_choice("passive", passive, PASSIVE_LOSSES)
        self.alpha = check_number("alpha", alpha, low=0.0)
        self.beta = check_number("beta", beta, low=0.0)
        self.gamma = check_number("gamma", gamma, low=0.0)
        self.log_zero = _check_log_zero(log_zero)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return active_passive_loss(
            input,
            target,
            active=self.active,
            passive=self.passive,
            alpha=self.alpha,
            beta=self.beta,
            gamma=self.gamma,
            log_zero=self.log_zero,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


@register_loss(
    "comp_sum",
    aliases=("comp_sum_loss",),
    functional=comp_sum_loss,
    example=classification_example,
    invalid_kwargs=({"tau": -0.1}, {"tau": 2.5}),
    ignore_index=True,
    family=_FAMILY,
)
class CompSumLoss(Loss):
    r"""Comp-sum loss :math:`(p_y^{\tau-1} - 1)/(1-\tau)` (Mao et al. 2023, arXiv:2304.07288).

    ``tau``: 0 sum-exponential, 1 cross-entropy, (1, 2) GCE, 2 MAE.
    See :func:`~lightning_losses.functional.comp_sum_loss`.

    Args:
        tau: :math:`\tau \in [0, 2]` (default 1.0).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import CompSumLoss
        >>> CompSumLoss(tau=1.0)(torch.zeros(2, 4), torch.tensor([0, 1]))  # CE = log 4
        tensor(1.3863)
    """

    def __init__(self, tau: float = 1.0, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.tau = check_number("tau", tau, low=0.0, high=2.0)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return comp_sum_loss(
            input, target, tau=self.tau, ignore_index=self.ignore_index, reduction=self.reduction
        )


@register_loss(
    "sce",
    aliases=("symmetric_cross_entropy",),
    functional=symmetric_cross_entropy,
    example=classification_example,
    invalid_kwargs=({"alpha": -1.0}, {"beta": -1.0}, {"log_zero": 0.0}),
    ignore_index=True,
    family=_FAMILY,
)
class SymmetricCrossEntropy(Loss):
    r"""Symmetric cross-entropy :math:`\alpha\,\mathrm{CE} + \beta\,\mathrm{RCE}` (arXiv:1908.06112).

    See :func:`~lightning_losses.functional.symmetric_cross_entropy`.

    Args:
        alpha: CE weight (default 0.1; CIFAR-100: 6.0).
        beta: RCE weight (default 1.0; CIFAR-100: 0.1).
        log_zero: RCE's clamped log-zero (default :math:`\ln 10^{-4}`, official code).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import SymmetricCrossEntropy
        >>> SymmetricCrossEntropy(alpha=1.0, beta=0.0)(torch.zeros(1, 4), torch.tensor([0]))
        tensor(1.3863)
    """

    def __init__(
        self,
        alpha: float = 0.1,
        beta: float = 1.0,
        log_zero: float = DEFAULT_LOG_ZERO,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.alpha = check_number("alpha", alpha, low=0.0)
        self.beta = check_number("beta", beta, low=0.0)
        self.log_zero = _check_log_zero(log_zero)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return symmetric_cross_entropy(
            input,
            target,
            alpha=self.alpha,
            beta=self.beta,
            log_zero=self.log_zero,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


@register_loss(
    "ldr_kl",
    aliases=("ldr_kl_loss",),
    functional=ldr_kl_loss,
    example=classification_example,
    invalid_kwargs=({"lam": 0.0}, {"margin": -1.0}),
    ignore_index=True,
    family=_FAMILY,
)
class LDRKLLoss(Loss):
    r"""LDR-KL loss :math:`\lambda\log\mathrm{mean}_k e^{(s_k - s_y + c[k\ne y])/\lambda}` (arXiv:2112.14869).

    See :func:`~lightning_losses.functional.ldr_kl_loss`.

    Args:
        lam: KL regularisation :math:`\lambda > 0` (default 1.0).
        margin: :math:`c \ge 0` (default 2.0).
        normalize_scores: softplus + mean-normalise logits as the authors' code (default True).
        ignore_index: target value that is ignored.
        reduction: ``"mean" | "sum" | "none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import LDRKLLoss
        >>> LDRKLLoss(margin=0.0, normalize_scores=False)(torch.zeros(1, 3), torch.tensor([0]))
        tensor(0.)
    """

    def __init__(
        self,
        lam: float = 1.0,
        margin: float = 2.0,
        normalize_scores: bool = True,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        self.lam = check_number("lam", lam, low=0.0, low_inclusive=False)
        self.margin = check_number("margin", margin, low=0.0)
        self.normalize_scores = bool(normalize_scores)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return ldr_kl_loss(
            input,
            target,
            lam=self.lam,
            margin=self.margin,
            normalize_scores=self.normalize_scores,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )
