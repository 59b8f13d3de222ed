"""HardPatchMining: the mask core, the schedules, the EMA teacher under accumulation, resume."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_losses.callbacks import HardPatchMining, hard_patch_mask
from lightning_losses.callbacks.hpm import ema_decay_at, hard_fraction_at
from lightning_losses.data.digits import DigitsImageDataModule
from lightning_losses.recipes.masked_image_modeling import MaskedImageModeling
from tests._lightning import quiet_trainer

TINY = dict(
    img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2, decoder_dim=32, decoder_heads=2
)


# ----------------------------------------------------------------------------- the core
@pytest.mark.parametrize("ratio,fraction", [(0.75, 0.5), (0.75, 0.0), (0.5, 1.0), (0.6, 0.3)])
def test_exact_count_and_hard_share_is_the_top_scored(ratio, fraction):
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(64, 49, generator=g)
    mask = hard_patch_mask(scores, ratio, fraction, g)
    n_mask = 49 - int(49 * (1 - ratio))
    n_hard = int(n_mask * fraction)
    assert mask.dtype == torch.bool and (mask.sum(1) == n_mask).all()
    top = scores.argsort(1, descending=True)[:, :n_hard]
    assert mask.gather(1, top).all()


def test_random_part_is_uniform_over_the_other_patches():
    # 8 patches, 6 masked, 3 hard (the three highest scores): the other 3 are drawn uniformly
    # from the remaining 5, so each is masked with probability 3/5.
    scores = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]).repeat(20000, 1)
    mask = hard_patch_mask(scores, 0.75, 0.5, torch.Generator().manual_seed(1))
    assert (mask.sum(1) == 6).all() and mask[:, 5:].all()
    freq = mask[:, :5].float().mean(0)
    # 5 binomial frequencies of n = 20000, p = 0.6: sd ≈ 0.0035; 5 sd tolerance.
    torch.testing.assert_close(freq, torch.full((5,), 0.6), atol=0.018, rtol=0)


def test_deterministic_under_a_generator_and_device_of_scores():
    scores = torch.randn(4, 16)
    a = hard_patch_mask(scores, 0.75, 0.5, torch.Generator().manual_seed(5))
    b = hard_patch_mask(scores, 0.75, 0.5, torch.Generator().manual_seed(5))
    c = hard_patch_mask(scores, 0.75, 0.5, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_mask_rejects_bad_input():
    with pytest.raises(ValueError, match="scores must have shape"):
        hard_patch_mask(torch.zeros(16), 0.75, 0.5)
    with pytest.raises(ValueError, match="scores must be finite"):
        hard_patch_mask(torch.tensor([[0.0, float("nan")]]), 0.5, 0.5)
    with pytest.raises(ValueError, match="hard_fraction must be ≤ 1"):
        hard_patch_mask(torch.zeros(1, 4), 0.5, 1.5)
    with pytest.raises(TypeError, match="scores must be a floating"):
        hard_patch_mask(torch.zeros(1, 4, dtype=torch.long), 0.5, 0.5)


def test_schedules_follow_the_spec():
    # alpha_t = 0.5 (epoch + 1) / epochs; EMA decay 0.999 -> 0.9999 over 100 epochs.
    assert [hard_fraction_at((e + 1) / 10) for e in range(10)] == pytest.approx(
        [0.05 * (e + 1) for e in range(10)]
    )
    assert ema_decay_at(25) == pytest.approx(0.999 + 0.25 * 0.0009)
    assert ema_decay_at(150) == 0.9999 and ema_decay_at(3, 0.9, 0.99, epochs=0) == 0.99
    step = HardPatchMining(schedule="step", teacher="self")
    assert step.current_hard_fraction(step=30, steps=120) == pytest.approx(0.125)
    with pytest.raises(ValueError, match="teacher must be one of"):
        HardPatchMining(teacher="momentum")


# ------------------------------------------------------------------------- in training
class _Recorder(Callback):
    """Runs after HardPatchMining: masks, teacher parameters, and the teacher's own scores."""

    def __init__(self, hpm):
        self.hpm, self.masks, self.teacher, self.top_ok, self.steps = hpm, [], [], [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        mask = batch["mask"]
        self.masks.append(mask.clone())
        with torch.no_grad():
            scores = self.hpm.teacher.module.predict_patch_loss(batch["image"])
        n_hard = int(mask.sum(1)[0] * self.hpm._alpha)
        top = scores.argsort(1, descending=True)[:, :n_hard]
        self.top_ok.append(bool(mask.gather(1, top).all()))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.teacher.append(self.hpm.teacher.module.patch_embed.proj.weight.detach().clone())
        self.steps.append(trainer.global_step)


def _model():
    torch.manual_seed(0)
    return MaskedImageModeling(**TINY)


def test_mask_in_batch_and_ema_updates_only_on_optimizer_steps():
    model = _model()
    student0 = model.mae.patch_embed.proj.weight.detach().clone()
    hpm = HardPatchMining(seed=0, ema_decay=(0.5, 0.5))
    rec = _Recorder(hpm)

    class Student(Callback):  # the student's weights right after each optimizer step
        def __init__(self):
            self.weights = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.weights.append(pl_module.mae.patch_embed.proj.weight.detach().clone())

    student = Student()
    trainer = quiet_trainer(
        max_epochs=1,
        limit_train_batches=4,
        accumulate_grad_batches=2,
        limit_val_batches=0,
        enable_checkpointing=False,
        callbacks=[hpm, rec, student],
    )
    trainer.fit(model, DigitsImageDataModule(image_size=16, batch_size=8))
    assert rec.steps == [0, 1, 1, 2] and all(rec.top_ok)
    assert all((m.sum(1) == 12).all() for m in rec.masks)
    # Micro-batch 0 (no step): teacher unchanged; 1: one EMA step of decay 0.5; 2: unchanged.
    torch.testing.assert_close(rec.teacher[0], student0)
    torch.testing.assert_close(rec.teacher[1], 0.5 * student0 + 0.5 * student.weights[1])
    torch.testing.assert_close(rec.teacher[2], rec.teacher[1])
    torch.testing.assert_close(rec.teacher[3], 0.5 * rec.teacher[1] + 0.5 * student.weights[3])


def _fit(tmp_path, max_epochs, ckpt_path=None):
    seed_everything(0, verbose=False)
    model = _model()
    # The schedule length is fixed: the interrupted run stops at epoch 1 of the same schedule.
    hpm = HardPatchMining(seed=3, ema_decay=(0.9, 0.99), ema_epochs=2, schedule_length=2)
    rec = _Recorder(hpm)
    trainer = quiet_trainer(
        max_epochs=max_epochs,
        limit_train_batches=3,
        limit_val_batches=0,
        callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True), hpm, rec],
        default_root_dir=tmp_path,
        deterministic=True,
    )
    trainer.fit(model, DigitsImageDataModule(image_size=16, batch_size=16), ckpt_path=ckpt_path)
    return model, hpm, rec


