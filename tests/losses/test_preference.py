"""The preference losses (`losses/preference/`: DPO, cDPO, rDPO, RPO, IPO) and `sequence_log_probs`.

References:

* naive float64 formulas written from the papers with `math` (per pair, no torch), and
  autograd through a plain float64 torch transcription for the gradients;
* TRL 1.16 (`trl/trainer/dpo_trainer.py`, `DPOTrainer._compute_loss`, test-only dependency):
  run end to end on a tiny Llama with its own fused LM head for `loss_type` `"sigmoid"`,
  `"robust"`, `"ipo"` and `["sigmoid", "sft"]` (RPO), value and parameter gradients;
* TRL 0.29.0.dev0 (`trl/trainer/dpo_trainer.py` at commit a68fb896f008), whose `"sigmoid"`
  loss still took `label_smoothing` (cDPO) — TRL 1.x dropped it — reproduced here:

      losses = (-F.logsigmoid(self.beta * logits) * (1 - self.label_smoothing)
                - F.logsigmoid(-self.beta * logits) * self.label_smoothing)

* stated relations: ε = 0 (cDPO, rDPO) and η = 0 (RPO) give DPO; rDPO is unbiased under random
  flips; cDPO's and IPO's finite minimisers.
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import lightning_losses.functional as LF
from lightning_losses import get_loss
from lightning_losses.losses import (
    ConservativeDPOLoss,
    DPOLoss,
    InputKind,
    IPOLoss,
    RobustDPOLoss,
    RPOLoss,
)


def _logps(n: int = 7, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    pc, pr, rc, rr = (-(torch.rand(n, generator=g, dtype=dtype) * 20 + 0.5) for _ in range(4))
    nc = torch.randint(1, 9, (n,), generator=g)
    nr = torch.randint(1, 9, (n,), generator=g)
    return pc, pr, rc, rr, nc, nr


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def _naive(kind: str, pc, pr, rc, rr, nc, nr, beta: float, eps: float = 0.0, eta: float = 0.0):
    """Per-pair losses from the papers' formulas, in Python floats."""
    out = []
    for i in range(len(pc)):
        h = (float(pc[i]) - float(rc[i])) - (float(pr[i]) - float(rr[i]))
        clean, flipped = -_log_sigmoid(beta * h), -_log_sigmoid(-beta * h)
        if kind == "dpo":
            out.append(clean)
        elif kind == "cdpo":
            out.append((1 - eps) * clean + eps * flipped)
        elif kind == "rdpo":
            out.append(((1 - eps) * clean - eps * flipped) / (1 - 2 * eps))
        elif kind == "rpo":
            out.append(clean + eta * (-float(pc[i]) / float(nc[i])))
        elif kind == "ipo":
            hbar = (float(pc[i]) - float(rc[i])) / float(nc[i]) - (
                float(pr[i]) - float(rr[i])
            ) / float(nr[i])
            out.append((hbar - 1 / (2 * beta)) ** 2)
    return torch.tensor(out, dtype=torch.float64)


def _torch_ref(kind: str, pc, pr, rc, rr, nc, nr, beta, eps=0.0, eta=0.0):
    """The same formulas in float64 torch (log σ written as log(sigmoid)) for autograd."""
    h = (pc - rc) - (pr - rr)
    clean = -torch.log(torch.sigmoid(beta * h))
    flipped = -torch.log(torch.sigmoid(-beta * h))
    if kind == "dpo":
        return clean
    if kind == "cdpo":
        return (1 - eps) * clean + eps * flipped
    if kind == "rdpo":
        return ((1 - eps) * clean - eps * flipped) / (1 - 2 * eps)
    if kind == "rpo":
        return clean + eta * (-pc / nc)
    hbar = (pc - rc) / nc - (pr - rr) / nr
    return (hbar - 1 / (2 * beta)) ** 2


CASES = [
    ("dpo", LF.dpo_loss, {"beta": 0.3}, {}),
    ("cdpo", LF.conservative_dpo_loss, {"beta": 0.3, "label_smoothing": 0.2}, {"eps": 0.2}),
    ("rdpo", LF.robust_dpo_loss, {"beta": 0.3, "epsilon": 0.2}, {"eps": 0.2}),
    ("rpo", LF.rpo_loss, {"beta": 0.3, "eta": 0.7}, {"eta": 0.7}),
    ("ipo", LF.ipo_loss, {"beta": 0.3}, {}),
]


