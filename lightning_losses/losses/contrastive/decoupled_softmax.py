r"""Decoupled softmax for multi-positive retrieval / extreme multi-label.

*Dual-Encoders for Extreme Multi-Label Classification* (DEXML), Gupta et al., ICLR 2024
(arXiv:2310.10636); official code `nilesh2797/DEXML` (`losses.py`, `decoupled-softmax`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses._embedding import EmbeddingLoss, check_embeddings
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_bool, check_number, check_reduction, check_tensor

__all__ = ["DecoupledSoftmaxLoss", "decoupled_softmax_loss"]


def _check_decoupled_softmax_args(*, temperature: Any, normalize: Any) -> dict[str, Any]:
    return {
        "temperature": check_number("temperature", temperature, low=0.0, low_inclusive=False),
        "normalize": check_bool("normalize", normalize),
    }


def decoupled_softmax_loss(
    query: Tensor,
    label_emb: Tensor,
    targets: Tensor,
    *,
    temperature: float = 0.05,
    normalize: bool = True,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Decoupled softmax: each positive label competes only with the negatives.

    For query $q$ with positive label set $P$ and $s_{ql} = \hat q \cdot \hat e_l / \tau$:

    $$
    \ell_q = -\frac{1}{|P|}\sum_{p \in P}
        \log \frac{e^{s_{qp}}}{e^{s_{qp}} + \sum_{n \notin P} e^{s_{qn}}}
    $$

    The other positives are removed from each positive's denominator, so a query with many
    labels is not penalised for scoring all of them high (the plain multi-positive softmax
    pushes them against each other). With one positive per query it is InfoNCE / cross-entropy
    over the labels. A query without a positive has loss 0 and still counts in the mean (the
    official code divides by the number of queries).

    *Dual-Encoders for Extreme Multi-Label Classification*, Gupta et al., ICLR 2024
    (arXiv:2310.10636). Verified against the official `nilesh2797/DEXML` `losses.py`
    (`decoupled-softmax`: other positives masked out of the negatives' log-sum-exp, $1/|P|$,
    sum over queries divided by the number of queries) and its configs (`norm_embs: True`,
    `tau: 0.05`, the default here). The official trainer additionally samples positives per
    step (`loss_sample`); this is the loss over all of them.

    Args:
        query: `[N, D]` query embeddings.
        label_emb: `[L, D]` label (document) embeddings.
        targets: `[N, L]` multi-hot relevance (bool or 0/1).
        temperature: $\tau > 0$.
        normalize: L2-normalise queries and labels (DEXML's `norm_embs`).
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N]`).
        validate_args: check that `targets` holds only 0/1 (host sync).

    Returns:
        The loss (`[N]` with `reduction="none"`).

    Shape:
        query `[N, D]`, label_emb `[L, D]`, targets `[N, L]`.

    Raises:
        TypeError: non-floating embeddings, complex targets.
        ValueError: shape mismatch or non-binary targets.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import decoupled_softmax_loss
        >>> g = torch.Generator().manual_seed(0)
        >>> q, labels = torch.randn(2, 8, generator=g), torch.randn(5, 8, generator=g)
        >>> targets = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 0, 1, 0]])
        >>> decoupled_softmax_loss(q, labels, targets, temperature=0.5)
        tensor(1.2890)
    """
    check_reduction(reduction)
    hp = _check_decoupled_softmax_args(temperature=temperature, normalize=normalize)
    q = check_embeddings("query", query)
    e = check_embeddings("label_emb", label_emb)
    if e.shape[1] != q.shape[1]:
        raise ValueError(
            f"label_emb must have the embedding size of query: expected [L, {q.shape[1]}], got "
            f"{tuple(e.shape)}"
        )
    check_tensor("targets", targets)
    if targets.is_complex():
        raise TypeError(f"targets must be bool or real 0/1, got dtype {targets.dtype}")
    if targets.shape != (q.shape[0], e.shape[0]):
        raise ValueError(
            f"targets must have shape [N, L] = ({q.shape[0]}, {e.shape[0]}), got "
            f"{tuple(targets.shape)}"
        )
    binary = targets.dtype == torch.bool
    if validate_args and not binary and bool(((targets != 0) & (targets != 1)).any()):
        raise ValueError("targets must hold only 0/1 (multi-hot relevance)")
    pos = targets != 0
    dtype = torch.promote_types(q.dtype, e.dtype)
    q, e = q.to(dtype), e.to(dtype)
    if hp["normalize"]:
        q, e = F.normalize(q, dim=-1), F.normalize(e, dim=-1)
    sim = (q / hp["temperature"]) @ e.T
    # LSE over the negatives; a query whose labels are all positive has none: a finite floor.
    floor = torch.finfo(sim.dtype).min
    neg = torch.logsumexp(torch.where(pos, floor, sim), dim=1, keepdim=True)
    # -log(e^s / (e^s + e^neg)) = softplus(neg - s), for every positive entry.
    per_pos = torch.where(pos, F.softplus(neg - sim), 0.0)
    count = pos.sum(1)
    rows = per_pos.sum(1) / count.clamp_min(1).to(sim.dtype)
    return reduce_loss(rows, reduction)


@register_loss("decoupled_softmax", aliases=("dexml",))
class DecoupledSoftmaxLoss(EmbeddingLoss):
    r"""Decoupled softmax (DEXML): positives compete only with negatives.

    $$
    \ell_q = -\frac{1}{|P|}\sum_{p \in P}
        \log \frac{e^{s_{qp}}}{e^{s_{qp}} + \sum_{n \notin P} e^{s_{qn}}}
    $$

    Module form of [decoupled_softmax_loss][lightning_losses.functional.decoupled_softmax_loss].
    The label embeddings are an input (a label encoder's output, or a learnable table the model
    owns), so it has no cross-rank semantics of its own.

    *Dual-Encoders for Extreme Multi-Label Classification*, Gupta et al., ICLR 2024
    (arXiv:2310.10636).

    Args:
        temperature: $\tau > 0$ (official configs: 0.05).
        normalize: L2-normalise queries and label embeddings.
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N]`).
        validate_args: check `targets` is 0/1 (host sync).

    Shape:
        forward(query `[N, D]`, label_emb `[L, D]`, targets `[N, L]`).

    Example:
        >>> import torch
        >>> from lightning_losses.losses import DecoupledSoftmaxLoss
        >>> g = torch.Generator().manual_seed(0)
        >>> q, labels = torch.randn(2, 8, generator=g), torch.randn(5, 8, generator=g)
        >>> targets = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 0, 1, 0]])
        >>> DecoupledSoftmaxLoss(temperature=0.5)(q, labels, targets)
        tensor(1.2890)
    """

    functional = staticmethod(decoupled_softmax_loss)
    target_arg: ClassVar[str | None] = "targets"

    def __init__(
        self,
        temperature: float = 0.05,
        normalize: bool = True,
        *,
        reduction: str = "mean",
        validate_args: bool = True,
    ):
        super().__init__(
            **_check_decoupled_softmax_args(temperature=temperature, normalize=normalize),
            reduction=reduction,
            validate_args=validate_args,
        )

    def forward(self, query: Tensor, label_emb: Tensor, targets: Tensor) -> Tensor:
        """Loss of `query [N, D]` against `label_emb [L, D]` with multi-hot `targets [N, L]`."""
        return self._call_functional(query, label_emb, targets)
