r"""Supervised contrastive loss.

*Supervised Contrastive Learning*, Khosla et al., NeurIPS 2020 (arXiv:2004.11362); official code
`HobbitLong/SupContrast` (`losses.py`), checked line by line for this implementation.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from lightning_losses.losses._embedding import (
    DistributedSemantics,
    EmbeddingLoss,
    check_embeddings,
    check_labels,
    check_ref,
    gather_batch,
)
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.contrastive._core import contrast_rows
from lightning_losses.registry import register_loss
from lightning_losses.validation import (
    check_bool,
    check_choice,
    check_number,
    check_reduction,
    check_tensor,
)

__all__ = ["SupConLoss", "supcon_loss"]

CONTRAST_MODES = ("all", "one")
VARIANTS = ("out", "in")


def _check_supcon_args(
    *,
    temperature: Any,
    base_temperature: Any,
    contrast_mode: Any,
    variant: Any,
    gather_distributed: Any,
) -> dict[str, Any]:
    return {
        "temperature": check_number("temperature", temperature, low=0.0, low_inclusive=False),
        "base_temperature": check_number(
            "base_temperature", base_temperature, low=0.0, low_inclusive=False
        ),
        "contrast_mode": check_choice("contrast_mode", contrast_mode, CONTRAST_MODES),
        "variant": check_choice("variant", variant, VARIANTS),
        "gather_distributed": check_bool("gather_distributed", gather_distributed),
    }


def supcon_loss(
    features: Tensor,
    labels: Tensor | None = None,
    mask: Tensor | None = None,
    *,
    ref_emb: Tensor | None = None,
    ref_labels: Tensor | None = None,
    temperature: float = 0.07,
    base_temperature: float = 0.07,
    contrast_mode: str = "all",
    variant: str = "out",
    gather_distributed: bool = False,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Supervised contrastive loss $\mathcal{L}^{sup}_{out}$ (SupCon); SimCLR without labels.

    Every view of every sample is an anchor $i$ (`contrast_mode="all"`; `"one"`: only the first
    view). With $s_{ia} = \hat z_i \cdot \hat z_a / \tau$ over L2-normalised features,
    $A(i)$ = all views except $i$, and $P(i) \subset A(i)$ the views with the label of $i$:

    $$
    \ell_i = -\frac{\tau}{\tau_{base}} \frac{1}{|P(i)|} \sum_{p \in P(i)}
        \log \frac{e^{s_{ip}}}{\sum_{a \in A(i)} e^{s_{ia}}}
    $$

    `variant="in"` puts the $1/|P(i)|$ inside the log (the paper's $\mathcal{L}_{in}$, which it
    shows to be worse; not the default). No `labels` and no `mask` gives SimCLR's NT-Xent (each
    sample's other views are its positives). Anchors with no positive (a class seen once, with
    one view) have loss 0 and are left out of the `"mean"` (PML's `AvgNonZeroReducer` does the
    same; the official code divides by zero there, giving NaN). Defaults are the official code's
    (`temperature=0.07, base_temperature=0.07, contrast_mode="all"`).

    *Supervised Contrastive Learning*, Khosla et al., NeurIPS 2020 (arXiv:2004.11362). Verified
    against the official `HobbitLong/SupContrast` `losses.py` (formula, defaults, τ/τ_base scale)
    and, value and gradient, against `pytorch_metric_learning.losses.SupConLoss`, which has no
    base-temperature scaling (equal with `base_temperature=temperature`) and defaults to
    `temperature=0.1`: PML's `SupConLoss(temperature=0.07)` reproduces our defaults.

    Args:
        features: `[N, V, D]` (V views) or `[N, D]` (one view); normalised inside.
        labels: class ids `[N]`; `None` with `mask=None` means SimCLR.
        mask: boolean (or 0/1) `[N, N]`: `mask[i, j]` = sample j is a positive of sample i (may be
            asymmetric). Exclusive with `labels`; not combinable with `gather_distributed`.
        ref_emb: extra contrast rows `[R, D]` (memory bank / queue), never anchors, not gathered.
        ref_labels: labels `[R]` of `ref_emb` (required when `labels` is given; without labels
            the references are negatives only).
        temperature: $\tau > 0$.
        base_temperature: $\tau_{base} > 0$ (the loss is scaled by $\tau / \tau_{base}$).
        contrast_mode: `"all"` or `"one"`.
        variant: `"out"` (default) or `"in"`.
        gather_distributed: all-gather features and labels across ranks (with gradient); each
            rank's anchors are its local views.
        reduction: `"mean"` (over anchors with a positive) `| "sum" | "none"`.
        validate_args: check that a `mask` holds only 0/1 (host sync).

    Returns:
        The loss; with `reduction="none"`, `[N, V]` per anchor view (`[N]` for `"one"` or 2-D
        features), 0 for anchors without a positive.

    Shape:
        features `[N, V, D]` or `[N, D]`, labels `[N]`, mask `[N, N]`.

    Raises:
        TypeError: non-floating features, non-integer labels.
        ValueError: bad shapes, both `labels` and `mask`, a non-binary mask, `mask` with
            `gather_distributed`, or missing `ref_labels`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import supcon_loss
        >>> g = torch.Generator().manual_seed(0)
        >>> feats = torch.randn(4, 2, 8, generator=g)
        >>> supcon_loss(feats, torch.tensor([0, 1, 0, 1]))
        tensor(7.2485)
    """
    check_reduction(reduction)
    hp = _check_supcon_args(
        temperature=temperature,
        base_temperature=base_temperature,
        contrast_mode=contrast_mode,
        variant=variant,
        gather_distributed=gather_distributed,
    )
    features = check_embeddings("features", features, ndim=(2, 3))
    views_dim = features.ndim == 3
    x = features if views_dim else features[:, None]
    # Normalised once, before gathering: the anchors are rows of the contrast set.
    x = torch.nn.functional.normalize(x, dim=-1)
    n, v, d = x.shape
    if labels is not None and mask is not None:
        raise ValueError("pass labels or mask to supcon_loss, not both")
    if labels is not None:
        check_labels("labels", labels, n)
    if mask is not None:
        check_tensor("mask", mask)
        if mask.shape != (n, n):
            raise ValueError(f"mask must have shape [N, N] = ({n}, {n}), got {tuple(mask.shape)}")
        if hp["gather_distributed"]:
            raise ValueError("mask cannot be combined with gather_distributed=True: pass labels")
        if validate_args and mask.dtype != torch.bool and bool(((mask != 0) & (mask != 1)).any()):
            raise ValueError("mask must hold only 0/1 (or booleans)")
    ref_emb, ref_labels = check_ref(ref_emb, ref_labels, d, need_labels=labels is not None, like=x)
    if ref_labels is not None and labels is None and mask is None:
        raise ValueError("ref_labels need labels for the anchors")
    if ref_emb is not None and mask is not None:
        raise ValueError("ref_emb cannot be combined with mask: pass labels and ref_labels")

    gathered, all_labels, offset = gather_batch(
        x, labels, gather_distributed=hp["gather_distributed"]
    )
    m = gathered.shape[0]
    contrast = gathered.reshape(m * v, d)
    one = hp["contrast_mode"] == "one"
    anchors = x[:, 0] if one else x.reshape(n * v, d)
    # Sample-major layout: view j of sample i is row i * V + j of the contrast set.
    anchor_sample = torch.arange(n, device=x.device) + offset
    if not one:
        anchor_sample = anchor_sample.repeat_interleave(v)
    view = torch.zeros_like(anchor_sample) if one else torch.arange(v, device=x.device).repeat(n)
    self_cols = anchor_sample * v + view

    pos_mask = None
    if mask is not None:
        pos_mask = (mask != 0).repeat_interleave(v, dim=1)[anchor_sample - offset]
    else:
        if all_labels is None:  # SimCLR: a sample's positives are its own other views
            all_labels = torch.arange(m, device=x.device)
        anchor_labels = all_labels[anchor_sample]
        contrast_labels = all_labels.repeat_interleave(v)
        if ref_emb is not None:
            contrast = torch.cat([contrast, torch.nn.functional.normalize(ref_emb, dim=-1)])
            # Without labels the references are negatives: a label no sample has.
            extra = (
                ref_labels
                if ref_labels is not None
                else torch.full(
                    (ref_emb.shape[0],), -1, dtype=contrast_labels.dtype, device=x.device
                )
            )
            contrast_labels = torch.cat([contrast_labels, extra.to(contrast_labels.dtype)])
        pos_mask = anchor_labels[:, None] == contrast_labels[None, :]

    rows, valid = contrast_rows(
        anchors,
        contrast,
        temperature=hp["temperature"],
        self_cols=self_cols,
        pos_mask=pos_mask,
        variant=hp["variant"],
        normalize=False,
    )
    rows = rows * (hp["temperature"] / hp["base_temperature"])
    out_shape = torch.Size((n,)) if one or not views_dim else torch.Size((n, v))
    return reduce_loss(rows, reduction, valid=valid, out_shape=out_shape)


