"""Private helpers of the pair / triplet losses: the anchor-vs-reference batch, masked reductions.

Every pair loss of this package scores each *local* anchor against a set of references: the
batch itself (optionally gathered over ranks, self-pairs excluded) or explicit `ref_emb` /
`ref_labels` (a queue, a cross-batch memory). `PairBatch` holds the anchors, the references,
and the positive / negative masks; the losses only add their formula.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses._embedding import (
    check_embeddings,
    check_labels,
    check_ref,
    gather_batch,
)


@dataclass
class PairBatch:
    """Local anchors `[n, D]` against references `[m, D]`, with `[n, m]` boolean pair masks."""

    anchors: Tensor
    refs: Tensor
    pos: Tensor
    neg: Tensor

    def cosine(self) -> Tensor:
        """Cosine similarity `[n, m]` of the L2-normalised anchors and references."""
        return F.normalize(self.anchors, dim=-1) @ F.normalize(self.refs, dim=-1).T

    def euclidean(self, normalize: bool = True) -> Tensor:
        """Euclidean distance `[n, m]` (of L2-normalised embeddings when `normalize`).

        `torch.cdist` has a zero gradient at zero distance (a hand-written `sqrt` would give
        `inf`), and it is what pytorch-metric-learning's `LpDistance` uses.
        """
        a, r = self.anchors, self.refs
        if normalize:
            a, r = F.normalize(a, dim=-1), F.normalize(r, dim=-1)
        return torch.cdist(a, r)


def prepare_pairs(
    embeddings: Tensor,
    labels: Tensor,
    *,
    ref_emb: Tensor | None = None,
    ref_labels: Tensor | None = None,
    gather_distributed: bool = False,
    validate_args: bool = True,
) -> PairBatch:
    """Validate the inputs and build the anchor/reference pairs of a pair or triplet loss.

    Without `ref_emb`, the references are the batch (all ranks' batch with
    `gather_distributed=True`, gradients flowing back to each shard) and an anchor is never its
    own positive. With `ref_emb` (and `ref_labels`), every reference counts and nothing is
    gathered (a queue or memory bank is already global).
    """
    emb = check_embeddings("embeddings", embeddings, validate_args=validate_args)
    lab = check_labels("labels", labels, emb.shape[0], validate_args=validate_args)
    refs, ref_lab = check_ref(ref_emb, ref_labels, emb.shape[1], need_labels=True, like=emb)
    if refs is None:
        refs, all_lab, offset = gather_batch(emb, lab, gather_distributed=gather_distributed)
        pos = lab[:, None] == cast(Tensor, all_lab)[None, :]  # labels in, labels out
        neg = ~pos
        idx = torch.arange(emb.shape[0], device=emb.device)
        pos[idx, idx + offset] = False  # an anchor is not its own positive
    else:
        # check_ref(..., need_labels=True) returned the reference labels.
        pos = lab[:, None] == cast(Tensor, ref_lab).to(lab.device)[None, :]
        neg = ~pos
    return PairBatch(emb, refs, pos, neg)


def masked_logsumexp(x: Tensor, mask: Tensor, *, add_one: bool = False) -> tuple[Tensor, Tensor]:
    """Row-wise `log Σ_{j: mask_ij} exp(x_ij)` (plus `exp(0)` when `add_one`) and `mask.any(1)`.

    A row with an empty mask gets 0 (with `add_one` that is the exact value `log 1`) and an
    exactly zero gradient: the masked entries are replaced before `logsumexp`, whose backward
    would otherwise compute `0 · exp(-inf + inf) = NaN` on such a row.
    """
    has = mask.any(dim=1)
    neg_inf = torch.finfo(x.dtype).min
    filled = torch.where(mask, x, neg_inf)
    if add_one:
        filled = torch.cat([filled, filled.new_zeros(filled.shape[0], 1)], dim=1)
    else:
        filled = torch.where(has[:, None], filled, 0.0)
    out = torch.logsumexp(filled, dim=1)
    return torch.where(has, out, 0.0) if not add_one else out, has


def masked_mean(values: Tensor, mask: Tensor, *, nonzero: bool) -> Tensor:
    """Row-wise mean of `values` over `mask` (over its entries with `values > 0` when `nonzero`).

    Empty rows give 0. A NaN value in a row counts as an entry, so it propagates instead of
    being dropped by the `> 0` test.
    """
    kept = torch.where(mask, values, 0.0)
    count = mask & ((values > 0) | values.isnan()) if nonzero else mask
    n = count.sum(dim=1).to(values.dtype)
    return kept.sum(dim=1) / n.clamp_min(1)
