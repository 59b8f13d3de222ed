"""Segmentation recipe: the smp network, the loss reduction, the metrics against a naive count,
the figure, the CLI with the base config and every criterion overlay."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_losses.losses import DiceCELoss, DiceFocalLoss, DiceLoss, TverskyLoss
from lightning_losses.recipes.cli import build_cli
from lightning_losses.recipes.segmentation import (
    SegmentationModule,
    _shard_units,
    build_segmentation_net,
    freeze_unreached_parameters,
    plot_segmentation,
)
from tests._lightning import cli_output_args

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "recipes/vision/segmentation.yaml"
# Tiny data for CLI runs: 8 training canvases of 32×32, two batches per epoch.
TINY = [
    "--data.num_train",
    "8",
    "--data.num_val",
    "4",
    "--data.num_test",
    "4",
    "--data.image_size",
    "32",
    "--data.object_size",
    "[8, 14]",
    "--data.batch_size",
    "4",
    "--data.eval_batch_size",
    "4",
]


class _Fixed(nn.Module):
    """Returns preset logits: the metrics see exactly the predictions the test chose."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[x[:, 0, 0, 0].long()]  # the images carry their index


def test_network_maps_images_to_class_logits_and_checks_the_size():
    model = SegmentationModule(num_classes=5)
    logits = model(torch.zeros(2, 1, 32, 64))
    assert logits.shape == (2, 5, 32, 64)
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.zeros(2, 1, 48, 32))
    # Every parameter gets a gradient: DDP (find_unused_parameters=False) needs it.
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    # Random init only: no parameter comes from a download.
    net = build_segmentation_net("Unet", "tu-resnet10t", num_classes=3, encoder_depth=2,
                                 decoder_channels=(16, 8))  # fmt: skip
    assert net(torch.zeros(1, 1, 16, 16)).shape == (1, 3, 16, 16)
    with pytest.raises(ValueError, match="decoder_channels"):
        build_segmentation_net(encoder_depth=3, decoder_channels=(16, 8))


@pytest.mark.parametrize(
    ("encoder", "depth", "spare_stages"),
    [("tu-mobilenetv3_small_050", 3, ["2", "3", "4", "5"]), ("tu-resnet10t", 3, [])],
)
def test_encoder_stages_beyond_the_depth_are_frozen_so_ddp_needs_no_unused_parameter_search(
    encoder, depth, spare_stages
):
    # timm's MobileNet feature extractor keeps all its blocks; smp reads the first `depth` levels.
    net = build_segmentation_net(encoder=encoder, encoder_depth=depth, decoder_channels=(16, 8, 8))
    net.train()
    net(torch.randn(2, 1, 32, 32)).sum().backward()
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    # DDP's condition: every parameter that requires a gradient gets one...
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    # ... and exactly the blocks beyond the depth are frozen (a probe that froze everything or
    # nothing would fail here), the net stays in train mode.
    frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
    assert {n.split(".")[3] for n in frozen} == set(spare_stages)
    assert all(n.startswith("encoder.model.blocks.") for n in frozen)
    assert trainable and net.training


def test_freeze_unreached_parameters_keeps_mode_and_grads():
    net = nn.ModuleDict({"used": nn.Linear(2, 2), "spare": nn.Linear(2, 2)})
    net.forward = lambda x: net["used"](x)  # type: ignore[method-assign]
    net.eval()
    assert freeze_unreached_parameters(net, torch.zeros(1, 2)) == ["spare.weight", "spare.bias"]
    assert not net.training and all(p.grad is None for p in net.parameters())
    assert freeze_unreached_parameters(net, torch.zeros(1, 2)) == []  # idempotent


@pytest.mark.parametrize(("encoder", "stages"), [("tu-mobilenetv3_small_050", 6), ("resnet18", 4)])
def test_fsdp2_units_are_the_encoder_stages_and_decoder_blocks(encoder, stages):
    net = build_segmentation_net(encoder=encoder, decoder_channels=(32, 16, 8))
    units = _shard_units(net)
    decoder = list(net.decoder.blocks)
    assert len(units) == stages + len(decoder) and units[stages:] == decoder
    # Disjoint units; what they leave out (stem, head) goes to the network's own unit.
    owned = [id(p) for u in units for p in u.parameters()]
    assert len(owned) == len(set(owned))
    rest = {id(p) for p in net.parameters()} - set(owned)
    stem_and_head = [*net.segmentation_head.parameters()]
    assert {id(p) for p in stem_and_head} <= rest


