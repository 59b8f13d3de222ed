"""Metric-learning recipe: SupCon, SigLIP-style, pair and proxy losses, with retrieval metrics.

`MetricLearningModule` trains an encoder (the MLP or a timm backbone of
[build_backbone][lightning_losses.nn.backbones.build_backbone]) with any embedding loss of the
catalog: every training sample is seen in two augmented views (Gaussian noise + feature dropout),
and the views are handed to the loss in the form its signature asks for:

- stacked views `features [N, V, D]` + labels (`supcon`): `loss(stack(views, 1), y)`;
- two paired views (`nt_xent`, `info_nce`, `sigmoid_contrastive`, `alignment_uniformity`):
  `loss(z1, z2)`, labels unused;
- embeddings + labels (`circle`, `triplet_margin`, `multi_similarity`, `contrastive`, `arcface`,
  `cosface`, `normalized_softmax`, ...): `loss(cat(views), y.repeat(V))`.

Validation embeds the whole validation split and scores leave-one-out retrieval by cosine
similarity (each image queries the others; relevant = same class) with torchmetrics'
`RetrievalMAP` and `RetrievalHitRate(top_k=1)` (Recall@1), logged as `val/map` and
`val/recall@1`. Under DDP the embeddings are all-gathered first, so every rank logs the
metric of the full split. Run it from YAML:

```bash
lightning-losses fit --config recipes/vision/digits_supcon.yaml
lightning-losses fit --config recipes/vision/digits_supcon.yaml --model.criterion circle
lightning-losses fit --config recipes/vision/digits_supcon.yaml \
    --trainer.devices 2 --trainer.strategy ddp
```
"""

from __future__ import annotations

import inspect
from typing import Any, cast

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from lightning_losses.losses import InputKind
from lightning_losses.mixins import CriterionSpec, LossMixin, OptimizerMixin
from lightning_losses.nn.backbones import build_backbone
from lightning_losses.validation import check_int, check_number

__all__ = ["MetricLearningModule", "leave_one_out_retrieval", "retrieval_metrics"]

# How each loss consumes the views, told apart by the name of its first argument.
_STACKED = ("features",)  # SupCon: [N, V, D] + labels
_PAIRED = ("z1", "query", "image_emb")  # two aligned views, no labels
_LABELLED = ("embeddings",)  # [M, D] + labels [M]


def _call_mode(criterion: nn.Module) -> str:
    functional = getattr(type(criterion), "functional", None)
    params = list(inspect.signature(functional).parameters) if functional else []
    first, second = [*params, "", ""][:2]
    if first in _STACKED:
        return "stacked"
    if first in _PAIRED and second in ("z2", "key", "text_emb"):
        return "paired"
    if first in _LABELLED and second == "labels":
        return "labelled"
    raise TypeError(
        f"criterion {type(criterion).__name__} takes ({first}, {second}, ...); "
        "MetricLearningModule feeds losses over stacked views + labels (supcon), two paired views "
        "(nt_xent, info_nce, sigmoid_contrastive, alignment_uniformity) or embeddings + labels "
        "(circle, triplet_margin, multi_similarity, contrastive, arcface, cosface, ...)"
    )


@torch.no_grad()
def retrieval_metrics(
    similarity: Tensor, relevant: Tensor, keep: Tensor | None = None
) -> dict[str, float]:
    r"""MAP and Recall@1 of query rows against gallery columns, by similarity.

    Scored with torchmetrics' `RetrievalMAP` and `RetrievalHitRate(top_k=1)` (Recall@1: the
    most similar gallery item is relevant). Similarities are cosines in $[-1, 1]$ and are
    shifted to $[1, 3]$ first: torchmetrics treats an item scored $\le 0$ as not retrieved,
    which would drop relevant items with a negative cosine from the average precision.

    Args:
        similarity: `[Q, G]` cosine similarities of Q queries to G gallery items.
        relevant: `[Q, G]` bool, the gallery items relevant to each query.
        keep: optional `[Q, G]` bool, the pairs that count (e.g. no query retrieves itself).

    Returns:
        `{"map": ..., "recall@1": ...}`.

    Example:
        >>> import torch
        >>> sim = torch.tensor([[0.9, -0.2], [-0.5, -0.1]])
        >>> retrieval_metrics(sim, torch.tensor([[True, False], [True, False]]))
        {'map': 0.75, 'recall@1': 0.5}
    """
    from torchmetrics.retrieval import RetrievalHitRate, RetrievalMAP

    indexes = torch.arange(similarity.shape[0], device=similarity.device)[:, None]
    indexes = indexes.expand_as(similarity)
    keep = torch.ones_like(relevant, dtype=torch.bool) if keep is None else keep
    args = ((similarity + 2.0)[keep], relevant[keep], indexes[keep])
    return {
        "map": float(RetrievalMAP()(*args)),
        "recall@1": float(RetrievalHitRate(top_k=1)(*args)),
    }


