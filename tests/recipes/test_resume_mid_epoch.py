"""Every recipe, stopped by `max_steps` in the middle of an epoch and resumed, equals the full run.

Each case trains `TOTAL` steps in one go, then `STOP` steps (the middle of the second epoch) and
saves a checkpoint, then resumes from it to `TOTAL` (crossing the next epoch boundary). The
resumed run must train on exactly the batches the full run trained on after step `STOP`, log the
same metrics at the same steps (the epoch means of the interrupted epoch included: the module's
running accumulators travel in the checkpoint) and end with bit-identical weights (CPU,
`deterministic=True`).
The recipes' randomness (dropout, augmentation noise, MAE masks, negatives) is what the checkpoint
must carry: the data loader's position and every random generator.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, LightningDataModule, LightningModule, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger

from tests._lightning import quiet_trainer

BATCHES = 4  # training batches per epoch in every case
STOP, TOTAL = 6, 12  # stop in the middle of epoch 1; resume to the end of epoch 2


def _tensors(batch: Any) -> list[torch.Tensor]:
    if isinstance(batch, torch.Tensor):
        return [batch]
    if isinstance(batch, dict):
        return [t for k in sorted(batch) for t in _tensors(batch[k])]
    if isinstance(batch, list | tuple):
        return [t for b in batch for t in _tensors(b)]
    return []


def fingerprint(batch: Any) -> str:
    """A hash of every tensor of a batch (values, shapes and dtypes)."""
    h = hashlib.sha1()
    for t in _tensors(batch):
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


class BatchRecorder(Callback):
    """`(global_step, fingerprint)` of every training batch, before any callback rewrites it."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, str]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches.append((trainer.global_step, fingerprint(batch)))