def test_resume_equals_uninterrupted(tmp_path):
    full_model, full_hpm, full_rec = _fit(tmp_path / "full", 2)
    _fit(tmp_path / "part", 1)
    res_model, res_hpm, res_rec = _fit(tmp_path / "res", 2, ckpt_path=tmp_path / "part/last.ckpt")
    # The resumed run's 3 batches are the uninterrupted run's second epoch, mask for mask.
    assert len(res_rec.masks) == 3
    for a, b in zip(full_rec.masks[3:], res_rec.masks, strict=True):
        assert torch.equal(a, b)
    for (name, a), b in zip(
        full_hpm.teacher.state_dict().items(), res_hpm.teacher.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    for a, b in zip(full_model.parameters(), res_model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(full_hpm.generator.get_state(), res_hpm.generator.get_state())


class _NoMasks(LightningModule):
    def training_step(self, batch, batch_idx): ...


def test_setup_errors_name_what_is_missing():
    trainer = quiet_trainer(max_epochs=1)
    missing = "missing attribute 'supports_external_mask', method 'predict_patch_loss'"
    with pytest.raises(TypeError, match=missing):
        HardPatchMining().setup(trainer, _NoMasks(), "fit")

    class SelfOnly(_NoMasks):
        supports_external_mask = True

        def predict_patch_loss(self, x):
            return x.flatten(1)

    HardPatchMining(teacher="self").setup(trainer, SelfOnly(), "fit")  # fine without a copy
    with pytest.raises(TypeError, match="HPMTeacherModel: missing attribute 'patch_loss_model'"):
        HardPatchMining(teacher="ema").setup(trainer, SelfOnly(), "fit")

    class IgnoresMasks(SelfOnly):
        supports_external_mask = False

    with pytest.raises(TypeError, match=r"IgnoresMasks.supports_external_mask = True.*'mask'"):
        HardPatchMining(teacher="self").setup(trainer, IgnoresMasks(), "fit")


def test_ema_teacher_is_refused_under_fsdp(monkeypatch):
    from lightning.pytorch.strategies import ModelParallelStrategy

    trainer = quiet_trainer(max_epochs=1)
    monkeypatch.setattr(type(trainer), "strategy", property(lambda self: ModelParallelStrategy()))
    with pytest.raises(ValueError, match="teacher='self'"):
        HardPatchMining(teacher="ema").check_module(trainer, _model())
