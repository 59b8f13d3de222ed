"""CausalLM with criteria that consume hidden states (the chunked linear cross-entropy, a user
loss implementing the protocol): the same numbers as the logits path, less memory."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from lightning_losses.losses import HiddenStatesCriterion
from lightning_losses.recipes.nlp import CausalLM
from tests._lightning import quiet_trainer

CHUNKED = {"name": "chunked_linear_cross_entropy", "chunk_size": 5}
SIZE = dict(vocab_size=64, hidden_size=32, num_layers=1, num_heads=2, max_position_embeddings=16)


def _pair(model_type: str, **kw) -> tuple[CausalLM, CausalLM]:
    torch.manual_seed(0)
    logits_path = CausalLM(model_type=model_type, **SIZE, **kw)
    chunked = CausalLM(CHUNKED, model_type=model_type, **SIZE, **kw)
    chunked.load_state_dict(logits_path.state_dict())
    return logits_path, chunked


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(64, (3, 11), generator=g)
    labels = ids.roll(-1, dims=1)
    labels[0, :4] = -100  # a prompt
    labels[2, 8:] = -100  # padding
    return ids, labels


@pytest.mark.parametrize("model_type", ["llama", "llama_moe"])
def test_chunked_criterion_equals_the_logits_path(model_type):
    kw = {"balance_loss_coeff": 0.01} if model_type == "llama_moe" else {}
    ref, chunked = _pair(model_type, **kw)
    assert chunked.uses_hidden_states and not ref.uses_hidden_states
    ids, labels = _batch()
    a, b = ref.lm_loss(ids, labels), chunked.lm_loss(ids, labels)
    torch.testing.assert_close(b.per_sample, a.per_sample, atol=1e-6, rtol=1e-5)
    assert a.aux.keys() == b.aux.keys()
    for name in a.aux:
        torch.testing.assert_close(b.aux[name], a.aux[name])
    a.loss.backward()
    b.loss.backward()
    for (name, pa), pb in zip(ref.named_parameters(), chunked.parameters(), strict=True):
        if pa.grad is None:
            assert pb.grad is None, name
            continue
        torch.testing.assert_close(pb.grad, pa.grad, atol=1e-6, rtol=1e-5, msg=name)


def test_chunked_path_saves_no_full_logits_tensor():
    torch.manual_seed(0)
    size = {**SIZE, "max_position_embeddings": 64}
    chunked = CausalLM(CHUNKED, **size)
    ids = torch.randint(64, (4, 48), generator=torch.Generator().manual_seed(1))
    sizes: list[tuple[int, ...]] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        sizes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = chunked.lm_loss(ids, ids.roll(-1, 1))
    out.loss.backward()
    # Vocabulary-sized tensors: the head weight's view, the [B, 1, V] logits of
    # `logits_to_keep=1`, chunks. None has a row per token (what [B, T, V] logits would have).
    rows = [math.prod(s[:-1]) for s in sizes if s and s[-1] == size["vocab_size"]]
    assert rows and max(rows) < ids.numel(), rows


def test_validation_perplexity_matches_the_logits_path(tmp_path):
    from lightning_losses.data.text import TextDataModule

    dm = TextDataModule(
        num_docs=200, block_size=16, vocab_size=300, batch_size=3, tokenizer_dir=str(tmp_path)
    )
    torch.manual_seed(0)
    ref = CausalLM(vocab_size=300, hidden_size=32, num_layers=1, num_heads=2)
    chunked = CausalLM(CHUNKED, vocab_size=300, hidden_size=32, num_layers=1, num_heads=2)
    chunked.load_state_dict(ref.state_dict())
    ppl = [
        quiet_trainer(default_root_dir=tmp_path).validate(m, datamodule=dm)[0]["val/ppl"]
        for m in (ref, chunked)
    ]
    assert math.isclose(ppl[1], ppl[0], rel_tol=1e-5), ppl


def test_recipe_z_loss_with_the_chunked_criterion_is_refused():
    with pytest.raises(ValueError, match="criterion's own z_loss_coeff"):
        CausalLM(CHUNKED, z_loss_coeff=1e-4, **SIZE)


class NaiveLinearCE(nn.Module):
    """A user-defined criterion implementing the hidden-states protocol, outside the catalog:
    it projects the hidden states itself, then takes the cross-entropy, and reports one
    logging term."""

    consumes_hidden_states = True

    def __init__(self) -> None:
        super().__init__()
        self.reduction = "mean"
        self.calls = 0

    def forward(self, hidden, weight, target, bias=None):
        self.calls += 1
        logits = F.linear(hidden, weight, bias)
        return F.cross_entropy(logits.transpose(1, 2), target, reduction=self.reduction)

    def loss_terms(self):
        return {"naive_calls": torch.tensor(float(self.calls))}


def test_a_user_criterion_implementing_the_protocol_equals_the_logits_path():
    torch.manual_seed(0)
    ref = CausalLM(**SIZE)
    user = CausalLM(NaiveLinearCE(), **SIZE)
    user.load_state_dict(ref.state_dict())
    assert isinstance(user.criterion, HiddenStatesCriterion) and user.uses_hidden_states
    assert user.criterion.reduction == "none"  # LossMixin's copy, per token
    ids, labels = _batch()
    a, b = ref.lm_loss(ids, labels), user.lm_loss(ids, labels)
    assert "hidden_states" in b.extras and "logits" not in b.extras
    torch.testing.assert_close(b.per_sample, a.per_sample, atol=1e-6, rtol=1e-5)
    a.loss.backward()
    b.loss.backward()
    for (name, pa), pb in zip(ref.named_parameters(), user.parameters(), strict=True):
        torch.testing.assert_close(pb.grad, pa.grad, atol=1e-6, rtol=1e-5, msg=name)


def test_a_user_criterion_implementing_the_protocol_trains_and_logs_its_terms(tmp_path):
    torch.manual_seed(0)
    model = CausalLM(NaiveLinearCE(), **SIZE, lr=1e-2, warmup_steps=1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.randint(64, (8, 12), generator=torch.Generator().manual_seed(0))
    data = [{"input_ids": r[:-1], "labels": r[1:]} for r in ids]
    trainer = quiet_trainer(
        max_steps=3, enable_checkpointing=False, limit_val_batches=1, default_root_dir=tmp_path
    )
    trainer.fit(model, DataLoader(data, batch_size=4), DataLoader(data, batch_size=4))
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"]) and "train/naive_calls_step" in metrics
    assert torch.isfinite(metrics["val/ppl"]) and metrics["val/ppl"] > 1
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert "model.lm_head.weight" in changed, changed


def test_the_protocol_flag_decides_not_the_class():
    class Logits(NaiveLinearCE):
        consumes_hidden_states = False

    assert CausalLM(NaiveLinearCE(), **SIZE).uses_hidden_states
    assert not CausalLM(Logits(), **SIZE).uses_hidden_states
    assert not CausalLM("cross_entropy_z_loss", **SIZE).uses_hidden_states
