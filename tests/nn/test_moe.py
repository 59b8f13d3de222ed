"""MoE router / block: selection-only bias, gates, counts (pad excluded), fp32 bias, aux loss.

The balance loss itself is a catalog loss, tested in tests/losses/test_load_balancing.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_losses.nn import (
    MoEFeedForward,
    TopKRouter,
    build_moe_llama,
    moe_balance_state,
    moe_token_mask,
    track_expert_load,
)


def _naive_route(x, weight, bias, k, gating, norm):
    """float64 reference from the formula: TopK(s + b) selects, gates are s (renormalised)."""
    logits = x.double() @ weight.detach().double().T
    s = logits.sigmoid() if gating == "sigmoid" else logits.softmax(-1)
    choice = s + bias.double()
    idx, gates = [], []
    for t in range(s.shape[0]):
        order = sorted(range(s.shape[1]), key=lambda i: -float(choice[t, i]))[:k]
        g = torch.stack([s[t, i] for i in order])
        idx.append(order)
        gates.append(g / g.sum() if norm else g)
    return torch.tensor(idx), torch.stack(gates)


@pytest.mark.parametrize("gating", ["sigmoid", "softmax"])
def test_router_matches_float64_reference_and_bias_only_selects(gating):
    torch.manual_seed(0)
    router = TopKRouter(16, num_experts=6, top_k=2, gating=gating)
    router.expert_bias.copy_(torch.tensor([0.3, -0.2, 0.0, 0.1, -0.4, 0.05]))
    x = torch.randn(40, 16)
    out = router(x)
    idx, gates = _naive_route(x, router.weight, router.expert_bias, 2, gating, gating == "sigmoid")
    # Compare as sets per token (top-k order is not part of the contract).
    got = torch.sort(out.topk_idx, dim=1)
    ref = torch.sort(idx, dim=1)
    torch.testing.assert_close(got.values, ref.values)
    torch.testing.assert_close(
        out.gates.gather(1, got.indices).double(),
        gates.gather(1, ref.indices),
        atol=1e-6,
        rtol=1e-5,
    )
    # The bias changed the selection for some tokens (else the test above proves nothing).
    idx0, _ = _naive_route(x, router.weight, torch.zeros(6), 2, gating, gating == "sigmoid")
    assert (torch.sort(idx0, 1).values != ref.values).any()


def test_gates_identical_with_and_without_bias_when_selection_is_the_same():
    torch.manual_seed(1)
    router = TopKRouter(16, num_experts=8, top_k=2)
    x = torch.randn(200, 16)
    plain = router(x)
    router.expert_bias.copy_(torch.randn(8) * 0.05)
    biased = router(x)
    a = torch.sort(plain.topk_idx, 1)
    b = torch.sort(biased.topk_idx, 1)
    same = (a.values == b.values).all(1)
    assert 0 < int(same.sum()) < len(x)  # both cases occur
    torch.testing.assert_close(
        plain.gates.gather(1, a.indices)[same], biased.gates.gather(1, b.indices)[same]
    )
    # A bias shared by every expert never changes the selection, so never the gates.
    router.expert_bias.fill_(0.7)
    torch.testing.assert_close(router(x).gates, plain.gates)


def test_bias_is_a_persistent_fp32_buffer_without_gradient():
    torch.manual_seed(0)
    block = MoEFeedForward(16, 32, num_experts=4, top_k=2)
    block.router.expert_bias.copy_(torch.tensor([0.1, -0.1, 0.0, 0.2]))
    block(torch.randn(3, 5, 16)).square().sum().backward()
    bias = block.router.expert_bias
    assert bias.grad is None and not bias.requires_grad
    assert all(p is not bias for p in block.parameters())
    assert "router.expert_bias" in block.state_dict()
    assert block.router.weight.grad.abs().sum() > 0 and block.gate_up_proj.grad.abs().sum() > 0


def test_bias_stays_fp32_under_low_precision_casts_so_small_steps_survive():
    router = TopKRouter(8, num_experts=4, top_k=1)
    router.expert_bias.fill_(0.5)
    router.to(torch.bfloat16)
    assert router.weight.dtype == torch.bfloat16
    assert router.expert_bias.dtype == torch.float32
    router.half()
    assert router.expert_bias.dtype == torch.float32
    router.expert_bias.add_(0.001)
    assert router.expert_bias[0].item() == pytest.approx(0.501, abs=1e-6)
    # Why: the same step in a bf16 buffer is lost (spacing ~0.004 near 0.5).
    assert (torch.tensor(0.5, dtype=torch.bfloat16) + 0.001).item() == 0.5
    out = router(torch.randn(3, 8, dtype=torch.bfloat16))
    assert out.scores.dtype == torch.float32  # routing in fp32


def test_counts_exclude_pad_tokens():
    torch.manual_seed(0)
    block = MoEFeedForward(8, 16, num_experts=5, top_k=2)
    x = torch.randn(2, 6, 8)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[0, 4:] = False
    mask[1, :1] = False
    with moe_token_mask(block, mask):
        block(x)
    idx = block.router(x.reshape(-1, 8), token_mask=torch.zeros(12, dtype=torch.bool)).topk_idx
    expected = torch.bincount(idx[mask.reshape(-1)].reshape(-1), minlength=5).float()
    torch.testing.assert_close(block.router.load.counts, expected)
    assert block.router.load.token_mask is None  # the mask applies inside the block only
    block(x)
    assert block.router.load.counts.sum() == expected.sum() + 12 * 2


def test_moe_feedforward_matches_naive_per_token_loop():
    torch.manual_seed(0)
    block = MoEFeedForward(8, 12, num_experts=4, top_k=2, init_std=0.3).double()
    x = torch.randn(7, 8, dtype=torch.float64)
    out = block(x)
    route = block.router(x)
    ref = torch.zeros_like(x)
    for t in range(7):
        for j in range(2):
            e = int(route.topk_idx[t, j])
            h = block.gate_up_proj[e] @ x[t]
            g, u = h.chunk(2)
            ref[t] += route.gates[t, j] * (block.down_proj[e] @ (F.silu(g) * u))
    torch.testing.assert_close(out, ref)


def test_bad_arguments_raise_naming_them():
    with pytest.raises(ValueError, match="top_k"):
        TopKRouter(8, num_experts=4, top_k=5)
    with pytest.raises(ValueError, match="gating"):
        TopKRouter(8, num_experts=4, gating="relu")
    router = TopKRouter(8, num_experts=4)
    with pytest.raises(ValueError, match="token mask"):
        router(torch.randn(3, 8), token_mask=torch.ones(4, dtype=torch.bool))


def test_moe_llama_exposes_one_state_per_layer():
    lm = build_moe_llama(vocab_size=32, hidden_size=16, num_layers=2, num_heads=2, num_experts=4)
    states = moe_balance_state(lm)
    assert [s.name for s in states] == [
        "model.layers.0.mlp.router",
        "model.layers.1.mlp.router",
    ]
    lm(input_ids=torch.randint(32, (2, 5)))
    assert [int(s.load.counts.sum()) for s in states] == [20, 20]  # 10 tokens × top-2


def _deepseek(**kw):
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    cfg = DeepseekV3Config(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=32,
        moe_intermediate_size=8,
        num_hidden_layers=1,
        first_k_dense_replace=0,
        num_attention_heads=2,
        num_key_value_heads=2,
        n_routed_experts=4,
        num_experts_per_tok=2,
        n_group=1,
        topk_group=1,
        q_lora_rank=None,
        kv_lora_rank=8,
        qk_rope_head_dim=4,
        qk_nope_head_dim=4,
        v_head_dim=4,
        **kw,
    )
    return DeepseekV3ForCausalLM(cfg)


def test_deepseek_v3_adapter_counts_its_router_and_uses_its_bias():
    torch.manual_seed(0)
    model = _deepseek()
    assert track_expert_load(model) == 1 and track_expert_load(model) == 1  # idempotent
    (state,) = moe_balance_state(model)
    assert state.bias is model.model.layers[0].mlp.gate.e_score_correction_bias
    seen = []
    gate = model.model.layers[0].mlp.gate
    gate.register_forward_hook(lambda m, a, o: seen.append(o[2].clone()))
    ids = torch.randint(32, (2, 5))
    mask = torch.ones(2, 5, dtype=torch.long)
    mask[1, 3:] = 0
    with moe_token_mask(model, mask.bool()):
        model(input_ids=ids, attention_mask=mask)
    keep = mask.reshape(-1).bool()
    expected = torch.bincount(seen[0][keep].reshape(-1), minlength=4).float()
    torch.testing.assert_close(state.load.counts, expected)
    # The bias steers the selection: a large bias on expert 3 puts it in every token's top-2.
    state.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 10.0]))
    model(input_ids=ids)
    assert (seen[-1] == 3).any(1).all()
