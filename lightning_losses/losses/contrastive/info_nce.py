r"""InfoNCE (query → key) and NT-Xent (two views, every view an anchor).

*Representation Learning with Contrastive Predictive Coding*, van den Oord et al., 2018
(arXiv:1807.03748); *A Simple Framework for Contrastive Learning of Visual Representations*
(SimCLR), Chen et al., ICML 2020 (arXiv:2002.05709); *Momentum Contrast for Unsupervised Visual
Representation Learning* (MoCo), He et al., CVPR 2020 (arXiv:1911.05722).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses._embedding import (
    DistributedSemantics,
    EmbeddingLoss,
    check_embeddings,
    check_ref,
    gather_batch,
)
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.contrastive._core import contrast_rows
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_bool, check_number, check_reduction, check_same_shape

__all__ = ["InfoNCELoss", "NTXentLoss", "info_nce_loss", "nt_xent_loss"]


def _check_info_nce_args(*, temperature: Any, gather_distributed: Any) -> dict[str, Any]:
    return {
        "temperature": check_number("temperature", temperature, low=0.0, low_inclusive=False),
        "gather_distributed": check_bool("gather_distributed", gather_distributed),
    }


def _check_pair(name_a: str, a: Tensor, name_b: str, b: Tensor) -> tuple[Tensor, Tensor]:
    a = check_embeddings(name_a, a)
    b = check_embeddings(name_b, b)
    check_same_shape(name_a, a, name_b, b)
    dtype = torch.promote_types(a.dtype, b.dtype)
    return a.to(dtype), b.to(dtype)


def info_nce_loss(
    query: Tensor,
    key: Tensor,
    *,
    ref_emb: Tensor | None = None,
    temperature: float = 0.1,
    gather_distributed: bool = False,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""InfoNCE of queries against their keys, in-batch keys (and `ref_emb`) as negatives.

    With $s(u, v) = \hat u \cdot \hat v / \tau$ over L2-normalised rows, query $q_i$, its key
    $k_i$, the batch keys $k_j$ and reference rows $r$ (a MoCo queue):

    $$
    \ell_i = -\log \frac{e^{s(q_i, k_i)}}{\sum_j e^{s(q_i, k_j)} + \sum_r e^{s(q_i, r)}}
    $$

    One direction (query → key): the CLIP-style symmetric loss is the mean of
    `info_nce_loss(a, b)` and `info_nce_loss(b, a)`; NT-Xent (every view an anchor, the other
    view of the same sample its positive, all other views negatives) is
    [nt_xent_loss][lightning_losses.functional.nt_xent_loss].

    *Representation Learning with Contrastive Predictive Coding*, van den Oord et al., 2018
    (arXiv:1807.03748); queue negatives: MoCo, He et al., CVPR 2020 (arXiv:1911.05722).
    Verified against a naive float64 loop of the formula (tests), and in the limit of one
    sample ($\ell = 0$ without references).

    Args:
        query: `[N, D]` anchors.
        key: `[N, D]`; `key[i]` is the positive of `query[i]`.
        ref_emb: extra negatives `[R, D]` shared by every query (a queue), not gathered.
        temperature: $\tau > 0$ (SimCLR uses 0.5, MoCo 0.07).
        gather_distributed: all-gather the keys across ranks (with gradient); queries stay local.
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N]`).
        validate_args: unused (no host-sync checks); kept for the contract.

    Returns:
        The loss (`[N]` with `reduction="none"`).

    Shape:
        query `[N, D]`, key `[N, D]`, ref_emb `[R, D]`.

    Raises:
        TypeError: non-floating inputs.
        ValueError: shape mismatch.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import info_nce_loss
        >>> g = torch.Generator().manual_seed(0)
        >>> q, k = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
        >>> info_nce_loss(q, k, temperature=0.5)
        tensor(1.6555)
    """
    check_reduction(reduction)
    hp = _check_info_nce_args(temperature=temperature, gather_distributed=gather_distributed)
    query, key = _check_pair("query", query, "key", key)
    ref_emb, _ = check_ref(ref_emb, None, query.shape[1], need_labels=False, like=query)
    keys, _, offset = gather_batch(key, gather_distributed=hp["gather_distributed"])
    if ref_emb is not None:
        keys = torch.cat([keys, ref_emb])
    pos_cols = torch.arange(query.shape[0], device=query.device) + offset
    rows, _ = contrast_rows(query, keys, temperature=hp["temperature"], pos_cols=pos_cols)
    return reduce_loss(rows, reduction)