@pytest.mark.parametrize("kind,fn,kwargs,ref_kw", CASES, ids=[c[0] for c in CASES])
def test_value_and_gradient_match_the_naive_float64_formula(kind, fn, kwargs, ref_kw):
    pc, pr, rc, rr, nc, nr = _logps()
    lengths = {"chosen_lengths": nc, "rejected_lengths": nr}
    got = fn(pc, pr, rc, rr, **lengths, **kwargs, reduction="none")
    expected = _naive(kind, pc, pr, rc, rr, nc, nr, kwargs["beta"], **ref_kw)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    for reduction, agg in (("mean", expected.mean()), ("sum", expected.sum())):
        torch.testing.assert_close(
            fn(pc, pr, rc, rr, **lengths, **kwargs, reduction=reduction), agg
        )
    # Gradients w.r.t. the policy log-probs; the reference log-probs get none (constants).
    leaves = [t.clone().requires_grad_(True) for t in (pc, pr, rc, rr)]
    refs = [t.clone().requires_grad_(True) for t in (pc, pr)]
    fn(*leaves, **lengths, **kwargs).backward()
    _torch_ref(
        kind, *refs, rc, rr, nc.double(), nr.double(), kwargs["beta"], **ref_kw
    ).mean().backward()
    for ours, theirs in zip(leaves[:2], refs, strict=True):
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-10, atol=1e-12)
    assert leaves[2].grad is None and leaves[3].grad is None


@pytest.mark.parametrize(
    "fn,kwargs",
    [
        (LF.conservative_dpo_loss, {"label_smoothing": 0.0}),
        (LF.robust_dpo_loss, {"epsilon": 0.0}),
        (LF.rpo_loss, {"eta": 0.0}),
    ],
    ids=["cdpo_eps0", "rdpo_eps0", "rpo_eta0"],
)
def test_zero_noise_and_zero_weight_variants_equal_dpo(fn, kwargs):
    pc, pr, rc, rr, nc, _ = _logps(seed=3)
    dpo = LF.dpo_loss(pc, pr, rc, rr, beta=0.2, reduction="none")
    got = fn(pc, pr, rc, rr, chosen_lengths=nc, beta=0.2, **kwargs, reduction="none")
    torch.testing.assert_close(got, dpo, rtol=0, atol=0)


def test_robust_dpo_is_unbiased_under_random_preference_flips():
    eps, beta = 0.3, 0.5
    pc, pr, rc, rr, _, _ = _logps(n=5, seed=4)
    clean = LF.dpo_loss(pc, pr, rc, rr, beta=beta, reduction="none")

    def rdpo_flat(pc, pr, rc, rr, flip: torch.Tensor) -> torch.Tensor:
        # A flipped pair presents the rejected response as the chosen one.
        a, b = torch.where(flip, pr, pc), torch.where(flip, pc, pr)
        ra, rb = torch.where(flip, rr, rc), torch.where(flip, rc, rr)
        return LF.robust_dpo_loss(a, b, ra, rb, beta=beta, epsilon=eps, reduction="none")

    def rdpo(flip: torch.Tensor) -> torch.Tensor:
        return rdpo_flat(pc, pr, rc, rr, flip)

    # Exact expectation over the two outcomes of each pair...
    exact = (1 - eps) * rdpo(torch.zeros(5, dtype=torch.bool)) + eps * rdpo(
        torch.ones(5, dtype=torch.bool)
    )
    torch.testing.assert_close(exact, clean, rtol=1e-12, atol=1e-12)
    # ... and a Monte-Carlo average over random flip patterns: 20000 noisy copies of the batch.
    g = torch.Generator().manual_seed(0)
    reps = 20000
    flip = torch.rand(reps * 5, generator=g) < eps
    draws = rdpo_flat(pc.repeat(reps), pr.repeat(reps), rc.repeat(reps), rr.repeat(reps), flip)
    draws = draws.view(reps, 5)
    stderr = draws.std(0) / math.sqrt(reps)
    assert ((draws.mean(0) - clean).abs() < 4 * stderr).all(), (draws.mean(0), clean, stderr)
    # Conservative DPO is biased at the same noise level (the reason rDPO exists).
    cdpo = LF.conservative_dpo_loss
    biased = (1 - eps) * cdpo(pc, pr, rc, rr, beta=beta, label_smoothing=eps, reduction="none")
    biased = biased + eps * cdpo(pr, pc, rr, rc, beta=beta, label_smoothing=eps, reduction="none")
    assert (biased - clean).abs().max() > 0.05


