"""Ranking and recommendation losses over (user, positive item, negative items) scores.

Papers:
    BPR: Bayesian Personalized Ranking from Implicit Feedback (Rendle et al., UAI 2009,
    arXiv:1205.2618)
    SimpleX: A Simple and Strong Baseline for Collaborative Filtering — cosine contrastive loss
    (Mao et al., CIKM 2021, arXiv:2109.12613)
    On Using Very Large Target Vocabulary for Neural Machine Translation — sampled softmax
    (Jean et al., ACL 2015, arXiv:1412.2007); logQ correction from Sampling-Bias-Corrected
    Neural Modeling for Large Corpus Item Recommendations (Yi et al., RecSys 2019)
    Neural Collaborative Filtering — pointwise log loss with sampled negatives
    (He et al., WWW 2017, arXiv:1708.05031)

Every function takes the score of the observed item ``pos_score [N]`` and of sampled negatives
``neg_score [N, K]`` (``[N]`` means ``K = 1``) and, with ``reduction="none"``, returns one loss
per interaction ``(u, i)`` — the granularity PLD resampling and sample reweighting act on.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses._validation import (
    check_number,
    check_reduction,
    check_tensor,
    upcast,
)
from lightning_losses.losses.base import Loss
from lightning_losses.losses.examples import ranking_example
from lightning_losses.registry import register_loss

__all__ = [
    "BPRLoss",
    "BinaryCrossEntropyRecLoss",
    "CosineContrastiveLoss",
    "SampledSoftmaxLoss",
    "bce_rec_loss",
    "bpr_loss",
    "cosine_contrastive_loss",
    "sampled_softmax_loss",
]

_FAMILY = "D · ranking & recommendation"


def _prepare_scores(pos_score: Tensor, neg_score: Tensor) -> tuple[Tensor, Tensor]:
    """Validate ``pos_score [N]`` / ``neg_score [N] | [N, K]``; return float32+ ``[N]``, ``[N, K]``."""
    check_tensor("pos_score", pos_score, floating=True)
    check_tensor("neg_score", neg_score, floating=True)
    if pos_score.ndim != 1:
        raise ValueError(f"pos_score must have shape [N], got {tuple(pos_score.shape)}")
    if neg_score.ndim not in (1, 2):
        raise ValueError(f"neg_score must have shape [N] or [N, K], got {tuple(neg_score.shape)}")
    if neg_score.shape[0] != pos_score.shape[0]:
        raise ValueError(
            f"neg_score must have the batch size of pos_score ({pos_score.shape[0]}), "
            f"got shape {tuple(neg_score.shape)}"
        )
    if neg_score.ndim == 2 and neg_score.shape[1] < 1:
        raise ValueError(
            f"neg_score needs at least one negative per row, got {tuple(neg_score.shape)}"
        )
    pos = upcast(pos_score)
    neg = upcast(neg_score)
    if neg.ndim == 1:
        neg = neg.unsqueeze(1)
    dtype = torch.promote_types(pos.dtype, neg.dtype)
    return pos.to(dtype), neg.to(dtype)


# --------------------------------------------------------------------------------------- BPR
def bpr_loss(
    pos_score: Tensor,
    neg_score: Tensor,
    *,
    gamma: float = 1e-10,
    reduction: str = "mean",
) -> Tensor:
    r"""Bayesian personalised ranking loss, averaged over the sampled negatives.

    .. math:: \ell_{ui} = \frac{1}{K}\sum_{j=1}^{K} -\log\big(\sigma(s_{ui} - s_{uj}) + \gamma\big)

    ``gamma`` is RecBole's guard (``recbole.model.loss.BPRLoss``, default ``1e-10``); it is
    evaluated stably as :math:`-\operatorname{logaddexp}(\log\sigma(d), \log\gamma)`, so
    ``gamma=0`` is exactly :math:`\operatorname{softplus}(-(s_{ui} - s_{uj}))` and scores of
    ±1e4 stay finite.

    Paper: *BPR: Bayesian Personalized Ranking from Implicit Feedback*, Rendle et al., UAI 2009
    (arXiv:1205.2618).

    Args:
        pos_score: scores of the observed items ``[N]``.
        neg_score: scores of the sampled negatives ``[N]`` or ``[N, K]``.
        gamma: additive guard inside the log, ``≥ 0``.
        reduction: ``"mean" | "sum" | "none"`` (``none`` returns ``[N]``).

    Example:
        >>> import torch
        >>> from lightning_losses.functional import bpr_loss
        >>> bpr_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]))
        tensor(0.4100)
        >>> bpr_loss(torch.tensor([1.0]), torch.tensor([[0.0, 2.0]]), reduction="none")
        tensor([0.8133])
    """
    check_reduction(reduction)
    check_number("gamma", gamma, low=0.0)
    pos, neg = _prepare_scores(pos_score, neg_score)
    diff = pos.unsqueeze(1) - neg
    log_sig = F.logsigmoid(diff)
    if gamma > 0:
        log_sig = torch.logaddexp(log_sig, torch.full_like(log_sig, math.log(gamma)))
    return reduce_loss(-log_sig.mean(1), reduction)


@register_loss(
    "bpr",
    functional=bpr_loss,
    example=ranking_example,
    invalid_kwargs=({"gamma": -1.0},),
    min_size=1,
    family=_FAMILY,
)
class BPRLoss(Loss):
    r"""Bayesian personalised ranking: :math:`-\log(\sigma(s^+ - s^-) + \gamma)`, mean over negatives.

    See :func:`~lightning_losses.functional.bpr_loss` (arXiv:1205.2618).

    Args:
        gamma: guard inside the log (RecBole default ``1e-10``; ``0`` gives pure softplus).
        reduction: ``"mean" | "sum" | "none"``.

    Shape:
        - pos_score: ``[N]``; neg_score: ``[N]`` or ``[N, K]``.
        - output: scalar, or ``[N]`` with ``reduction="none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import BPRLoss
        >>> BPRLoss(gamma=0.0)(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]))
        tensor(0.4100)
    """

    def __init__(self, gamma: float = 1e-10, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.gamma = check_number("gamma", gamma, low=0.0)

    def forward(self, pos_score: Tensor, neg_score: Tensor) -> Tensor:
        return bpr_loss(pos_score, neg_score, gamma=self.gamma, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, reduction={self.reduction!r}"


# -------------------------------------------------------------------- cosine contrastive (CCL)
def cosine_contrastive_loss(
    pos_score: Tensor,
    neg_score: Tensor,
    *,
    margin: float = 0.8,
    negative_weight: float | None = None,
    reduction: str = "mean",
) -> Tensor:
    r"""SimpleX cosine contrastive loss (CCL).

    .. math::
        \ell_{ui} = \max(0, 1 - \hat y_{ui})
        + w \cdot \frac{1}{K}\sum_{j=1}^{K}\max(0, \hat y_{uj} - m)
        \quad\text{or, with } w = \text{None:}\quad
        \max(0, 1 - \hat y_{ui}) + \sum_{j=1}^{K}\max(0, \hat y_{uj} - m)

    Scores :math:`\hat y` are cosine similarities of user and item embeddings (not enforced).
    Same formula as ``CosineContrastiveLoss(margin, negative_weight)`` of reczoo/RecBox.

    Paper: *SimpleX: A Simple and Strong Baseline for Collaborative Filtering*, Mao et al.,
    CIKM 2021 (arXiv:2109.12613).

    Args:
        pos_score: cosine scores of the observed items ``[N]``.
        neg_score: cosine scores of the negatives ``[N]`` or ``[N, K]``.
        margin: :math:`m`; negatives below it cost nothing (paper grid up to 0.9).
        negative_weight: :math:`w > 0` for a weighted mean over negatives; ``None`` sums them.
        reduction: ``"mean" | "sum" | "none"`` (``none`` returns ``[N]``).

    Example:
        >>> import torch
        >>> from lightning_losses.functional import cosine_contrastive_loss
        >>> pos, neg = torch.tensor([0.5]), torch.tensor([[0.9, 0.1]])
        >>> cosine_contrastive_loss(pos, neg, margin=0.8)
        tensor(0.6000)
        >>> cosine_contrastive_loss(pos, neg, margin=0.8, negative_weight=1.0)
        tensor(0.5500)
    """
    check_reduction(reduction)
    check_number("margin", margin, low=-1.0, high=1.0)
    if negative_weight is not None:
        check_number("negative_weight", negative_weight, low=0.0, low_inclusive=False)
    pos, neg = _prepare_scores(pos_score, neg_score)
    pos_term = torch.relu(1.0 - pos)
    neg_term = torch.relu(neg - margin)
    if negative_weight is None:
        neg_term = neg_term.sum(1)
    else:
        neg_term = neg_term.mean(1) * negative_weight
    return reduce_loss(pos_term + neg_term, reduction)


@register_loss(
    "cosine_contrastive",
    aliases=("ccl",),
    functional=cosine_contrastive_loss,
    example=ranking_example,
    invalid_kwargs=({"margin": 2.0}, {"negative_weight": 0.0}, {"negative_weight": -1.0}),
    min_size=1,
    family=_FAMILY,
    notes="hinge terms: piecewise-linear by design (gradcheck at random points is fine)",
)
class CosineContrastiveLoss(Loss):
    r"""SimpleX cosine contrastive loss: :math:`[1-\hat y^+]_+ + w\,\mathrm{mean}_j[\hat y^-_j - m]_+`.

    See :func:`~lightning_losses.functional.cosine_contrastive_loss` (arXiv:2109.12613).

    Args:
        margin: negative margin :math:`m \in [-1, 1]` (default 0.8; tune per dataset).
        negative_weight: weight of the mean over negatives; ``None`` sums them instead.
        reduction: ``"mean" | "sum" | "none"``.

    Shape:
        - pos_score: ``[N]``; neg_score: ``[N]`` or ``[N, K]``.
        - output: scalar, or ``[N]`` with ``reduction="none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import CosineContrastiveLoss
        >>> CosineContrastiveLoss(margin=0.8)(torch.tensor([0.5]), torch.tensor([[0.9, 0.1]]))
        tensor(0.6000)
    """

    def __init__(
        self, margin: float = 0.8, negative_weight: float | None = None, reduction: str = "mean"
    ) -> None:
        super().__init__(reduction)
        self.margin = check_number("margin", margin, low=-1.0, high=1.0)
        if negative_weight is not None:
            negative_weight = check_number(
                "negative_weight", negative_weight, low=0.0, low_inclusive=False
            )
        self.negative_weight = negative_weight

    def forward(self, pos_score: Tensor, neg_score: Tensor) -> Tensor:
        return cosine_contrastive_loss(
            pos_score,
            neg_score,
            margin=self.margin,
            negative_weight=self.negative_weight,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, negative_weight={self.negative_weight}, "
            f"reduction={self.reduction!r}"
        )


# ------------------------------------------------------------------------- sampled softmax
def sampled_softmax_loss(
    pos_score: Tensor,
    neg_score: Tensor,
    neg_log_q: Tensor | None = None,
    *,
    temperature: float = 1.0,
    logq_correction: bool = False,
    reduction: str = "mean",
) -> Tensor:
    r"""Sampled softmax over the positive and K sampled negatives, with optional logQ correction.

    .. math::
        \ell_{ui} = -\log\frac{e^{s_{ui}/\tau}}
        {e^{s_{ui}/\tau} + \sum_{j} e^{(s_{uj} - \log Q_j)/\tau}}

    Without correction (``log Q = 0``) this is
    ``F.cross_entropy(cat([s⁺, s⁻], 1) / τ, 0)``. The correction subtracts the log sampling
    probability of each negative (Yi et al., RecSys 2019), which removes the popularity bias of
    non-uniform negative sampling.

    Papers: *On Using Very Large Target Vocabulary for Neural Machine Translation*, Jean et al.,
    ACL 2015 (arXiv:1412.2007) for sampled softmax; logQ correction from
    *Sampling-Bias-Corrected Neural Modeling for Large Corpus Item Recommendations*, Yi et al.,
    RecSys 2019.

    Args:
        pos_score: scores of the observed items ``[N]``.
        neg_score: scores of the negatives ``[N]`` or ``[N, K]``.
        neg_log_q: log sampling probabilities of the negatives, shaped like ``neg_score``;
            required with ``logq_correction=True`` and rejected otherwise.
        temperature: :math:`\tau > 0`.
        logq_correction: subtract ``neg_log_q`` from the negative scores.
        reduction: ``"mean" | "sum" | "none"`` (``none`` returns ``[N]``).

    Example:
        >>> import torch
        >>> from lightning_losses.functional import sampled_softmax_loss
        >>> sampled_softmax_loss(torch.tensor([2.0]), torch.tensor([[1.0, 0.0]]))
        tensor(0.4076)
        >>> sampled_softmax_loss(torch.tensor([2.0]), torch.tensor([[1.0, 0.0]]), temperature=0.5)
        tensor(0.1429)
    """
    check_reduction(reduction)
    check_number("temperature", temperature, low=0.0, low_inclusive=False)
    pos, neg = _prepare_scores(pos_score, neg_score)
    if logq_correction:
        if neg_log_q is None:
            raise ValueError("neg_log_q is required when logq_correction=True, got None")
        check_tensor("neg_log_q", neg_log_q, floating=True)
        log_q = upcast(neg_log_q).to(neg.dtype)
        if log_q.ndim == 1:
            log_q = log_q.unsqueeze(1)
        if log_q.shape != neg.shape:
            raise ValueError(
                f"neg_log_q must have the shape of neg_score {tuple(neg_score.shape)}, "
                f"got {tuple(neg_log_q.shape)}"
            )
        neg = neg - log_q
    elif neg_log_q is not None:
        raise ValueError("neg_log_q was given but logq_correction=False; set logq_correction=True")
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1) / temperature
    return reduce_loss(torch.logsumexp(logits, dim=1) - logits[:, 0], reduction)


@register_loss(
    "sampled_softmax",
    aliases=("ssm",),
    functional=sampled_softmax_loss,
    example=ranking_example,
    invalid_kwargs=({"temperature": 0.0}, {"temperature": -1.0}),
    min_size=1,
    family=_FAMILY,
)
class SampledSoftmaxLoss(Loss):
    r"""Sampled softmax :math:`-\log\mathrm{softmax}([s^+, s^- - \log Q]/\tau)_0`.

    See :func:`~lightning_losses.functional.sampled_softmax_loss` (arXiv:1412.2007).

    Args:
        temperature: :math:`\tau > 0` (default 1).
        logq_correction: subtract the negatives' log sampling probability (``neg_log_q``).
        reduction: ``"mean" | "sum" | "none"``.

    Shape:
        - pos_score: ``[N]``; neg_score: ``[N]`` or ``[N, K]``; neg_log_q: like neg_score.
        - output: scalar, or ``[N]`` with ``reduction="none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import SampledSoftmaxLoss
        >>> SampledSoftmaxLoss()(torch.tensor([2.0]), torch.tensor([[1.0, 0.0]]))
        tensor(0.4076)
    """

    def __init__(
        self, temperature: float = 1.0, logq_correction: bool = False, reduction: str = "mean"
    ) -> None:
        super().__init__(reduction)
        self.temperature = check_number("temperature", temperature, low=0.0, low_inclusive=False)
        if not isinstance(logq_correction, bool):
            raise TypeError(f"logq_correction must be a bool, got {type(logq_correction).__name__}")
        self.logq_correction = logq_correction

    def forward(
        self, pos_score: Tensor, neg_score: Tensor, neg_log_q: Tensor | None = None
    ) -> Tensor:
        return sampled_softmax_loss(
            pos_score,
            neg_score,
            neg_log_q,
            temperature=self.temperature,
            logq_correction=self.logq_correction,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, logq_correction={self.logq_correction}, "
            f"reduction={self.reduction!r}"
        )


# ---------------------------------------------------------------------------- pointwise BCE
def bce_rec_loss(
    pos_score: Tensor,
    neg_score: Tensor,
    *,
    reduction: str = "mean",
) -> Tensor:
    r"""Pointwise binary cross-entropy on a positive and its sampled negatives (logit scores).

    .. math:: \ell_{ui} = -\log\sigma(s_{ui}) - \frac{1}{K}\sum_{j=1}^{K}\log(1 - \sigma(s_{uj}))
        = \operatorname{softplus}(-s_{ui}) + \frac{1}{K}\sum_j \operatorname{softplus}(s_{uj})

    The negative term is averaged (not summed) so the loss scale does not grow with ``K``.

    Paper: *Neural Collaborative Filtering*, He et al., WWW 2017 (arXiv:1708.05031), log loss
    with sampled negatives.

    Args:
        pos_score: logits of the observed items ``[N]``.
        neg_score: logits of the negatives ``[N]`` or ``[N, K]``.
        reduction: ``"mean" | "sum" | "none"`` (``none`` returns ``[N]``).

    Example:
        >>> import torch
        >>> from lightning_losses.functional import bce_rec_loss
        >>> bce_rec_loss(torch.tensor([1.0]), torch.tensor([[-1.0, 0.0]]))
        tensor(0.8165)
    """
    check_reduction(reduction)
    pos, neg = _prepare_scores(pos_score, neg_score)
    return reduce_loss(F.softplus(-pos) + F.softplus(neg).mean(1), reduction)


@register_loss(
    "bce_rec",
    aliases=("binary_cross_entropy_rec",),
    functional=bce_rec_loss,
    example=ranking_example,
    min_size=1,
    family=_FAMILY,
)
class BinaryCrossEntropyRecLoss(Loss):
    r"""Pointwise BCE for implicit feedback: :math:`\mathrm{softplus}(-s^+) + \mathrm{mean}_j\,\mathrm{softplus}(s^-_j)`.

    See :func:`~lightning_losses.functional.bce_rec_loss` (arXiv:1708.05031).

    Args:
        reduction: ``"mean" | "sum" | "none"``.

    Shape:
        - pos_score: ``[N]``; neg_score: ``[N]`` or ``[N, K]``.
        - output: scalar, or ``[N]`` with ``reduction="none"``.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import BinaryCrossEntropyRecLoss
        >>> BinaryCrossEntropyRecLoss()(torch.tensor([1.0]), torch.tensor([[-1.0, 0.0]]))
        tensor(0.8165)
    """

    def forward(self, pos_score: Tensor, neg_score: Tensor) -> Tensor:
        return bce_rec_loss(pos_score, neg_score, reduction=self.reduction)
