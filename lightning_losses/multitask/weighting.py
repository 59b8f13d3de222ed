r"""Loss weighting: combine per-task scalar losses into one objective.

- [UncertaintyWeighting][lightning_losses.multitask.UncertaintyWeighting]: learnable homoscedastic
  uncertainty per task, an `nn.Module` whose parameters the LightningModule's optimizer trains.
- `dwa_weights`: Dynamic Weight Average from the epoch-averaged loss history.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightning_losses.validation import check_choice, check_int, check_number, check_tensor

__all__ = ["TASK_TYPES", "UncertaintyWeighting", "dwa_weights"]

TASK_TYPES = ("regression", "classification")


def _stack_losses(losses: Tensor | Sequence[Tensor], num_tasks: int) -> Tensor:
    if isinstance(losses, Tensor):
        stacked = losses
    elif isinstance(losses, (list, tuple)) and all(isinstance(v, Tensor) for v in losses):
        if any(v.ndim != 0 for v in losses):
            raise ValueError("losses must be scalar tensors, one per task")
        stacked = torch.stack(list(losses)) if losses else torch.empty(0)
    else:
        raise TypeError(
            f"losses must be a [T] tensor or a sequence of scalar tensors, got "
            f"{type(losses).__name__}"
        )
    if not stacked.is_floating_point():
        raise TypeError(f"losses must be floating point, got dtype {stacked.dtype}")
    if stacked.shape != (num_tasks,):
        raise ValueError(
            f"losses must hold {num_tasks} task losses, got shape {tuple(stacked.shape)}"
        )
    return stacked


class UncertaintyWeighting(nn.Module):
    r"""Homoscedastic uncertainty weighting of task losses, with learnable $s_i = \log\sigma_i^2$.

    *Multi-Task Learning Using Uncertainty to Weigh Losses for Scene Geometry and Semantics*
    (Kendall, Gal, Cipolla; CVPR 2018, arXiv:1705.07115), Eq. 7 and 10 with $s = \log\sigma^2$:

    $$
    \mathcal L = \sum_i c_i\, e^{-s_i} L_i + \tfrac{1}{2} s_i,\qquad
    c_i = \tfrac12 \text{ (regression, Gaussian likelihood)},\quad
    c_i = 1 \text{ (classification, softmax likelihood)}.
    $$

    With $L_i$ fixed, $\partial\mathcal L/\partial s_i = 0$ at $e^{s_i} = 2c_i L_i$: at
    $e^{s_i} = L_i$ for regression. `task_types=None` gives every task the regression form, which
    is LibMTL's `UW` weighting (`(losses / (2 * s.exp()) + s / 2).sum()`, init $s = -0.5$;
    checked against LibMTL's source). The weights $c_i e^{-s_i}$ are returned by `weights()` for
    logging. Register it as a submodule of the LightningModule so that `configure_optimizers`'s
    `self.parameters()` trains $s$ (the paper uses the same optimizer as the network).

    Args:
        num_tasks: number of task losses $T \ge 1$.
        init: initial $s_i$ (LibMTL: `-0.5`).
        task_types: per-task `"regression"` or `"classification"`; `None` = all regression.

    Shapes:
        losses: `[T]` tensor, or a sequence of `T` scalar tensors. Output: scalar.

    Raises:
        TypeError / ValueError: bad arguments, or losses of the wrong number or shape.

    Example:
        >>> import torch
        >>> uw = UncertaintyWeighting(2, init=0.0)
        >>> uw(torch.tensor([1.0, 3.0]))  # (1 + 3) / 2 + 0
        tensor(2., grad_fn=<SumBackward0>)
    """

    def __init__(
        self,
        num_tasks: int,
        init: float = -0.5,
        task_types: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.num_tasks = check_int("num_tasks", num_tasks, low=1)
        init = check_number("init", init)
        if task_types is None:
            task_types = ["regression"] * self.num_tasks
        task_types = list(task_types)
        if len(task_types) != self.num_tasks:
            raise ValueError(f"task_types must name {self.num_tasks} tasks, got {len(task_types)}")
        for kind in task_types:
            check_choice("task_types", kind, TASK_TYPES)
        self.task_types = tuple(task_types)
        self.log_vars = nn.Parameter(torch.full((self.num_tasks,), init))
        factors = [0.5 if kind == "regression" else 1.0 for kind in self.task_types]
        self.factors: Tensor
        self.register_buffer("factors", torch.tensor(factors), persistent=False)

    def weights(self) -> Tensor:
        r"""The detached effective weights $c_i e^{-s_i}$, `[T]` (log them per task)."""
        return (self.factors * torch.exp(-self.log_vars)).detach()

    def forward(self, losses: Tensor | Sequence[Tensor]) -> Tensor:
        """The weighted total $\\sum_i c_i e^{-s_i} L_i + s_i / 2$ (scalar).

        Args:
            losses: `[T]` task losses (or a sequence of scalars).

        Returns:
            Scalar objective, differentiable in the losses and in `log_vars`.
        """
        stacked = _stack_losses(losses, self.num_tasks)
        s = self.log_vars.to(stacked.dtype)
        return (self.factors.to(stacked.dtype) * torch.exp(-s) * stacked + 0.5 * s).sum()


def dwa_weights(history: Tensor, temperature: float = 2.0) -> Tensor:
    r"""Dynamic Weight Average: task weights from the rate of change of each task's loss.

    *End-to-End Multi-Task Learning with Attention* (Liu, Johns, Davison; CVPR 2019,
    arXiv:1803.10704), Eq. 7:

    $$
    r_k = \frac{L_k(t-1)}{L_k(t-2)},\qquad
    \lambda_k(t) = \frac{K \exp(r_k / T)}{\sum_i \exp(r_i / T)},
    $$

    with $L_k$ the epoch-average loss of task $k$; $\lambda_k = 1$ while fewer than two epochs
    are recorded (the paper and LibMTL's `DWA`, `T = 2`).

    Args:
        history: `[E, K]` epoch-average losses so far (row `e` = epoch `e`); `E` may be 0.
        temperature: $T > 0$.

    Returns:
        `[K]` weights summing to $K$ (detached).

    Raises:
        ValueError: `history` not 2-D, a non-positive loss in the ratio, bad `temperature`.

    Example:
        >>> import torch
        >>> dwa_weights(torch.tensor([[1.0, 1.0], [1.0, 0.5]]))  # task 2 falls faster
        tensor([1.1244, 0.8756])
    """
    history = check_tensor("history", history, floating=True)
    temperature = check_number("temperature", temperature, low=0.0, low_inclusive=False)
    if history.ndim != 2 or history.shape[1] == 0:
        raise ValueError(f"history must be [epochs, tasks], got shape {tuple(history.shape)}")
    k = history.shape[1]
    if history.shape[0] < 2:
        return torch.ones(k, dtype=history.dtype, device=history.device)
    prev, prev2 = history[-1].detach(), history[-2].detach()
    if bool((prev2 <= 0).any()) or not bool(torch.isfinite(history[-2:]).all()):
        raise ValueError("history must hold finite positive losses for the last two epochs")
    return k * torch.softmax(prev / prev2 / temperature, dim=0)
