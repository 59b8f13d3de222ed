"""The one softmax-contrastive row computation shared by InfoNCE, NT-Xent and SupCon.

Each anchor row is scored against a contrast set; the loss of an anchor is the negative
log-softmax of its positives, with the anchor itself removed from its own denominator. Only the
`[A, C]` similarity matrix is saved for backward (plus a boolean positive mask when positives
are given by labels): the positive term is read from that same matrix.
"""

from __future__ import annotations

import torch
from torch import Tensor


def contrast_rows(
    anchors: Tensor,
    contrast: Tensor,
    *,
    temperature: float,
    self_cols: Tensor | None = None,
    pos_cols: Tensor | None = None,
    anchor_labels: Tensor | None = None,
    contrast_labels: Tensor | None = None,
    pos_mask: Tensor | None = None,
    variant: str = "out",
    normalize: bool = True,
) -> tuple[Tensor, Tensor]:
    r"""Per-anchor softmax-contrastive losses and which anchors have a positive.

    With $s_{ac} = \hat a \cdot \hat c / \tau$ over L2-normalised rows, the denominator set
    $A(a)$ = every contrast column except the anchor's own (`self_cols`), and positives $P(a)$:

    - `variant="out"`:
      $\ell_a = -\frac{1}{|P(a)|}\sum_{p \in P(a)} s_{ap} + \mathrm{LSE}_{c \in A(a)} s_{ac}$
    - `variant="in"`:
      $\ell_a = -\mathrm{LSE}_{p \in P(a)} s_{ap} + \log|P(a)| + \mathrm{LSE}_{c \in A(a)} s_{ac}$

    Positives are given by exactly one of: `pos_cols` (one column per anchor), label equality
    (`anchor_labels` vs `contrast_labels`), or a fresh boolean `pos_mask [A, C]` (modified in
    place). Self columns are never positives.

    `normalize=False`: the rows are already L2-normalised.

    Returns:
        `(rows [A], valid [A])`; rows of anchors without a positive are 0 and not valid.
    """
    # Callers whose anchors are rows of the contrast set normalise once, before gathering.
    a = torch.nn.functional.normalize(anchors, dim=-1) if normalize else anchors
    c = torch.nn.functional.normalize(contrast, dim=-1) if normalize else contrast
    # Scale the [A, D] side, not the [A, C] product: one B x B tensor is all that is built.
    sim = (a / temperature) @ c.T
    rows_idx = torch.arange(sim.shape[0], device=sim.device)
    if self_cols is not None:
        # In place on the matmul output (mm saves its inputs, not its output). A contrast set of
        # one column (the anchor itself) has no positive: fill 0 there so that row stays finite.
        sim[rows_idx, self_cols] = float("-inf") if sim.shape[1] > 1 else 0.0
    denominator = torch.logsumexp(sim, dim=1)

    if pos_cols is not None:
        rows = denominator - sim[rows_idx, pos_cols]
        return rows, torch.ones_like(rows, dtype=torch.bool)

    if pos_mask is None:
        if anchor_labels is None or contrast_labels is None:
            raise ValueError("contrast_rows needs pos_cols, pos_mask, or both label tensors")
        pos_mask = anchor_labels[:, None] == contrast_labels[None, :]
    if self_cols is not None:
        pos_mask[rows_idx, self_cols] = False
    count = pos_mask.sum(1)
    valid = count > 0
    safe_count = count.clamp_min(1).to(sim.dtype)
    zero = torch.zeros((), dtype=sim.dtype, device=sim.device)
    if variant == "out":
        positive = torch.where(pos_mask, sim, zero).sum(1) / safe_count
    else:
        # Rows without a positive see a constant 0 row: finite, and no gradient reaches sim.
        fill = torch.where(valid, float("-inf"), 0.0).to(sim.dtype)[:, None]
        positive = torch.logsumexp(torch.where(pos_mask, sim, fill), dim=1) - safe_count.log()
    rows = torch.where(valid, denominator - positive, zero)
    return rows, valid