@register_loss("supcon", aliases=("supervised_contrastive",))
class SupConLoss(EmbeddingLoss):
    r"""Supervised contrastive loss (SupCon, $\mathcal{L}^{sup}_{out}$); SimCLR without labels.

    $$
    \ell_i = -\frac{\tau}{\tau_{base}} \frac{1}{|P(i)|} \sum_{p \in P(i)}
        \log \frac{e^{s_{ip}}}{\sum_{a \ne i} e^{s_{ia}}}
    $$

    The module form of [supcon_loss][lightning_losses.functional.supcon_loss] (full formula,
    conventions and verification there). Anchors without a positive get 0 and are not counted
    in the mean.

    *Supervised Contrastive Learning*, Khosla et al., NeurIPS 2020 (arXiv:2004.11362).

    Args:
        temperature: $\tau > 0$ (official default 0.07).
        base_temperature: $\tau_{base} > 0$ (0.07).
        contrast_mode: `"all"` (every view is an anchor) or `"one"` (first view only).
        variant: `"out"` or `"in"` (where $1/|P|$ sits).
        gather_distributed: all-gather across ranks with gradient (local anchors).
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N, V]` per anchor view).
        validate_args: run the host-sync checks.

    Shape:
        forward(features `[N, V, D]` or `[N, D]`, labels `[N]` or None, mask `[N, N]` or None,
        ref_emb=`[R, D]`, ref_labels=`[R]`).

    Example:
        >>> import torch
        >>> from lightning_losses.losses import SupConLoss
        >>> g = torch.Generator().manual_seed(0)
        >>> SupConLoss()(torch.randn(4, 2, 8, generator=g), torch.tensor([0, 1, 0, 1]))
        tensor(7.2485)
    """

    functional = staticmethod(supcon_loss)
    target_arg: ClassVar[str | None] = "labels"
    distributed_semantics: ClassVar[str] = DistributedSemantics.GATHER

    def __init__(
        self,
        temperature: float = 0.07,
        base_temperature: float = 0.07,
        contrast_mode: str = "all",
        variant: str = "out",
        gather_distributed: bool = False,
        *,
        reduction: str = "mean",
        validate_args: bool = True,
    ):
        super().__init__(
            **_check_supcon_args(
                temperature=temperature,
                base_temperature=base_temperature,
                contrast_mode=contrast_mode,
                variant=variant,
                gather_distributed=gather_distributed,
            ),
            reduction=reduction,
            validate_args=validate_args,
        )

    def forward(
        self,
        features: Tensor,
        labels: Tensor | None = None,
        mask: Tensor | None = None,
        *,
        ref_emb: Tensor | None = None,
        ref_labels: Tensor | None = None,
    ) -> Tensor:
        """Loss of `features [N, V, D]` or `[N, D]` with `labels [N]` or `mask [N, N]`."""
        return self._call_functional(features, labels, mask, ref_emb=ref_emb, ref_labels=ref_labels)
