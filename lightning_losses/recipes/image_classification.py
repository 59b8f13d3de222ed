"""Image-classification recipe: a catalog loss on a small MLP or a timm backbone, under label noise.

`ImageClassifier` is a `LossMixin` LightningModule around a backbone of
[build_backbone][lightning_losses.nn.backbones.build_backbone]; the criterion comes from the
registry by name/dict/`class_path`. Accuracy and expected calibration error come from
torchmetrics. Run it from YAML (the recipe keeps the checkpoint with the best `val/acc` and the
last one):

```bash
lightning-losses fit --config recipes/vision/digits_noisy.yaml --model.criterion gce
lightning-losses test --config recipes/vision/digits_noisy.yaml --ckpt_path best
```

`ImageClassifier(mixup={...})` trains on timm's mixup/cutmix soft targets (losses that accept
soft targets only; any other loss is rejected at construction, by name).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError

from lightning_losses.losses import InputKind
from lightning_losses.mixins import CriterionSpec, LossMixin, OptimizerMixin
from lightning_losses.nn.backbones import build_backbone

__all__ = ["ImageClassifier", "build_mixup"]


def build_mixup(mixup: Mapping[str, Any], num_classes: int) -> Any:
    """timm's `Mixup` (mixup and/or cutmix, soft targets) from its keyword arguments.

    `label_smoothing` defaults to 0 here (timm's default is 0.1); `num_classes` is filled in.
    A batch augmentation of this recipe's training step, not a model, so it lives here rather
    than with the backbones in `lightning_losses.nn`.

    Args:
        mixup: `timm.data.Mixup` keyword arguments, e.g. `{"mixup_alpha": 0.8,
            "cutmix_alpha": 1.0}`.
        num_classes: number of classes.

    Returns:
        The `timm.data.Mixup` callable: `(images [B, C, H, W], labels [B]) -> (images,
        soft targets [B, num_classes])`, `B` even.

    Raises:
        TypeError: `mixup` is not a mapping.
    """
    if not isinstance(mixup, Mapping):
        raise TypeError(f"mixup must be a dict of timm.data.Mixup arguments, got {mixup!r}")
    from timm.data import Mixup

    return Mixup(**{"label_smoothing": 0.0, **dict(mixup), "num_classes": num_classes})


def _check_soft_targets(criterion: nn.Module, num_classes: int) -> None:
    # Probe the criterion once with a valid soft target: losses that need class indices raise.
    logits = torch.zeros(2, num_classes)
    soft = torch.full((2, num_classes), 1.0 / num_classes)
    try:
        criterion(logits, soft)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"mixup/cutmix produce soft targets, which criterion {type(criterion).__name__} does "
            f"not accept ({err}); use a loss that takes soft targets (e.g. cross_entropy, poly) "
            "or drop `mixup`"
        ) from err


class ImageClassifier(OptimizerMixin, LossMixin, LightningModule):
    """Classifier trained with any catalog loss; logs accuracy and calibration error.

    Args:
        criterion: registry name, `{"name": ..., **kwargs}`,
            `{"class_path": ..., "init_args": ...}`, or (in Python) an `nn.Module` loss (see
            [CriterionSpec][lightning_losses.mixins.loss.CriterionSpec]).
        backbone: `"mlp"` or `"timm:<model>"` (see
            [build_backbone][lightning_losses.nn.backbones.build_backbone]).
        num_features: flattened input size.
        num_classes: number of classes.
        hidden: MLP width.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        ece_bins: bins of the expected calibration error.
        mixup: `timm.data.Mixup` arguments (`{"mixup_alpha": 0.8, "cutmix_alpha": 1.0, ...}`)
            to train on mixed images and soft targets (see `build_mixup`; the flat features are
            mixed as square single-channel images); `None` = off. Needs a criterion that accepts
            soft targets and an even batch size.

    Raises:
        ValueError: `mixup` with a criterion that does not take soft targets.

    Example:
        >>> import torch
        >>> model = ImageClassifier(criterion={"name": "poly", "epsilon": 1.0})
        >>> out = model.compute_loss(model(torch.zeros(2, 64)), torch.tensor([0, 1]))
        >>> tuple(out.per_sample.shape)
        (2,)
    """

    accepted_input_kinds = (InputKind.CLASSIFICATION,)

    def __init__(
        self,
        criterion: CriterionSpec = "cross_entropy",
        backbone: str = "mlp",
        num_features: int = 64,
        num_classes: int = 10,
        hidden: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        ece_bins: int = 15,
        mixup: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(
            ignore=["criterion"] if isinstance(criterion, nn.Module) else None
        )
        self.lr, self.weight_decay = lr, weight_decay
        self.net = build_backbone(backbone, num_features, num_classes, hidden)
        self.configure_criterion(criterion)
        self.mixup: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None
        if mixup is not None:
            side = round(num_features**0.5)
            if side * side != num_features:
                raise ValueError(f"mixup needs square images; num_features={num_features}")
            self.mixup = build_mixup(mixup, num_classes)
            _check_soft_targets(self.criterion, num_classes)
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_{name}": metric
                for stage in ("val", "test")
                for name, metric in (
                    ("acc", MulticlassAccuracy(num_classes, average="micro")),
                    ("ece", MulticlassCalibrationError(num_classes, n_bins=ece_bins, norm="l1")),
                )
            }
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx: int):
        x, y = batch
        if self.mixup is not None:
            side = round(x.shape[1] ** 0.5)
            # timm mixes in place: work on a copy, the batch's tensors stay untouched.
            images, y = self.mixup(x.reshape(-1, 1, side, side).clone(), y)
            x = images.reshape(x.shape)
        return self.compute_loss(self(x), y).to_dict()

    def _evaluate(self, batch, stage: str) -> None:
        x, y = batch
        logits = self(x)
        self.compute_loss(logits, y, stage=stage)
        for name in ("acc", "ece"):
            metric = cast(Metric, self.metrics[f"{stage}_{name}"])
            metric.update(logits.float(), y)
            self.log(f"{stage}/{name}", metric, on_epoch=True, prog_bar=name == "acc")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def default_optimizer(self, params: Any) -> torch.optim.Optimizer:
        """AdamW with `lr` and `weight_decay` (replaced by `--optimizer` on the command line)."""
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
