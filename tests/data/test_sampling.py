"""`ResumableLoader` and the random-state helpers, without a Trainer (the recipes' end-to-end
resume checks are in `tests/recipes/test_resume_mid_epoch.py`)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities.data import _update_dataloader
from torch.utils.data import TensorDataset

from lightning_losses.data.interactions import InteractionDataModule
from lightning_losses.data.rng import restore_rank_rng_states, rng_states, set_rng_states
from lightning_losses.data.sampling import (
    EpochShuffleSampler,
    ResumableLoader,
    epoch_shuffled_loader,
    eval_loader,
)

DATA = TensorDataset(torch.arange(20))


def _loader(**kw) -> ResumableLoader:
    return epoch_shuffled_loader(DATA, batch_size=3, seed=4, **kw)


def _values(batches) -> list[list[int]]:
    return [b.tolist() for (b,) in batches]


def _epoch(loader, epoch: int) -> list[list[int]]:
    loader.sampler.set_epoch(epoch)
    return _values(loader)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_resumes_at_the_next_batch_of_the_saved_epoch(num_workers):
    reference = _epoch(_loader(), 2)
    assert len(reference) == 7 and sorted(i for batch in reference for i in batch) == list(
        range(20)
    )
    loader = _loader(num_workers=num_workers)
    loader.sampler.set_epoch(2)
    it = iter(loader)
    seen = _values(next(it) for _ in range(3))
    state = loader.state_dict()
    assert (state["epoch"], state["batches"]) == (2, 3) and seen == reference[:3]

    resumed = _loader(num_workers=num_workers)
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(2)
    it = iter(resumed)
    assert _values([next(it)]) == reference[3:4]
    assert resumed.state_dict()["batches"] == 4  # the skipped batches count as handed out
    assert _values(it) == reference[4:]
    # The state applies once: the next pass of the same epoch is whole again.
    assert _epoch(resumed, 2) == reference


def test_a_finished_pass_resumes_at_the_start_of_the_next_epoch():
    loader = _loader()
    _epoch(loader, 0)
    state = loader.state_dict()
    assert (state["epoch"], state["batches"]) == (1, 0)
    resumed = _loader()
    resumed.load_state_dict(state)
    assert _epoch(resumed, 1) == _epoch(_loader(), 1)


def test_a_state_of_another_epoch_skips_nothing():
    # A pass cut short by `limit_train_batches` at an epoch end: the next epoch starts whole.
    loader = _loader()
    loader.sampler.set_epoch(0)
    it = iter(loader)
    next(it), next(it)
    resumed = _loader()
    resumed.load_state_dict(loader.state_dict())
    assert _epoch(resumed, 1) == _epoch(_loader(), 1)


def test_the_random_states_come_back_right_before_the_first_resumed_batch():
    loader = _loader()
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    resumed = _loader()
    resumed.load_state_dict(state)
    it = iter(resumed)
    torch.rand(5)  # drawn before the pass starts: overwritten by the restore
    next(it)
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2] == expected[2]


def test_iterating_never_draws_from_the_global_generator():
    # A plain DataLoader draws its base seed from the global generator at every pass, which
    # shifts the dropout masks of a resumed run relative to the full one.
    before = torch.get_rng_state()
    for epoch in range(2):
        _epoch(_loader(), epoch)
    assert torch.equal(torch.get_rng_state(), before)
    # The pass's base seed is a function of (seed, epoch): worker seeds too.
    a, b = _loader(), _loader()
    _epoch(a, 0)
    a.sampler.set_epoch(1), b.sampler.set_epoch(1)
    assert torch.equal(iter_seed(a), iter_seed(b))


@pytest.mark.parametrize("num_workers", [0, 1])
def test_eval_loaders_never_draw_from_the_global_generator(num_workers):
    # Validation inside an epoch runs between a checkpoint and the next training batch in the
    # uninterrupted run only: it must leave the training's random stream where it was.
    loader = eval_loader(DATA, batch_size=8, num_workers=num_workers)
    plain = torch.utils.data.DataLoader(DATA, batch_size=8, num_workers=num_workers)
    before = torch.get_rng_state()
    passes = [_values(loader) for _ in range(2)]
    assert torch.equal(torch.get_rng_state(), before)
    assert passes[0] == passes[1] == _values(plain)  # the dataset order, every pass
    assert not torch.equal(torch.get_rng_state(), before)  # what a plain DataLoader does


def test_every_data_module_evaluates_without_the_global_generator(tmp_path):
    from lightning_losses.data.digits import DigitsImageDataModule, NoisyDigitsDataModule
    from lightning_losses.data.preference import PreferenceDataModule
    from lightning_losses.data.segmentation import SegmentationDataModule
    from lightning_losses.data.text import TextDataModule

    modules = [
        NoisyDigitsDataModule(batch_size=270),
        DigitsImageDataModule(image_size=8, batch_size=64),
        SegmentationDataModule(num_train=8, num_val=4, num_test=4, image_size=32, batch_size=4),
        InteractionDataModule(num_users=20, num_items=60, positives_per_user=10, batch_size=16),
        TextDataModule(num_docs=30, block_size=16, vocab_size=300, tokenizer_dir=str(tmp_path)),
        PreferenceDataModule(num_pairs=16, num_val_pairs=8, batch_size=8),
    ]
    for dm in modules:
        dm.setup("fit")
        loaders = [dm.val_dataloader()]
        if type(dm).test_dataloader is not LightningDataModule.test_dataloader:
            dm.setup("test")
            loaders.append(dm.test_dataloader())
        before = torch.get_rng_state()
        for loader in loaders:
            next(iter(loader))
        assert torch.equal(torch.get_rng_state(), before), type(dm).__name__


def iter_seed(loader: ResumableLoader) -> torch.Tensor:
    next(iter(loader))
    return loader.generator.get_state()


@pytest.mark.parametrize("rank", [0, 1])
def test_lightning_ddp_re_creation_keeps_the_loader_and_its_resume(rank):
    # Under DDP, Lightning re-creates the loader around a DistributedSamplerWrapper (from the
    # recorded constructor arguments); the position is counted after the sharding.
    def sharded() -> ResumableLoader:
        loader = _loader()
        wrapper = DistributedSamplerWrapper(
            loader.sampler, num_replicas=2, rank=rank, shuffle=False
        )
        out = _update_dataloader(loader, wrapper)
        assert isinstance(out, ResumableLoader) and out.seed == 4
        out.sampler.set_epoch(1)
        return out

    reference = _values(sharded())
    loader = sharded()
    it = iter(loader)
    next(it), next(it)
    resumed = sharded()
    resumed.load_state_dict(loader.state_dict())
    assert _values(resumed) == reference[2:]


def test_iterable_interactions_resume_mid_epoch_with_their_negatives():
    dm = InteractionDataModule(num_users=20, num_items=60, positives_per_user=10, batch_size=16)
    dm.setup("fit")
    dataset = dm.train_dataloader().dataset
    epochs = [list(dm.train_dataloader()) for _ in range(2)]  # without a Trainer: counts on
    dataset.set_epoch(0)
    loader = dm.train_dataloader()
    it = iter(loader)
    next(it)
    dataset.set_epoch(0)
    resumed = dm.train_dataloader()
    resumed.load_state_dict(loader.state_dict())
    rest = list(resumed)
    assert len(rest) == len(epochs[0]) - 1
    for got, want in zip(rest, epochs[0][1:], strict=True):
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    assert not torch.equal(epochs[0][0]["neg_item"], epochs[1][0]["neg_item"])


def test_bad_arguments():
    with pytest.raises(TypeError, match="seed"):
        ResumableLoader(DATA, seed=1.5)
    with pytest.raises(ValueError, match="state_dict"):
        _loader().load_state_dict({"epoch": 0})
    with pytest.raises(TypeError, match="dataset must define __len__"):
        epoch_shuffled_loader(iter([1]), batch_size=1, seed=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="states"):
        set_rng_states([1])  # type: ignore[arg-type]
    with pytest.warns(UserWarning, match="2 rank"):
        restore_rank_rng_states([rng_states(), rng_states()])
    assert isinstance(EpochShuffleSampler(3), EpochShuffleSampler)
    with pytest.raises(ValueError, match="shuffle"):
        eval_loader(DATA, shuffle=True)
    with pytest.raises(ValueError, match="generator"):
        eval_loader(DATA, generator=torch.Generator())
    with pytest.raises(TypeError, match="seed"):
        eval_loader(DATA, seed="0")  # type: ignore[arg-type]