class _Mesh:
    """The two calls `configure_model` makes on a device mesh, for a 2 x 2 layout."""

    mesh_dim_names = ("data_parallel", "tensor_parallel")

    def __init__(self, size: int = 4) -> None:
        self._size = size

    def size(self) -> int:
        return self._size

    def __getitem__(self, name: str) -> _Mesh:
        return _Mesh(2)


def test_configure_model_is_a_no_op_without_a_mesh_and_refuses_tensor_parallel_ranks():
    model = SegmentationModule(num_classes=3, decoder_channels=[16, 16, 8, 8, 8])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.configure_model()  # single process / DDP: nothing to shard
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(hasattr(p, "device_mesh") for p in model.parameters())
    model._device_mesh = _Mesh()
    with pytest.raises(ValueError, match="tensor_parallel_size 1"):
        model.configure_model()


def test_missing_smp_names_the_vision_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "segmentation_models_pytorch", None)
    with pytest.raises(ImportError, match=r"lightning-losses\[vision\]"):
        build_segmentation_net()


def test_ce_loss_is_the_mean_over_images_of_the_mean_over_labelled_pixels():
    torch.manual_seed(0)
    model = SegmentationModule(criterion={"name": "cross_entropy", "ignore_index": 255})
    logits = torch.randn(3, 4, 8, 8, dtype=torch.float64)
    target = torch.randint(4, (3, 8, 8))
    target[0, :4] = 255
    target[1, :, :2] = 255
    out = model.compute_loss(logits, target)
    # Naive reference: log-softmax per pixel, averaged over each image's labelled pixels.
    logp = logits.log_softmax(1)
    per_image = []
    for i in range(3):
        values = [
            -logp[i, target[i, r, c], r, c]
            for r in range(8)
            for c in range(8)
            if target[i, r, c] != 255
        ]
        per_image.append(sum(values) / len(values))
    torch.testing.assert_close(out.per_sample, torch.stack(per_image))
    torch.testing.assert_close(out.loss, torch.stack(per_image).mean())


def test_dense_criteria_are_accepted_and_other_kinds_rejected_by_name():
    model = SegmentationModule()
    for name, cls in (("dice", DiceLoss), ("dice_ce", DiceCELoss), ("dice_focal", DiceFocalLoss),
                      ("tversky", TverskyLoss)):  # fmt: skip
        model.configure_criterion({"name": name, "softmax": True, "ignore_index": 255})
        assert isinstance(model.criterion, cls) and model.criterion.reduction == "none"
        target = torch.randint(4, (2, 32, 32))
        target[0, 0] = 255
        out = model.compute_loss(model(torch.randn(2, 1, 32, 32)), target)
        assert out.per_sample.shape == (2,) and torch.isfinite(out.loss)
        out.loss.backward()
    with pytest.raises(ValueError, match="BPRLoss"):
        SegmentationModule(criterion="bpr")


def test_metrics_match_a_naive_count_and_skip_ignored_pixels():
    torch.manual_seed(1)
    c = 4
    target = torch.randint(c, (6, 32, 32))
    target[:, :3] = 255  # ignored rows: count in no metric, whatever is predicted there
    pred = torch.where(
        torch.rand(6, 32, 32) < 0.7, target.clamp(max=c - 1), torch.randint(c, (6, 32, 32))
    )
    pred[1] = 3  # class 3 over-predicted in one image
    model = SegmentationModule(
        {"name": "cross_entropy", "ignore_index": 255}, num_classes=c, figure_samples=2
    )
    model.net = _Fixed(F.one_hot(pred, c).movedim(-1, 1).float())
    for start in (0, 3):  # two batches: the Dice sums accumulate over the split
        index = torch.arange(start, start + 3, dtype=torch.float32)
        batch = {
            "image": index.view(3, 1, 1, 1).expand(3, 1, 32, 32),
            "mask": target[start : start + 3],
        }
        model._evaluate(batch, start, "val")
    dice = model.metrics["val_dice"].compute()
    iou = model.metrics["val_iou"].compute()
    valid = target != 255
    for k in range(c):
        p, t = (pred == k) & valid, (target == k) & valid
        want = 2 * (p & t).sum() / (p.sum() + t.sum())
        assert dice[k].item() == pytest.approx(want.item(), abs=1e-6)
        # IoU per image, averaged over the images where the class is predicted or present.
        per_image = [
            ((p[i] & t[i]).sum() / (p[i] | t[i]).sum()).item()
            for i in range(6)
            if (p[i] | t[i]).any()
        ]
        assert iou[k].item() == pytest.approx(sum(per_image) / len(per_image), abs=1e-6)
    assert model._samples["val"][0].shape == (2, 1, 32, 32)  # first batch kept for the figure