def test_finite_minimisers_of_cdpo_and_ipo():
    beta, eps = 0.5, 0.2
    # cDPO: zero gradient at βh* = log((1 − ε)/ε); DPO's gradient never vanishes.
    h_star = math.log((1 - eps) / eps) / beta
    pc = torch.tensor([h_star], dtype=torch.float64, requires_grad=True)
    zero = torch.zeros(1, dtype=torch.float64)
    LF.conservative_dpo_loss(pc, zero, zero, zero, beta=beta, label_smoothing=eps).backward()
    torch.testing.assert_close(pc.grad, zero, atol=1e-12, rtol=0)
    # IPO: loss and gradient 0 at h̄ = 1/(2β), (h̄ − 1/(2β))² elsewhere.
    n = torch.tensor([4]), torch.tensor([2])
    pc = torch.tensor([4 * (1 / (2 * beta) + 1.0)], dtype=torch.float64, requires_grad=True)
    pr = torch.tensor([2 * 1.0], dtype=torch.float64)
    loss = LF.ipo_loss(pc, pr, zero, zero, chosen_lengths=n[0], rejected_lengths=n[1], beta=beta)
    torch.testing.assert_close(loss, torch.tensor(0.0, dtype=torch.float64))
    loss.backward()
    torch.testing.assert_close(pc.grad, zero, atol=1e-12, rtol=0)
    # Unaveraged IPO is Eq. 17 on the sums: the same as averaging with all lengths 1.
    pc, pr, rc, rr, _, _ = _logps(seed=5)
    ones = torch.ones(len(pc), dtype=torch.long)
    torch.testing.assert_close(
        LF.ipo_loss(pc, pr, rc, rr, average_log_probs=False, beta=0.3, reduction="none"),
        LF.ipo_loss(
            pc, pr, rc, rr, chosen_lengths=ones, rejected_lengths=ones, beta=0.3, reduction="none"
        ),
    )


def test_cdpo_matches_trl_0_29_sigmoid_with_label_smoothing():
    pc, pr, rc, rr, _, _ = _logps(seed=6)
    beta, ls = 0.1, 0.15
    logits = (pc - pr) - (rc - rr)
    trl = -F.logsigmoid(beta * logits) * (1 - ls) - F.logsigmoid(-beta * logits) * ls
    got = LF.conservative_dpo_loss(pc, pr, rc, rr, beta=beta, label_smoothing=ls, reduction="none")
    torch.testing.assert_close(got, trl)


def test_cdpo_default_is_trl_0_29_sigmoid_at_label_smoothing_0_1():
    # TRL's label_smoothing defaults to 0; 0.1 there reproduces our default (the docstring's).
    pc, pr, rc, rr, _, _ = _logps(seed=7)
    logits = (pc - pr) - (rc - rr)
    trl = -F.logsigmoid(0.1 * logits) * 0.9 - F.logsigmoid(-0.1 * logits) * 0.1
    torch.testing.assert_close(ConservativeDPOLoss(reduction="none")(pc, pr, rc, rr), trl)
    dpo = DPOLoss(reduction="none")(pc, pr, rc, rr)  # TRL's default: plain DPO
    assert not torch.allclose(ConservativeDPOLoss(reduction="none")(pc, pr, rc, rr), dpo)


