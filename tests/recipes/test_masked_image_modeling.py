"""The masked-image-modeling recipe: module, data, linear probe, YAML end to end."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from lightning_losses.data import (
    DigitsImageDataModule,
    StrokesDataModule,
    load_digits_images,
    load_digits_splits,
    synthetic_strokes,
)
from lightning_losses.functional import norm_pix_loss
from lightning_losses.losses import NormPixLoss
from lightning_losses.nn.patches import masked_rows, patchify, random_patch_mask
from lightning_losses.recipes.cli import build_cli
from lightning_losses.recipes.masked_image_modeling import (
    MaskedImageModeling,
    linear_probe_accuracy,
)
from tests._lightning import cli_output_args

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(
    img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2, decoder_dim=32, decoder_heads=2
)


def test_mim_loss_is_masked_patch_mean_plus_predictor_aux():
    torch.manual_seed(0)
    model = MaskedImageModeling(**TINY, predictor_weight=0.5)
    x = torch.rand(3, 1, 16, 16)
    mask = random_patch_mask(3, 16, 0.75, generator=torch.Generator().manual_seed(0))
    out = model.mim_loss({"image": x, "mask": mask})
    mae = out.extras["mae"]
    assert torch.equal(mae.mask, mask)  # the batch's mask is the one used
    per_patch = norm_pix_loss(mae.pred, patchify(x, 4), reduction="none").detach()
    torch.testing.assert_close(out.per_sample.detach(), masked_rows(per_patch, mask).mean(1))
    torch.testing.assert_close(out.main.detach(), per_patch[mask].mean())
    torch.testing.assert_close(out.aux["loss_pred"], 0.5 * model.mae.predictor_loss(mae))
    torch.testing.assert_close(out.loss, out.main + out.aux["loss_pred"])
    # Without a mask in the batch: MAE's random mask, 12 of 16 patches per image.
    assert (model.mim_loss({"image": x}).extras["mae"].mask.sum(1) == 12).all()


@pytest.mark.parametrize("normalize", [True, False])
def test_criterion_is_the_catalog_norm_pix_loss_per_patch(normalize):
    model = MaskedImageModeling(**TINY, norm_pix_loss=normalize)
    assert type(model.criterion) is NormPixLoss and model.criterion.reduction == "none"
    assert model.criterion.normalize is normalize and model.mae.norm_pix is normalize


def test_linear_probe_separable_and_random_labels():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 4
    x = torch.randn(200, 8, generator=g) + 4 * torch.nn.functional.one_hot(y, 8).float()
    assert linear_probe_accuracy(x[:100], y[:100], x[100:], y[100:], 4) == 1.0
    noise = torch.randn(400, 8, generator=g)
    labels = torch.randint(4, (400,), generator=g)
    assert linear_probe_accuracy(noise[:200], labels[:200], noise[200:], labels[200:], 4) < 0.4


def test_linear_probe_runs_under_inference_mode_like_trainer_validate():
    # `trainer.validate`/`test` run the evaluation hooks under torch.inference_mode().
    g = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 4
    x = torch.randn(200, 8, generator=g) + 4 * torch.nn.functional.one_hot(y, 8).float()
    expected = linear_probe_accuracy(x[:100], y[:100], x[100:], y[100:], 4)
    with torch.inference_mode():
        xi, yi = x.clone(), y.clone()  # inference tensors, as the probe's features are there
        assert linear_probe_accuracy(xi[:100], yi[:100], xi[100:], yi[100:], 4) == expected
        assert torch.is_inference_mode_enabled()  # the mode is restored


def test_strokes_ink_masks_labels_and_determinism():
    s = synthetic_strokes(256, 28, seed=0)
    assert torch.equal(s.ink, s.images > 0.1) and s.images.min() >= 0 and s.images.max() <= 1
    assert torch.equal(s.ink, s.images > 0)  # no faint rim: a pixel is blank or ink
    assert torch.equal(synthetic_strokes(256, 28, seed=0).images, s.images)
    assert not torch.equal(synthetic_strokes(256, 28, seed=1).images, s.images)
    # About half of the 7×7 patches carry ink: the base rate HPM is compared with.
    share = patchify(s.ink.float(), 7).amax(-1).mean().item()
    assert 0.35 < share < 0.7
    assert torch.bincount(s.labels, minlength=4).min() > 40
    # Label = orientation bin: horizontal (bin 0) strokes vary along columns more than rows.
    gx = (s.images[..., :, 1:] - s.images[..., :, :-1]).abs().sum((1, 2, 3))
    gy = (s.images[..., 1:, :] - s.images[..., :-1, :]).abs().sum((1, 2, 3))
    flat = s.labels == 0  # angles in [0, π/4): near horizontal, edges mostly along y
    assert (gy[flat] > gx[flat]).float().mean() > 0.8


def test_digits_images_share_the_split_and_upscale():
    img, feat = load_digits_images(8, seed=2), load_digits_splits(0.0, seed=2)
    assert torch.equal(img.y_train, feat.y_train) and torch.equal(img.y_test, feat.y_test)
    big = load_digits_images(32, seed=2)
    assert big.x_train.shape[1:] == (1, 32, 32)
    # Bilinear upscaling keeps the mean intensity of each image (to interpolation error).
    torch.testing.assert_close(
        big.x_train.mean((1, 2, 3)), img.x_train.mean((1, 2, 3)), atol=0.03, rtol=0
    )
    dm = DigitsImageDataModule(image_size=16, eval_batch_size=4096)
    dm.setup("fit")
    val = next(iter(dm.val_dataloader()))
    assert val["probe_fit"].sum() == len(dm.splits.y_train) and (~val["probe_fit"]).sum() == len(
        dm.splits.y_val
    )
    with pytest.raises(ValueError, match="image_size"):
        load_digits_images(4)


def test_yaml_with_hpm_overlay_trains_and_probes(tmp_path):
    build_cli(
        [
            "fit",
            "--config",
            str(ROOT / "recipes/vision/mim_digits.yaml"),
            "--config",
            str(ROOT / "recipes/vision/mim_digits_hpm.yaml"),
            "--model.embed_dim",
            "32",
            "--model.depth",
            "1",
            "--model.decoder_dim",
            "32",
            "--data.batch_size",
            "16",
            "--data.eval_batch_size",
            "1024",
            "--trainer.max_epochs",
            "2",
            "--trainer.limit_train_batches",
            "2",
            "--trainer.limit_val_batches",
            "2",
            "--trainer.check_val_every_n_epoch",
            "1",
            "--trainer.num_sanity_val_steps",
            "0",
            "--trainer.log_every_n_steps",
            "1",
            *cli_output_args(tmp_path),
        ]
    )
    rows = list(csv.DictReader(next(tmp_path.rglob("metrics.csv")).open()))

    def col(name):
        return [float(r[name]) for r in rows if r.get(name)]

    assert col("train/loss_pred_step") and col("train/loss_main_step")
    assert col("hpm/hard_fraction") == [0.25, 0.25, 0.5, 0.5]  # 0.5 (epoch + 1) / 2
    probe = col("val/probe_acc")
    assert len(probe) == 2 and all(0.1 < p <= 1.0 for p in probe)  # 10 classes: chance 0.1
    assert all(math.isfinite(v) for v in col("val/loss"))


def test_strokes_datamodule_batches():
    dm = StrokesDataModule(num_train=32, num_val=8, num_test=8, batch_size=8, eval_batch_size=64)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"image", "label", "index", "probe_fit"} and dm.num_classes == 4
    assert len(next(iter(dm.test_dataloader()))["label"]) == 40
