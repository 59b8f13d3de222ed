r"""Circle loss, pair-wise form with labels.

*Circle Loss: A Unified Perspective of Pair Similarity Optimization*, Sun et al., CVPR 2020
(arXiv:2002.10857). Checked against pytorch-metric-learning's `CircleLoss` (value and gradient).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses._embedding import DistributedSemantics, EmbeddingLoss
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.metric._pairs import masked_logsumexp, prepare_pairs
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_bool, check_number, check_reduction

__all__ = ["CircleLoss", "circle_loss"]


def _check_circle_args(*, margin: Any, gamma: Any, gather_distributed: Any) -> dict[str, Any]:
    return {
        "margin": check_number("margin", margin, low=0.0, high=1.0),
        "gamma": check_number("gamma", gamma, low=0.0, low_inclusive=False),
        "gather_distributed": check_bool("gather_distributed", gather_distributed),
    }


def circle_loss(
    embeddings: Tensor,
    labels: Tensor,
    ref_emb: Tensor | None = None,
    ref_labels: Tensor | None = None,
    *,
    margin: float = 0.25,
    gamma: float = 256.0,
    gather_distributed: bool = False,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Circle loss over all positive and negative pairs of each anchor.

    With cosine similarities $s_p$ (same label) and $s_n$ (different label) of anchor $i$:

    $$
    \ell_i = \operatorname{softplus}\Big(
        \operatorname{LSE}_n\big[\gamma\,\alpha_n (s_n - \Delta_n)\big]
        + \operatorname{LSE}_p\big[-\gamma\,\alpha_p (s_p - \Delta_p)\big]\Big),
    $$

    $\alpha_p = [1 + m - s_p]_+$, $\alpha_n = [s_n + m]_+$ (both **detached**, as in the paper's
    gradient analysis and in pytorch-metric-learning), $\Delta_p = 1 - m$, $\Delta_n = m$.

    Defaults are the paper's face-recognition setting ($m = 0.25$, $\gamma = 256$);
    pytorch-metric-learning defaults to its fine-grained-retrieval setting ($m = 0.4$,
    $\gamma = 80$). An anchor without a positive or without a negative gets loss 0 (and counts in
    the mean); pytorch-metric-learning zeroes it too, but its default reducer
    (`AvgNonZeroReducer`) then averages over the non-zero anchors only. PML's
    `CircleLoss(m=0.25, gamma=256, reducer=MeanReducer())` reproduces ours (value and gradient,
    tested); its default equals ours when every anchor has a positive and a negative.

    *Circle Loss: A Unified Perspective of Pair Similarity Optimization*, Sun et al., CVPR 2020
    (arXiv:2002.10857).

    Args:
        embeddings: `[N, D]` (normalised inside).
        labels: `[N]` integer labels.
        ref_emb: optional references `[M, D]` (a memory bank; never gathered, all count).
        ref_labels: `[M]` labels of `ref_emb`.
        margin: relaxation $m \in [0, 1]$.
        gamma: scale $\gamma > 0$.
        gather_distributed: score local anchors against every rank's batch (exact gradients).
        reduction: `"mean" | "sum" | "none"` (`"none"`: one value per local anchor).
        validate_args: check finiteness and label shapes (host syncs).

    Returns:
        The loss: a scalar, or `[N]` with `reduction="none"`.

    Raises:
        ValueError: on a bad shape, hyperparameter or a lone `ref_emb` / `ref_labels`.
        TypeError: on integer embeddings or floating labels.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import circle_loss
        >>> emb = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
        >>> circle_loss(emb, torch.tensor([0, 0, 1, 1]), gamma=16.0)
        tensor(2.5427)
    """
    check_reduction(reduction)
    hp = _check_circle_args(margin=margin, gamma=gamma, gather_distributed=gather_distributed)
    pairs = prepare_pairs(
        embeddings,
        labels,
        ref_emb=ref_emb,
        ref_labels=ref_labels,
        gather_distributed=hp["gather_distributed"],
        validate_args=validate_args,
    )
    m, g = hp["margin"], hp["gamma"]
    s = pairs.cosine()
    sd = s.detach()
    logit_p = -g * F.relu(1 + m - sd) * (s - (1 - m))
    logit_n = g * F.relu(sd + m) * (s - m)
    lse_p, has_p = masked_logsumexp(logit_p, pairs.pos)
    lse_n, has_n = masked_logsumexp(logit_n, pairs.neg)
    rows = torch.where(has_p & has_n, F.softplus(lse_p + lse_n), 0.0)
    return reduce_loss(rows, reduction)


@register_loss("circle")
class CircleLoss(EmbeddingLoss):
    r"""Circle loss (pair-wise, labels): re-weighted pair similarities with a circular boundary.

    See [circle_loss][lightning_losses.functional.circle_loss] for the formula, defaults (paper
    vs pytorch-metric-learning) and the no-positive convention.

    *Circle Loss: A Unified Perspective of Pair Similarity Optimization*, Sun et al., CVPR 2020
    (arXiv:2002.10857).

    Args:
        margin: relaxation $m \in [0, 1]$ (paper, face recognition: 0.25).
        gamma: scale $\gamma > 0$ (paper, face recognition: 256).
        gather_distributed: score local anchors against every rank's batch.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - embeddings: `[N, D]`; labels: `[N]`; optional ref_emb `[M, D]`, ref_labels `[M]`.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import CircleLoss
        >>> loss = CircleLoss(margin=0.4, gamma=80.0)
        >>> loss(torch.randn(8, 16), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])).shape
        torch.Size([])
    """

    functional = staticmethod(circle_loss)
    distributed_semantics = DistributedSemantics.GATHER

    def __init__(
        self,
        margin: float = 0.25,
        gamma: float = 256.0,
        gather_distributed: bool = False,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_circle_args(margin=margin, gamma=gamma, gather_distributed=gather_distributed),
        )

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        ref_emb: Tensor | None = None,
        ref_labels: Tensor | None = None,
    ) -> Tensor:
        """Loss of `embeddings [N, D]`, `labels [N]`; opt. `ref_emb [M, D]`, `ref_labels [M]`."""
        return self._call_functional(embeddings, labels, ref_emb, ref_labels)
