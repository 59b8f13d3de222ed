r"""Mixture-of-Experts layers with a selection-only expert bias, for loss-free load balancing.

From *Auxiliary-Loss-Free Load Balancing Strategy for Mixture-of-Experts* (Wang, Gao, Zhu,
Zhang, Dai; DeepSeek 2024, arXiv:2408.15664), as used in *DeepSeek-V3* (arXiv:2412.19437); the
routing follows `transformers`' `modeling_deepseek_v3.py` (`e_score_correction_bias`). The
auxiliary balance loss baseline is the one of *Switch Transformers* (Fedus, Zoph, Shazeer;
JMLR 2022, arXiv:2101.03961) in Mixtral's top-k form, the catalog loss
[load_balancing_loss][lightning_losses.functional.load_balancing_loss].

Routing of one token $t$ over $N$ experts (`TopKRouter`):

$$
s_{t,i} = \sigma(u_t^\top e_i)\ \text{(or softmax)},\qquad
\mathcal{S}_t = \operatorname{TopK}_i(s_{t,i} + b_i),\qquad
g_{t,i} = \begin{cases} s_{t,i} & i \in \mathcal{S}_t \\ 0 & \text{else} \end{cases}
$$

The bias $b$ (`expert_bias`, a persistent fp32 buffer, never a parameter) only changes *which*
experts are selected; the gates use the raw scores. Sigmoid gates are renormalised over the
selected experts (DeepSeek-V3's `norm_topk_prob`). Each forward adds the number of tokens routed
to each expert (pad tokens excluded, see `moe_token_mask`) into per-layer counts, which
[LossFreeBalancing][lightning_losses.callbacks.LossFreeBalancing] reads, all-reduces and zeroes
once per optimizer step through `moe_balance_state`.

The interface a balancing callback relies on is `moe_balance_state(module)`: one
`BalanceState(name, bias, counts)` per supported router, for our `TopKRouter` and for the
`transformers` routers adapted by `track_expert_load` (DeepSeek-V3's `DeepseekV3TopkRouter`).
The counts are plain tensors, deliberately not buffers: DDP's `broadcast_buffers` would
otherwise overwrite every rank's counts with rank 0's before each forward.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_losses.losses.language.load_balancing import (
    expert_selection_counts,
    load_balancing_loss,
)
from lightning_losses.validation import check_choice, check_int, check_number

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM

__all__ = [
    "BalanceState",
    "ExpertLoad",
    "MoEFeedForward",
    "RouterOutput",
    "TopKRouter",
    "build_moe_llama",
    "collect_balance_loss",
    "moe_balance_state",
    "moe_token_mask",
    "track_expert_load",
]

GATINGS = ("sigmoid", "softmax")
_TRACKER_ATTR = "_ll_expert_load"


class ExpertLoad:
    """Per-layer token counts per expert, accumulated over forwards until `take()`.

    Counting uses `index_add_` with the token mask as weights: no host sync and no boolean
    indexing, so it stays cheap on accelerators. The counts tensor follows the routing device
    lazily.
    Every router forward counts, so activation checkpointing (which re-runs the forward in
    backward) counts each token twice; the balance and MaxVio are unaffected (all counts scale).

    Args:
        num_experts: $N$.

    Example:
        >>> load = ExpertLoad(4)
        >>> load.add(torch.tensor([[0, 1], [1, 3]]), torch.tensor([True, False]))
        tensor([1., 1., 0., 0.])
        >>> load.counts
        tensor([1., 1., 0., 0.])
    """

    def __init__(self, num_experts: int) -> None:
        self.num_experts = check_int("num_experts", num_experts, low=1)
        self.counts = torch.zeros(num_experts, dtype=torch.float32)
        self.token_mask: Tensor | None = None  # set by moe_token_mask for one forward

    @torch.no_grad()
    def add(self, topk_idx: Tensor, token_mask: Tensor | None = None) -> Tensor:
        """Add the selections `[T, K]` of one forward (tokens with `token_mask` False skipped).

        Args:
            topk_idx: selected expert indices `[T, K]`.
            token_mask: `[T]` bool, True = a real token (default: `self.token_mask` or all).

        Returns:
            This forward's `[N]` counts (the router passes them on to the balance loss, so
            the selections are counted once per forward).
        """
        mask = self.token_mask if token_mask is None else token_mask
        if mask is not None and mask.numel() != topk_idx.shape[0]:
            raise ValueError(
                "token mask must have one entry per routed token: expected "
                f"{topk_idx.shape[0]}, got {mask.numel()}"
            )
        counts = expert_selection_counts(topk_idx, self.num_experts, mask)
        if self.counts.device != counts.device:
            self.counts = self.counts.to(counts.device)
        self.counts += counts
        return counts

    def zero(self) -> None:
        """Reset the counts to zero."""
        self.counts.zero_()


class BalanceState(NamedTuple):
    """One MoE layer as a balancing callback sees it.

    Attributes:
        name: the router's qualified module name.
        bias: the fp32 selection bias buffer `[N]` (updated in place by the callback).
        load: the layer's `ExpertLoad` (its `counts` `[N]` accumulate until zeroed).
    """

    name: str
    bias: Tensor
    load: ExpertLoad


@dataclass
class RouterOutput:
    """What `TopKRouter.forward` returns.

    Attributes:
        logits: `[T, N]` router logits (fp32).
        scores: `[T, N]` gating scores $s$ (sigmoid or softmax of the logits), with gradient.
        topk_idx: `[T, K]` selected experts (chosen on `scores + expert_bias`).
        gates: `[T, K]` gate weights of the selected experts (no bias), with gradient.
    """

    logits: Tensor
    scores: Tensor
    topk_idx: Tensor
    gates: Tensor


class TopKRouter(nn.Module):
    r"""Top-K router with a selection-only fp32 `expert_bias` (loss-free balancing).

    Selection $\operatorname{TopK}(s + b)$, gates $s$ of the selected experts (see the module
    docstring). The bias is a persistent buffer: saved in `state_dict`, never a parameter, never
    given a gradient, and kept in float32 through `.to(dtype)` / `.half()` / `.bfloat16()` (a
    bf16 buffer near 0.5 has a spacing of 0.004, so 0.001 steps would vanish).

    Args:
        hidden_size: token width $H$.
        num_experts: $N$.
        top_k: $K$ experts per token, $1 \le K \le N$.
        gating: `"sigmoid"` (DeepSeek-V3, the paper's main setting) or `"softmax"`.
        norm_topk_prob: renormalise the selected gates to sum to 1 (default: True for sigmoid,
            False for softmax).
        routed_scaling_factor: multiplies the gates (DeepSeek-V3's `routed_scaling_factor`).
        compute_balance_loss: also compute the Switch balance loss in each forward, kept in
            `last_balance_loss` (read with `collect_balance_loss`).

    Raises:
        ValueError / TypeError: bad sizes or an unknown `gating`.

    Example:
        >>> router = TopKRouter(8, num_experts=4, top_k=2)
        >>> out = router(torch.randn(5, 8))
        >>> tuple(out.topk_idx.shape), float(out.gates.detach().sum(-1)[0])
        ((5, 2), 1.0)
        >>> router.expert_bias, router.load.counts.sum()
        (tensor([0., 0., 0., 0.]), tensor(10.))
    """

    expert_bias: Tensor  # the registered buffer

    def __init__(
        self,
        hidden_size: int,
        num_experts: int,
        top_k: int = 2,
        gating: str = "sigmoid",
        norm_topk_prob: bool | None = None,
        routed_scaling_factor: float = 1.0,
        compute_balance_loss: bool = False,
    ) -> None:
        super().__init__()
        self.hidden_size = check_int("hidden_size", hidden_size, low=1)
        self.num_experts = check_int("num_experts", num_experts, low=1)
        self.top_k = check_int("top_k", top_k, low=1, high=num_experts)
        self.gating = check_choice("gating", gating, GATINGS)
        self.norm_topk_prob = gating == "sigmoid" if norm_topk_prob is None else norm_topk_prob
        self.routed_scaling_factor = check_number(
            "routed_scaling_factor", routed_scaling_factor, low=0, low_inclusive=False
        )
        self.compute_balance_loss = compute_balance_loss
        self.weight = nn.Parameter(torch.empty(num_experts, hidden_size))
        nn.init.normal_(self.weight, std=hidden_size**-0.5)
        self.register_buffer(
            "expert_bias", torch.zeros(num_experts, dtype=torch.float32), persistent=True
        )
        self.load = ExpertLoad(num_experts)
        self.last_balance_loss: Tensor | None = None

    def _apply(self, fn: Any, recurse: bool = True) -> TopKRouter:
        # Keep the bias in float32 under dtype casts (device moves still apply).
        bias = self.expert_bias
        super()._apply(fn, recurse)
        moved = self.expert_bias
        if moved.dtype != torch.float32:
            self._buffers["expert_bias"] = bias.to(device=moved.device, dtype=torch.float32)
        return self

    def scores(self, logits: Tensor) -> Tensor:
        """Gating scores from `[T, N]` fp32 logits: sigmoid or softmax."""
        return logits.sigmoid() if self.gating == "sigmoid" else logits.softmax(-1)

    def forward(self, x: Tensor, token_mask: Tensor | None = None) -> RouterOutput:
        """Route `[..., H]` tokens (flattened to `[T, H]`).

        Args:
            x: token states.
            token_mask: optional `[T]` (or `[B, S]`) bool, True = counted (default: the mask
                set by `moe_token_mask`, else every token).

        Returns:
            The `RouterOutput`.
        """
        x = x.reshape(-1, self.hidden_size)
        # Routing in fp32 (as DeepSeek-V3's router) whatever the autocast / parameter dtype.
        with torch.autocast(device_type=x.device.type, enabled=False):
            logits = F.linear(x.float(), self.weight.float())
        scores = self.scores(logits)
        choice = scores.detach() + self.expert_bias.float()
        topk_idx = torch.topk(choice, self.top_k, dim=-1).indices
        gates = scores.gather(1, topk_idx)
        if self.norm_topk_prob:
            gates = gates / (gates.sum(-1, keepdim=True) + 1e-20)
        gates = gates * self.routed_scaling_factor
        mask = token_mask if token_mask is not None else self.load.token_mask
        counts = self.load.add(topk_idx, mask)
        if self.compute_balance_loss and torch.is_grad_enabled():
            probs = scores if self.gating == "softmax" else scores / scores.sum(-1, keepdim=True)
            flat = None if mask is None else mask.reshape(-1)
            # The indices come from topk: no range check (and no host sync) per layer; the
            # selections were counted once above for the load tracking.
            self.last_balance_loss = load_balancing_loss(
                probs, topk_idx, flat, validate_args=False, selection_counts=counts
            )
        return RouterOutput(logits, scores, topk_idx, gates)


class MoEFeedForward(nn.Module):
    r"""A routed SwiGLU mixture-of-experts feed-forward block (drop-in for a Llama MLP).

    $y_t = \sum_{i \in \mathcal{S}_t} g_{t,i}\, \mathrm{down}_i(\mathrm{silu}(\mathrm{gate}_i x_t)
    \odot \mathrm{up}_i x_t)$ with the `TopKRouter` selection and gates. Expert weights are
    stored as `[N, ...]` tensors; tokens are dispatched by sorting them by expert.

    Args:
        hidden_size: token width $H$.
        intermediate_size: width of each expert.
        num_experts: $N$.
        top_k: $K$.
        gating: `"sigmoid"` or `"softmax"`.
        init_std: standard deviation of the expert weights' normal init.
        **router_kwargs: passed to `TopKRouter` (`norm_topk_prob`, `compute_balance_loss`, ...).

    Shape:
        - x: `[..., H]`; output: same shape.

    Example:
        >>> block = MoEFeedForward(8, 16, num_experts=4, top_k=2)
        >>> tuple(block(torch.randn(2, 3, 8)).shape)
        (2, 3, 8)
    """

    def __init__(
        self,
        hidden_size: int,
        intermediate_size: int,
        num_experts: int,
        top_k: int = 2,
        gating: str = "sigmoid",
        init_std: float = 0.02,
        **router_kwargs: Any,
    ) -> None:
        super().__init__()
        check_int("intermediate_size", intermediate_size, low=1)
        self.router = TopKRouter(hidden_size, num_experts, top_k, gating, **router_kwargs)
        self.gate_up_proj = nn.Parameter(
            torch.randn(num_experts, 2 * intermediate_size, hidden_size) * init_std
        )
        self.down_proj = nn.Parameter(
            torch.randn(num_experts, hidden_size, intermediate_size) * init_std
        )

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        route = self.router(flat)
        k = route.topk_idx.shape[1]
        expert = route.topk_idx.reshape(-1)
        order = torch.argsort(expert, stable=True)
        token = order // k
        # Tokens sorted by expert; per-expert slices from the counts (one host read per layer).
        sizes = torch.bincount(expert, minlength=self.router.num_experts).tolist()
        out = torch.zeros_like(flat)
        gate_w = route.gates.reshape(-1)[order].to(flat.dtype)
        start = 0
        for e, n in enumerate(sizes):
            if n == 0:
                continue
            idx = token[start : start + n]
            h = F.linear(flat[idx], self.gate_up_proj[e])
            g, u = h.chunk(2, dim=-1)
            y = F.linear(F.silu(g) * u, self.down_proj[e])
            out.index_add_(0, idx, y * gate_w[start : start + n, None])
            start += n
        return out.reshape(shape)


def _routers(module: nn.Module) -> Iterator[tuple[str, nn.Module, Tensor, ExpertLoad]]:
    for name, m in module.named_modules():
        if isinstance(m, TopKRouter):
            yield name, m, m.expert_bias, m.load
        elif (load := m.__dict__.get(_TRACKER_ATTR)) is not None:
            bias = m.e_score_correction_bias
            if not isinstance(bias, Tensor):  # an adapted router always has its bias buffer
                raise TypeError(f"{name}.e_score_correction_bias must be a tensor")
            yield name, m, bias, load


def moe_balance_state(module: nn.Module) -> list[BalanceState]:
    """Every supported router in `module`: `(name, bias, load)` per MoE layer.

    Supported: `TopKRouter` (its `expert_bias`) and `transformers` routers adapted with
    `track_expert_load` (their `e_score_correction_bias`). Read the tensors afresh after a device
    or dtype move (`.to()` replaces buffers).

    Args:
        module: any module (a LightningModule, a `transformers` model, a block).

    Returns:
        One `BalanceState` per router, in module order (empty when there is none).

    Example:
        >>> model = nn.Sequential(MoEFeedForward(8, 16, 4), MoEFeedForward(8, 16, 4))
        >>> [(s.name, tuple(s.bias.shape)) for s in moe_balance_state(model)]
        [('0.router', (4,)), ('1.router', (4,))]
    """
    return [BalanceState(name, bias, load) for name, _, bias, load in _routers(module)]


@contextmanager
def moe_token_mask(module: nn.Module, token_mask: Tensor | None) -> Iterator[None]:
    """Count only the tokens where `token_mask` is True during the forwards inside the block.

    Routers see flattened `[B·S, H]` tokens and no attention mask, so the caller (the recipe's
    `lm_loss`) sets the pad mask here for the duration of its forward.

    Args:
        module: the model holding the routers.
        token_mask: `[B, S]` bool (True = real token) or `None` (count every token).

    Example:
        >>> block = MoEFeedForward(8, 16, num_experts=4, top_k=2)
        >>> with moe_token_mask(block, torch.tensor([[True, False, False]])):
        ...     _ = block(torch.randn(1, 3, 8))
        >>> float(block.router.load.counts.sum())  # one real token, two experts
        2.0
    """
    loads = [load for _, _, _, load in _routers(module)]
    flat = None if token_mask is None else token_mask.reshape(-1).bool()
    for load in loads:
        load.token_mask = flat
    try:
        yield
    finally:
        for load in loads:
            load.token_mask = None


def collect_balance_loss(module: nn.Module) -> Tensor | None:
    """Mean over layers of the Switch balance losses of the last forward (then cleared).

    Args:
        module: the model holding `TopKRouter`s built with `compute_balance_loss=True`.

    Returns:
        The scalar mean, or `None` when no router computed one.
    """
    losses = []
    for m in module.modules():
        if isinstance(m, TopKRouter) and m.last_balance_loss is not None:
            losses.append(m.last_balance_loss)
            m.last_balance_loss = None
    return torch.stack(losses).mean() if losses else None


def track_expert_load(model: nn.Module) -> int:
    """Adapt `transformers` DeepSeek-V3-style routers for loss-free balancing; returns how many.

    Every submodule with an `e_score_correction_bias` buffer and a `top_k` (DeepSeek-V3's
    `DeepseekV3TopkRouter`, whose selection already adds that bias and whose gates do not) gets
    an `ExpertLoad` and a forward hook that counts its `topk_indices` (pad tokens excluded via
    `moe_token_mask`). `moe_balance_state` then reports it. Calling it twice is a no-op.

    Args:
        model: a `transformers` model (or any module).

    Returns:
        The number of adapted routers.

    Example:
        >>> from transformers import DeepseekV3Config, DeepseekV3ForCausalLM
        >>> cfg = DeepseekV3Config(vocab_size=32, hidden_size=16, intermediate_size=32,
        ...     moe_intermediate_size=8, num_hidden_layers=1, first_k_dense_replace=0,
        ...     num_attention_heads=2, num_key_value_heads=2, n_routed_experts=4,
        ...     num_experts_per_tok=2, n_group=1, topk_group=1, q_lora_rank=None,
        ...     kv_lora_rank=8, qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=4)
        >>> track_expert_load(DeepseekV3ForCausalLM(cfg))
        1
    """
    n = 0
    for m in model.modules():
        bias = getattr(m, "e_score_correction_bias", None)
        if not isinstance(bias, Tensor) or not hasattr(m, "top_k"):
            continue
        n += 1
        if m.__dict__.get(_TRACKER_ATTR) is not None:
            continue
        m.__dict__[_TRACKER_ATTR] = ExpertLoad(bias.numel())

        def hook(mod: nn.Module, args: Any, output: Any) -> None:
            mod.__dict__[_TRACKER_ATTR].add(output[2])  # (logits, weights, topk_indices)

        m.register_forward_hook(hook)
    return n


def build_moe_llama(
    *,
    vocab_size: int = 512,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    max_position_embeddings: int = 512,
    num_experts: int = 8,
    num_experts_per_tok: int = 2,
    moe_intermediate_size: int | None = None,
    gating: str = "sigmoid",
    compute_balance_loss: bool = False,
    **config_overrides: Any,
) -> LlamaForCausalLM:
    """A `transformers` Llama causal LM from config whose MLPs are `MoEFeedForward` blocks.

    Attention, norms and embeddings are Llama's; every decoder layer's `mlp` becomes a routed
    SwiGLU MoE with a `TopKRouter` (initialised with the config's `initializer_range`).

    Args:
        vocab_size: embedding size.
        hidden_size: model width.
        num_layers: decoder layers.
        num_heads: attention heads (also the key/value heads unless overridden).
        max_position_embeddings: longest sequence.
        num_experts: experts per layer $N$.
        num_experts_per_tok: $K$.
        moe_intermediate_size: width of each expert (default `2 * hidden_size`).
        gating: `"sigmoid"` or `"softmax"`.
        compute_balance_loss: have the routers compute the Switch balance loss.
        config_overrides: passed to `LlamaConfig`.

    Returns:
        The `LlamaForCausalLM` with MoE blocks.

    Example:
        >>> lm = build_moe_llama(vocab_size=32, hidden_size=16, num_layers=1, num_heads=2,
        ...     num_experts=4, num_experts_per_tok=2)
        >>> len(moe_balance_state(lm))
        1
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=config_overrides.pop("num_key_value_heads", num_heads),
        intermediate_size=config_overrides.pop("intermediate_size", None) or 4 * hidden_size,
        max_position_embeddings=max_position_embeddings,
        **config_overrides,
    )
    model = LlamaForCausalLM(config)
    std = config.initializer_range
    for layer in model.model.layers:
        layer.mlp = MoEFeedForward(
            hidden_size,
            moe_intermediate_size or 2 * hidden_size,
            num_experts,
            num_experts_per_tok,
            gating,
            init_std=std,
            compute_balance_loss=compute_balance_loss,
        )
        nn.init.normal_(layer.mlp.router.weight, std=std)
    return model
