r"""Multi-similarity loss (pair-wise, labels).

*Multi-Similarity Loss with General Pair Weighting for Deep Metric Learning*, Wang et al., CVPR
2019 (arXiv:1904.06627). Checked against pytorch-metric-learning's `MultiSimilarityLoss` (value
and gradient).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from lightning_losses.losses._embedding import DistributedSemantics, EmbeddingLoss
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.metric._pairs import masked_logsumexp, prepare_pairs
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_bool, check_number, check_reduction

__all__ = ["MultiSimilarityLoss", "multi_similarity_loss"]


def _check_ms_args(*, alpha: Any, beta: Any, base: Any, gather_distributed: Any) -> dict[str, Any]:
    return {
        "alpha": check_number("alpha", alpha, low=0.0, low_inclusive=False),
        "beta": check_number("beta", beta, low=0.0, low_inclusive=False),
        "base": check_number("base", base, low=-1.0, high=1.0),
        "gather_distributed": check_bool("gather_distributed", gather_distributed),
    }


def multi_similarity_loss(
    embeddings: Tensor,
    labels: Tensor,
    ref_emb: Tensor | None = None,
    ref_labels: Tensor | None = None,
    *,
    alpha: float = 2.0,
    beta: float = 50.0,
    base: float = 0.5,
    gather_distributed: bool = False,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Multi-similarity loss over all positive and negative pairs of each anchor.

    With cosine similarities $s_{ik}$, positives $P_i$ and negatives $N_i$ of anchor $i$:

    $$
    \ell_i = \frac{1}{\alpha}\log\Big(1 + \sum_{k \in P_i} e^{-\alpha (s_{ik} - \lambda)}\Big)
           + \frac{1}{\beta}\log\Big(1 + \sum_{k \in N_i} e^{\beta (s_{ik} - \lambda)}\Big).
    $$

    This is the weighting term of the paper (its eq. 9) without the paper's pair-mining step
    (hard pairs selected with a margin $\epsilon$), as in pytorch-metric-learning's
    `MultiSimilarityLoss` (combine it with a miner there); defaults are pytorch-metric-learning's
    ($\alpha = 2$, $\beta = 50$, $\lambda = 0.5$; the paper reports $\alpha = 2$, $\beta = 50$,
    $\lambda = 1$ with mining). An anchor without positives has a zero positive term (and
    without negatives a zero negative term): $\log 1 = 0$, never NaN. The mean is over anchors,
    which is pytorch-metric-learning's default reducer too.

    *Multi-Similarity Loss with General Pair Weighting for Deep Metric Learning*, Wang et al.,
    CVPR 2019 (arXiv:1904.06627).

    Args:
        embeddings: `[N, D]` (normalised inside).
        labels: `[N]` integer labels.
        ref_emb: optional references `[M, D]` (a memory bank; never gathered, all count).
        ref_labels: `[M]` labels of `ref_emb`.
        alpha: positive scale $\alpha > 0$.
        beta: negative scale $\beta > 0$.
        base: similarity offset $\lambda \in [-1, 1]$.
        gather_distributed: score local anchors against every rank's batch (exact gradients).
        reduction: `"mean" | "sum" | "none"` (`"none"`: one value per local anchor).
        validate_args: kept for the uniform signature (every check here is sync-free).

    Returns:
        The loss: a scalar, or `[N]` with `reduction="none"`.

    Raises:
        ValueError: on a bad shape or hyperparameter.
        TypeError: on integer embeddings or floating labels.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import multi_similarity_loss
        >>> emb = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
        >>> multi_similarity_loss(emb, torch.tensor([0, 0, 1, 1]))
        tensor(0.2688)
    """
    check_reduction(reduction)
    hp = _check_ms_args(alpha=alpha, beta=beta, base=base, gather_distributed=gather_distributed)
    pairs = prepare_pairs(
        embeddings,
        labels,
        ref_emb=ref_emb,
        ref_labels=ref_labels,
        gather_distributed=hp["gather_distributed"],
        validate_args=validate_args,
    )
    a, b, lam = hp["alpha"], hp["beta"], hp["base"]
    s = pairs.cosine()
    pos, _ = masked_logsumexp(-a * (s - lam), pairs.pos, add_one=True)
    neg, _ = masked_logsumexp(b * (s - lam), pairs.neg, add_one=True)
    return reduce_loss(pos / a + neg / b, reduction)


@register_loss("multi_similarity", aliases=("ms",))
class MultiSimilarityLoss(EmbeddingLoss):
    r"""Multi-similarity loss: self- and relative-similarity weighting of all pairs.

    See [multi_similarity_loss][lightning_losses.functional.multi_similarity_loss] for the
    formula, the defaults and the no-positive convention.

    *Multi-Similarity Loss with General Pair Weighting for Deep Metric Learning*, Wang et al.,
    CVPR 2019 (arXiv:1904.06627).

    Args:
        alpha: positive scale $\alpha > 0$.
        beta: negative scale $\beta > 0$.
        base: similarity offset $\lambda \in [-1, 1]$.
        gather_distributed: score local anchors against every rank's batch.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - embeddings: `[N, D]`; labels: `[N]`; optional ref_emb `[M, D]`, ref_labels `[M]`.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import MultiSimilarityLoss
        >>> MultiSimilarityLoss()(torch.randn(8, 16), torch.arange(8) % 4).shape
        torch.Size([])
    """

    functional = staticmethod(multi_similarity_loss)
    distributed_semantics = DistributedSemantics.GATHER

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 50.0,
        base: float = 0.5,
        gather_distributed: bool = False,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_ms_args(
                alpha=alpha, beta=beta, base=base, gather_distributed=gather_distributed
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