@torch.no_grad()
def leave_one_out_retrieval(embeddings: Tensor, labels: Tensor) -> dict[str, float]:
    """Leave-one-out retrieval quality: every row queries all others by cosine similarity.

    Relevant = same label; scored by
    [retrieval_metrics][lightning_losses.recipes.metric_learning.retrieval_metrics].

    Args:
        embeddings: `[N, D]`, N ≥ 2.
        labels: `[N]` integer labels.

    Returns:
        `{"map": ..., "recall@1": ...}`.

    Raises:
        ValueError: fewer than 2 rows, or `labels` not `[N]`.

    Example:
        >>> import torch
        >>> z = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
        >>> leave_one_out_retrieval(z, torch.tensor([0, 0, 1, 1]))
        {'map': 1.0, 'recall@1': 1.0}
    """
    n = embeddings.shape[0]
    if embeddings.ndim != 2 or n < 2:
        raise ValueError(f"embeddings must be [N, D] with N >= 2, got {tuple(embeddings.shape)}")
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    z = F.normalize(embeddings.float(), dim=1)
    # A query never retrieves itself.
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=z.device)
    return retrieval_metrics(z @ z.T, labels[:, None] == labels[None, :], off_diagonal)


class MetricLearningModule(OptimizerMixin, LossMixin, LightningModule):
    """An embedding encoder trained with a catalog embedding loss, validated by retrieval.

    Args:
        criterion: an embedding loss (registry name, dict or `class_path` dict; in Python also a
            module): `supcon`, `nt_xent`, `sigmoid_contrastive`, `circle`, `triplet_margin`,
            `arcface` (with `num_classes`/`embedding_size`), ...
        backbone: `"mlp"` or `"timm:<model>"` (built offline), mapping the 64 digit features to
            `embedding_dim`.
        embedding_dim: embedding size.
        hidden: MLP width.
        num_features: flattened input size (64 for the digits).
        views: augmented views per sample (≥ 2 for the paired losses).
        noise_std: standard deviation of the Gaussian feature noise of a view.
        drop_prob: probability that a view zeroes a feature.
        lr: Adam learning rate (the loss's own parameters, e.g. SigLIP's temperature or ArcFace's
            class centres, are trained with the encoder).
        weight_decay: Adam weight decay.

    Raises:
        TypeError: a criterion that is not an embedding loss, or one whose inputs the module
            cannot build (e.g. GE2E's `[speakers, utterances, D]`); `views` not an int.
        ValueError: fewer than 2 views, a negative `noise_std`, or `drop_prob` outside
            $[0, 1)$.

    Example:
        >>> import torch
        >>> model = MetricLearningModule("supcon", embedding_dim=16, hidden=32)
        >>> out = model.views_loss(torch.randn(8, 64), torch.arange(8) % 4)
        >>> tuple(out.per_sample.shape)  # SupCon: one value per sample (its views averaged)
        (8,)
    """

    accepted_input_kinds = (InputKind.EMBEDDINGS,)

    def __init__(
        self,
        criterion: CriterionSpec = "supcon",
        backbone: str = "mlp",
        embedding_dim: int = 32,
        hidden: int = 128,
        num_features: int = 64,
        views: int = 2,
        noise_std: float = 0.3,
        drop_prob: float = 0.2,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        self.views = check_int("views", views, low=2)
        self.noise_std = check_number("noise_std", noise_std, low=0.0)
        self.drop_prob = check_number(
            "drop_prob", drop_prob, low=0.0, high=1.0, high_inclusive=False
        )
        self.lr, self.weight_decay = lr, weight_decay
        self.save_hyperparameters(
            ignore=["criterion"] if isinstance(criterion, nn.Module) else None
        )
        self.encoder = build_backbone(backbone, num_features, embedding_dim, hidden)
        self.configure_criterion(criterion)
        self._mode = _call_mode(self.criterion)
        self._val: list[tuple[Tensor, Tensor]] = []

    def forward(self, x: Tensor) -> Tensor:
        """`[N, num_features]` -> `[N, embedding_dim]` embeddings (not normalised)."""
        return self.encoder(x)

    def augment(self, x: Tensor) -> Tensor:
        """One random view: Gaussian noise, then each feature dropped with `drop_prob`."""
        keep = (torch.rand_like(x) >= self.drop_prob).to(x.dtype)
        return (x + self.noise_std * torch.randn_like(x)) * keep

    def views_loss(self, x: Tensor, y: Tensor, stage: str = "train"):
        """Embed `views` augmented copies of the batch and hand them to the criterion."""
        zs = [self(self.augment(x)) for _ in range(self.views)]
        if self._mode == "stacked":
            return self.compute_loss(torch.stack(zs, 1), y, stage=stage)
        if self._mode == "paired":
            return self.compute_loss(zs[0], zs[1], stage=stage)
        return self.compute_loss(torch.cat(zs), y.repeat(len(zs)), stage=stage)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int):
        x, y = batch
        return self.views_loss(x, y).to_dict()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self._val.append((self(x).detach(), y))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        z = torch.cat([e for e, _ in self._val])
        y = torch.cat([t for _, t in self._val])
        self._val.clear()
        if self.trainer.world_size > 1:  # score the full split on every rank
            z = cast(Tensor, self.all_gather(z)).flatten(0, 1)
            y = cast(Tensor, self.all_gather(y)).flatten(0, 1)
        for name, value in leave_one_out_retrieval(z, y).items():
            self.log(f"val/{name}", value, prog_bar=name == "map", rank_zero_only=False)

    def default_optimizer(self, params: Any) -> torch.optim.Optimizer:
        """Adam with `lr` and `weight_decay` (replaced by `--optimizer` on the command line)."""
        # The parameters include the criterion's (temperature, class centres, ...).
        return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
