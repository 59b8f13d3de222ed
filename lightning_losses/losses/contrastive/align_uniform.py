r"""Alignment + uniformity on the hypersphere.

*Understanding Contrastive Representation Learning through Alignment and Uniformity on the
Hypersphere*, Wang & Isola, ICML 2020 (arXiv:2005.10242); official code `SsnL/align_uniform`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses._embedding import (
    DistributedSemantics,
    EmbeddingLoss,
    check_embeddings,
    gather_batch,
)
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_bool, check_number, check_reduction, check_same_shape

__all__ = ["AlignmentUniformityLoss", "alignment_uniformity_loss", "uniformity"]


def _check_align_uniform_args(
    *, alpha: Any, t: Any, lam: Any, normalize: Any, gather_distributed: Any
) -> dict[str, Any]:
    return {
        "alpha": check_number("alpha", alpha, low=0.0, low_inclusive=False),
        "t": check_number("t", t, low=0.0, low_inclusive=False),
        "lam": check_number("lam", lam, low=0.0),
        "normalize": check_bool("normalize", normalize),
        "gather_distributed": check_bool("gather_distributed", gather_distributed),
    }


def uniformity(x: Tensor, t: float = 2.0) -> Tensor:
    r"""Uniformity $\log \frac{1}{\binom{M}{2}}\sum_{i<j} e^{-t\|x_i - x_j\|^2}$ of `[M, D]` rows.

    Computed as a log-sum-exp over the $i < j$ pairs (finite for any input, where the official
    `torch.pdist(x).pow(2).mul(-t).exp().mean().log()` underflows to $-\infty$ for far-apart
    rows), from squared distances built on the Gram matrix (smooth where two rows coincide,
    where `pdist` has no gradient). Defined as 0 for fewer than two rows (no pair).

    Args:
        x: `[M, D]` rows (already normalised by the caller, as in the paper).
        t: $t > 0$.

    Returns:
        A scalar.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import uniformity
        >>> uniformity(torch.eye(3))  # three orthonormal points: all pairs at distance^2 = 2
        tensor(-4.)
    """
    m = x.shape[0]
    if m < 2:
        return x.sum() * 0.0
    sq = (x * x).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)).clamp_min(0.0)
    i, j = torch.triu_indices(m, m, offset=1, device=x.device)
    return torch.logsumexp(-t * d2[i, j], dim=0) - math.log(m * (m - 1) / 2)


def alignment_uniformity_loss(
    z1: Tensor,
    z2: Tensor,
    *,
    alpha: float = 2.0,
    t: float = 2.0,
    lam: float = 1.0,
    normalize: bool = True,
    gather_distributed: bool = False,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Alignment of positive pairs plus uniformity of each view on the hypersphere.

    $$
    \mathcal{L} = \underbrace{\frac{1}{N}\sum_i \|x_i - y_i\|_2^{\alpha}}_{\mathcal{L}_{align}}
        + \lambda\, \frac{\mathcal{L}_{unif}(x) + \mathcal{L}_{unif}(y)}{2}, \qquad
    \mathcal{L}_{unif}(x) = \log \frac{1}{\binom{N}{2}}\sum_{i<j} e^{-t\|x_i - x_j\|_2^2}
    $$

    Uniformity is a property of the whole batch: with `reduction="none"` the loss of sample
    $i$ is $\|x_i - y_i\|^\alpha + \lambda(\mathcal{L}_{unif}(x) + \mathcal{L}_{unif}(y))/2$,
    the batch term shared by every sample, so the mean over samples is $\mathcal{L}$. With
    `gather_distributed`, uniformity is taken over the batch gathered from every rank.

    *Understanding Contrastive Representation Learning through Alignment and Uniformity on the
    Hypersphere*, Wang & Isola, ICML 2020 (arXiv:2005.10242). Verified against the official
    `SsnL/align_uniform` functions (`(x - y).norm(dim=1).pow(alpha).mean()`,
    `torch.pdist(x).pow(2).mul(-t).exp().mean().log()`), reproduced in the tests, value and
    gradient; defaults `alpha=2, t=2` are the official ones.

    Args:
        z1: `[N, D]` embeddings of the first views.
        z2: `[N, D]` embeddings of the second views.
        alpha: $\alpha > 0$.
        t: $t > 0$.
        lam: $\lambda \ge 0$, the weight of uniformity.
        normalize: L2-normalise the inputs first (the paper's features live on the sphere);
            `False` uses them as given, like the official functions.
        gather_distributed: uniformity over the batch gathered from every rank (with gradient).
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N]`).
        validate_args: unused (no host-sync checks); kept for the contract.

    Returns:
        The loss (`[N]` with `reduction="none"`).

    Shape:
        z1 `[N, D]`, z2 `[N, D]`.

    Raises:
        TypeError: non-floating inputs.
        ValueError: shape mismatch.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import alignment_uniformity_loss
        >>> g = torch.Generator().manual_seed(0)
        >>> z1, z2 = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
        >>> alignment_uniformity_loss(z1, z2)
        tensor(-0.5833)
    """
    check_reduction(reduction)
    hp = _check_align_uniform_args(
        alpha=alpha, t=t, lam=lam, normalize=normalize, gather_distributed=gather_distributed
    )
    x = check_embeddings("z1", z1)
    y = check_embeddings("z2", z2)
    check_same_shape("z1", x, "z2", y)
    dtype = torch.promote_types(x.dtype, y.dtype)
    x, y = x.to(dtype), y.to(dtype)
    if hp["normalize"]:
        x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    align = (x - y).norm(p=2, dim=1).pow(hp["alpha"])
    both, _, _ = gather_batch(
        torch.stack([x, y], dim=1), gather_distributed=hp["gather_distributed"]
    )
    unif = (uniformity(both[:, 0], hp["t"]) + uniformity(both[:, 1], hp["t"])) / 2
    return reduce_loss(align + hp["lam"] * unif, reduction)


