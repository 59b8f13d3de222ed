r"""Partial FC: margin softmax over a sampled subset of the class centres.

*Partial FC: Training 10 Million Identities on a Single Machine*, An et al., ICCVW 2021
(arXiv:2010.05222). The sampling follows insightface's `PartialFC_V2.sample` (every class
present in the batch, then uniformly drawn others up to `⌈r·C⌉`, labels remapped with
`searchsorted` into the sorted subset); `sample_rate=1.0` is exactly the full ArcFace / CosFace
(tested).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from lightning_losses.losses._embedding import check_embeddings, check_labels
from lightning_losses.losses.metric.margin_softmax import (
    ClassCentreLoss,
    _check_margin_args,
    arcface_loss,
    cosface_loss,
)
from lightning_losses.registry import register_loss
from lightning_losses.validation import (
    check_choice,
    check_class_indices,
    check_int,
    check_number,
    check_reduction,
)

__all__ = ["PartialFCLoss", "partial_fc_loss", "sample_centres"]

_MARGIN_LOSSES = {"arcface": arcface_loss, "cosface": cosface_loss}


def _check_partial_fc_args(
    *, sample_rate: Any, margin_loss: Any, margin: Any, scale: Any, ignore_index: Any
) -> dict[str, Any]:
    kind = check_choice("margin_loss", margin_loss, tuple(_MARGIN_LOSSES))
    high = math.pi / 2 if kind == "arcface" else 2.0
    return {
        "sample_rate": check_number(
            "sample_rate", sample_rate, low=0.0, high=1.0, low_inclusive=False
        ),
        "margin_loss": kind,
        **_check_margin_args(margin=margin, scale=scale, ignore_index=ignore_index, high=high),
    }


def sample_centres(
    labels: Tensor,
    num_classes: int,
    sample_rate: float,
    *,
    ignore_index: int | None = -100,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Indices of the sampled classes (sorted) and the labels remapped into them.

    Every class present in `labels` is kept; the rest of the `⌈sample_rate · C⌉` slots are
    drawn uniformly without replacement from the other classes (with `generator`). When the
    batch holds more classes than slots, only the batch's classes are used (as insightface).
    The sampled set's size therefore depends on the labels: under
    `torch.compile(fullgraph=True)` this is the one loss of the catalog that is not a single
    static graph (compile it with the default `fullgraph=False`: one graph break here).

    Example:
        >>> import torch
        >>> from lightning_losses.functional import sample_centres
        >>> g = torch.Generator().manual_seed(0)
        >>> index, remapped = sample_centres(torch.tensor([7, 2, 7]), 10, 0.5, generator=g)
        >>> position = {int(c): i for i, c in enumerate(index)}
        >>> len(index), sorted({2, 7} & set(index.tolist())), remapped.tolist() == [
        ...     position[7], position[2], position[7]]
        (5, [2, 7], True)
    """
    valid = (
        labels != ignore_index
        if ignore_index is not None
        else torch.ones_like(labels, dtype=torch.bool)
    )
    positive = torch.unique(labels[valid], sorted=True)
    num_sample = math.ceil(sample_rate * num_classes)
    if num_sample > positive.numel():
        score = torch.rand(num_classes, generator=generator, device="cpu").to(labels.device)
        score[positive] = 2.0  # the batch's classes always win
        index = torch.topk(score, k=num_sample).indices.sort().values
    else:
        index = positive
    remapped = torch.where(valid, torch.searchsorted(index, labels.contiguous()), labels)
    return index, remapped


