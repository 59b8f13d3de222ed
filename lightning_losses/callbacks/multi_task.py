r"""Multi-task gradient aggregation (Jacobian descent) as a callback.

Guide: `docs/guide/multi_task.md`.

The module's objectives are the main loss of `LossMixin.compute_loss` and its named aux
objectives. Each *task* objective $L_i$ gets its own gradient $g_i$, the rows of the Jacobian
$J$ (`[m, n]` over all trainable parameters as one vector); an aggregator of
`lightning_losses.multitask` (UPGrad by default) turns the Gramian $G = JJ^\top$ into weights $w$
and the update direction $d = J^\top w$ replaces `p.grad` before clipping and the optimizer step.

How the gradients are obtained (per micro-batch, then once per optimizer step):

- each aux task: `torch.autograd.grad(L_i, params, retain_graph=True)` added into one fp32
  buffer `[m - 1, n]` (divided by the AMP scale);
- the main objective (and aux objectives that are not tasks): one `backward()` over all the
  objectives, the tasks seeded with a zero gradient, so `p.grad` is exactly the main gradient,
  DDP's reducer runs once per backward and averages it, and every parameter a task uses
  receives a (zero) gradient from it, as DDP requires;
- `on_before_optimizer_step` (after every accumulated micro-batch, AMP unscaling and DDP's
  all-reduce, before clipping): the aux buffer is all-reduced (mean over ranks, one collective),
  so $J$ is the **global** Jacobian on every rank; $G$ (float64), $w$ and $d$ are then identical
  on every rank. Aggregation is nonlinear, so aggregating per-rank Jacobians and averaging would
  not be the same.

Memory: the Jacobian is stored (`m · n` fp32, the main row filled from `p.grad` at the step);
$G$ is formed in fp32 (as torchjd does) and the `[m, m]` problems run in float64.
A Gramian-only path that never stores $J$ (torchjd's autogram) is not implemented. FSDP2 is not
supported (the per-task gradients would need FSDP's reduce-scatter); the callback refuses
sharded parameters.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor
from typing_extensions import override

from lightning_losses.callbacks.base import BehaviourCallback
from lightning_losses.distributed import all_reduce_sum, get_world_size
from lightning_losses.mixins.loss import LossModel, Role
from lightning_losses.multitask import AGGREGATORS
from lightning_losses.validation import check_bool, check_int

__all__ = ["MAIN_TASK", "GradientAggregation"]

MAIN_TASK = "main"
"""The name of the main objective's row in the Jacobian (and in the logged weights)."""


