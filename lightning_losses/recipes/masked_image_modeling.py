"""Masked-image-modeling recipe: MAE pretraining, random masks or hard-patch mining, linear probe.

`MaskedImageModeling` pretrains a small MAE
([MaskedAutoencoder][lightning_losses.nn.mae.MaskedAutoencoder]) with random masks, or with the
masks of [HardPatchMining][lightning_losses.callbacks.HardPatchMining] when that callback is
attached, and scores a linear probe on its frozen features at every validation:

```bash
lightning-losses fit --config recipes/vision/mim_digits.yaml                    # random masks
lightning-losses fit --config recipes/vision/mim_digits.yaml \
    --config recipes/vision/mim_digits_hpm.yaml                                 # hard patches
```

Papers: *Masked Autoencoders Are Scalable Vision Learners* (He et al., CVPR 2022,
arXiv:2111.06377); *Hard Patches Mining for Masked Image Modeling* (Wang et al., CVPR 2023,
arXiv:2304.05919).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from lightning_losses.distributed import data_parallel_mesh
from lightning_losses.losses import NormPixLoss
from lightning_losses.mixins import LossMixin, LossOutput, OptimizerMixin
from lightning_losses.nn.mae import MaskedAutoencoder
from lightning_losses.nn.mae_metrics import pairwise_ranking_accuracy
from lightning_losses.nn.patches import masked_rows, random_patch_mask
from lightning_losses.validation import check_int, check_number

__all__ = ["MaskedImageModeling", "linear_probe_accuracy"]


def linear_probe_accuracy(
    train_x: Tensor,
    train_y: Tensor,
    eval_x: Tensor,
    eval_y: Tensor,
    num_classes: int,
    *,
    l2: float = 1e-3,
    max_iter: int = 200,
) -> float:
    r"""Fit a multinomial logistic regression on frozen features, return its accuracy on `eval_x`.

    Features are standardised with the training statistics; the probe minimises
    $\mathrm{CE} + \lambda \lVert W \rVert^2$ with L-BFGS in float64 (deterministic).

    Args:
        train_x: `[n, D]` features to fit on.
        train_y: `[n]` labels.
        eval_x: `[m, D]` features to score.
        eval_y: `[m]` labels.
        num_classes: number of classes.
        l2: $\lambda$.
        max_iter: L-BFGS iterations.

    Returns:
        The accuracy on `eval_x`.

    Raises:
        TypeError: `l2` not a real number, `num_classes` or `max_iter` not an int.
        ValueError: `l2 < 0`, `num_classes < 1` or `max_iter < 1`.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0], [1.0], [4.0], [5.0]])
        >>> linear_probe_accuracy(x, torch.tensor([0, 0, 1, 1]), x, torch.tensor([0, 0, 1, 1]), 2)
        1.0
    """
    l2 = check_number("l2", l2, low=0.0)
    num_classes = check_int("num_classes", num_classes, low=1)
    max_iter = check_int("max_iter", max_iter, low=1)
    # `trainer.validate` runs under inference mode, where no graph is recorded: leave it, and
    # clone the features (an inference tensor cannot be saved for backward).
    with torch.inference_mode(False), torch.enable_grad():
        return _fit_linear_probe(
            train_x.detach().double().cpu().clone(),
            train_y.detach().long().cpu().clone(),
            eval_x.detach().double().cpu().clone(),
            eval_y.detach().long().cpu().clone(),
            num_classes,
            l2,
            max_iter,
        )


def _fit_linear_probe(
    xtr: Tensor, ytr: Tensor, xev: Tensor, yev: Tensor, num_classes: int, l2: float, max_iter: int
) -> float:
    mean, std = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    xtr, xev = (xtr - mean) / std, (xev - mean) / std
    weight = torch.zeros(xtr.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(xtr @ weight + bias, ytr) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = (xev @ weight + bias).argmax(1)
    return float((pred == yev).double().mean())


class MaskedImageModeling(OptimizerMixin, LossMixin, LightningModule):
    """Masked image modeling with a MAE, random masks or hard-patch mining, plus a linear probe.

    Training (dict batches `{"image": [B, C, H, W], ...}`): the mask is `batch["mask"]` when a
    [HardPatchMining][lightning_losses.callbacks.HardPatchMining] callback wrote one, else
    MAE's uniform random mask. The main loss is the per-image mean of the masked patches'
    `norm_pix_loss` (through [LossMixin][lightning_losses.mixins.LossMixin], criterion
    [NormPixLoss][lightning_losses.losses.NormPixLoss]); the loss
    predictor's objective goes in `LossOutput.aux["loss_pred"]` (logged apart as
    `train/loss_pred`, weighted by `predictor_weight`), and its pairwise ranking accuracy on the
    masked patches is logged as `train/pred_rank_acc`.

    Evaluation (the [ImageDataModule][lightning_losses.data.digits.ImageDataModule] layout):
    features of the `probe_fit` images fit a linear probe
    ([linear_probe_accuracy][lightning_losses.recipes.masked_image_modeling.linear_probe_accuracy])
    scored on the others (`val/probe_acc`, `test/probe_acc`); the reconstruction loss of the
    scored images under fixed random masks is `val/loss`. Under DDP/FSDP the features are
    all-gathered.

    FSDP2 (`ModelParallelStrategy`): `configure_model` applies `fully_shard` to every
    transformer block, then the MAE (`predict_patch_loss` and `features` registered as FSDP
    forward methods); use `HardPatchMining(teacher="self")` there.

    Args:
        img_size: image side.
        patch_size: patch side.
        in_chans: image channels.
        embed_dim: encoder width.
        depth: encoder blocks.
        num_heads: encoder heads.
        decoder_dim: decoder width (both decoders).
        decoder_depth: blocks per decoder.
        decoder_heads: decoder heads.
        mask_ratio: share of masked patches (also HardPatchMining's default).
        norm_pix_loss: MAE's per-patch target normalisation.
        predictor: `"relative"`, `"absolute"` or `"none"` (plain MAE, no HPM possible).
        predictor_weight: weight of the loss-predictor objective (1 in the paper).
        num_classes: classes of the linear probe.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        probe_l2: L2 penalty of the linear probe.

    Example:
        >>> import torch
        >>> model = MaskedImageModeling(img_size=16, patch_size=4, embed_dim=32, depth=1,
        ...                             num_heads=2, decoder_dim=32, decoder_heads=2)
        >>> out = model.mim_loss({"image": torch.rand(4, 1, 16, 16)})
        >>> sorted(out.aux), tuple(out.per_sample.shape)
        (['loss_pred'], (4,))
    """

    supports_external_mask = True

    def __init__(
        self,
        img_size: int = 32,
        patch_size: int = 4,
        in_chans: int = 1,
        embed_dim: int = 64,
        depth: int = 2,
        num_heads: int = 4,
        decoder_dim: int = 64,
        decoder_depth: int = 1,
        decoder_heads: int = 4,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = True,
        predictor: str = "relative",
        predictor_weight: float = 1.0,
        num_classes: int = 10,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        probe_l2: float = 1e-3,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.mask_ratio = check_number(
            "mask_ratio", mask_ratio, low=0.0, high=1.0, high_inclusive=False
        )
        self.predictor_weight = check_number("predictor_weight", predictor_weight, low=0.0)
        self.num_classes, self.probe_l2 = num_classes, probe_l2
        self.lr, self.weight_decay = lr, weight_decay
        self.mae = MaskedAutoencoder(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            decoder_dim=decoder_dim,
            decoder_depth=decoder_depth,
            decoder_heads=decoder_heads,
            norm_pix_loss=norm_pix_loss,
            predictor=predictor,
        )
        self.configure_criterion(NormPixLoss(normalize=norm_pix_loss, reduction="none"))
        self._eval_buffer: list[tuple[Tensor, Tensor, Tensor]] = []

    # ------------------------------------------------------------------ HPM interface
    @property
    def patch_loss_model(self) -> MaskedAutoencoder:
        """The MAE: what HardPatchMining's EMA teacher copies."""
        return self.mae

    @property
    def num_patches(self) -> int:
        """Patches per image, $L$."""
        return self.mae.num_patches

    def predict_patch_loss(self, x: Tensor) -> Tensor:
        """`[B, L]` predicted patch losses on all patches (the `teacher="self"` pass)."""
        return self.mae.predict_patch_loss(x)

    def forward(self, x: Tensor, mask: Tensor):
        return self.mae(x, mask)

    # ------------------------------------------------------------------------- loss
    def mim_loss(
        self, batch: Mapping[str, Tensor], mask: Tensor | None = None, stage: str = "train"
    ) -> LossOutput:
        """Reconstruction loss (main) + loss-predictor objective (aux) of one batch.

        Args:
            batch: dict with `"image"` (and optionally `"mask"`).
            mask: overrides `batch["mask"]`; default: it, else a random mask.
            stage: logging prefix.

        Returns:
            The [LossOutput][lightning_losses.mixins.LossOutput]; `extras` holds the
            `MAEOutput` (`"mae"`) and the predictor's ranking accuracy (`"pred_rank_acc"`).
        """
        x = batch["image"]
        if mask is None:
            mask = batch.get("mask")
        if mask is None:
            mask = random_patch_mask(x.shape[0], self.num_patches, self.mask_ratio, device=x.device)
        out = self.mae(x, mask)
        aux, extras = {}, {"mae": out}
        if out.pred_loss is not None:
            aux["loss_pred"] = self.predictor_weight * self.mae.predictor_loss(out)
            extras["pred_rank_acc"] = pairwise_ranking_accuracy(
                masked_rows(out.pred_loss, mask), masked_rows(out.patch_loss, mask)
            )
        return self.compute_loss(
            out.pred, out.target, element_mask=mask, aux=aux, extras=extras, stage=stage
        )

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int):
        out = self.mim_loss(batch)
        acc = out.extras.get("pred_rank_acc")
        if acc is not None and torch.isfinite(acc):
            self.log(
                "train/pred_rank_acc",
                acc,
                on_step=True,
                on_epoch=True,
                batch_size=len(batch["image"]),
            )
        return out.to_dict()

    # ------------------------------------------------------------------- evaluation
    def features(self, x: Tensor) -> Tensor:
        """`[B, D]` frozen features (mean-pooled encoder outputs on all patches)."""
        return self.mae.features(x)

    def _eval_step(self, batch: Mapping[str, Tensor], batch_idx: int, stage: str) -> None:
        x, fit = batch["image"], batch["probe_fit"]
        self._eval_buffer.append((self.features(x), batch["label"], fit))
        scored = ~fit
        if bool(scored.any()):
            # Fixed masks per batch: comparable losses across epochs and runs.
            g = torch.Generator().manual_seed(batch_idx)
            xs = x[scored]
            mask = random_patch_mask(
                len(xs), self.num_patches, self.mask_ratio, generator=g, device=x.device
            )
            self.mim_loss({"image": xs}, mask=mask, stage=stage)

    def _probe(self, stage: str) -> None:
        buffer, self._eval_buffer = self._eval_buffer, []
        if not buffer:
            return
        feats, labels, fit = (torch.cat(parts) for parts in zip(*buffer))
        if self._trainer is not None and self.trainer.world_size > 1:
            feats, labels, fit = (t.flatten(0, 1) for t in self.all_gather((feats, labels, fit)))
        if not bool(fit.any()) or bool(fit.all()):  # e.g. the sanity check's first batches
            return
        acc = linear_probe_accuracy(
            feats[fit],
            labels[fit],
            feats[~fit],
            labels[~fit],
            self.num_classes,
            l2=self.probe_l2,
        )
        self.log(f"{stage}/probe_acc", acc, prog_bar=True)

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def on_validation_epoch_end(self) -> None:
        self._probe("val")

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def on_test_epoch_end(self) -> None:
        self._probe("test")

    # -------------------------------------------------------------------- scaling
    def configure_model(self) -> None:
        # FSDP2 under ModelParallelStrategy: shard every transformer block, then the MAE.
        mesh = getattr(self, "device_mesh", None)
        if mesh is None or getattr(self, "_fsdp_applied", False):
            return
        from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

        dp_mesh = data_parallel_mesh(mesh, "masked image modeling")
        decoders = [self.mae.decoder, *([self.mae.loss_decoder] if self.mae.loss_decoder else [])]
        for block in [*self.mae.blocks, *(b for d in decoders for b in d.blocks)]:
            fully_shard(block, mesh=dp_mesh)
        fully_shard(self.mae, mesh=dp_mesh)
        # Methods other than forward need FSDP's unshard hooks too (teacher pass, probe).
        register_fsdp_forward_method(self.mae, "predict_patch_loss")
        register_fsdp_forward_method(self.mae, "features")
        self._fsdp_applied = True

    def default_optimizer(self, params: Any) -> torch.optim.Optimizer:
        """AdamW with MAE's betas (replaced by `--optimizer` on the command line)."""
        return torch.optim.AdamW(
            params,
            lr=self.lr,
            betas=(0.9, 0.95),
            weight_decay=self.weight_decay,
        )