def test_figure_is_written(tmp_path):
    target = torch.randint(4, (2, 32, 32))
    target[0, 0] = 255
    path = plot_segmentation(
        torch.rand(2, 1, 16, 16), target, torch.randint(4, (2, 16, 16)), tmp_path / "f" / "s.png",
        num_classes=4, class_names=["bg", "a", "b", "c"], title="t",
    )  # fmt: skip
    assert path.stat().st_size > 5_000


def test_a_few_steps_reduce_the_training_loss():
    torch.manual_seed(0)
    from lightning_losses.data import synthetic_shapes

    d = synthetic_shapes(8, 32, shape_size=(8, 14), seed=0)
    model = SegmentationModule(criterion="cross_entropy", lr=1e-2)
    opt = model.configure_optimizers()
    losses = []
    for _ in range(8):
        out = model.compute_loss(model(d.images), d.masks)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_cli_fit_and_test_log_per_class_metrics_and_save_figures(tmp_path):
    cli = build_cli(
        [
            "fit",
            "--config",
            str(BASE),
            *TINY,
            "--trainer.max_epochs",
            "1",
            *cli_output_args(tmp_path),
        ]
    )
    assert cli.trainer.global_step == 2
    assert type(cli.model.criterion).__name__ == "CrossEntropyLoss"
    assert cli.model.criterion.ignore_index == 255 and cli.datamodule.hparams["ignore_index"] == 255
    assert cli.model.class_names == ["background", "digits 0-3", "digits 4-6", "digits 7-9"]
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    log_dir = Path(cli.trainer.log_dir)
    assert (log_dir / "segmentation_val.png").stat().st_size > 5_000
    assert (log_dir / "segmentation_test.png").stat().st_size > 5_000
    rows = list(csv.DictReader((log_dir / "metrics.csv").open()))
    for stage in ("val", "test"):
        for key in [f"{stage}/{m}_{c}" for m in ("dice", "iou") for c in range(4)]:
            values = [float(r[key]) for r in rows if r.get(key)]
            # One value per run; NaN only for a class absent from both prediction and target.
            assert len(values) == 1 and (math.isnan(values[0]) or 0.0 <= values[0] <= 1.0), key
        for key in (f"{stage}/miou", f"{stage}/dice"):
            values = [float(r[key]) for r in rows if r.get(key)]
            assert len(values) == 1 and 0.0 <= values[0] <= 1.0, key
    assert cli.trainer.checkpoint_callback.monitor == "val/dice"


def test_cli_optimizer_and_scheduler_replace_the_default():
    cli = build_cli(
        [
            "--config",
            str(BASE),
            *TINY,
            "--optimizer",
            "SGD",
            "--optimizer.lr",
            "0.05",
            "--lr_scheduler",
            "StepLR",
            "--lr_scheduler.step_size",
            "3",
        ],
        run=False,
    )
    config = cli.model.configure_optimizers()
    (opt,), (sched,) = config
    assert type(opt).__name__ == "SGD" and opt.param_groups[0]["lr"] == 0.05
    assert type(sched).__name__ == "StepLR" and sched.step_size == 3


@pytest.mark.parametrize(
    "overlay,cls,options",
    [
        ("segmentation_dice.yaml", DiceLoss, {}),
        ("segmentation_dice_ce.yaml", DiceCELoss, {}),
        ("segmentation_dice_focal.yaml", DiceFocalLoss, {"gamma": 2.0}),
        ("segmentation_tversky.yaml", TverskyLoss, {"alpha": 0.3, "beta": 0.7}),
    ],
)
def test_overlays_swap_the_criterion_and_train(overlay, cls, options, tmp_path):
    path = ROOT / "recipes/vision" / overlay
    assert path.read_text().startswith("# overlay-for: segmentation.yaml")
    cli = build_cli(
        [
            "fit",
            "--config",
            str(BASE),
            "--config",
            str(path),
            *TINY,
            "--trainer.max_steps",
            "1",
            "--trainer.limit_val_batches",
            "0",
            *cli_output_args(tmp_path),
        ]
    )
    criterion = cli.model.criterion
    assert isinstance(criterion, cls) and criterion.reduction == "none"
    assert criterion.ignore_index == 255
    assert cli.model.hparams["criterion"]["softmax"] is True
    # Only the criterion changes: the base's network settings are kept.
    assert cli.model.hparams["decoder_channels"] == [64, 32, 16, 8, 8]
    for key, value in options.items():
        assert cli.model.hparams["criterion"][key] == value
    assert cli.trainer.global_step == 1 and torch.isfinite(
        cli.trainer.callback_metrics["train/loss"]
    )
