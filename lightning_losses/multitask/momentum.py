r"""Momentum ConFIG (M-ConFIG): ConFIG on per-loss momenta, one loss back-propagated per step.

*ConFIG: Towards Conflict-free Training of Physics Informed Neural Networks* (Liu, Chu, Thuerey;
ICLR 2025, arXiv:2408.11104), Section 3.3 / Algorithm 2, as in the authors' package
(`conflictfree.momentum_operator.PseudoMomentumOperator`): each loss $i$ keeps a first moment
$m_i \leftarrow \beta_1 m_i + (1-\beta_1) g_i$, updated only on the steps where $g_i$ is
computed (the paper alternates: one loss per step), with its own bias correction
$\hat m_i = m_i / (1-\beta_1^{t_i})$. Once every loss has been seen, each step computes the
ConFIG direction $d = \mathrm{ConFIG}(\hat m_1, \dots, \hat m_T)$ and an Adam-like second moment
from a *pseudo gradient* $\tilde g = (d(1-\beta_1^t) - \beta_1 d_{\mathrm{prev}}) / (1-\beta_1)$
($d_{\mathrm{prev}}$: the previous $d(1-\beta_1^{t-1})$),
$s \leftarrow \beta_2 s + (1-\beta_2)\tilde g^2$, and returns $d / (\sqrt{s/(1-\beta_2^t)} +
10^{-8})$. Before every loss has been seen the update is zero. The authors recommend plain SGD
with it (the operator already normalises like Adam).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lightning_losses.multitask.aggregators import config_weights
from lightning_losses.validation import check_int, check_number, check_tensor

__all__ = ["MomentumConFIG"]


class MomentumConFIG:
    r"""The stateful M-ConFIG operator: per-loss momenta in, one update direction out.

    Verified: equals `conflictfree.momentum_operator.PseudoMomentumOperator` (with its default
    `ConFIGOperator`) step by step, alternating and with all losses per step (tests, float64).
    The state (`state_dict`) holds $T + 2$ vectors of the parameters' size.

    Args:
        num_tasks: number of losses $T \ge 1$.
        beta_1: first-moment decay (authors: 0.9).
        beta_2: second-moment decay (authors: 0.999).
        eps: added to $\sqrt{\hat s}$ (authors: 1e-8).

    Raises:
        ValueError: bad arguments; at `update`, an index out of range or a size change.

    Example:
        >>> import torch
        >>> op = MomentumConFIG(2)
        >>> op.update(0, torch.tensor([1.0, 0.0]))  # loss 1 not seen yet: no step
        tensor([0., 0.])
        >>> op.update(1, torch.tensor([0.0, 1.0]))  # Adam-like: unit-size entries
        tensor([1.0000, 1.0000])
    """

    def __init__(
        self, num_tasks: int, beta_1: float = 0.9, beta_2: float = 0.999, eps: float = 1e-8
    ) -> None:
        self.num_tasks = check_int("num_tasks", num_tasks, low=1)
        self.beta_1 = check_number("beta_1", beta_1, low=0.0, high=1.0, high_inclusive=False)
        self.beta_2 = check_number("beta_2", beta_2, low=0.0, high=1.0, high_inclusive=False)
        self.eps = check_number("eps", eps, low=0.0)
        self.reset()

    def reset(self) -> None:
        """Forget every moment (a fresh operator)."""
        self.m: Tensor | None = None  # [T, n] first moments
        self.s: Tensor | None = None  # [n] second moment of the pseudo gradient
        self.fake_m: Tensor | None = None  # [n] the previous d (1 - beta_1^t)
        self.t = 0  # steps since every loss has been seen
        self.t_grads = [0] * self.num_tasks  # per-loss update counts

    def update(self, indexes: int | Sequence[int], grads: Tensor) -> Tensor:
        """Fold the gradients of losses `indexes` into their momenta; return the direction.

        Args:
            indexes: the loss index (or indexes) whose gradients are given.
            grads: `[n]` (one index) or `[k, n]` (one row per index) gradients.

        Returns:
            `[n]` update direction (zeros until every loss has been seen once), in the dtype
            of the state (the first call's `grads` dtype).
        """
        grads = check_tensor("grads", grads, floating=True).detach()
        idx = [indexes] if isinstance(indexes, int) else list(indexes)
        if grads.ndim == 1:
            grads = grads.unsqueeze(0)
        if grads.ndim != 2 or grads.shape[0] != len(idx) or not idx:
            raise ValueError(
                f"grads must be [n] for one index or [k, n] for k indexes, got "
                f"{tuple(grads.shape)} for indexes {idx}"
            )
        if any(not 0 <= i < self.num_tasks for i in idx):
            raise ValueError(f"indexes must lie in [0, {self.num_tasks}), got {idx}")
        if self.m is None or self.s is None or self.fake_m is None:
            n = grads.shape[1]
            self.m = grads.new_zeros(self.num_tasks, n)
            self.s = grads.new_zeros(n)
            self.fake_m = grads.new_zeros(n)
        elif grads.shape[1] != self.m.shape[1]:
            raise ValueError(f"grads must have {self.m.shape[1]} entries, got {grads.shape[1]}")
        elif self.m.device != grads.device:  # a state loaded on another device (checkpoint)
            self.m, self.s, self.fake_m = (
                v.to(grads.device) for v in (self.m, self.s, self.fake_m)
            )
        grads = grads.to(self.m)
        b1, b2 = self.beta_1, self.beta_2
        for row, i in enumerate(idx):
            self.t_grads[i] += 1
            self.m[i].mul_(b1).add_(grads[row], alpha=1.0 - b1)
        if min(self.t_grads) == 0:
            return torch.zeros_like(self.s)
        self.t += 1
        correction = torch.tensor([1.0 - b1**k for k in self.t_grads], dtype=self.m.dtype)
        m_hat = self.m / correction.to(self.m.device)[:, None]
        gram = (m_hat @ m_hat.T).double()
        direction = config_weights(gram).to(m_hat) @ m_hat
        fake_m = direction * (1.0 - b1**self.t)
        fake_grad = (fake_m - b1 * self.fake_m) / (1.0 - b1)
        self.fake_m = fake_m
        self.s.mul_(b2).add_(fake_grad.square(), alpha=1.0 - b2)
        s_hat = self.s / (1.0 - b2**self.t)
        return direction / (s_hat.sqrt() + self.eps)

    def state_dict(self) -> dict[str, Any]:
        """The moments and counters (tensors cloned)."""
        clone = lambda v: None if v is None else v.detach().clone()  # noqa: E731
        return {
            "m": clone(self.m),
            "s": clone(self.s),
            "fake_m": clone(self.fake_m),
            "t": self.t,
            "t_grads": list(self.t_grads),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`'s output (tensors keep the device they were saved on)."""
        t_grads = [int(v) for v in state["t_grads"]]
        if len(t_grads) != self.num_tasks:
            raise ValueError(
                f"the state holds {len(t_grads)} losses, this operator {self.num_tasks}"
            )
        self.m, self.s, self.fake_m = state["m"], state["s"], state["fake_m"]
        self.t, self.t_grads = int(state["t"]), t_grads