class RowLogger(Logger):
    """Keeps every `log_metrics` call as `(step, {name: value})`."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "rows"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.rows.append((int(step or 0), {k: float(v) for k, v in metrics.items()}))

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass


@dataclass
class Run:
    model: LightningModule
    batches: list[tuple[int, str]]
    rows: list[tuple[int, dict[str, float]]]
    callbacks: list[Callback] = field(default_factory=list)


@dataclass
class Case:
    model: Callable[[], LightningModule]
    data: Callable[[Path], LightningDataModule]
    callbacks: Callable[[], list[Callback]] = list


def fit(
    case: Case,
    tmp_path: Path,
    steps: int,
    ckpt_path: Path | None = None,
    save: Path | None = None,
    **trainer_kwargs: Any,
) -> Run:
    """Seed, build and fit `case` as a user script would (the same seed for a resumed run)."""
    seed_everything(0, verbose=False)
    model, data = case.model(), case.data(tmp_path)
    recorder, logger, extra = BatchRecorder(), RowLogger(), case.callbacks()
    options: dict[str, Any] = dict(
        max_steps=steps,
        max_epochs=-1,
        limit_val_batches=0,
        enable_checkpointing=False,
        logger=logger,
        log_every_n_steps=1,
        deterministic=True,
        default_root_dir=tmp_path,
    )
    options.update(trainer_kwargs)
    if options["max_steps"] == -1:  # a run planned by epochs (BY_EPOCHS), interrupted by `steps`
        options["max_epochs"] = steps // BATCHES
    options["callbacks"] = [recorder, *extra, *options.get("callbacks", [])]
    trainer = quiet_trainer(**options)
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    if save is not None:
        trainer.save_checkpoint(save)
    return Run(model, recorder.batches, logger.rows, extra)


def assert_resumed_equals_full(full: Run, resumed: Run, stop: int = STOP) -> None:
    assert [s for s, _ in full.batches] == list(range(TOTAL))
    # The same batches, step by step, and none replayed.
    assert resumed.batches == full.batches[stop:]
    assert len({f for _, f in full.batches}) == TOTAL  # epochs really reshuffle
    assert_same_rows(full.rows, resumed.rows, stop)
    full_state, resumed_state = full.model.state_dict(), resumed.model.state_dict()
    assert full_state.keys() == resumed_state.keys()
    for name, value in full_state.items():
        torch.testing.assert_close(resumed_state[name], value, rtol=0, atol=0, msg=name)


def assert_same_rows(
    full_rows: list[tuple[int, dict[str, float]]],
    resumed_rows: list[tuple[int, dict[str, float]]],
    stop: int = STOP,
    skip: tuple[str, ...] = (),
) -> None:
    """The rows the full run logged from step `stop` on equal the resumed run's, epoch means too.

    `skip`: prefixes of names left out of the comparison.
    """
    after = [(s, r) for s, r in full_rows if s >= stop]
    assert [s for s, _ in resumed_rows] == [s for s, _ in after]
    assert any(k.endswith("_epoch") for _, r in after for k in r)  # the epoch means are compared
    for (step, a), (_, b) in zip(after, resumed_rows, strict=True):
        assert a.keys() == b.keys(), step
        for name in a:
            if not name.startswith(skip):
                assert a[name] == b[name], (step, name, a[name], b[name])


def check_case(
    case: Case, tmp_path: Path, via: str = "save_checkpoint", **trainer_kwargs: Any
) -> tuple[Run, Run]:
    """Full run, interrupted run, resumed run; `via` is how the interrupted run left its file.

    `"save_checkpoint"`: `fit(max_steps=STOP)`, then `trainer.save_checkpoint`.
    `"model_checkpoint"`: a preempted run, i.e. the full run's own `ModelCheckpoint` file of
    step `STOP` (the only way for recipes whose schedule depends on the planned length).
    """
    if via == "save_checkpoint":
        full = fit(case, tmp_path / "full", TOTAL, **trainer_kwargs)
        ckpt = tmp_path / "stop.ckpt"
        part = fit(case, tmp_path / "part", STOP, save=ckpt, **trainer_kwargs)
        assert part.batches == full.batches[:STOP]
    else:
        every = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=STOP, save_top_k=-1)
        options = dict(enable_checkpointing=True, callbacks=[every], **trainer_kwargs)
        full = fit(case, tmp_path / "full", TOTAL, **options)
        ckpt = tmp_path / "ckpt" / f"epoch={STOP // BATCHES}-step={STOP}.ckpt"
    resumed = fit(case, tmp_path / "resumed", TOTAL, ckpt_path=ckpt, **trainer_kwargs)
    assert_resumed_equals_full(full, resumed)
    return full, resumed


LIMITED = {"limit_train_batches": BATCHES}  # a loader longer than an epoch: the limit ends it
BY_EPOCHS = {"max_steps": -1}  # `max_epochs` planned: the schedules read the planned length


# ---------------------------------------------------------------------------------- the recipes


def _classifier() -> LightningModule:
    from lightning_losses.recipes.image_classification import ImageClassifier

    return ImageClassifier(criterion="cross_entropy", hidden=16)


def _noisy_digits(tmp_path: Path) -> LightningDataModule:
    from lightning_losses.data.digits import NoisyDigitsDataModule

    return NoisyDigitsDataModule(noise_rate=0.4, batch_size=270, seed=0)  # 1079 train: 4 batches


CLASSIFIER = Case(_classifier, _noisy_digits)


def test_image_classifier(tmp_path):
    check_case(CLASSIFIER, tmp_path)


def test_image_classifier_model_checkpoint_with_validation(tmp_path):
    # Validation at every epoch end draws nothing from the generators the training uses.
    check_case(CLASSIFIER, tmp_path, via="model_checkpoint", limit_val_batches=1)


def _metric_learning() -> LightningModule:
    from lightning_losses.recipes.metric_learning import MetricLearningModule

    return MetricLearningModule("supcon", embedding_dim=16, hidden=32)


def test_metric_learning_supcon_noise_and_dropout(tmp_path):
    # The views' Gaussian noise and feature dropout draw from the global torch generator.
    check_case(Case(_metric_learning, _noisy_digits), tmp_path)


def test_checkpoint_just_before_a_mid_epoch_validation(tmp_path):
    # Validation after every second batch: the checkpoint of step STOP is written right before
    # the validation of that step, which the uninterrupted run runs before its next training
    # batch and the resumed run skips (Lightning resumes after it). The views' noise draws from
    # the global generator, so evaluating must not move it (nor must its loader's base seed).
    check_case(
        Case(_metric_learning, _noisy_digits),
        tmp_path,
        via="model_checkpoint",
        val_check_interval=2,
        limit_val_batches=1,
    )


def test_validation_leaves_the_global_generators_alone(tmp_path):
    # What makes the test above hold for every recipe: neither the evaluation loaders nor any
    # recipe's validation draws from the global Python, NumPy or torch generators.
    import random

    import numpy as np

    from lightning_losses.recipes.recsys import RecsysModule

    recsys = _recsys_case()
    cases = {
        "classifier": CLASSIFIER,
        "metric_learning": Case(_metric_learning, _noisy_digits),
        "segmentation": _segmentation_case(),
        "mim": _mim_case(),
        "nlp": _causal_lm_case(),
        # Built for the data's sizes up front: the model's initialisation draws at setup.
        "recsys": Case(lambda: RecsysModule(n_users=30, n_items=90), recsys.data),
        "preference": _preference_case(),
    }
    for name, case in cases.items():
        model, data = case.model(), case.data(tmp_path / name)
        data.setup("fit")
        seed_everything(0, verbose=False)
        before = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
        # inference_mode=False: the linear probe of the MIM recipe trains with autograd.
        trainer = quiet_trainer(
            limit_val_batches=2, inference_mode=False, default_root_dir=tmp_path
        )
        trainer.validate(model, datamodule=data, verbose=False)
        assert torch.equal(before[0], torch.get_rng_state()), name
        assert (before[1] == np.random.get_state()[1]).all(), name
        assert before[2] == random.getstate(), name


def _segmentation_case() -> Case:
    from lightning_losses.data.segmentation import SegmentationDataModule
    from lightning_losses.recipes.segmentation import SegmentationModule

    return Case(
        lambda: SegmentationModule("dice_ce", encoder_depth=3, decoder_channels=[16, 8, 8]),
        lambda _: SegmentationDataModule(
            num_train=16, num_val=4, num_test=4, image_size=32, batch_size=4, seed=0
        ),
    )


@pytest.mark.slow
def test_segmentation(tmp_path):
    check_case(_segmentation_case(), tmp_path)


def _mim_case(callbacks: Callable[[], list[Callback]] = list) -> Case:
    from lightning_losses.data.digits import DigitsImageDataModule
    from lightning_losses.recipes.masked_image_modeling import MaskedImageModeling

    tiny = dict(img_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2)
    return Case(
        lambda: MaskedImageModeling(**tiny, decoder_dim=16, decoder_heads=2),
        lambda _: DigitsImageDataModule(image_size=16, batch_size=8),
        callbacks,
    )


@pytest.mark.slow
def test_masked_image_modeling_with_hard_patch_mining(tmp_path):
    from lightning_losses.callbacks import HardPatchMining

    case = _mim_case(lambda: [HardPatchMining(schedule="step", seed=1, ema_decay=(0.5, 0.9))])
    check_case(case, tmp_path, via="model_checkpoint", **LIMITED, **BY_EPOCHS)


def _text(tmp_path: Path) -> LightningDataModule:
    from lightning_losses.data.text import TextDataModule

    return TextDataModule(
        num_docs=60, block_size=16, vocab_size=300, batch_size=4, tokenizer_dir=str(tmp_path)
    )


def _causal_lm_case() -> Case:
    from lightning_losses.recipes.nlp import CausalLM

    return Case(
        lambda: CausalLM(
            vocab_size=300,
            hidden_size=16,
            num_layers=1,
            num_heads=2,
            max_position_embeddings=16,
            model_config={"attention_dropout": 0.2},
            warmup_steps=3,
        ),
        _text,
    )


def test_nlp_dense_causal_lm_with_dropout_and_schedule(tmp_path):
    # Attention dropout draws from the global generator; the warm-up/cosine schedule reads
    # `trainer.estimated_stepping_batches` in `configure_optimizers` (Lightning issue #20550).
    check_case(_causal_lm_case(), tmp_path, via="model_checkpoint", **LIMITED, **BY_EPOCHS)


@pytest.mark.slow
def test_nlp_moe_with_loss_free_balancing(tmp_path):
    from lightning_losses.callbacks import LossFreeBalancing
    from lightning_losses.recipes.nlp import CausalLM

    case = Case(
        lambda: CausalLM(
            model_type="llama_moe",
            vocab_size=300,
            hidden_size=16,
            num_layers=1,
            num_heads=2,
            max_position_embeddings=16,
            model_config=dict(num_experts=4, num_experts_per_tok=2, gating="sigmoid"),
            warmup_steps=3,
        ),
        _text,
        lambda: [LossFreeBalancing(rate=0.01)],
    )
    check_case(case, tmp_path, via="model_checkpoint", **LIMITED, **BY_EPOCHS)


def _recsys_case() -> Case:
    from lightning_losses.callbacks import PLDResampling
    from lightning_losses.data.interactions import InteractionDataModule
    from lightning_losses.recipes.recsys import RecsysModule

    return Case(
        lambda: RecsysModule(pld_inline=False),
        lambda _: InteractionDataModule(
            num_users=30, num_items=90, positives_per_user=10, batch_size=32, pool_size=3
        ),
        lambda: [PLDResampling(temperature=0.5, seed=0)],
    )


def test_recsys_with_pld(tmp_path):
    # Written after `fit` stopped at `max_steps` mid-epoch (Lightning calls `on_train_epoch_end`
    # there too: PLDResampling keeps that epoch's sums) and from a preempted run's own file.
    check_case(_recsys_case(), tmp_path / "stop", **LIMITED)
    check_case(_recsys_case(), tmp_path / "preempted", via="model_checkpoint", **LIMITED)


def _preference_case() -> Case:
    from lightning_losses.data.preference import PreferenceDataModule
    from lightning_losses.recipes.preference import PreferenceLM

    return Case(
        lambda: PreferenceLM(
            vocab_size=160,
            hidden_size=16,
            num_layers=1,
            num_heads=2,
            model_config={"attention_dropout": 0.2},
        ),
        lambda _: PreferenceDataModule(num_pairs=32, num_val_pairs=8, batch_size=8),
    )


def test_preference_checkpoint_leaves_out_the_reference_and_resumes_exactly(tmp_path):
    from lightning_losses.recipes.preference import PreferenceLM

    full, resumed = check_case(_preference_case(), tmp_path)
    # The resumed run's reference was rebuilt from the checkpoint, not taken from its own
    # constructor: it equals the full run's (the initial policy of the interrupted run).
    for name, value in full.model.reference.state_dict().items():
        torch.testing.assert_close(
            resumed.model.reference.state_dict()[name], value, rtol=0, atol=0, msg=name
        )
    ckpt = torch.load(tmp_path / "stop.ckpt", weights_only=True)
    # The epoch accumulators (plain tensors and strings) load with `weights_only=True`, and the
    # recipe's own checkpoint hooks kept them (they call `super()`).
    (saved,) = ckpt["epoch_metric_accumulators"]["ranks"]
    assert "training_step.train/loss" in saved
    weights = ckpt["state_dict"]
    assert weights and not any(k.startswith("reference.") for k in weights)

    # Size: the same checkpoint with the reference kept (what Lightning alone writes) is larger
    # by the reference's bytes, i.e. it holds the policy's weights twice.
    def nbytes(state):
        return sum(v.numel() * v.element_size() for v in state.values())

    policy = {k: v for k, v in weights.items() if k.startswith("model.")}
    with_reference = {**weights, **{f"reference.{k[6:]}": v.clone() for k, v in policy.items()}}
    assert nbytes(with_reference) >= 1.9 * nbytes(weights)
    kept = tmp_path / "kept.ckpt"
    torch.save({**ckpt, "state_dict": with_reference}, kept)
    assert (tmp_path / "stop.ckpt").stat().st_size < kept.stat().st_size - 0.9 * nbytes(policy)

    # `load_from_checkpoint` (strict) gives a usable model whose reference is the initial policy.
    seed_everything(123, verbose=False)  # another constructor state: the rebuild must not use it
    loaded = PreferenceLM.load_from_checkpoint(tmp_path / "stop.ckpt", strict=True)
    for name, value in full.model.reference.state_dict().items():
        torch.testing.assert_close(loaded.reference.state_dict()[name], value, rtol=0, atol=0)
    data = _preference_case().data(tmp_path)
    data.setup("fit")
    assert torch.isfinite(loaded.preference_loss(next(iter(data.train_dataloader()))).loss)


def test_preference_keeps_a_reference_that_changed_after_construction(tmp_path):
    from lightning_losses.recipes.preference import PreferenceLM

    torch.manual_seed(0)
    model = PreferenceLM(vocab_size=160, hidden_size=16, num_layers=1, num_heads=2)
    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    assert not any(k.startswith("reference.") for k in checkpoint["state_dict"])
    with torch.no_grad():
        next(model.reference.parameters()).add_(1.0)  # e.g. an SFT model loaded into it
    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    assert "preference_reference_init" not in checkpoint
    assert any(k.startswith("reference.") for k in checkpoint["state_dict"])


def test_epoch_accumulators_of_another_number_of_ranks_are_not_restored():
    from lightning_losses.mixins import EpochMetricsMixin

    class Net(EpochMetricsMixin, LightningModule):
        pass

    net = Net()
    net.on_load_checkpoint({"epoch_metric_accumulators": {"ranks": [{}, {}]}})
    with pytest.warns(UserWarning, match="2 rank"):
        assert net.on_train_batch_start(None, 3) is None
    # A checkpoint of an older version, without the entry, loads and restores nothing.
    net.on_load_checkpoint({})
    assert net.on_train_batch_start(None, 3) is None
