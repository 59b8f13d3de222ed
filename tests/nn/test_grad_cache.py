"""GradCache (Gao et al., RepL4NLP 2021, arXiv:2101.06983): gradients equal full-batch backprop.

Reference: the same encoders run on the whole batch with a graph and one `backward` of the loss
(with dropout: the full-batch forward is run chunk by chunk with a graph from the same seed, so it
draws the same masks, then concatenated; without dropout, in one forward). Tolerance: float32,
`atol=1e-6, rtol=1e-5`.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch.utils.data import DataLoader, TensorDataset

from lightning_losses.functional import info_nce_loss
from lightning_losses.nn import grad_cache_loss
from tests._lightning import quiet_trainer


class Tower(torch.nn.Module):
    def __init__(self, dropout: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(6, 16),
            torch.nn.LayerNorm(16),
            torch.nn.GELU(),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(16, 8),
        )

    def forward(self, x):
        return self.net(x)


def _pair_loss(log_temp):
    def loss(q, k):
        return info_nce_loss(q, k, temperature=1.0) * log_temp.exp()

    return loss


def _data(n=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g), torch.randn(n, 6, generator=g)


def _grads(*modules):
    return [p.grad.clone() for m in modules for p in m.parameters()]


@pytest.mark.parametrize("chunk", [1, 5, 12])
def test_two_tower_gradients_equal_full_batch_with_dropout(chunk):
    q_enc, k_enc = Tower(0.3, seed=0), Tower(0.3, seed=1)
    log_temp = torch.nn.Parameter(torch.tensor(0.5))
    xq, xk = _data()

    torch.manual_seed(123)
    loss = grad_cache_loss([q_enc, k_enc], [xq, xk], _pair_loss(log_temp), chunk_size=chunk)
    state_after_forward = torch.get_rng_state()
    loss.backward()
    assert torch.equal(torch.get_rng_state(), state_after_forward)  # the replay consumed no RNG
    ours = [*_grads(q_enc, k_enc), log_temp.grad.clone()]

    for p in [*q_enc.parameters(), *k_enc.parameters(), log_temp]:
        p.grad = None
    torch.manual_seed(123)
    q = torch.cat([q_enc(c) for c in xq.split(chunk)])
    k = torch.cat([k_enc(c) for c in xk.split(chunk)])
    ref_loss = _pair_loss(log_temp)(q, k)
    ref_loss.backward()
    ref = [*_grads(q_enc, k_enc), log_temp.grad.clone()]
    torch.testing.assert_close(loss, ref_loss.detach())
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_shared_encoder_and_one_forward_reference_without_dropout():
    enc = Tower(0.0)
    xq, xk = _data()
    loss = grad_cache_loss([enc, enc], [xq, xk], lambda q, k: info_nce_loss(q, k), chunk_size=4)
    (2.0 * loss).backward()  # the incoming gradient scales the replay (Lightning's loss scaling)
    ours = _grads(enc)
    enc.zero_grad()
    (2.0 * info_nce_loss(enc(xq), enc(xk))).backward()
    for a, b in zip(ours, _grads(enc), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_mapping_inputs_are_split_and_passed_as_keywords():
    class KwEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tower = Tower()

        def forward(self, input_ids, scale):
            return self.tower(input_ids) * scale

    enc = KwEncoder()
    x, _ = _data()
    batch = {"input_ids": x, "scale": torch.linspace(0.5, 1.5, 12)[:, None]}
    grad_cache_loss(enc, batch, lambda r: r.square().mean(), chunk_size=5).backward()
    ours = _grads(enc)
    enc.zero_grad()
    enc(**batch).square().mean().backward()
    for a, b in zip(ours, _grads(enc), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


class Module(LightningModule):
    def __init__(self, chunk: int | None):
        super().__init__()
        self.q_enc, self.k_enc = Tower(seed=0), Tower(seed=1)
        self.chunk = chunk

    def training_step(self, batch, batch_idx):
        xq, xk = batch
        if self.chunk is None:
            return info_nce_loss(self.q_enc(xq), self.k_enc(xk))
        return grad_cache_loss(
            [self.q_enc, self.k_enc],
            [xq, xk],
            lambda q, k: info_nce_loss(q, k),
            chunk_size=self.chunk,
        )

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5, momentum=0.9)


@pytest.mark.parametrize("accumulate", [1, 2])
def test_lightning_automatic_optimization_equals_full_batch(accumulate):
    xq, xk = _data(n=24)
    results = []
    for chunk in (None, 3):
        model = Module(chunk)
        loader = DataLoader(TensorDataset(xq, xk), batch_size=8 // accumulate)
        trainer = quiet_trainer(
            max_steps=2, accumulate_grad_batches=accumulate, enable_checkpointing=False
        )
        trainer.fit(model, loader)
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert not torch.equal(results[0][0], Module(None).q_enc.net[0].weight)  # it trained


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"chunk_size": 0}, ValueError, "chunk_size"),
        ({"encoders": [torch.nn.Identity(), torch.nn.Identity()]}, ValueError, "encoders"),
        ({"encoders": 3}, TypeError, "encoders"),
        ({"inputs": torch.tensor(1.0)}, ValueError, "batched"),
        ({"inputs": {"a": torch.ones(3, 2), "b": torch.ones(4, 2)}}, ValueError, "batch size"),
        ({"inputs": [1, 2]}, ValueError, "encoders"),
        ({"loss_fn": lambda r: r.sum(1)}, TypeError, "scalar"),
        ({"loss_fn": 3}, TypeError, "loss_fn"),
        ({"params": [3]}, TypeError, "params"),
        ({"encoders": torch.nn.ReLU()}, ValueError, "no parameter"),
    ],
)
def test_invalid_arguments(kwargs, error, match):
    args = {
        "encoders": torch.nn.Linear(2, 2),
        "inputs": torch.ones(4, 2),
        "loss_fn": lambda r: r.sum(),
        "chunk_size": 2,
        **kwargs,
    }
    with pytest.raises(error, match=match):
        grad_cache_loss(args.pop("encoders"), args.pop("inputs"), args.pop("loss_fn"), **args)


def test_loss_is_not_computed_twice_and_value_matches():
    calls = []

    def loss_fn(r):
        calls.append(1)
        return F.softplus(r).mean()

    enc = Tower()
    x, _ = _data()
    loss = grad_cache_loss(enc, x, loss_fn, chunk_size=5)
    loss.backward()
    assert len(calls) == 1
    torch.testing.assert_close(loss, F.softplus(enc(x)).mean().detach())


def test_plain_function_encoder_needs_params_and_bound_methods_find_them():
    enc = Tower()
    x, _ = _data()

    def encode(batch):  # closes over enc: its parameters cannot be discovered
        return enc(batch)

    with pytest.raises(TypeError, match="params="):
        grad_cache_loss(encode, x, lambda r: r.square().mean(), chunk_size=5)
    grad_cache_loss(
        encode, x, lambda r: r.square().mean(), chunk_size=5, params=enc.parameters()
    ).backward()
    with_params = _grads(enc)
    enc.zero_grad()
    grad_cache_loss(enc.forward, x, lambda r: r.square().mean(), chunk_size=5).backward()
    bound = _grads(enc)
    enc.zero_grad()
    enc(x).square().mean().backward()
    for a, b, c in zip(with_params, bound, _grads(enc), strict=True):
        torch.testing.assert_close(a, c, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(b, c, atol=1e-6, rtol=1e-5)


def test_gradient_accumulates_once_and_unreached_parameters_keep_no_grad():
    enc = Tower()
    unused = torch.nn.Parameter(torch.ones(3))
    x, _ = _data()
    seen = {}
    for name, p in enc.named_parameters():
        p.register_post_accumulate_grad_hook(
            lambda p, name=name: seen.update({name: seen.get(name, 0) + 1})
        )
    params = [*enc.parameters(), unused]
    grad_cache_loss(enc, x, lambda r: r.square().mean(), chunk_size=2, params=params).backward()
    # six chunks, but each parameter's `.grad` is accumulated once (what DDP's reducer needs)
    assert seen == {name: 1 for name, _ in enc.named_parameters()}
    assert unused.grad is None