def test_reference_free_and_rewards():
    pc, pr, rc, rr, _, _ = _logps(seed=7)
    zero = torch.zeros_like(pc)
    free = LF.dpo_loss(pc, pr, None, None, beta=0.2, reference_free=True, reduction="none")
    torch.testing.assert_close(free, LF.dpo_loss(pc, pr, zero, zero, beta=0.2, reduction="none"))
    # Given references are ignored when reference_free (TRL's semantics).
    torch.testing.assert_close(
        free, LF.dpo_loss(pc, pr, rc, rr, beta=0.2, reference_free=True, reduction="none")
    )
    chosen, rejected = LF.implicit_rewards(pc.requires_grad_(True), pr, rc, rr, beta=0.2)
    torch.testing.assert_close(chosen, 0.2 * (pc - rc).detach())
    torch.testing.assert_close(rejected, 0.2 * (pr - rr))
    assert not chosen.requires_grad
    with pytest.raises(ValueError, match="reference_chosen_logps is required"):
        LF.dpo_loss(pc, pr, None, rr)


def test_bad_inputs_raise_clear_errors():
    pc, pr, rc, rr, nc, nr = _logps(n=4)
    with pytest.raises(ValueError, match="chosen_lengths is required"):
        LF.ipo_loss(pc, pr, rc, rr)
    with pytest.raises(ValueError, match="chosen_lengths is required"):
        LF.rpo_loss(pc, pr, rc, rr)
    LF.rpo_loss(pc, pr, rc, rr, nll_normalize="sum")  # no lengths needed for the summed NLL
    with pytest.raises(ValueError, match="rejected_lengths must hold positive"):
        LF.ipo_loss(pc, pr, rc, rr, chosen_lengths=nc, rejected_lengths=nr * 0)
    with pytest.raises(ValueError, match="chosen_lengths must have the shape"):
        LF.ipo_loss(pc, pr, rc, rr, chosen_lengths=nc[:3], rejected_lengths=nr)
    with pytest.raises(ValueError, match="policy_chosen_logps must be a 1-D"):
        LF.dpo_loss(pc[:, None], pr, rc, rr)
    with pytest.raises(ValueError, match="policy_rejected_logps must have the shape"):
        LF.dpo_loss(pc, pr[:2], rc, rr)
    with pytest.raises(ValueError, match=r"epsilon must be < 0\.5"):
        RobustDPOLoss(epsilon=0.5)
    with pytest.raises(ValueError, match=r"epsilon must be < 0\.5"):
        LF.robust_dpo_loss(pc, pr, rc, rr, epsilon=0.6)
    with pytest.raises(ValueError, match="label_smoothing"):
        ConservativeDPOLoss(label_smoothing=0.7)
    with pytest.raises(ValueError, match="beta"):
        LF.ipo_loss(pc, pr, rc, rr, average_log_probs=False, beta=0.0)


def test_registry_names_kinds_and_half_precision():
    for name, cls in (
        ("dpo", DPOLoss),
        ("cdpo", ConservativeDPOLoss),
        ("rdpo", RobustDPOLoss),
        ("rpo", RPOLoss),
        ("ipo", IPOLoss),
    ):
        loss = get_loss(name)
        assert type(loss) is cls and cls.input_kind == InputKind.PREFERENCE
    pc, pr, rc, rr, nc, nr = _logps(dtype=torch.float32)
    half = IPOLoss()(
        pc.half(), pr.bfloat16(), rc.half(), rr, chosen_lengths=nc, rejected_lengths=nr
    )
    assert half.dtype == torch.float32 and torch.isfinite(half)


