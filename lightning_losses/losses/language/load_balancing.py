r"""The auxiliary load-balancing loss of a mixture-of-experts layer (Switch / Mixtral form).

From *Switch Transformers: Scaling to Trillion Parameter Models with Simple and Efficient
Sparsity* (Fedus, Zoph, Shazeer; JMLR 2022, arXiv:2101.03961), eqs. 4–6, with the top-K
dispatch of Mixtral (*Mixtral of Experts*, Jiang et al., arXiv:2401.04088): the value equals
`transformers`' `load_balancing_loss_func` on one layer. The routers of
[MoEFeedForward][lightning_losses.nn.MoEFeedForward] compute it when built with
`compute_balance_loss=True`; [LossFreeBalancing][lightning_losses.callbacks.LossFreeBalancing]
is the auxiliary-loss-free alternative.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_losses.losses._numerics import upcast
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss, _forward_signature
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_class_indices, check_reduction, check_tensor

__all__ = ["LoadBalancingLoss", "load_balancing_loss"]


def _check_router_shapes(scores: Tensor, topk_idx: Tensor, token_mask: Tensor | None) -> None:
    if scores.ndim != 2:
        raise ValueError(f"router_probs must be [T, N], got shape {tuple(scores.shape)}")
    if topk_idx.ndim != 2 or topk_idx.shape[0] != scores.shape[0]:
        raise ValueError(
            f"topk_idx must be [T, K] with T = {scores.shape[0]}, got shape {tuple(topk_idx.shape)}"
        )
    if token_mask is not None and token_mask.numel() != scores.shape[0]:
        raise ValueError(
            f"token_mask must have T = {scores.shape[0]} entries, got {token_mask.numel()}"
        )


def expert_selection_counts(
    topk_idx: Tensor, num_experts: int, token_mask: Tensor | None = None
) -> Tensor:
    """How often each expert was selected: the float32 `[N]` counts of `[T, K]` indices.

    Tokens with `token_mask` False are not counted. Counting is an `index_add_` with the mask as
    weights: no host sync and no boolean indexing, so it stays cheap on accelerators.

    Args:
        topk_idx: `[T, K]` selected experts, in `[0, N)`.
        num_experts: $N$.
        token_mask: optional `[T]` mask, True (non-zero) = a counted token.

    Returns:
        The `[N]` counts (float32, on `topk_idx`'s device).

    Example:
        >>> import torch
        >>> expert_selection_counts(torch.tensor([[0, 1], [1, 3]]), 4, torch.tensor([1, 0]))
        tensor([1., 1., 0., 0.])
    """
    idx = topk_idx.reshape(topk_idx.shape[0], -1)
    if token_mask is None:
        weight = torch.ones(idx.numel(), device=idx.device, dtype=torch.float32)
    else:
        weight = token_mask.reshape(-1).to(idx.device, torch.float32)
        weight = weight.repeat_interleave(idx.shape[1])
    counts = torch.zeros(num_experts, device=idx.device, dtype=torch.float32)
    return counts.index_add_(0, idx.reshape(-1), weight)


def load_balancing_loss(
    router_probs: Tensor,
    topk_idx: Tensor,
    token_mask: Tensor | None = None,
    *,
    reduction: str = "mean",
    validate_args: bool = True,
    selection_counts: Tensor | None = None,
) -> Tensor:
    r"""The Switch / Mixtral auxiliary load-balancing loss of one MoE layer.

    $$
    \mathcal{L}_{bal} = N \sum_{i=1}^{N} f_i P_i
        = \frac{1}{T}\sum_{t} \underbrace{N \sum_{i=1}^{N} f_i\, p_{t,i}}_{\ell_t},\qquad
    f_i = \frac{1}{T}\sum_t \mathbb{1}[i \in \mathcal{S}_t],\qquad
    P_i = \frac{1}{T}\sum_t p_{t,i}
    $$

    over the $T$ real tokens (`token_mask`), with $\mathcal{S}_t$ the top-K selection and $p$
    the routing probabilities (rows summing to 1). Only $P$ carries a gradient ($f$ counts
    selections). Perfect balance gives $K$. The per-token terms $\ell_t$ (`reduction="none"`,
    0 on masked tokens) have the loss as their mean; $f$ is a statistic of the whole batch, so
    they are not independent per token. *Switch Transformers* (Fedus et al., JMLR 2022,
    arXiv:2101.03961), eqs. 4–6, with top-K dispatch: equal to `transformers`' Mixtral
    `load_balancing_loss_func` on one layer.

    Args:
        router_probs: `[T, N]` routing probabilities (softmax of the logits; for sigmoid gating
            the scores renormalised per token). Half precision is computed in float32.
        topk_idx: `[T, K]` selected experts, in `[0, N)`.
        token_mask: optional `[T]` mask, True (non-zero) = a real (non-pad) token.
        reduction: `"mean"` (the loss; 0 when no token is real), `"sum"` or `"none"` (`[T]`).
        validate_args: check that every `topk_idx` entry lies in `[0, N)` (a host sync).
        selection_counts: optional `[N]` counts of `topk_idx` over the real tokens, as
            `expert_selection_counts` (in this module) gives them, when the caller has counted
            them already (a router that also tracks the load counts once per forward).

    Returns:
        The scalar loss, or the `[T]` per-token terms with `reduction="none"`.

    Raises:
        ValueError: shapes that do not match, an expert index outside `[0, N)`.
        TypeError: non-floating `router_probs` or a non-integer `topk_idx`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses.language.load_balancing import load_balancing_loss
        >>> probs = torch.full((4, 2), 0.5)
        >>> load_balancing_loss(probs, torch.tensor([[0], [1], [0], [1]]))
        tensor(1.)
    """
    check_reduction(reduction)
    check_tensor("router_probs", router_probs, floating=True)
    check_tensor("topk_idx", topk_idx, floating=False)
    _check_router_shapes(router_probs, topk_idx, token_mask)
    probs = upcast(router_probs)
    n = probs.shape[1]
    if validate_args:  # the router calls this once per layer with it off: skip all the work
        check_class_indices(topk_idx, n, ignore_index=None, name="topk_idx", what="expert index")
    valid = None if token_mask is None else token_mask.reshape(-1).to(probs.device, torch.bool)
    if selection_counts is None:
        counts = expert_selection_counts(topk_idx, n, valid).to(probs.dtype)
    else:
        if selection_counts.shape != (n,):
            raise ValueError(
                f"selection_counts must have shape [{n}] (one count per expert), "
                f"got {list(selection_counts.shape)}"
            )
        counts = selection_counts.to(probs.device, probs.dtype)
    # Each real token makes K selections, so the real-token count is the selections over K.
    total = (counts.sum() / topk_idx.shape[1]).clamp_min(1.0)
    per_token = n * (probs @ (counts / total))  # ℓ_t = N Σ_i f_i p_{t,i}
    return reduce_loss(per_token, reduction, valid=valid)


@register_loss("load_balancing", aliases=("switch_load_balancing", "moe_load_balancing"))
class LoadBalancingLoss(Loss):
    r"""The Switch / Mixtral auxiliary load-balancing loss of one MoE layer (arXiv:2101.03961).

    See [load_balancing_loss][lightning_losses.functional.load_balancing_loss] for the formula.
    `forward(router_probs, topk_idx, token_mask=None)`; with `reduction="none"` it returns the
    `[T]` per-token terms whose mean is the loss, and `element_mask` is `token_mask`.

    Args:
        reduction: `"mean" | "sum" | "none"`.
        validate_args: check the expert-index range of `topk_idx` on every call (a host sync).

    Shape:
        - router_probs: `[T, N]`; topk_idx: `[T, K]`; token_mask: `[T]`.
        - output: scalar, or `[T]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses.language.load_balancing import LoadBalancingLoss
        >>> loss = LoadBalancingLoss()
        >>> probs = torch.tensor([[0.9, 0.1], [0.8, 0.2]])  # both tokens sent to expert 0
        >>> loss(probs, torch.tensor([[0], [0]]))  # N · f_0 · P_0 = 2 · 1 · 0.85
        tensor(1.7000)
    """

    functional = staticmethod(load_balancing_loss)
    # Probabilities over the experts `[T, N]` and selected expert indices `[T, K]`: a
    # classification of tokens over experts.
    input_kind = InputKind.ROUTING
    target_arg = None

    def __init__(self, reduction: str = "mean", validate_args: bool = True) -> None:
        super().__init__(reduction=reduction, validate_args=validate_args)

    def forward(
        self, router_probs: Tensor, topk_idx: Tensor, token_mask: Tensor | None = None
    ) -> Tensor:
        """One layer's routing loss: `router_probs [T, N]`, `topk_idx [T, K]`, `token_mask [T]`."""
        return self._call_functional(router_probs, topk_idx, token_mask)

    def element_mask(self, *args: Any, **kwargs: Any) -> Tensor | None:
        """The real tokens of a `reduction="none"` result: `token_mask` as bool, or `None`."""
        mask = (
            _forward_signature(type(self)).bind_partial(*args, **kwargs).arguments.get("token_mask")
        )
        return None if mask is None else mask.reshape(-1).bool()
