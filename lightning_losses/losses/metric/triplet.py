r"""Triplet margin loss over every valid triplet of a labelled batch ("batch all").

*FaceNet: A Unified Embedding for Face Recognition and Clustering*, Schroff et al., CVPR 2015
(arXiv:1503.03832); batch-all averaging over the active triplets: *In Defense of the Triplet
Loss for Person Re-Identification*, Hermans et al. (arXiv:1703.07737). Checked against
pytorch-metric-learning's `TripletMarginLoss` and `torch.nn.TripletMarginLoss`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses._embedding import DistributedSemantics, EmbeddingLoss
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.metric._pairs import prepare_pairs
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_bool, check_number, check_reduction

__all__ = ["TripletMarginLoss", "triplet_margin_loss"]


def _check_triplet_args(
    *, margin: Any, normalize_embeddings: Any, average_nonzero: Any, gather_distributed: Any
) -> dict[str, Any]:
    return {
        "margin": check_number("margin", margin, low=0.0),
        "normalize_embeddings": check_bool("normalize_embeddings", normalize_embeddings),
        "average_nonzero": check_bool("average_nonzero", average_nonzero),
        "gather_distributed": check_bool("gather_distributed", gather_distributed),
    }


def triplet_margin_loss(
    embeddings: Tensor,
    labels: Tensor,
    ref_emb: Tensor | None = None,
    ref_labels: Tensor | None = None,
    *,
    margin: float = 1.0,
    normalize_embeddings: bool = True,
    average_nonzero: bool = True,
    gather_distributed: bool = False,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Triplet margin loss over all valid triplets $(i, p, n)$ of the batch, one value per anchor.

    Every anchor $i$ is paired with every positive $p \in P_i$ (same label, $p \ne i$) and every
    negative $n \in N_i$ (other label) of the batch ("batch all" mining):

    $$
    \ell_i = \operatorname{mean}_{p \in P_i,\, n \in N_i}
        \big[d(x_i, x_p) - d(x_i, x_n) + m\big]_+ ,
    $$

    $d$ the Euclidean distance (of L2-normalised embeddings when `normalize_embeddings`). With
    `average_nonzero=True` (default) the mean runs over the anchor's *active* triplets (non-zero
    terms), as pytorch-metric-learning's default `AvgNonZeroReducer` and Hermans et al.'s
    "batch all" do; otherwise over all of its triplets. Those reducers average over the active
    triplets of the whole batch; here each anchor is averaged first and then the anchors (one
    value per anchor for `reduction="none"` and per-sample reweighting), which is the same when
    every anchor has the same number of active triplets. An anchor without a positive or a
    negative has no triplet and loss 0 (counted in the mean).

    No pytorch-metric-learning reducer reproduces this per-anchor mean (its `PerAnchorReducer`
    does not take triplets). Its `MeanReducer` value is the count-weighted mean of ours: with
    `rows = triplet_margin_loss(..., average_nonzero=False, reduction="none")` and
    $c_i = |P_i|\,|N_i|$ the number of triplets of anchor $i$, it is
    $\sum_i c_i\,\text{rows}_i / \sum_i c_i$; its default `AvgNonZeroReducer` equals our
    default when every anchor has the same number of active triplets (both tested).

    `margin=1.0` is `torch.nn.TripletMarginLoss`'s default (pytorch-metric-learning's is 0.05, on
    normalised embeddings: pass `margin=0.05` to compare); with `normalize_embeddings=False` one
    triplet per anchor is exactly `torch.nn.TripletMarginLoss(eps=0)` (torch's default
    `eps=1e-6` is added inside its distance). Memory: `[P, M]` for `P` anchor-positive pairs and `M`
    references (never the `[N, M, M]` cube of all triplets).

    *FaceNet*, Schroff et al. (arXiv:1503.03832); *In Defense of the Triplet Loss for Person
    Re-Identification*, Hermans et al. (arXiv:1703.07737).

    Args:
        embeddings: `[N, D]`.
        labels: `[N]` integer labels.
        ref_emb: optional references `[M, D]` for positives and negatives (a memory bank; never
            gathered, all count).
        ref_labels: `[M]` labels of `ref_emb`.
        margin: $m \ge 0$.
        normalize_embeddings: L2-normalise the embeddings before the distances.
        average_nonzero: average each anchor's loss over its active triplets only.
        gather_distributed: take positives and negatives from every rank's batch (exact gradients).
        reduction: `"mean" | "sum" | "none"` (`"none"`: one value per local anchor).
        validate_args: kept for the uniform signature (every check here is sync-free).

    Returns:
        The loss: a scalar, or `[N]` with `reduction="none"`.

    Raises:
        ValueError: on a bad shape or hyperparameter.
        TypeError: on integer embeddings or floating labels, or a non-bool flag.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import triplet_margin_loss
        >>> emb = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
        >>> triplet_margin_loss(emb, torch.tensor([0, 0, 1, 1]), margin=0.5)
        tensor(0.1190)
    """
    check_reduction(reduction)
    hp = _check_triplet_args(
        margin=margin,
        normalize_embeddings=normalize_embeddings,
        average_nonzero=average_nonzero,
        gather_distributed=gather_distributed,
    )
    pairs = prepare_pairs(
        embeddings,
        labels,
        ref_emb=ref_emb,
        ref_labels=ref_labels,
        gather_distributed=hp["gather_distributed"],
        validate_args=validate_args,
    )
    d = pairs.euclidean(normalize=hp["normalize_embeddings"])
    # One row per (anchor, positive) pair against every reference: [P, M], not [N, M, M]
    # (the nonzero is one host sync, as in pytorch-metric-learning's triplet enumeration).
    a_idx, p_idx = pairs.pos.nonzero(as_tuple=True)
    viol = F.relu(d[a_idx, p_idx][:, None] - d[a_idx] + hp["margin"])
    neg = pairs.neg[a_idx]
    kept = torch.where(neg, viol, 0.0)
    if hp["average_nonzero"]:
        counted = neg & ((viol > 0) | viol.isnan())  # a NaN term counts, so it propagates
    else:
        counted = neg
    n = d.shape[0]
    total = d.new_zeros(n).index_add(0, a_idx, kept.sum(dim=1))
    count = d.new_zeros(n).index_add(0, a_idx, counted.sum(dim=1).to(d.dtype))
    rows = total / count.clamp_min(1)
    return reduce_loss(rows, reduction)