# ------------------------------------------------------------------------ sequence_log_probs
def _naive_seq_logps(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    lp = logits.double().log_softmax(-1)
    keep = labels != -100
    tok = lp.gather(-1, labels.clamp_min(0)[..., None]).squeeze(-1)
    return (tok * keep).sum(1), keep.sum(1).double()


def _lm_batch(b=3, t=11, v=17, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(b, t, v, generator=g) * 3).to(dtype)
    labels = torch.randint(0, v, (b, t), generator=g)
    labels[0, :4] = -100  # prompt
    labels[1, 7:] = -100  # padding
    labels[2, ::3] = -100
    return logits, labels


@pytest.mark.parametrize("chunk_size", [1, 4, 11, 64])
def test_sequence_log_probs_match_log_softmax_with_ignored_positions(chunk_size):
    logits, labels = _lm_batch()
    x = logits.clone().requires_grad_(True)
    logp, n = LF.sequence_log_probs(x, labels, chunk_size=chunk_size)
    ref_x = logits.double().requires_grad_(True)
    ref, ref_n = _naive_seq_logps(ref_x, labels)
    torch.testing.assert_close(logp.double(), ref, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(n.double(), ref_n)
    w = torch.tensor([0.5, -1.0, 2.0])
    (logp * w).sum().backward()
    (ref * w.double()).sum().backward()
    torch.testing.assert_close(x.grad.double(), ref_x.grad, rtol=1e-5, atol=1e-6)
    assert (x.grad[labels == -100] == 0).all()


def test_sequence_log_probs_gradcheck_bf16_and_errors():
    logits, labels = _lm_batch(b=3, t=5, v=4, dtype=torch.float64)
    x = logits.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda z: LF.sequence_log_probs(z, labels, chunk_size=2)[0], (x,), eps=1e-6, atol=1e-6
    )
    bf, lab = _lm_batch(dtype=torch.bfloat16)
    logp, _ = LF.sequence_log_probs(bf, lab)
    assert logp.dtype == torch.float32
    torch.testing.assert_close(
        logp.double(), _naive_seq_logps(bf.float(), lab)[0], rtol=1e-5, atol=1e-4
    )
    # Ignored positions get exactly zero gradient even with non-finite logits there.
    x, lab = _lm_batch()
    x[1, 8:] = float("nan")
    x[0, 0] = float("inf")
    x.requires_grad_(True)
    logp, _ = LF.sequence_log_probs(x, lab, chunk_size=3)
    assert torch.isfinite(logp).all()
    logp.sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad[lab == -100] == 0).all()
    with pytest.raises(ValueError, match="labels contains token id 17"):
        LF.sequence_log_probs(*_lm_batch()[:1], torch.full((3, 11), 17))
    with pytest.raises(ValueError, match="labels must have shape"):
        LF.sequence_log_probs(_lm_batch()[0], torch.zeros(3, 10, dtype=torch.long))
    with pytest.raises(TypeError, match="labels"):
        LF.sequence_log_probs(_lm_batch()[0], torch.zeros(3, 11))
    with pytest.raises(ValueError, match="chunk_size"):
        LF.sequence_log_probs(*_lm_batch(), chunk_size=0)


def test_sequence_log_probs_never_saves_a_second_logits_sized_tensor():
    logits, labels = _lm_batch(b=4, t=64, v=512)
    x = logits.clone().requires_grad_(True)
    saved: list[torch.Tensor] = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        LF.sequence_log_probs(x, labels, chunk_size=8)
    big = [t for t in saved if t.numel() >= x.numel()]
    # Only the logits themselves (same storage, no copy); the rest is [B, T].
    assert len(big) == 1 and big[0].data_ptr() == x.data_ptr()
    assert (
        sum(t.numel() for t in saved if t.data_ptr() != x.data_ptr()) <= 4 * x.shape[0] * x.shape[1]
    )
    # A naive log_softmax + gather saves a [B, T, V] float32 output on top of the logits.
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        x.log_softmax(-1).gather(-1, labels.clamp_min(0)[..., None])
    assert any(t.numel() >= x.numel() and t.data_ptr() != x.data_ptr() for t in saved)


