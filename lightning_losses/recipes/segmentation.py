"""Semantic-segmentation recipe: a segmentation_models_pytorch network trained with a catalog loss.

`SegmentationModule` is a `LossMixin` LightningModule around a segmentation_models_pytorch
network (default: a U-Net on a small timm encoder, `tu-mobilenetv3_small_050`, built with
`encoder_weights=None`: nothing is downloaded). The criterion comes from the registry by
name/dict/`class_path` and receives logits `[B, C, H, W]` and class-index masks `[B, H, W]`
(`cross_entropy` with `ignore_index`, or a dense loss). Per-class Dice (torchmetrics
`DiceScore`, accumulated over the whole split) and IoU (torchmetrics `MeanIoU`, per image,
averaged over the images where the class occurs in the prediction or the ground truth) are
logged as `{stage}/dice_{c}` and `{stage}/iou_{c}` for class index `c`, with the means
`{stage}/dice` (foreground classes) and `{stage}/miou` (all classes); a class neither present nor
predicted anywhere in the split has no score (NaN) and is left out of the means. Pixels whose
target is not a class index (e.g. `ignore_index` 255) count in no metric. At the end of `fit` and
`test` a figure of image / ground truth / prediction for the first evaluation images is written
to the run's log directory (`segmentation_val.png`, `segmentation_test.png`).

```bash
lightning-losses fit --config recipes/vision/segmentation.yaml
lightning-losses fit --config recipes/vision/segmentation.yaml --model.criterion focal
lightning-losses fit --config recipes/vision/segmentation.yaml --trainer.devices 2 \
    --trainer.strategy lightning.pytorch.strategies.ModelParallelStrategy \
    --trainer.strategy.data_parallel_size 2 --trainer.strategy.tensor_parallel_size 1  # FSDP2
```

FSDP2: `SegmentationModule.configure_model` applies `fully_shard` to every encoder stage and
decoder block, then to the network. BatchNorm normalises each rank's batch on its own, as under
DDP without `sync_batchnorm`; its running statistics are buffers, which FSDP2 neither shards nor
synchronises, so each rank keeps its own (DDP instead broadcasts rank 0's at every forward).

segmentation_models_pytorch is the `[vision]` extra (`pip install "lightning-losses[vision]"`),
imported when the network is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.segmentation import DiceScore, MeanIoU

from lightning_losses.distributed import data_parallel_mesh
from lightning_losses.losses import InputKind
from lightning_losses.mixins import CriterionSpec, LossMixin, OptimizerMixin
from lightning_losses.validation import check_int, check_number

__all__ = [
    "SegmentationModule",
    "build_segmentation_net",
    "freeze_unreached_parameters",
    "plot_segmentation",
]


def build_segmentation_net(
    arch: str = "Unet",
    encoder: str = "tu-mobilenetv3_small_050",
    *,
    in_channels: int = 1,
    num_classes: int = 4,
    encoder_depth: int = 3,
    decoder_channels: Sequence[int] | None = (32, 16, 8),
    **kwargs: Any,
) -> nn.Module:
    """A segmentation_models_pytorch network with random weights (`encoder_weights=None`).

    Args:
        arch: smp architecture name (`"Unet"`, `"UnetPlusPlus"`, `"FPN"`, ...).
        encoder: smp encoder name; `"tu-<timm model>"` for any timm backbone.
        in_channels: image channels.
        num_classes: output channels (one logit per class).
        encoder_depth: encoder stages; the input side must be a multiple of
            `2 ** encoder_depth`. Encoder parameters beyond this depth (timm's
            EfficientNet/MobileNet feature extractors keep them) are frozen: they never get a
            gradient.
        decoder_channels: decoder widths, one per stage (U-Net family); `None` = the
            architecture's default or none.
        **kwargs: further `smp.create_model` arguments.

    Returns:
        The network: `[B, in_channels, H, W] -> [B, num_classes, H, W]` logits.

    Raises:
        ImportError: segmentation_models_pytorch is missing (the `[vision]` extra).
        TypeError: a non-int size.
        ValueError: a size below 1, or a `decoder_channels` whose length is not
            `encoder_depth`.

    Example:
        >>> import torch
        >>> net = build_segmentation_net(num_classes=3)
        >>> tuple(net(torch.zeros(2, 1, 32, 32)).shape)
        (2, 3, 32, 32)
    """
    check_int("in_channels", in_channels, low=1)
    check_int("num_classes", num_classes, low=1)
    check_int("encoder_depth", encoder_depth, low=1, high=5)
    try:
        import segmentation_models_pytorch as smp
    except ImportError as err:  # the [vision] extra
        raise ImportError(
            "the segmentation recipe's networks come from segmentation_models_pytorch: "
            'pip install "lightning-losses[vision]"'
        ) from err
    if decoder_channels is not None:
        channels = [
            check_int(f"decoder_channels[{i}]", c, low=1) for i, c in enumerate(decoder_channels)
        ]
        if len(channels) != encoder_depth:
            raise ValueError(
                f"decoder_channels needs one width per encoder stage ({encoder_depth}), "
                f"got {list(decoder_channels)}"
            )
        kwargs["decoder_channels"] = channels
    net = smp.create_model(
        arch,
        encoder_name=encoder,
        encoder_weights=None,  # random init: nothing is downloaded
        encoder_depth=encoder_depth,
        in_channels=in_channels,
        classes=num_classes,
        **kwargs,
    )
    freeze_unreached_parameters(
        net, torch.zeros(1, in_channels, 2 ** (encoder_depth + 1), 2 ** (encoder_depth + 1))
    )
    return net


def freeze_unreached_parameters(net: nn.Module, example: Tensor) -> list[str]:
    """Set `requires_grad=False` on the parameters that the output does not depend on.

    timm's EfficientNet/MobileNet feature extractors keep their stages beyond smp's
    `encoder_depth`: those parameters never get a gradient, which DDP refuses ("parameters that
    were not used in producing loss") and which an optimizer skips anyway. Freezing them leaves
    training unchanged and lets DDP run with its default `find_unused_parameters=False`. The
    probe is one forward and backward of `example` in eval mode (no batch statistics are used
    or updated, no random op runs); the module's train/eval mode and its `.grad`s are restored.

    Args:
        net: the network.
        example: an input the network accepts (its values do not matter).

    Returns:
        The names of the parameters frozen (empty when every parameter is reached).

    Example:
        >>> from torch import nn
        >>> net = nn.ModuleDict({"used": nn.Linear(2, 2), "spare": nn.Linear(2, 2)})
        >>> net.forward = lambda x: net["used"](x)
        >>> freeze_unreached_parameters(net, torch.zeros(1, 2))
        ['spare.weight', 'spare.bias']
    """
    params = {name: p for name, p in net.named_parameters() if p.requires_grad}
    was_training = net.training
    net.eval()
    try:
        with torch.enable_grad():
            out = net(example)
            outputs = (
                [out] if isinstance(out, Tensor) else [t for t in out if isinstance(t, Tensor)]
            )
            grads = torch.autograd.grad(
                [t.sum() for t in outputs], list(params.values()), allow_unused=True
            )
    finally:
        net.train(was_training)
    frozen = [name for (name, p), g in zip(params.items(), grads, strict=True) if g is None]
    for name in frozen:
        params[name].requires_grad_(False)
    return frozen


def plot_segmentation(
    images: Tensor,
    targets: Tensor,
    preds: Tensor,
    path: str | Path,
    *,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    title: str = "",
) -> Path:
    """Write a PNG grid: one row per image, columns image / ground truth / prediction.

    Target pixels outside `0..num_classes - 1` (ignored) are drawn grey.

    Args:
        images: `[n, C, H, W]` images (the first channel is drawn).
        targets: `[n, H, W]` class indices.
        preds: `[n, H, W]` predicted class indices.
        path: the PNG file (its folder is created).
        num_classes: number of classes (fixes the colours).
        class_names: legend labels, one per class.
        title: figure title.

    Returns:
        The path written.

    Raises:
        ImportError: matplotlib is missing (`pip install "lightning-losses[plots]"`).
    """
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(
            'the segmentation figure needs matplotlib: pip install "lightning-losses[plots]"'
        ) from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    tab10 = plt.get_cmap("tab10")
    # Black background, tab10 for the classes, grey for ignored pixels.
    colours: list[Any] = ["#000000", *[tab10(i) for i in range(num_classes - 1)], "#808080"]
    cmap = ListedColormap(colours)

    def paint(mask: Tensor) -> Tensor:
        valid = (mask >= 0) & (mask < num_classes)
        return torch.where(valid, mask, torch.full_like(mask, num_classes))

    n = int(images.shape[0])
    fig, axes = plt.subplots(n, 3, figsize=(6.6, 2.2 * n + 0.6), squeeze=False)
    for row in range(n):
        panels = (
            (images[row, 0], "gray", "image", (0, 1)),
            (paint(targets[row]), cmap, "ground truth", (0, num_classes)),
            (paint(preds[row]), cmap, "prediction", (0, num_classes)),
        )
        for ax, (panel, colour, label, (vmin, vmax)) in zip(axes[row], panels):
            ax.imshow(
                panel.cpu().numpy(), cmap=colour, vmin=vmin, vmax=vmax, interpolation="nearest"
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(label)
    names = (
        list(class_names) if class_names is not None else [f"class {c}" for c in range(num_classes)]
    )
    handles = [Patch(color=colours[c], label=names[c]) for c in range(num_classes)]
    fig.legend(handles=handles, loc="lower center", ncol=min(num_classes, 4), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _shard_units(net: nn.Module) -> list[nn.Module]:
    """The submodules that FSDP2 shards one by one: encoder stages, then decoder blocks.

    Encoder stages are the children of a timm encoder's `blocks` (the `tu-` encoders) or a
    ResNet's `layer1` to `layer4` (smp's own ResNet encoders); decoder blocks are the children
    of the decoder's `blocks` (the U-Net family). A network with neither gives `[]`: it is then
    sharded as one unit.

    Args:
        net: a segmentation_models_pytorch network.

    Returns:
        The units, each holding parameters, in forward order.

    Example:
        >>> net = build_segmentation_net(num_classes=3)
        >>> [type(m).__name__ for m in _shard_units(net)][-1]
        'UnetDecoderBlock'
    """
    units: list[nn.Module] = []
    encoder = getattr(net, "encoder", None)
    if encoder is not None:
        body = getattr(encoder, "model", encoder)  # timm encoders wrap the features model
        blocks = getattr(body, "blocks", None)
        if isinstance(blocks, nn.Sequential | nn.ModuleList):
            units.extend(blocks)
        else:
            units.extend(
                m
                for name in ("layer1", "layer2", "layer3", "layer4")
                if isinstance(m := getattr(body, name, None), nn.Module)
            )
    decoder_blocks = getattr(getattr(net, "decoder", None), "blocks", None)
    if isinstance(decoder_blocks, nn.Sequential | nn.ModuleList):
        units.extend(decoder_blocks)
    return [u for u in units if any(True for _ in u.parameters())]


class SegmentationModule(OptimizerMixin, LossMixin, LightningModule):
    """A segmentation network trained with any classification or dense catalog loss.

    Batches are `{"image": [B, C, H, W], "mask": [B, H, W]}` dicts (see
    [SegmentationDataModule][lightning_losses.data.segmentation.SegmentationDataModule]).
    Under FSDP2 (`ModelParallelStrategy`), `configure_model` shards every encoder stage and
    decoder block, then the network; BatchNorm statistics stay per rank (see the module notes).

    Args:
        criterion: registry name, `{"name": ..., **kwargs}`,
            `{"class_path": ..., "init_args": ...}`, or (in Python) an `nn.Module` loss (see
            [CriterionSpec][lightning_losses.mixins.loss.CriterionSpec]); it takes logits
            `[B, C, H, W]` and class indices `[B, H, W]`.
        num_classes: classes, background included.
        in_channels: image channels.
        arch: segmentation_models_pytorch architecture.
        encoder: smp encoder (`"tu-<timm model>"`), randomly initialised.
        encoder_depth: encoder stages (input side: a multiple of `2 ** encoder_depth`). timm's
            EfficientNet/MobileNet feature extractors keep their stages beyond `encoder_depth`;
            their parameters are frozen (see
            [freeze_unreached_parameters][lightning_losses.recipes.segmentation.freeze_unreached_parameters]),
            so DDP runs at any depth.
        decoder_channels: decoder widths, one per encoder stage, deepest first (`None` =
            `64, 32, 16, 8, ...`, at least 8).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        class_names: names for the figure's legend (default: the datamodule's `class_names`
            when it has them, else `class c`).
        figure_samples: evaluation images drawn in the figure at the end of fit/test (0 = no
            figure).

    Raises:
        TypeError: a wrongly typed size.
        ValueError: a size out of range, or a criterion that takes neither class nor dense
            inputs.

    Example:
        >>> import torch
        >>> model = SegmentationModule(num_classes=3)
        >>> logits = model(torch.zeros(2, 1, 32, 32))
        >>> out = model.compute_loss(logits, torch.zeros(2, 32, 32, dtype=torch.long))
        >>> tuple(logits.shape), tuple(out.per_sample.shape)
        ((2, 3, 32, 32), (2,))
    """

    accepted_input_kinds = (InputKind.CLASSIFICATION, InputKind.DENSE)

    def __init__(
        self,
        criterion: CriterionSpec = "cross_entropy",
        num_classes: int = 4,
        in_channels: int = 1,
        arch: str = "Unet",
        encoder: str = "tu-mobilenetv3_small_050",
        encoder_depth: int = 5,
        decoder_channels: list[int] | None = None,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        class_names: list[str] | None = None,
        figure_samples: int = 4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(
            ignore=["criterion"] if isinstance(criterion, nn.Module) else None
        )
        self.num_classes = check_int("num_classes", num_classes, low=2)
        check_number("lr", lr, low=0.0, low_inclusive=False)
        check_number("weight_decay", weight_decay, low=0.0)
        self.figure_samples = check_int("figure_samples", figure_samples, low=0)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"class_names must name every class ({num_classes}), got {list(class_names)}"
            )
        if decoder_channels is None:  # narrow, one width per stage: fast on CPU
            decoder_channels = [max(8, 64 // 2**i) for i in range(encoder_depth)]
        self.net = build_segmentation_net(
            arch,
            encoder,
            in_channels=in_channels,
            num_classes=num_classes,
            encoder_depth=encoder_depth,
            decoder_channels=decoder_channels,
        )
        self.stride = 2**encoder_depth
        self.configure_criterion(criterion)
        self.class_names = list(class_names) if class_names is not None else None
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_{name}": metric
                for stage in ("val", "test")
                for name, metric in (
                    ("iou", MeanIoU(num_classes, per_class=True, input_format="one-hot")),
                    (
                        "dice",
                        DiceScore(
                            num_classes,
                            average="none",
                            aggregation_level="global",
                            input_format="one-hot",
                        ),
                    ),
                )
            }
        )
        self._samples: dict[str, tuple[Tensor, Tensor, Tensor]] = {}

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[-1] % self.stride or x.shape[-2] % self.stride:
            raise ValueError(
                f"images must be [B, C, H, W] with H and W multiples of {self.stride} "
                f"(2 ** encoder_depth), got {tuple(x.shape)}"
            )
        return self.net(x)

    def setup(self, stage: str) -> None:
        if self.class_names is None:
            names = getattr(getattr(self.trainer, "datamodule", None), "class_names", None)
            if names is not None and len(names) == self.num_classes:
                self.class_names = list(names)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Any]:
        return self.compute_loss(self(batch["image"]), batch["mask"]).to_dict()

    def _one_hot(self, labels: Tensor, valid: Tensor) -> Tensor:
        # Ignored pixels become all-zero rows: they count in no class of either metric.
        hot = F.one_hot(torch.where(valid, labels, 0), self.num_classes) * valid[..., None]
        return hot.movedim(-1, 1)

    def _evaluate(self, batch: dict[str, Tensor], batch_idx: int, stage: str) -> None:
        images, target = batch["image"], batch["mask"]
        logits = self(images)
        self.compute_loss(logits, target, stage=stage)
        pred = logits.argmax(1)
        valid = (target >= 0) & (target < self.num_classes)
        pred_hot, target_hot = self._one_hot(pred, valid), self._one_hot(target, valid)
        for name in ("iou", "dice"):
            cast(Metric, self.metrics[f"{stage}_{name}"]).update(pred_hot, target_hot)
        if batch_idx == 0 and self.figure_samples:
            k = self.figure_samples
            self._samples[stage] = (images[:k].cpu(), target[:k].cpu(), pred[:k].cpu())

    def _log_metrics(self, stage: str) -> None:
        iou_metric = cast(Metric, self.metrics[f"{stage}_iou"])
        dice_metric = cast(Metric, self.metrics[f"{stage}_dice"])
        # A class neither present nor predicted anywhere in the split has no score: torchmetrics
        # gives NaN (Dice) and -1 (IoU); both are logged as NaN and left out of the means.
        iou = iou_metric.compute().float()
        iou = torch.where(iou < 0, torch.nan, iou)
        dice = dice_metric.compute().float()
        iou_metric.reset()
        dice_metric.reset()
        # compute() already reduced the states over the ranks: every rank holds the same values,
        # and sync_dist (a mean of equal numbers) only tells Lightning so.
        for c in range(self.num_classes):
            self.log(f"{stage}/iou_{c}", iou[c], sync_dist=True)
            self.log(f"{stage}/dice_{c}", dice[c], sync_dist=True)
        self.log(f"{stage}/miou", iou.nanmean(), prog_bar=True, sync_dist=True)
        self.log(f"{stage}/dice", dice[1:].nanmean(), prog_bar=True, sync_dist=True)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def _save_figure(self, stage: str) -> None:
        trainer = self.trainer
        # `log_dir` is a collective under DDP (a broadcast): every rank asks, rank 0 draws.
        folder = trainer.log_dir or trainer.default_root_dir
        samples = self._samples.get(stage)
        if samples is None or not trainer.is_global_zero:
            return
        try:
            plot_segmentation(
                *samples,
                Path(folder) / f"segmentation_{stage}.png",
                num_classes=self.num_classes,
                class_names=self.class_names,
                title=f"{type(self.criterion).__name__}, {stage} images",
            )
        except ImportError as err:  # the figure is a by-product: training results stand
            rank_zero_warn(f"no segmentation figure: {err}")

    def on_fit_end(self) -> None:
        self._save_figure("val")

    def on_test_end(self) -> None:
        self._save_figure("test")

    def configure_model(self) -> None:
        # FSDP2 under ModelParallelStrategy: shard each encoder stage and each decoder block (the
        # units whose parameters are used together), then the network (stem, head, the rest).
        # Only parameters are sharded: BatchNorm's running statistics stay per-rank buffers and
        # each rank normalises its own batch, exactly as under DDP without `sync_batchnorm`.
        mesh = getattr(self, "device_mesh", None)
        if mesh is None or getattr(self, "_fsdp_applied", False):
            return
        from torch.distributed.fsdp import fully_shard

        dp_mesh = data_parallel_mesh(mesh, "segmentation")
        for unit in _shard_units(self.net):
            fully_shard(unit, mesh=dp_mesh)
        fully_shard(self.net, mesh=dp_mesh)
        self._fsdp_applied = True

    def default_optimizer(self, params: Any) -> torch.optim.Optimizer:
        """AdamW with `lr` and `weight_decay` (replaced by `--optimizer` on the command line)."""
        return torch.optim.AdamW(
            params, lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"]
        )