def nt_xent_loss(
    z1: Tensor,
    z2: Tensor,
    *,
    ref_emb: Tensor | None = None,
    temperature: float = 0.1,
    gather_distributed: bool = False,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""NT-Xent (SimCLR): each of the 2N views is an anchor, its partner view the positive.

    Over the 2N L2-normalised views $z$ (and reference rows $r$ as extra negatives), with
    $s_{ik} = \hat z_i \cdot \hat z_k / \tau$ and $i^+$ the other view of $i$'s sample:

    $$
    \ell_i = -\log \frac{e^{s_{i i^+}}}{\sum_{k \ne i} e^{s_{ik}} + \sum_r e^{s_{ir}}},
    \qquad \mathcal{L} = \frac{1}{2N} \sum_i \ell_i
    $$

    *A Simple Framework for Contrastive Learning of Visual Representations*, Chen et al.,
    ICML 2020 (arXiv:2002.05709). Verified, value and gradient, against
    `pytorch_metric_learning.losses.NTXentLoss(temperature=τ)` on `cat([z1, z2])` with labels
    `arange(N)` twice; PML's default τ is 0.07, ours 0.1, so PML reproduces our default with
    `NTXentLoss(temperature=0.1)` (its mean over positive pairs is ours: one positive per
    anchor). Equals [supcon_loss][lightning_losses.functional.supcon_loss] without labels at
    `base_temperature=temperature` (tests). Computed from one `[2N, 2N]` similarity.

    Args:
        z1: first views `[N, D]`.
        z2: second views `[N, D]`.
        ref_emb: extra negatives `[R, D]` (a queue), not gathered.
        temperature: $\tau > 0$ (default 0.1; SimCLR used 0.5 at large batch, PML's default is
            0.07).
        gather_distributed: all-gather both views across ranks (with gradient); the anchors are
            the local views.
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N, 2]`, the loss of each view as
            an anchor).
        validate_args: unused (no host-sync checks); kept for the contract.

    Returns:
        The loss (`[N, 2]` with `reduction="none"`).

    Shape:
        z1 `[N, D]`, z2 `[N, D]`, ref_emb `[R, D]`.

    Raises:
        TypeError: non-floating inputs.
        ValueError: shape mismatch.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import nt_xent_loss
        >>> g = torch.Generator().manual_seed(0)
        >>> z1, z2 = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
        >>> nt_xent_loss(z1, z2, temperature=0.5)
        tensor(2.3139)
    """
    check_reduction(reduction)
    hp = _check_info_nce_args(temperature=temperature, gather_distributed=gather_distributed)
    z1, z2 = _check_pair("z1", z1, "z2", z2)
    ref_emb, _ = check_ref(ref_emb, None, z1.shape[1], need_labels=False, like=z1)
    n, d = z1.shape
    # Sample-major: view v of sample i is row 2i + v. Normalised once: anchors ⊂ contrast.
    views = torch.stack([F.normalize(z1, dim=-1), F.normalize(z2, dim=-1)], dim=1)
    gathered, _, offset = gather_batch(views, gather_distributed=hp["gather_distributed"])
    contrast = gathered.reshape(-1, d)
    if ref_emb is not None:
        contrast = torch.cat([contrast, F.normalize(ref_emb, dim=-1)])
    self_cols = torch.arange(2 * n, device=z1.device) + 2 * offset
    pos_cols = self_cols + 1 - 2 * (self_cols % 2)  # the partner view
    rows, _ = contrast_rows(
        views.reshape(2 * n, d),
        contrast,
        temperature=hp["temperature"],
        self_cols=self_cols,
        pos_cols=pos_cols,
        normalize=False,
    )
    return reduce_loss(rows.reshape(n, 2), reduction)


@register_loss("info_nce", aliases=("infonce",))
class InfoNCELoss(EmbeddingLoss):
    r"""InfoNCE of queries against keys (in-batch negatives, optional queue `ref_emb`).

    $$
    \ell_i = -\log \frac{e^{s(q_i, k_i)}}{\sum_j e^{s(q_i, k_j)} + \sum_r e^{s(q_i, r)}}
    $$

    Module form of [info_nce_loss][lightning_losses.functional.info_nce_loss].

    *Representation Learning with Contrastive Predictive Coding*, van den Oord et al., 2018
    (arXiv:1807.03748).

    Args:
        temperature: $\tau > 0$.
        gather_distributed: all-gather the keys across ranks (with gradient).
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N]`).
        validate_args: kept for the contract.

    Shape:
        forward(query `[N, D]`, key `[N, D]`, ref_emb=`[R, D]`).

    Example:
        >>> import torch
        >>> from lightning_losses.losses import InfoNCELoss
        >>> g = torch.Generator().manual_seed(0)
        >>> q, k = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
        >>> InfoNCELoss(temperature=0.5)(q, k)
        tensor(1.6555)
    """

    functional = staticmethod(info_nce_loss)
    distributed_semantics: ClassVar[str] = DistributedSemantics.GATHER

    def __init__(
        self,
        temperature: float = 0.1,
        gather_distributed: bool = False,
        *,
        reduction: str = "mean",
        validate_args: bool = True,
    ):
        super().__init__(
            **_check_info_nce_args(temperature=temperature, gather_distributed=gather_distributed),
            reduction=reduction,
            validate_args=validate_args,
        )

    def forward(self, query: Tensor, key: Tensor, *, ref_emb: Tensor | None = None) -> Tensor:
        """Loss of `query [N, D]` against `key [N, D]`; optional negatives `ref_emb [R, D]`."""
        return self._call_functional(query, key, ref_emb=ref_emb)


@register_loss("nt_xent", aliases=("ntxent", "simclr"))
class NTXentLoss(EmbeddingLoss):
    r"""NT-Xent (SimCLR's normalized temperature-scaled cross-entropy) over two views.

    $$
    \ell_i = -\log \frac{e^{s_{i i^+}}}{\sum_{k \ne i} e^{s_{ik}}}, \qquad
    \mathcal{L} = \frac{1}{2N}\sum_{i=1}^{2N} \ell_i
    $$

    Module form of [nt_xent_loss][lightning_losses.functional.nt_xent_loss].

    *A Simple Framework for Contrastive Learning of Visual Representations*, Chen et al.,
    ICML 2020 (arXiv:2002.05709).

    Args:
        temperature: $\tau > 0$.
        gather_distributed: all-gather both views across ranks (with gradient).
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N, 2]`).
        validate_args: kept for the contract.

    Shape:
        forward(z1 `[N, D]`, z2 `[N, D]`, ref_emb=`[R, D]`).

    Example:
        >>> import torch
        >>> from lightning_losses.losses import NTXentLoss
        >>> g = torch.Generator().manual_seed(0)
        >>> z1, z2 = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
        >>> NTXentLoss(temperature=0.5)(z1, z2)
        tensor(2.3139)
    """

    functional = staticmethod(nt_xent_loss)
    distributed_semantics: ClassVar[str] = DistributedSemantics.GATHER

    def __init__(
        self,
        temperature: float = 0.1,
        gather_distributed: bool = False,
        *,
        reduction: str = "mean",
        validate_args: bool = True,
    ):
        super().__init__(
            **_check_info_nce_args(temperature=temperature, gather_distributed=gather_distributed),
            reduction=reduction,
            validate_args=validate_args,
        )

    def forward(self, z1: Tensor, z2: Tensor, *, ref_emb: Tensor | None = None) -> Tensor:
        """Loss of two views `z1 [N, D]`, `z2 [N, D]`; optional extra negatives `ref_emb [R, D]`."""
        return self._call_functional(z1, z2, ref_emb=ref_emb)