# ------------------------------------------------------------------------------- TRL parity
def _trl_compute_loss(
    policy, reference, inputs, *, loss_types, loss_weights, beta, label_smoothing
):
    """TRL's `DPOTrainer._compute_loss` on a stand-in trainer holding only what it reads."""
    from trl import DPOTrainer
    from trl.trainer.utils import add_fused_lm_head

    # As DPOTrainer.__init__ patches them (TRL's own fused, chunked per-token log-probs).
    add_fused_lm_head(policy, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    add_fused_lm_head(reference)
    accel = SimpleNamespace(
        device=torch.device("cpu"), gather=lambda t: t, gather_for_metrics=lambda t: t,
        unwrap_model=lambda m: m,
    )  # fmt: skip
    trainer = SimpleNamespace(
        model=policy, ref_model=reference, accelerator=accel, aux_loss_enabled=False,
        ld_alpha=None, precompute_ref_logps=False, f_divergence_type="reverse_kl",
        f_alpha_divergence_coef=1.0, loss_types=loss_types, loss_weights=loss_weights, beta=beta,
        label_smoothing=label_smoothing, use_weighting=False, router_aux_loss_coef=0.0,
        args=SimpleNamespace(gradient_checkpointing_kwargs=None, discopop_tau=0.05),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0, _tp_size=1,
    )  # fmt: skip
    return DPOTrainer._compute_loss(trainer, policy, inputs, return_outputs=False)


@pytest.mark.parametrize(
    "name,loss_types,loss_weights,ours_kwargs,label_smoothing",
    [
        ("dpo", ["sigmoid"], [1.0], {"beta": 0.1}, 0.0),
        ("robust_dpo", ["robust"], [1.0], {"beta": 0.1, "epsilon": 0.2}, 0.2),
        ("ipo", ["ipo"], [1.0], {"beta": 0.1}, 0.0),
        ("rpo", ["sigmoid", "sft"], [1.0, 0.5], {"beta": 0.1, "eta": 0.5}, 0.0),
        # Our defaults against the TRL settings their docstrings name.
        ("dpo", ["sigmoid"], [1.0], {}, 0.0),
        ("robust_dpo", ["robust"], [1.0], {}, 0.1),
        ("ipo", ["ipo"], [1.0], {}, 0.0),
        ("rpo", ["sigmoid", "sft"], [1.0, 1.0], {}, 0.0),
    ],
    ids=[
        "sigmoid",
        "robust",
        "ipo",
        "sigmoid+sft",
        "sigmoid-defaults",
        "robust-defaults",
        "ipo-defaults",
        "sigmoid+sft-defaults",
    ],
)
def test_end_to_end_parity_with_trl_dpo_trainer(
    name, loss_types, loss_weights, ours_kwargs, label_smoothing
):
    from lightning_losses.nn import build_causal_lm

    torch.manual_seed(0)
    policy = build_causal_lm(vocab_size=32, hidden_size=16, num_layers=1, num_heads=2)
    reference = build_causal_lm(vocab_size=32, hidden_size=16, num_layers=1, num_heads=2)
    b, t = 3, 9
    g = torch.Generator().manual_seed(1)
    input_ids = torch.randint(0, 32, (2 * b, t), generator=g)  # [chosen; rejected]
    completion = torch.zeros(2 * b, t, dtype=torch.long)
    # Prompts of different lengths; equal chosen lengths (TRL's SFT term is a batch token mean).
    starts, ends = [3, 2, 4, 3, 5, 2], [8, 7, 9, 9, 8, 6]
    for i, (s, e) in enumerate(zip(starts, ends, strict=True)):
        completion[i, s:e] = 1
    attention = torch.ones_like(input_ids)
    for i, e in enumerate(ends):
        attention[i, e:] = 0  # right padding
    inputs = {"input_ids": input_ids, "attention_mask": attention, "completion_mask": completion}

    # Ours: the recipe's path, on unpatched copies of the same weights.
    ours_policy, ours_ref = copy.deepcopy(policy), copy.deepcopy(reference)
    labels = input_ids.masked_fill(completion == 0, -100)[:, 1:]
    logits = ours_policy(input_ids=input_ids, attention_mask=attention).logits[:, :-1]
    logps, lengths = LF.sequence_log_probs(logits, labels, chunk_size=4)
    with torch.no_grad():
        ref_logits = ours_ref(input_ids=input_ids, attention_mask=attention).logits[:, :-1]
        ref_logps, _ = LF.sequence_log_probs(ref_logits, labels)
    pc, pr = logps.chunk(2)
    rc, rr = ref_logps.chunk(2)
    nc, nr = lengths.chunk(2)
    ours = get_loss(name, **ours_kwargs)(pc, pr, rc, rr, chosen_lengths=nc, rejected_lengths=nr)
    ours.backward()

    theirs = _trl_compute_loss(
        policy, reference, inputs, loss_types=loss_types, loss_weights=loss_weights,
        beta=0.1, label_smoothing=label_smoothing,
    )  # fmt: skip
    theirs.backward()
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    for (n, p), q in zip(policy.named_parameters(), ours_policy.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=n)
