"""Vision recipe: image classification with a catalog loss, under label noise.

`ImageClassifier` is a `LossMixin` LightningModule around a small MLP or any timm backbone;
the criterion comes from the registry by name/dict/`class_path`. Accuracy and expected
calibration error come from torchmetrics. Run it from YAML (the recipe keeps the checkpoint
with the best `val/acc` and the last one):

```bash
lightning-losses fit --config recipes/vision/digits_noisy.yaml --model.criterion gce
lightning-losses test --config recipes/vision/digits_noisy.yaml --ckpt_path best
```
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError

from lightning_losses.losses import InputKind
from lightning_losses.mixins import LossMixin

__all__ = ["CriterionArg", "ImageClassifier", "build_backbone"]

# What the CLI parses for `criterion`: a registry name or a dict (`{"name": ...}` or
# `{"class_path": ..., "init_args": ...}`). An `nn.Module` loss instance is accepted too, in
# Python; it is left out of the annotation so `--model.help` does not list every nn.Module.
CriterionArg = str | dict[str, Any]


def build_backbone(name: str, num_features: int, num_classes: int, hidden: int) -> nn.Module:
    """`"mlp"` (2 hidden layers) or `"timm:<model>"` (built offline, `pretrained=False`).

    timm backbones see the features as a square single-channel image (`64 -> 1×8×8`).

    Args:
        name: `"mlp"` or `"timm:<model name>"`.
        num_features: flattened input size.
        num_classes: number of classes.
        hidden: MLP width.

    Returns:
        The backbone, mapping `[N, num_features]` to `[N, num_classes]` logits.

    Raises:
        ValueError: an unknown backbone, or a timm backbone with non-square inputs.
    """
    if name == "mlp":
        return nn.Sequential(
            nn.Linear(num_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )
    if name.startswith("timm:"):
        import timm  # heavy import, only when a timm backbone is asked for

        side = round(num_features**0.5)
        if side * side != num_features:
            raise ValueError(f"timm backbones need square images; num_features={num_features}")
        model = timm.create_model(name[5:], pretrained=False, num_classes=num_classes, in_chans=1)
        return nn.Sequential(nn.Unflatten(1, (1, side, side)), model)
    raise ValueError(f"backbone must be 'mlp' or 'timm:<model name>', got {name!r}")


class ImageClassifier(LossMixin, LightningModule):
    """Classifier trained with any catalog loss; logs accuracy and calibration error.

    Args:
        criterion: registry name, `{"name": ..., **kwargs}`,
            `{"class_path": ..., "init_args": ...}`, or (in Python) an `nn.Module` loss.
        backbone: `"mlp"` or `"timm:<model>"`.
        num_features: flattened input size.
        num_classes: number of classes.
        hidden: MLP width.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        ece_bins: bins of the expected calibration error.

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
        criterion: CriterionArg = "cross_entropy",
        backbone: str = "mlp",
        num_features: int = 64,
        num_classes: int = 10,
        hidden: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        ece_bins: int = 15,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(
            ignore=["criterion"] if isinstance(criterion, nn.Module) else None
        )
        self.net = build_backbone(backbone, num_features, num_classes, hidden)
        self.configure_criterion(criterion)
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
        return self.compute_loss(self(x), y).to_dict()

    def _evaluate(self, batch, stage: str) -> None:
        x, y = batch
        logits = self(x)
        self.compute_loss(logits, y, stage=stage)
        for name in ("acc", "ece"):
            metric = self.metrics[f"{stage}_{name}"]
            metric.update(logits.float(), y)
            self.log(f"{stage}/{name}", metric, on_epoch=True, prog_bar=name == "acc")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self):
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