@register_loss("alignment_uniformity", aliases=("align_uniform",))
class AlignmentUniformityLoss(EmbeddingLoss):
    r"""Alignment + uniformity loss on the hypersphere (Wang & Isola).

    $$
    \mathcal{L} = \frac{1}{N}\sum_i \|x_i - y_i\|_2^{\alpha}
        + \lambda\, \frac{\mathcal{L}_{unif}(x) + \mathcal{L}_{unif}(y)}{2}
    $$

    Module form of
    [alignment_uniformity_loss][lightning_losses.functional.alignment_uniformity_loss].

    *Understanding Contrastive Representation Learning through Alignment and Uniformity on the
    Hypersphere*, Wang & Isola, ICML 2020 (arXiv:2005.10242).

    Args:
        alpha: alignment exponent $\alpha > 0$ (2).
        t: uniformity kernel scale $t > 0$ (2).
        lam: uniformity weight $\lambda \ge 0$ (1).
        normalize: L2-normalise the inputs first.
        gather_distributed: uniformity over the batch of every rank.
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N]`).
        validate_args: kept for the contract.

    Shape:
        forward(z1 `[N, D]`, z2 `[N, D]`).

    Example:
        >>> import torch
        >>> from lightning_losses.losses import AlignmentUniformityLoss
        >>> g = torch.Generator().manual_seed(0)
        >>> z1, z2 = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
        >>> AlignmentUniformityLoss()(z1, z2)
        tensor(-0.5833)
    """

    functional = staticmethod(alignment_uniformity_loss)
    distributed_semantics: ClassVar[str] = DistributedSemantics.GATHER

    def __init__(
        self,
        alpha: float = 2.0,
        t: float = 2.0,
        lam: float = 1.0,
        normalize: bool = True,
        gather_distributed: bool = False,
        *,
        reduction: str = "mean",
        validate_args: bool = True,
    ):
        super().__init__(
            **_check_align_uniform_args(
                alpha=alpha,
                t=t,
                lam=lam,
                normalize=normalize,
                gather_distributed=gather_distributed,
            ),
            reduction=reduction,
            validate_args=validate_args,
        )

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        """Loss of two views `z1 [N, D]`, `z2 [N, D]` (row i of each: the same sample)."""
        return self._call_functional(z1, z2)
