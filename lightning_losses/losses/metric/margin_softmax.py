r"""Softmax losses over learnable class centres (proxies): ArcFace, CosFace, NormalizedSoftmax.

- *ArcFace: Additive Angular Margin Loss for Deep Face Recognition*, Deng et al., CVPR 2019
  (arXiv:1801.07698).
- *CosFace: Large Margin Cosine Loss for Deep Face Recognition*, Wang et al., CVPR 2018
  (arXiv:1801.09414).
- *Classification is a Strong Baseline for Deep Metric Learning*, Zhai and Wu, BMVC 2019
  (arXiv:1811.12649), the normalised softmax.

Each has a functional form that takes the centres `weight [C, D]` explicitly, and a module
that owns them as an `nn.Parameter` (built with `num_classes` and `embedding_size`) or takes them
in `forward` (built without, e.g. to share a classifier head's weights). All three are checked
against pytorch-metric-learning (value, and gradient for the embeddings and the centres).

Distributed semantics: local. Each rank computes the cross-entropy of its own rows against
all `C` centres (no gather is needed: the negatives are the centres, not other samples), and
DDP's gradient averaging averages the centres' gradients like any other parameter.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_losses.losses._classification import ClassificationBatch, prepare_classification
from lightning_losses.losses._embedding import (
    DistributedSemantics,
    EmbeddingLoss,
    check_embeddings,
    check_labels,
)
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_ignore_index, check_int, check_number, check_reduction

__all__ = [
    "ArcFaceLoss",
    "ClassCentreLoss",
    "CosFaceLoss",
    "NormalizedSoftmaxLoss",
    "arcface_loss",
    "arcface_target_logit",
    "cosface_loss",
    "normalized_softmax_loss",
]


def cosine_logits(
    embeddings: Tensor,
    labels: Tensor,
    weight: Tensor,
    *,
    ignore_index: int | None,
    validate_args: bool,
) -> ClassificationBatch:
    """Validated cosines `[N, C]` of the rows of `embeddings` and `weight`, as a batch.

    Shared by every class-centre loss of the package (margin softmax, AdaFace, Partial FC).
    Ignored rows are zeroed before the normalisation, so a NaN/inf embedding in an ignored row
    gets an exactly zero gradient.
    """
    emb = check_embeddings("embeddings", embeddings, validate_args=validate_args)
    w = check_embeddings("weight", weight, validate_args=validate_args)
    if w.shape[1] != emb.shape[1]:
        raise ValueError(
            f"weight must have shape [C, D] with the embedding size D = {emb.shape[1]}, "
            f"got {tuple(w.shape)}"
        )
    check_labels("labels", labels, emb.shape[0], validate_args=validate_args)
    dtype = torch.promote_types(emb.dtype, w.dtype)
    emb, w = emb.to(dtype), w.to(dtype)
    if ignore_index is not None:
        emb = torch.where((labels != ignore_index)[:, None], emb, 0.0)
    cos = F.normalize(emb, dim=-1) @ F.normalize(w, dim=-1).T
    return prepare_classification(
        cos,
        labels,
        ignore_index=ignore_index,
        allow_soft=False,
        input_name="embeddings",
        target_name="labels",
        validate_args=validate_args,
    )


def margin_cross_entropy(
    batch: ClassificationBatch,
    target_logit: Tensor | None,
    scale: float,
    reduction: str,
) -> Tensor:
    """`CE(scale · cos with the target entry replaced by target_logit [N])`, reduced.

    `target_logit=None` keeps the cosines as they are (no margin: one `[N, C]` pass fewer).
    """
    logits = batch.logits
    if target_logit is not None:
        logits = logits.scatter(1, batch.target[:, None], target_logit[:, None])
    logits = logits * scale
    margin_batch = ClassificationBatch(
        logits, batch.target, batch.valid, None, batch.out_shape, batch.num_classes
    )
    rows = -margin_batch.log_p_target()
    return reduce_loss(rows, reduction, valid=batch.valid)


def arcface_target_logit(cos_y: Tensor, margin: float) -> Tensor:
    r"""$\cos(\theta_y + m)$ from $\cos\theta_y$, kept monotonic past $\theta_y = \pi - m$.

    $\cos(\theta + m) = \cos\theta\cos m - \sin\theta\sin m$ for $\theta \le \pi - m$, else
    $\cos\theta - m\sin m$: the convention of insightface's margin loss (its `theta` /
    `sinmm` constants) and of pytorch-metric-learning's `ArcFaceLoss`. No `acos` is taken (its
    derivative is infinite at $\cos\theta = \pm1$); $\sin\theta$ is floored at $\sqrt{\epsilon}$
    of the dtype, a change below the dtype's resolution of $1 - \cos^2\theta$ that keeps the
    gradient finite when an embedding coincides with its centre.
    """
    c = cos_y.clamp(-1.0, 1.0)
    eps = torch.finfo(c.dtype).eps
    sin = (1.0 - c * c).clamp_min(eps).sqrt()
    cos_tm = c * math.cos(margin) - sin * math.sin(margin)
    return torch.where(c >= math.cos(math.pi - margin), cos_tm, c - margin * math.sin(margin))


def _check_margin_args(
    *, margin: Any, scale: Any, ignore_index: Any, high: float
) -> dict[str, Any]:
    return {
        "margin": check_number("margin", margin, low=0.0, high=high),
        "scale": check_number("scale", scale, low=0.0, low_inclusive=False),
        "ignore_index": check_ignore_index(ignore_index),
    }


def arcface_loss(
    embeddings: Tensor,
    labels: Tensor,
    weight: Tensor,
    *,
    margin: float = 0.5,
    scale: float = 64.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""ArcFace: softmax cross-entropy with an additive angular margin on the target class.

    With $\cos\theta_k$ the cosine of the normalised embedding and class centre $k$:

    $$
    \ell = -\log \frac{e^{s\cos(\theta_y + m)}}
                      {e^{s\cos(\theta_y + m)} + \sum_{k \ne y} e^{s\cos\theta_k}} .
    $$

    Past $\theta_y > \pi - m$ the target logit is $s(\cos\theta_y - m\sin m)$ (insightface's
    and pytorch-metric-learning's convention, see
    [arcface_target_logit][lightning_losses.functional.arcface_target_logit]).
    The margin is in radians. pytorch-metric-learning's `ArcFaceLoss` takes degrees and
    defaults to 28.6° (0.4992 rad): `ArcFaceLoss(margin=math.degrees(0.5), scale=64)` there
    reproduces our default (tested, value and gradient).

    *ArcFace: Additive Angular Margin Loss for Deep Face Recognition*, Deng et al., CVPR 2019
    (arXiv:1801.07698).

    Args:
        embeddings: `[N, D]` (normalised inside).
        labels: `[N]` class indices in `[0, C)` (or `ignore_index`).
        weight: class centres `[C, D]` (normalised inside).
        margin: additive angular margin $m \in [0, \pi/2]$ (radians).
        scale: logit scale $s > 0$.
        ignore_index: label value that contributes neither to the loss nor to the mean.
        reduction: `"mean" | "sum" | "none"` (`"none"`: one value per row).
        validate_args: check the label range (a host sync).

    Returns:
        The loss: a scalar, or `[N]` with `reduction="none"`.

    Raises:
        ValueError: on a bad shape, label or hyperparameter.
        TypeError: on integer embeddings / centres or floating labels.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import arcface_loss
        >>> centres = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> emb, y = torch.tensor([[2.0, 0.2], [0.1, 1.0]]), torch.tensor([0, 1])
        >>> arcface_loss(emb, y, centres, scale=8.0)
        tensor(0.0030)
    """
    check_reduction(reduction)
    hp = _check_margin_args(margin=margin, scale=scale, ignore_index=ignore_index, high=math.pi / 2)
    batch = cosine_logits(
        embeddings, labels, weight, ignore_index=hp["ignore_index"], validate_args=validate_args
    )
    target = arcface_target_logit(batch.at_target(batch.logits), hp["margin"])
    return margin_cross_entropy(batch, target, hp["scale"], reduction)


