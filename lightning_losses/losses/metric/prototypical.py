r"""Prototypical networks loss for few-shot episodes.

*Prototypical Networks for Few-shot Learning*, Snell, Swersky and Zemel, NeurIPS 2017
(arXiv:1703.05175). Tested against a naive float64 loop.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses._embedding import (
    DistributedSemantics,
    EmbeddingLoss,
    check_embeddings,
    check_labels,
)
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_choice, check_reduction

__all__ = ["PrototypicalLoss", "prototypical_loss"]

_DISTANCES = ("sqeuclidean", "cosine")


def _check_proto_args(*, distance: Any) -> dict[str, Any]:
    return {"distance": check_choice("distance", distance, _DISTANCES)}


def prototypical_loss(
    query: Tensor,
    query_labels: Tensor,
    support: Tensor,
    support_labels: Tensor,
    *,
    distance: str = "sqeuclidean",
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Cross-entropy of the negative distances of each query to the class prototypes.

    $$
    c_k = \frac{1}{|S_k|}\sum_{x \in S_k} x, \qquad
    \ell_q = -\log \frac{e^{-d(q, c_{y_q})}}{\sum_k e^{-d(q, c_k)}},
    $$

    $S_k$ the support embeddings of class $k$, $d$ the squared Euclidean distance (the paper's
    choice) or `"cosine"` ($d = -\cos$). The classes are those present in `support_labels`
    (any integer values); every query label must be one of them.

    *Prototypical Networks for Few-shot Learning*, Snell et al., NeurIPS 2017 (arXiv:1703.05175).

    Args:
        query: `[Q, D]` query embeddings.
        query_labels: `[Q]` labels, each present in `support_labels`.
        support: `[S, D]` support embeddings.
        support_labels: `[S]` labels.
        distance: `"sqeuclidean"` or `"cosine"`.
        reduction: `"mean" | "sum" | "none"` (`"none"`: one value per query).
        validate_args: check that every query label has a prototype (a host sync).

    Returns:
        The loss: a scalar, or `[Q]` with `reduction="none"`.

    Raises:
        ValueError: a query label without support, or a bad shape.
        TypeError: on integer embeddings or floating labels.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import prototypical_loss
        >>> support = torch.tensor([[0.0, 0.0], [0.0, 2.0], [4.0, 0.0]])
        >>> prototypical_loss(torch.tensor([[0.0, 1.0], [3.0, 0.0]]), torch.tensor([5, 9]),
        ...                   support, torch.tensor([5, 5, 9]))
        tensor(6.1687e-05)
    """
    check_reduction(reduction)
    hp = _check_proto_args(distance=distance)
    q = check_embeddings("query", query, validate_args=validate_args)
    ql = check_labels("query_labels", query_labels, q.shape[0], validate_args=validate_args)
    s = check_embeddings("support", support, validate_args=validate_args)
    sl = check_labels("support_labels", support_labels, s.shape[0], validate_args=validate_args)
    if s.shape[1] != q.shape[1]:
        raise ValueError(
            f"support must have the embedding size of query ({q.shape[1]}), got {tuple(s.shape)}"
        )
    dtype = torch.promote_types(q.dtype, s.dtype)
    q, s = q.to(dtype), s.to(dtype)
    classes, inverse = torch.unique(sl, sorted=True, return_inverse=True)
    k = classes.numel()
    sums = s.new_zeros(k, s.shape[1]).index_add(0, inverse, s)
    counts = torch.bincount(inverse, minlength=k).to(dtype)
    protos = sums / counts[:, None]
    target = torch.searchsorted(classes, ql.contiguous()).clamp_max(k - 1)
    if validate_args:
        missing = classes[target] != ql
        if bool(missing.any()):
            raise ValueError(
                f"query_labels contains label {int(ql[missing][0])} with no support embedding "
                f"(support classes: {classes.tolist() if k <= 16 else f'{k} classes'})"
            )
    if hp["distance"] == "sqeuclidean":
        logits = -(q[:, None, :] - protos[None, :, :]).pow(2).sum(-1)
    else:
        logits = F.normalize(q, dim=-1) @ F.normalize(protos, dim=-1).T
    rows = F.cross_entropy(logits, target, reduction="none")
    return reduce_loss(rows, reduction)


@register_loss("prototypical", aliases=("proto",))
class PrototypicalLoss(EmbeddingLoss):
    r"""Prototypical networks loss: queries classified by their distance to class prototypes.

    See [prototypical_loss][lightning_losses.functional.prototypical_loss]. Distributed
    semantics: local (an episode lives on one rank).

    *Prototypical Networks for Few-shot Learning*, Snell et al., NeurIPS 2017 (arXiv:1703.05175).

    Args:
        distance: `"sqeuclidean"` (paper) or `"cosine"`.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - query `[Q, D]`, query_labels `[Q]`, support `[S, D]`, support_labels `[S]`.
        - output: scalar, or `[Q]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import PrototypicalLoss
        >>> support, support_labels = torch.randn(10, 8), torch.arange(10) % 5
        >>> PrototypicalLoss()(torch.randn(5, 8), torch.arange(5), support, support_labels).shape
        torch.Size([])
    """

    distributed_semantics = DistributedSemantics.LOCAL
    target_arg = "query_labels"
    functional = staticmethod(prototypical_loss)

    def __init__(
        self, distance: str = "sqeuclidean", reduction: str = "mean", validate_args: bool = True
    ) -> None:
        super().__init__(
            reduction=reduction, validate_args=validate_args, **_check_proto_args(distance=distance)
        )

    def forward(
        self,
        query: Tensor,
        query_labels: Tensor,
        support: Tensor,
        support_labels: Tensor,
    ) -> Tensor:
        """Loss of `query [Q, D]`, `query_labels [Q]` against prototypes of `support [S, D]`."""
        return self._call_functional(query, query_labels, support, support_labels)