class GradientAggregation(BehaviourCallback):
    r"""Aggregate per-task gradients with UPGrad, MGDA, PCGrad, CAGrad, ConFIG or the mean.

    Jacobian descent (*Jacobian Descent for Multi-Objective Optimization*, Quinton & Rey,
    arXiv:2406.16232) inside an ordinary Lightning run: the rows of $J$ are the gradients of the
    main objective and of each aux task objective that `compute_loss(..., aux={...})` returns;
    the optimizer receives $d = J^\top w(JJ^\top)$. It acts once per optimizer step on the
    accumulated, AMP-unscaled, all-reduced gradients, before clipping:
    `accumulate_grad_batches=N` aggregates the Jacobian of one N-times larger batch. Under DDP the
    aggregated Jacobian is the global one (see the module docstring).

    The module must inherit [LossMixin][lightning_losses.mixins.LossMixin] and return
    `self.compute_loss(...)` (automatic optimization) or call `self.manual_loss_backward(output)`.
    Parameters are aggregated as one vector (shared and task-specific alike); a parameter that
    receives no gradient from any task keeps `grad=None`. Under DDP plain `strategy="ddp"` works
    with heads used only by aux tasks: the one backward seeds them with zero.

    Args:
        aggregator: a name of `lightning_losses.multitask.AGGREGATORS` (`"upgrad"`, `"mgda"`,
            `"pcgrad"`, `"cagrad"`, `"config"`, `"mean"`) or a callable mapping the `[m, m]`
            float64 Gramian to `[m]` weights.
        tasks: which aux objectives are tasks (rows of $J$ after the main objective); `None` =
            all. Aux objectives not named are back-propagated with the main loss.
        aggregator_kwargs: keyword arguments of the named weighting (e.g. `{"c": 0.5}` for
            CAGrad).
        seed: seed of PCGrad's random projection order, the same on every rank (the weights
            are computed from the global Gramian on each rank and must agree); its generator
            state is checkpointed.
        log_stats: log `mtl/weight_<task>` and `mtl/min_cos` (the most conflicting pair) on
            optimizer steps that are multiples of `trainer.log_every_n_steps`.

    Raises:
        ValueError: bad arguments; at the first backward, `tasks` names the module does not
            produce, or (later) the set of tasks changes between steps.
        TypeError: at setup, a module that does not inherit `LossMixin`.

    Example:
        >>> cb = GradientAggregation("upgrad")
        >>> cb.role
        'gradient_handler'
    """

    role = Role.GRADIENT_HANDLER
    requires = LossModel
    requires_hint = (
        "inherit lightning_losses.mixins.LossMixin and return self.compute_loss(..., aux={...}) "
        "from training_step"
    )
    config_keys = ("aggregator", "tasks", "aggregator_kwargs")
    call_hint = (
        "its training_step must compute the loss with self.compute_loss(..., aux={...}) "
        "(LossMixin) and let Lightning call LossMixin.backward (or call "
        "self.manual_loss_backward(output) in manual optimization)"
    )

    def __init__(
        self,
        aggregator: str | Callable[[Tensor], Tensor] = "upgrad",
        *,
        tasks: Sequence[str] | None = None,
        aggregator_kwargs: Mapping[str, Any] | None = None,
        seed: int = 0,
        log_stats: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(aggregator, str):
            if aggregator not in AGGREGATORS:
                raise ValueError(
                    f"aggregator must be one of {tuple(sorted(AGGREGATORS))} or a callable, got "
                    f"{aggregator!r}"
                )
        elif not callable(aggregator):
            raise TypeError(
                f"aggregator must be a name or a callable, got {type(aggregator).__name__}"
            )
        self.aggregator = aggregator
        if tasks is not None:
            if isinstance(tasks, str) or not tasks or not all(isinstance(t, str) for t in tasks):
                raise ValueError(f"tasks must be None or a non-empty list of names, got {tasks!r}")
            if len(set(tasks)) != len(tasks) or MAIN_TASK in tasks:
                raise ValueError(f"tasks must be distinct and must not be {MAIN_TASK!r}: {tasks!r}")
            tasks = list(tasks)
        self.tasks = tasks
        self.aggregator_kwargs = dict(aggregator_kwargs or {})
        if self.aggregator_kwargs and not isinstance(aggregator, str):
            raise ValueError("aggregator_kwargs applies to a named aggregator only")
        self.pcgrad_seed = check_int("seed", seed)
        self.pcgrad_generator = torch.Generator().manual_seed(self.pcgrad_seed)
        self.log_stats = check_bool("log_stats", log_stats)
        self.steps = 0
        self.last_weights: Tensor | None = None  # the last step's weights, for inspection
        self.last_stats: dict[str, Tensor] = {}
        self._reset_buffers()

    def _reset_buffers(self) -> None:
        self._params: list[Tensor] | None = None
        self._jac: Tensor | None = None  # [1 + k, n] fp32 Jacobian (row 0: main, at the step)
        self._flat: Tensor | None = None  # its rows 1.. (the aux tasks): one all-reduce
        self._names: list[str] | None = None  # the aux task names, fixed at the first call
        self._have_aux = False

    # -- GradientHandler protocol ----------------------------------------------------------
    def _split(self, main: Tensor, aux: Mapping[str, Tensor]) -> tuple[Tensor, list[Tensor]]:
        names = list(self.tasks) if self.tasks is not None else list(aux)
        missing = sorted(set(names) - set(aux))
        if missing:
            raise ValueError(
                f"tasks names {missing} that the module's compute_loss does not produce "
                f"(aux objectives: {sorted(aux)})"
            )
        if self._names is None:
            self._names = names
        elif names != self._names:
            raise ValueError(
                f"the task objectives changed from {self._names} to {names}; a "
                f"{type(self).__name__} run needs the same aux names at every step"
            )
        rest = [v.to(main.dtype) for k, v in aux.items() if k not in names]
        if rest:
            main = main + torch.stack(rest).sum()
        return main, [aux[k] for k in names]

    def _allocate(self, module: LightningModule, k: int) -> list[Tensor]:
        params: list[Tensor] = [p for p in module.parameters() if p.requires_grad]
        if any(hasattr(p, "device_mesh") for p in params):
            raise ValueError(
                f"{type(self).__name__} does not support sharded (FSDP2) parameters: the "
                "per-task gradients would bypass FSDP's reduce-scatter"
            )
        device = params[0].device if params else torch.device("cpu")
        n = sum(p.numel() for p in params)
        self._params = params
        # Row 0 receives the main gradient at the step; rows 1.. accumulate the tasks' gradients.
        self._jac = torch.zeros(k + 1, n, dtype=torch.float32, device=device)
        self._flat = self._jac[1:]
        return params

    def backward(
        self,
        module: LightningModule,
        main: Tensor,
        aux: Mapping[str, Tensor],
        *,
        accumulation_factor: float,
        scaler: Any | None,
    ) -> None:
        """Back-propagate the main objective into `p.grad`; add each task's gradient to its row.

        Called by [LossMixin.backward][lightning_losses.mixins.loss.LossMixin.backward] with
        `main` and `aux` already scaled like Lightning's loss (accumulation factor, AMP scale);
        the AMP scale is divided out of the task rows here, in fp32.

        Args:
            module: the LightningModule.
            main: the scaled main objective.
            aux: the scaled aux objectives by name.
            accumulation_factor: unused (already applied to `main` and `aux`).
            scaler: the AMP grad scaler or `None`.
        """
        self.notify_called()
        main, task_objs = self._split(main, aux)
        if self._params is None or self._flat is None:
            params = self._allocate(module, len(task_objs))
        else:
            params = self._params
        flat = self._flat
        assert flat is not None
        inv_scale = 1.0 / float(scaler.get_scale()) if scaler is not None else 1.0
        for row, obj in enumerate(task_objs):
            if not obj.requires_grad or not params:
                continue
            grads = torch.autograd.grad(obj, params, retain_graph=True, allow_unused=True)
            offset = 0
            for p, grad in zip(params, grads, strict=True):
                if grad is not None:
                    flat[row, offset : offset + p.numel()].add_(
                        grad.reshape(-1).float(), alpha=inv_scale
                    )
                offset += p.numel()
            self._have_aux = True
        # One backward through every objective, the tasks with a zero seed: p.grad is exactly
        # the main gradient, and DDP sees a gradient (possibly 0) for every parameter a task
        # uses (one pass: the seeds meet where the graphs share nodes, as for the summed loss).
        outputs = [t for t in (main, *task_objs) if t.requires_grad]
        if outputs:
            seeds = [torch.ones_like(t) if t is main else torch.zeros_like(t) for t in outputs]
            torch.autograd.backward(outputs, grad_tensors=seeds)

    # -- the step ----------------------------------------------------------------------------
    def _weights(self, gram: Tensor) -> Tensor:
        if callable(self.aggregator):
            return self.aggregator(gram)
        kwargs = dict(self.aggregator_kwargs)
        if self.aggregator == "pcgrad":
            kwargs.setdefault("generator", self.pcgrad_generator)
        return AGGREGATORS[self.aggregator](gram, **kwargs)

    @override
    @torch.no_grad()
    def on_before_optimizer_step(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: Any
    ) -> None:
        if self._params is None or self._flat is None or self._names is None:
            return
        flat = self._flat
        world = get_world_size()
        if world > 1 and flat.shape[0] > 0:
            # autograd.grad bypassed DDP's reducer: average the task rows like p.grad.
            all_reduce_sum(flat).div_(world)
        optimizer = getattr(optimizer, "optimizer", optimizer)  # a LightningOptimizer wraps it
        in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
        jac = self._jac
        assert jac is not None
        main_row = jac[0]
        offset = 0
        for p in self._params:
            if p.grad is None:
                main_row[offset : offset + p.numel()].zero_()
            else:
                main_row[offset : offset + p.numel()].copy_(p.grad.reshape(-1))
            offset += p.numel()
        if not bool(torch.isfinite(jac).all()):
            # fp16 AMP overflow: the scaler skips the step if p.grad is non-finite; a non-finite
            # task row alone is dropped (the step uses the main gradient), warned once.
            if bool(torch.isfinite(main_row).all()):
                warnings.warn(
                    f"{type(self).__name__}: a task gradient overflowed (inf/NaN); this step "
                    "uses the main gradient only",
                    stacklevel=2,
                )
            self._clear()
            return
        # The Gramian in fp32 (as torchjd): no float64 copy of the m x n Jacobian; the small
        # problems on [m, m] then run in float64.
        gram = (jac @ jac.T).double()
        weights = self._weights(gram).to(torch.float64)
        if weights.shape != (jac.shape[0],):
            raise ValueError(
                f"the aggregator must return {jac.shape[0]} weights, got {tuple(weights.shape)}"
            )
        direction = weights.to(device=jac.device, dtype=jac.dtype) @ jac
        offset = 0
        for p in self._params:
            # Every parameter a task uses has a gradient (the zero-seeded backward), so a
            # parameter without one is used by no objective and keeps grad=None.
            if p.grad is not None and id(p) in in_optimizer:
                p.grad.copy_(direction[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
        self.last_weights = weights
        self._log(trainer, pl_module, gram, weights)
        self._clear()
        self.steps += 1

    def _clear(self) -> None:
        if self._jac is not None:
            self._jac.zero_()
        self._have_aux = False

    def _log(self, trainer: Trainer, pl_module: LightningModule, gram: Tensor, w: Tensor) -> None:
        if not self.log_stats or self._names is None:
            return
        if (trainer.global_step + 1) % self.log_interval(trainer) != 0:
            return
        norms = gram.diagonal().clamp_min(0).sqrt()
        cos = gram / (norms[:, None] * norms[None, :]).clamp_min(1e-30)
        stats = {f"weight_{name}": w[i] for i, name in enumerate([MAIN_TASK, *self._names])}
        stats["min_cos"] = cos.min()
        self.last_stats = stats
        pl_module.log_dict(
            {f"mtl/{k}": v.float().to(pl_module.device) for k, v in stats.items()},
            on_step=True,
            on_epoch=False,
            batch_size=1,
        )

    # -- lifecycle ------------------------------------------------------------------------------
    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._reset_buffers()

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        self._reset_buffers()

    @override
    def config(self) -> dict[str, Any]:
        name = self.aggregator if isinstance(self.aggregator, str) else repr(self.aggregator)
        return {
            "aggregator": name,
            "tasks": self.tasks,
            "aggregator_kwargs": self.aggregator_kwargs,
        }

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "steps": self.steps,
            "pcgrad_generator": self.pcgrad_generator.get_state(),
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.steps = int(state_dict.get("steps", 0))
        if "pcgrad_generator" in state_dict:
            self.pcgrad_generator.set_state(state_dict["pcgrad_generator"])