def cosface_loss(
    embeddings: Tensor,
    labels: Tensor,
    weight: Tensor,
    *,
    margin: float = 0.35,
    scale: float = 64.0,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""CosFace (large margin cosine loss): softmax cross-entropy with an additive cosine margin.

    $$
    \ell = -\log \frac{e^{s(\cos\theta_y - m)}}
                      {e^{s(\cos\theta_y - m)} + \sum_{k \ne y} e^{s\cos\theta_k}} .
    $$

    *CosFace: Large Margin Cosine Loss for Deep Face Recognition*, Wang et al., CVPR 2018
    (arXiv:1801.09414).

    Args:
        embeddings: `[N, D]` (normalised inside).
        labels: `[N]` class indices in `[0, C)` (or `ignore_index`).
        weight: class centres `[C, D]` (normalised inside).
        margin: cosine margin $m \in [0, 2]$.
        scale: logit scale $s > 0$.
        ignore_index: label value that contributes neither to the loss nor to the mean.
        reduction: `"mean" | "sum" | "none"` (`"none"`: one value per row).
        validate_args: check the label range (a host sync).

    Returns:
        The loss: a scalar, or `[N]` with `reduction="none"`.

    Raises:
        ValueError: on a bad shape, label or hyperparameter.
        TypeError: on integer embeddings / centres or floating labels.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import cosface_loss
        >>> centres = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> emb, y = torch.tensor([[2.0, 0.2], [0.1, 1.0]]), torch.tensor([0, 1])
        >>> cosface_loss(emb, y, centres, scale=8.0)
        tensor(0.0126)
    """
    check_reduction(reduction)
    hp = _check_margin_args(margin=margin, scale=scale, ignore_index=ignore_index, high=2.0)
    batch = cosine_logits(
        embeddings, labels, weight, ignore_index=hp["ignore_index"], validate_args=validate_args
    )
    target = batch.at_target(batch.logits) - hp["margin"]
    return margin_cross_entropy(batch, target, hp["scale"], reduction)


def _check_normalized_softmax_args(*, temperature: Any, ignore_index: Any) -> dict[str, Any]:
    return {
        "temperature": check_number("temperature", temperature, low=0.0, low_inclusive=False),
        "ignore_index": check_ignore_index(ignore_index),
    }


def normalized_softmax_loss(
    embeddings: Tensor,
    labels: Tensor,
    weight: Tensor,
    *,
    temperature: float = 0.05,
    ignore_index: int = -100,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Normalised softmax: cross-entropy of temperature-scaled cosines to the class centres.

    $$
    \ell = -\log \frac{e^{\cos\theta_y / \tau}}{\sum_k e^{\cos\theta_k / \tau}}
    $$

    (CosFace with $m = 0$ and $s = 1/\tau$).

    *Classification is a Strong Baseline for Deep Metric Learning*, Zhai and Wu, BMVC 2019
    (arXiv:1811.12649).

    Args:
        embeddings: `[N, D]` (normalised inside).
        labels: `[N]` class indices in `[0, C)` (or `ignore_index`).
        weight: class centres `[C, D]` (normalised inside).
        temperature: $\tau > 0$.
        ignore_index: label value that contributes neither to the loss nor to the mean.
        reduction: `"mean" | "sum" | "none"` (`"none"`: one value per row).
        validate_args: check the label range (a host sync).

    Returns:
        The loss: a scalar, or `[N]` with `reduction="none"`.

    Raises:
        ValueError: on a bad shape, label or hyperparameter.
        TypeError: on integer embeddings / centres or floating labels.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import normalized_softmax_loss
        >>> centres = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> emb, y = torch.tensor([[2.0, 0.2], [0.1, 1.0]]), torch.tensor([0, 1])
        >>> normalized_softmax_loss(emb, y, centres, temperature=0.5)
        tensor(0.1542)
    """
    check_reduction(reduction)
    hp = _check_normalized_softmax_args(temperature=temperature, ignore_index=ignore_index)
    batch = cosine_logits(
        embeddings, labels, weight, ignore_index=hp["ignore_index"], validate_args=validate_args
    )
    return margin_cross_entropy(batch, None, 1.0 / hp["temperature"], reduction)


class ClassCentreLoss(EmbeddingLoss):
    """Base of the losses over class centres `[C, D]`: owned as a parameter, or given to `forward`.

    Built with `num_classes` and `embedding_size`, the module owns `weight`, an `nn.Parameter`
    `[C, D]` initialised `N(0, 0.01²)` (insightface's Partial FC init; only directions matter),
    trained with the model (LossMixin registers it on the LightningModule). Built without them,
    it owns nothing and `forward` needs `weight`: centres owned elsewhere, e.g. a classifier
    head's.
    """

    target_arg: ClassVar[str | None] = "labels"
    distributed_semantics: ClassVar[str] = DistributedSemantics.LOCAL

    def __init__(
        self,
        num_classes: int | None,
        embedding_size: int | None,
        *,
        reduction: str,
        validate_args: bool,
        **hparams: Any,
    ) -> None:
        if (num_classes is None) != (embedding_size is None):
            raise ValueError(
                "num_classes and embedding_size must be given together (the module owns the "
                f"centres) or both left None; got num_classes={num_classes!r}, "
                f"embedding_size={embedding_size!r}"
            )
        super().__init__(reduction=reduction, validate_args=validate_args, **hparams)
        self.num_classes = (
            None if num_classes is None else check_int("num_classes", num_classes, low=1)
        )
        self.embedding_size = (
            None if embedding_size is None else check_int("embedding_size", embedding_size, low=1)
        )
        if self.num_classes is None or self.embedding_size is None:
            self.register_parameter("weight", None)
        else:
            self.weight = nn.Parameter(torch.empty(self.num_classes, self.embedding_size))
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-draw the owned centres from `N(0, 0.01²)`."""
        if self.weight is not None:
            nn.init.normal_(self.weight, std=0.01)

    def forward(self, embeddings: Tensor, labels: Tensor, weight: Tensor | None = None) -> Tensor:
        """Loss of `embeddings [N, D]`, `labels [N]`; centres `weight [C, D]` if none are owned."""
        return self._call_functional(embeddings, labels, self._centres(weight))

    def _centres(self, weight: Tensor | None) -> Tensor:
        # Exactly one source of centres: the owned parameter or the forward argument.
        if weight is None:
            if self.weight is None:
                raise ValueError(
                    f"{type(self).__name__} was built without num_classes/embedding_size, so it "
                    "owns no centres: pass weight [C, D] to forward"
                )
            return self.weight
        if self.weight is not None:
            raise ValueError(
                f"weight was passed to forward but {type(self).__name__} owns its centres "
                f"[{self.num_classes}, {self.embedding_size}]; pass one or the other"
            )
        return weight

    def extra_repr(self) -> str:
        sizes = f"num_classes={self.num_classes}, embedding_size={self.embedding_size}, "
        return sizes + super().extra_repr()


@register_loss("arcface")
class ArcFaceLoss(ClassCentreLoss):
    r"""ArcFace: additive angular margin softmax over learnable class centres.

    See [arcface_loss][lightning_losses.functional.arcface_loss] for the formula and the
    $\theta_y + m > \pi$ convention; [ClassCentreLoss][lightning_losses.losses.ClassCentreLoss]
    for owned vs passed centres.

    *ArcFace: Additive Angular Margin Loss for Deep Face Recognition*, Deng et al., CVPR 2019
    (arXiv:1801.07698).

    Args:
        num_classes: number of centres `C` (with `embedding_size`: the module owns them).
        embedding_size: `D`.
        margin: angular margin $m$ in radians (paper: 0.5).
        scale: logit scale $s$ (paper: 64).
        ignore_index: label value that is ignored.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - embeddings: `[N, D]`; labels: `[N]`; weight (only without own centres): `[C, D]`.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import ArcFaceLoss
        >>> loss = ArcFaceLoss(num_classes=10, embedding_size=16)
        >>> loss(torch.randn(4, 16), torch.tensor([0, 3, 3, 9])).shape, loss.weight.shape
        (torch.Size([]), torch.Size([10, 16]))
    """

    functional = staticmethod(arcface_loss)

    def __init__(
        self,
        num_classes: int | None = None,
        embedding_size: int | None = None,
        margin: float = 0.5,
        scale: float = 64.0,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            num_classes,
            embedding_size,
            reduction=reduction,
            validate_args=validate_args,
            **_check_margin_args(
                margin=margin, scale=scale, ignore_index=ignore_index, high=math.pi / 2
            ),
        )


@register_loss("cosface", aliases=("large_margin_cosine",))
class CosFaceLoss(ClassCentreLoss):
    r"""CosFace: additive cosine margin softmax over learnable class centres.

    See [cosface_loss][lightning_losses.functional.cosface_loss] for the formula;
    [ClassCentreLoss][lightning_losses.losses.ClassCentreLoss] for owned
    vs passed centres.

    *CosFace: Large Margin Cosine Loss for Deep Face Recognition*, Wang et al., CVPR 2018
    (arXiv:1801.09414).

    Args:
        num_classes: number of centres `C` (with `embedding_size`: the module owns them).
        embedding_size: `D`.
        margin: cosine margin $m$ (paper: 0.35).
        scale: logit scale $s$ (paper: 64).
        ignore_index: label value that is ignored.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - embeddings: `[N, D]`; labels: `[N]`; weight (only without own centres): `[C, D]`.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import CosFaceLoss
        >>> loss = CosFaceLoss(num_classes=10, embedding_size=16)
        >>> loss(torch.randn(4, 16), torch.tensor([0, 3, 3, 9])).shape
        torch.Size([])
    """

    functional = staticmethod(cosface_loss)

    def __init__(
        self,
        num_classes: int | None = None,
        embedding_size: int | None = None,
        margin: float = 0.35,
        scale: float = 64.0,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            num_classes,
            embedding_size,
            reduction=reduction,
            validate_args=validate_args,
            **_check_margin_args(margin=margin, scale=scale, ignore_index=ignore_index, high=2.0),
        )


@register_loss("normalized_softmax", aliases=("norm_softmax",))
class NormalizedSoftmaxLoss(ClassCentreLoss):
    r"""Normalised softmax: temperature-scaled cosine cross-entropy over learnable class centres.

    See [normalized_softmax_loss][lightning_losses.functional.normalized_softmax_loss];
    [ClassCentreLoss][lightning_losses.losses.ClassCentreLoss] for owned
    vs passed centres.

    *Classification is a Strong Baseline for Deep Metric Learning*, Zhai and Wu, BMVC 2019
    (arXiv:1811.12649).

    Args:
        num_classes: number of centres `C` (with `embedding_size`: the module owns them).
        embedding_size: `D`.
        temperature: $\tau > 0$ (default 0.05, as pytorch-metric-learning).
        ignore_index: label value that is ignored.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - embeddings: `[N, D]`; labels: `[N]`; weight (only without own centres): `[C, D]`.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import NormalizedSoftmaxLoss
        >>> loss = NormalizedSoftmaxLoss(num_classes=10, embedding_size=16, temperature=0.1)
        >>> loss(torch.randn(4, 16), torch.tensor([0, 3, 3, 9])).shape
        torch.Size([])
    """

    functional = staticmethod(normalized_softmax_loss)

    def __init__(
        self,
        num_classes: int | None = None,
        embedding_size: int | None = None,
        temperature: float = 0.05,
        ignore_index: int = -100,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            num_classes,
            embedding_size,
            reduction=reduction,
            validate_args=validate_args,
            **_check_normalized_softmax_args(temperature=temperature, ignore_index=ignore_index),
        )