@register_loss("triplet_margin", aliases=("triplet",))
class TripletMarginLoss(EmbeddingLoss):
    r"""Triplet margin loss over every valid triplet of a labelled batch ("batch all").

    See [triplet_margin_loss][lightning_losses.functional.triplet_margin_loss] for the formula,
    the mining and averaging semantics (and how they relate to pytorch-metric-learning's).

    *FaceNet*, Schroff et al. (arXiv:1503.03832); *In Defense of the Triplet Loss for Person
    Re-Identification*, Hermans et al. (arXiv:1703.07737).

    Args:
        margin: $m \ge 0$ (default 1.0, as `torch.nn.TripletMarginLoss`).
        normalize_embeddings: L2-normalise the embeddings first.
        average_nonzero: average each anchor over its active triplets only.
        gather_distributed: take positives and negatives from every rank's batch.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - embeddings: `[N, D]`; labels: `[N]`; optional ref_emb `[M, D]`, ref_labels `[M]`.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import TripletMarginLoss
        >>> TripletMarginLoss(margin=0.2)(torch.randn(8, 16), torch.arange(8) % 4).shape
        torch.Size([])
    """

    functional = staticmethod(triplet_margin_loss)
    distributed_semantics = DistributedSemantics.GATHER

    def __init__(
        self,
        margin: float = 1.0,
        normalize_embeddings: bool = True,
        average_nonzero: bool = True,
        gather_distributed: bool = False,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_triplet_args(
                margin=margin,
                normalize_embeddings=normalize_embeddings,
                average_nonzero=average_nonzero,
                gather_distributed=gather_distributed,
            ),
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