def partial_fc_loss(
    embeddings: Tensor,
    labels: Tensor,
    weight: Tensor,
    *,
    sample_rate: float = 0.1,
    margin_loss: str = "arcface",
    margin: float = 0.5,
    scale: float = 64.0,
    ignore_index: int = -100,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Partial FC: ArcFace / CosFace cross-entropy over a sampled subset $S$ of the centres.

    $$
    \ell = -\log \frac{e^{f(\cos\theta_y)}}
        {e^{f(\cos\theta_y)} + \sum_{k \in S\setminus y} e^{s\cos\theta_k}},
    $$

    $f$ the margin of `margin_loss` (ArcFace $s\cos(\theta+m)$ or CosFace $s(\cos\theta - m)$),
    $S$ = the batch's classes plus uniformly sampled others, $|S| = \max(\lceil rC\rceil,
    \#\text{batch classes})$ (see
    [sample_centres][lightning_losses.functional.sample_centres]). Only the
    sampled centres get a gradient. Single-process sampling: insightface shards the centres over
    ranks (model parallel), which is not implemented here; under DDP every rank samples its own
    subset (seed the ranks' generators differently) and DDP averages the centre gradients.

    *Partial FC: Training 10 Million Identities on a Single Machine*, An et al., ICCVW 2021
    (arXiv:2010.05222).

    Args:
        embeddings: `[N, D]` (normalised inside).
        labels: `[N]` class indices in `[0, C)` (or `ignore_index`).
        weight: all class centres `[C, D]`.
        sample_rate: $r \in (0, 1]$ (paper 0.1); 1.0 uses every centre.
        margin_loss: `"arcface"` or `"cosface"`.
        margin: the margin of `margin_loss` (radians for ArcFace).
        scale: logit scale $s$.
        ignore_index: label value that contributes neither to the loss nor to the mean.
        generator: the random generator of the negative sampling.
        reduction: `"mean" | "sum" | "none"` (`"none"`: one value per row).
        validate_args: check the label range (a host sync).

    Returns:
        The loss: a scalar, or `[N]` with `reduction="none"`.

    Raises:
        ValueError: on a bad shape, label or hyperparameter.
        TypeError: on integer embeddings / centres or floating labels.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import partial_fc_loss, arcface_loss
        >>> emb, w, y = torch.randn(4, 8), torch.randn(100, 8), torch.tensor([1, 5, 5, 42])
        >>> g = torch.Generator().manual_seed(0)
        >>> partial_fc_loss(emb, y, w, sample_rate=0.2, generator=g).shape
        torch.Size([])
        >>> full = partial_fc_loss(emb, y, w, sample_rate=1.0)
        >>> bool(torch.isclose(full, arcface_loss(emb, y, w)))
        True
    """
    check_reduction(reduction)
    hp = _check_partial_fc_args(
        sample_rate=sample_rate,
        margin_loss=margin_loss,
        margin=margin,
        scale=scale,
        ignore_index=ignore_index,
    )
    emb = check_embeddings("embeddings", embeddings)
    w = check_embeddings("weight", weight)
    check_labels("labels", labels, emb.shape[0])
    num_classes = w.shape[0]
    ign = hp["ignore_index"]
    if validate_args:
        check_class_indices(labels, num_classes, ignore_index=ign, name="labels")
    index, remapped = sample_centres(
        labels, num_classes, hp["sample_rate"], ignore_index=ign, generator=generator
    )
    fn = _MARGIN_LOSSES[hp["margin_loss"]]
    return fn(
        emb,
        remapped,
        w[index],
        margin=hp["margin"],
        scale=hp["scale"],
        ignore_index=ign,
        reduction=reduction,
        validate_args=False,
    )


@register_loss("partial_fc")
class PartialFCLoss(ClassCentreLoss):
    r"""Partial FC: ArcFace / CosFace over a sampled subset of learnable class centres.

    See [partial_fc_loss][lightning_losses.functional.partial_fc_loss] for the sampling and the
    distributed caveat. The module owns a `torch.Generator` seeded with `seed` (a fresh
    nondeterministic seed when `None`); its state is not part of `state_dict`.

    *Partial FC: Training 10 Million Identities on a Single Machine*, An et al., ICCVW 2021
    (arXiv:2010.05222).

    Args:
        num_classes: number of centres `C` (with `embedding_size`: the module owns them).
        embedding_size: `D`.
        sample_rate: $r \in (0, 1]$ (paper 0.1).
        margin_loss: `"arcface"` (default) or `"cosface"`.
        margin: the margin (ArcFace 0.5 rad by default).
        scale: logit scale $s$ (64).
        seed: seed of the sampling generator.
        ignore_index: label value that is ignored.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - embeddings: `[N, D]`; labels: `[N]`; weight (only without own centres): `[C, D]`.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import PartialFCLoss
        >>> loss = PartialFCLoss(num_classes=1000, embedding_size=16, seed=0)
        >>> loss(torch.randn(4, 16), torch.tensor([0, 3, 3, 999])).shape
        torch.Size([])
    """

    functional = staticmethod(partial_fc_loss)

    def __init__(
        self,
        num_classes: int | None = None,
        embedding_size: int | None = None,
        sample_rate: float = 0.1,
        margin_loss: str = "arcface",
        margin: float = 0.5,
        scale: float = 64.0,
        seed: int | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            num_classes,
            embedding_size,
            reduction=reduction,
            validate_args=validate_args,
            **_check_partial_fc_args(
                sample_rate=sample_rate,
                margin_loss=margin_loss,
                margin=margin,
                scale=scale,
                ignore_index=ignore_index,
            ),
        )
        self.seed = None if seed is None else check_int("seed", seed)
        self.generator = torch.Generator()
        if self.seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(self.seed)

    def _functional_kwargs(self) -> dict[str, Any]:
        # The negatives are drawn from the module's own generator.
        return {**super()._functional_kwargs(), "generator": self.generator}

    def forward(self, embeddings: Tensor, labels: Tensor, weight: Tensor | None = None) -> Tensor:
        """Loss of `embeddings [N, D]`, `labels [N]`; draws the negatives from `generator`."""
        return self._call_functional(embeddings, labels, self._centres(weight))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", seed={self.seed}"
