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

`gramian_only=True` never stores $J$ (torchjd's autogram idea, *Jacobian Descent for
Multi-Objective Optimization*, Quinton & Rey, arXiv:2406.16232, Section 6): forward hooks record
the output of every submodule with direct parameters; one vmapped backward gives the `[m, ...]`
gradients of the objectives w.r.t. those outputs; per module, a vmapped backward restricted to
its own parameters gives its `[m, p]` Jacobian block, added into $G$ as
$J_b J_b^\top$ and freed; the weights come from $G$, and a second backward of
$\sum_i w_i L_i$ writes $J^\top w$ into `p.grad`. One process, no gradient accumulation, each
module called once per step, no parameter used outside its module (refused with a clear error
where detectable).

`"momentum_config"`: the stateful M-ConFIG operator
([MomentumConFIG][lightning_losses.multitask.MomentumConFIG]); by default one objective is
back-propagated per optimizer step, in turn (`p.grad` is that objective's gradient, DDP-averaged
as usual), and its state is checkpointed with the callback.

`shared="<submodule>"`: only that submodule's parameters are aggregated (the Gramian of their
columns); every other parameter gets the plain sum of the objectives' gradients, i.e. each task
head its own task's gradient (torchjd's `mtl_backward`).

FSDP2 is not supported (the per-task gradients would need FSDP's reduce-scatter); the callback
refuses sharded parameters.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor
from typing_extensions import override

from lightning_losses.callbacks.base import (
    BehaviourCallback,
    amp_scale,
    fold_unclaimed_aux,
    trained_parameters,
)
from lightning_losses.distributed import all_reduce_sum, get_world_size
from lightning_losses.mixins.loss import LossModel, Role
from lightning_losses.multitask import AGGREGATORS, MomentumConFIG, gradnorm_update
from lightning_losses.validation import check_bool, check_int, check_number

__all__ = ["GRADNORM", "MAIN_TASK", "MOMENTUM_CONFIG", "GradientAggregation"]

MAIN_TASK = "main"
"""The name of the main objective's row in the Jacobian (and in the logged weights)."""

MOMENTUM_CONFIG = "momentum_config"
"""The aggregator name of momentum ConFIG (stateful; not a Gramian weighting)."""

GRADNORM = "gradnorm"
"""The aggregator name of GradNorm's learned task weights (stateful; needs the losses)."""


class GradientAggregation(BehaviourCallback):
    r"""Aggregate per-task gradients with UPGrad, MGDA, PCGrad, CAGrad, ConFIG, Nash-MTL, ...

    Jacobian descent (*Jacobian Descent for Multi-Objective Optimization*, Quinton & Rey,
    arXiv:2406.16232) inside an ordinary Lightning run: the rows of $J$ are the gradients of the
    main objective and of each aux task objective that `compute_loss(..., aux={...})` returns;
    the optimizer receives $d = J^\top w(JJ^\top)$. It acts once per optimizer step on the
    accumulated, AMP-unscaled, all-reduced gradients, before clipping:
    `accumulate_grad_batches=N` aggregates the Jacobian of one N-times larger batch. Under DDP the
    aggregated Jacobian is the global one (see the module docstring).

    The module must inherit [LossMixin][lightning_losses.mixins.LossMixin] and return
    `self.compute_loss(...)` (automatic optimization) or call `self.manual_loss_backward(output)`.
    Parameters are aggregated as one vector (shared and task-specific alike; `shared` restricts
    the aggregation to a shared submodule); a parameter that receives no gradient from any task
    keeps `grad=None`. Under DDP plain `strategy="ddp"` works with heads used only by aux tasks:
    the one backward seeds them with zero.

    Args:
        aggregator: a name of `lightning_losses.multitask.AGGREGATORS` (`"upgrad"`, `"mgda"`,
            `"pcgrad"`, `"cagrad"`, `"config"`, `"nash_mtl"`, `"mean"`), `"momentum_config"`
            (stateful, see the module docstring; `aggregator_kwargs` `beta_1`, `beta_2`, `eps`,
            `alternate=True`), `"gradnorm"` (GradNorm's learned weights, updated by
            `lightning_losses.multitask.gradnorm_update` after each step; `aggregator_kwargs`
            `lr` (required), `alpha=1.5`, `layer` = the submodule $W$ whose gradient norms are
            balanced, default all parameters) or a callable mapping the `[m, m]` float64
            Gramian to `[m]` weights.
        tasks: which aux objectives are tasks (rows of $J$ after the main objective); `None` =
            all. Aux objectives not named are back-propagated with the main loss.
        aggregator_kwargs: keyword arguments of the named weighting (e.g. `{"c": 0.5}` for
            CAGrad).
        seed: seed of PCGrad's random projection order, the same on every rank (the weights
            are computed from the global Gramian on each rank and must agree); its generator
            state is checkpointed.
        log_stats: log `mtl/weight_<task>` and `mtl/min_cos` (the most conflicting pair) on
            optimizer steps that are multiples of `trainer.log_every_n_steps`.
        shared: dotted name of the shared submodule (e.g. `"backbone"`): aggregate its
            parameters only, the others get the sum of the objectives' gradients; `None` =
            aggregate every parameter.
        gramian_only: compute $G$ without storing $J$ and apply $J^\top w$ by a weighted
            backward (Gramian weightings only, one process, `accumulate_grad_batches=1`).

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
    config_keys = ("aggregator", "tasks", "aggregator_kwargs", "shared")
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
        shared: str | None = None,
        gramian_only: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(aggregator, str):
            if aggregator not in AGGREGATORS and aggregator not in (MOMENTUM_CONFIG, GRADNORM):
                names = (*sorted(AGGREGATORS), MOMENTUM_CONFIG, GRADNORM)
                raise ValueError(
                    f"aggregator must be one of {names} or a callable, got {aggregator!r}"
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
        if shared is not None and (not isinstance(shared, str) or not shared):
            raise ValueError(f"shared must be None or a submodule name, got {shared!r}")
        self.shared = shared
        self.gramian_only = check_bool("gramian_only", gramian_only)
        # GradNorm: learned weights (float64, [m]), L_i(0), the step's loss values.
        self.gradnorm_weights: Tensor | None = None
        self.gradnorm_initial: Tensor | None = None
        self._loss_sum: Tensor | None = None
        if aggregator == GRADNORM:
            unknown = set(self.aggregator_kwargs) - {"alpha", "lr", "layer"}
            if unknown or "lr" not in self.aggregator_kwargs:
                raise ValueError(
                    "gradnorm takes aggregator_kwargs lr (required), alpha (default 1.5) and "
                    f"layer (default: all parameters), got {sorted(self.aggregator_kwargs)}"
                )
            check_number("lr", self.aggregator_kwargs["lr"], low=0.0)
            check_number("alpha", self.aggregator_kwargs.get("alpha", 1.5), low=0.0)
            if shared is not None:
                raise ValueError("shared is not supported with 'gradnorm' (use its layer kwarg)")
        if self.gramian_only and (shared is not None or aggregator in (MOMENTUM_CONFIG, GRADNORM)):
            raise ValueError(
                f"gramian_only supports the Gramian weightings without shared, got "
                f"aggregator={aggregator!r}, shared={shared!r}"
            )
        self._hooks: list[Any] = []
        self._gram: Tensor | None = None  # gramian_only: this step's Gramian and weights
        self._gram_weights: Tensor | None = None
        self._calls: list[tuple[torch.nn.Module, list[Tensor]]] = []  # recorded module outputs
        self._recording = False
        # Momentum ConFIG: the operator (created at the first step, checkpointed) and whether
        # one objective is back-propagated per step (the paper's alternating scheme).
        self.momentum: MomentumConFIG | None = None
        self._momentum_kwargs: dict[str, Any] = {}
        self.alternate = False
        self._index = 0  # the objective back-propagated this step (alternating momentum)
        if aggregator == MOMENTUM_CONFIG:
            kwargs = dict(self.aggregator_kwargs)
            self.alternate = check_bool("alternate", kwargs.pop("alternate", True))
            MomentumConFIG(1, **kwargs)  # validates beta_1, beta_2, eps (or names the bad key)
            self._momentum_kwargs = kwargs
            if shared is not None:
                raise ValueError(f"shared is not supported with {MOMENTUM_CONFIG!r}")
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
        self._shared_mask: list[bool] | None = None  # per parameter: in the shared submodule
        self._norm_mask: list[bool] | None = None  # per parameter: in GradNorm's layer W

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
        return fold_unclaimed_aux(main, aux, names), [aux[k] for k in names]

    def _allocate(self, module: LightningModule, k: int) -> list[Tensor]:
        # The optimizers' parameters: under FSDP2 module.parameters() can list all-gathered
        # copies here (no DTensor visible), which would slip past the refusal below.
        params = trained_parameters(module)
        if any(hasattr(p, "device_mesh") for p in params):
            raise ValueError(
                f"{type(self).__name__} does not support sharded (FSDP2) parameters: the "
                "per-task gradients would bypass FSDP's reduce-scatter"
            )
        device = params[0].device if params else torch.device("cpu")
        n = sum(p.numel() for p in params)
        self._params = params
        if self.shared is not None:
            try:
                shared_ids = {id(p) for p in module.get_submodule(self.shared).parameters()}
            except AttributeError as err:
                raise ValueError(
                    f"shared={self.shared!r} names no submodule of {type(module).__name__}"
                ) from err
            self._shared_mask = [id(p) in shared_ids for p in params]
            if not any(self._shared_mask):
                raise ValueError(f"shared={self.shared!r} holds no trainable parameter")
        layer = self.aggregator_kwargs.get("layer") if self.aggregator == GRADNORM else None
        if layer is not None:
            try:
                layer_ids = {id(p) for p in module.get_submodule(layer).parameters()}
            except AttributeError as err:
                raise ValueError(
                    f"gradnorm layer={layer!r} names no submodule of {type(module).__name__}"
                ) from err
            self._norm_mask = [id(p) in layer_ids for p in params]
        if self.alternate:  # momentum ConFIG, one objective per step: p.grad is the only row
            k = 0
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
        if self.gramian_only:
            self._gramian_backward([main, *task_objs], amp_scale(scaler))
            return
        if self._params is None or self._flat is None:
            params = self._allocate(module, len(task_objs))
        else:
            params = self._params
        if self.alternate:
            # One objective per optimizer step, in turn (the same one for every micro-batch):
            # p.grad receives its gradient; the others are seeded with zero (DDP, see below).
            objs = [main, *task_objs]
            self._index = self.steps % len(objs)
            pairs = [(t, i == self._index) for i, t in enumerate(objs) if t.requires_grad]
            if pairs:
                torch.autograd.backward(
                    [t for t, _ in pairs],
                    grad_tensors=[
                        torch.ones_like(t) if on else torch.zeros_like(t) for t, on in pairs
                    ],
                )
            return
        flat = self._flat
        assert flat is not None
        inv_scale = 1.0 / amp_scale(scaler)
        if self.aggregator == GRADNORM:  # L_i(t): the step's (accumulated, unscaled) losses
            values = torch.stack([t.detach().double() for t in (main, *task_objs)]) * inv_scale
            self._loss_sum = values if self._loss_sum is None else self._loss_sum + values
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
        if self.gramian_only:
            weights, self._gram_weights = self._gram_weights, None
            if weights is not None and self._gram is not None:
                self.last_weights = weights
                self._log(trainer, pl_module, self._gram, weights)
                self.steps += 1
            return
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
        if self.aggregator == MOMENTUM_CONFIG:
            self._momentum_step(jac, in_optimizer)
            return
        if self.aggregator == GRADNORM:
            self._gradnorm_step(trainer, pl_module, jac, in_optimizer)
            return
        # The Gramian in fp32 (as torchjd): no float64 copy of the m x n Jacobian; the small
        # problems on [m, m] then run in float64. With `shared`, only the shared columns.
        segments = self._segments()
        mask = self._shared_mask
        gram = sum(
            (
                jac[:, a:b] @ jac[:, a:b].T
                for i, (a, b) in enumerate(segments)
                if mask is None or mask[i]
            ),
            torch.zeros(jac.shape[0], jac.shape[0], dtype=jac.dtype, device=jac.device),
        ).double()
        weights = self._weights(gram).to(torch.float64)
        if weights.shape != (jac.shape[0],):
            raise ValueError(
                f"the aggregator must return {jac.shape[0]} weights, got {tuple(weights.shape)}"
            )
        w = weights.to(device=jac.device, dtype=jac.dtype)
        for i, (p, (a, b)) in enumerate(zip(self._params, segments, strict=True)):
            # Every parameter a task uses has a gradient (the zero-seeded backward), so a
            # parameter without one is used by no objective and keeps grad=None.
            if p.grad is None or id(p) not in in_optimizer:
                continue
            # Task-specific parameters (outside `shared`) get the sum of the objectives'
            # gradients: each head its own task's gradient (torchjd's mtl_backward).
            block = w @ jac[:, a:b] if mask is None or mask[i] else jac[:, a:b].sum(0)
            p.grad.copy_(block.view_as(p))
        self.last_weights = weights
        self._log(trainer, pl_module, gram, weights)
        self._clear()
        self.steps += 1

    def _segments(self) -> list[tuple[int, int]]:
        assert self._params is not None
        bounds, offset = [], 0
        for p in self._params:
            bounds.append((offset, offset + p.numel()))
            offset += p.numel()
        return bounds

    def _gradnorm_step(
        self, trainer: Trainer, pl_module: LightningModule, jac: Tensor, in_optimizer: set[int]
    ) -> None:
        assert self._params is not None and self._loss_sum is not None
        m = jac.shape[0]
        losses, self._loss_sum = self._loss_sum.cpu(), None
        mask = self._norm_mask
        sq = sum(
            (
                jac[:, a:b].double().square().sum(1)
                for i, (a, b) in enumerate(self._segments())
                if mask is None or mask[i]
            ),
            torch.zeros(m, dtype=torch.float64, device=jac.device),
        )
        norms = sq.sqrt().cpu()
        if self.gradnorm_weights is None:
            self.gradnorm_weights = torch.ones(m, dtype=torch.float64)
        if self.gradnorm_initial is None:
            if bool((losses <= 0).any()):
                raise ValueError("gradnorm needs positive losses at the first step (L_i(0))")
            self.gradnorm_initial = losses.clone()
        weights = self.gradnorm_weights
        # The network steps on sum_i w_i(t) L_i; then w(t) -> w(t + 1) (Algorithm 1).
        direction = weights.to(device=jac.device, dtype=jac.dtype) @ jac
        for p, (a, b) in zip(self._params, self._segments(), strict=True):
            if p.grad is not None and id(p) in in_optimizer:
                p.grad.copy_(direction[a:b].view_as(p))
        self.gradnorm_weights = gradnorm_update(
            weights,
            norms,
            losses,
            self.gradnorm_initial,
            alpha=float(self.aggregator_kwargs.get("alpha", 1.5)),
            lr=float(self.aggregator_kwargs["lr"]),
        )
        self.last_weights = weights
        self._log(trainer, pl_module, (jac @ jac.T).double(), weights)
        self._clear()
        self.steps += 1

    def _momentum_step(self, jac: Tensor, in_optimizer: set[int]) -> None:
        assert self._params is not None and self._names is not None
        m = 1 + len(self._names)
        if self.momentum is None:
            self.momentum = MomentumConFIG(m, **self._momentum_kwargs)
        if self.alternate:  # p.grad (copied into row 0) is the gradient of objective _index
            direction = self.momentum.update(self._index, jac[0])
        else:
            direction = self.momentum.update(list(range(m)), jac)
        for p, (a, b) in zip(self._params, self._segments(), strict=True):
            if p.grad is not None and id(p) in in_optimizer:
                p.grad.copy_(direction[a:b].view_as(p))
        self._clear()
        self.steps += 1

    def _clear(self) -> None:
        if self._jac is not None:
            self._jac.zero_()
        self._have_aux = False
        self._loss_sum = None

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
        if self.gramian_only and stage == "fit":
            if get_world_size() > 1 or trainer.world_size > 1:
                raise ValueError(
                    "gramian_only runs on one process only (the global Gramian needs the "
                    "per-rank Jacobians); use the Jacobian path under DDP"
                )
            if trainer.accumulate_grad_batches != 1:
                raise ValueError(
                    "gramian_only weights each micro-batch's Gramian: it needs "
                    "accumulate_grad_batches=1 (the Jacobian path aggregates the accumulated one)"
                )
            self._remove_hooks()
            self._hook_modules(pl_module)

    def _remove_hooks(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks, self._calls, self._recording = [], [], False

    @override
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.gramian_only:
            self._calls, self._recording = [], True

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        self._reset_buffers()
        self._remove_hooks()

    @override
    def config(self) -> dict[str, Any]:
        name = self.aggregator if isinstance(self.aggregator, str) else repr(self.aggregator)
        return {
            "aggregator": name,
            "tasks": self.tasks,
            "aggregator_kwargs": self.aggregator_kwargs,
            "shared": self.shared,
        }

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "steps": self.steps,
            "pcgrad_generator": self.pcgrad_generator.get_state(),
            "momentum": None if self.momentum is None else self.momentum.state_dict(),
            "gradnorm_weights": self.gradnorm_weights,
            "gradnorm_initial": self.gradnorm_initial,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.steps = int(state_dict.get("steps", 0))
        if "pcgrad_generator" in state_dict:
            self.pcgrad_generator.set_state(state_dict["pcgrad_generator"])
        if self.aggregator == GRADNORM:
            self.gradnorm_weights = state_dict.get("gradnorm_weights")
            self.gradnorm_initial = state_dict.get("gradnorm_initial")
        momentum = state_dict.get("momentum")
        if momentum is not None and self.aggregator == MOMENTUM_CONFIG:
            self.momentum = MomentumConFIG(len(momentum["t_grads"]), **self._momentum_kwargs)
            self.momentum.load_state_dict(momentum)

    # -- the Gramian-only path -----------------------------------------------------------------
    def _hook_modules(self, pl_module: LightningModule) -> None:
        if any(p.requires_grad for p in pl_module.parameters(recurse=False)):
            raise ValueError(
                "gramian_only needs every trainable parameter inside a submodule that is called "
                f"(a forward hook sees its output); {type(pl_module).__name__} holds some directly"
            )
        for module in pl_module.modules():
            if module is not pl_module and any(
                p.requires_grad for p in module.parameters(recurse=False)
            ):
                self._hooks.append(module.register_forward_hook(self._record))

    def _record(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        if not self._recording or not torch.is_grad_enabled():
            return
        outs = (
            [output]
            if isinstance(output, Tensor)
            else list(output)
            if isinstance(output, (list, tuple))
            else []
        )
        outs = [t for t in outs if isinstance(t, Tensor) and t.requires_grad]
        if any(m is module for m, _ in self._calls):
            raise ValueError(
                f"gramian_only: module {type(module).__name__} was called twice in one step; its "
                "Gramian block needs one call per step (use the Jacobian path)"
            )
        if outs:
            self._calls.append((module, outs))

    def _gramian_backward(self, objs: list[Tensor], scale: float) -> None:
        """G blockwise per module (never the [m, n] Jacobian), weights, one weighted backward."""
        m = len(objs)
        live = [i for i, t in enumerate(objs) if t.requires_grad]
        calls, self._calls = self._calls, []
        self._recording = False
        outs = [t for _, ts in calls for t in ts]
        gram = torch.zeros(m, m, dtype=torch.float32, device=objs[0].device)
        idx = torch.tensor(live, device=gram.device)
        if live and outs:
            stacked = torch.stack([objs[i] for i in live])
            eye = torch.eye(len(live), dtype=stacked.dtype, device=stacked.device)
            # One vmapped backward to every hooked module's output: [m, *out] cotangents.
            cots = torch.autograd.grad(
                stacked, outs, eye, retain_graph=True, allow_unused=True, is_grads_batched=True
            )
            k = 0
            for module, ts in calls:
                n_out = len(ts)
                pairs = [
                    (t, c) for t, c in zip(ts, cots[k : k + n_out], strict=True) if c is not None
                ]
                k += n_out
                params = [p for p in module.parameters(recurse=False) if p.requires_grad]
                if not pairs or not params:
                    continue
                # The module's own parameters only: autograd prunes the graph below its output.
                blocks = torch.autograd.grad(
                    [t for t, _ in pairs],
                    params,
                    [c for _, c in pairs],
                    retain_graph=True,
                    allow_unused=True,
                    is_grads_batched=True,
                )
                for b in blocks:
                    if b is not None:
                        flat = b.reshape(len(live), -1).float()
                        gram[idx[:, None], idx[None, :]] += flat @ flat.T
        gram = gram.double() / (scale * scale)
        self._gram = gram
        if not bool(torch.isfinite(gram).all()):
            warnings.warn(
                f"{type(self).__name__}: a task gradient overflowed (inf/NaN); this step uses "
                "the main gradient only",
                stacklevel=2,
            )
            weights = torch.zeros(m, dtype=torch.float64)
            weights[0] = 1.0
            self._gram = None
        else:
            weights = self._weights(gram).to(torch.float64)
            if weights.shape != (m,):
                raise ValueError(
                    f"the aggregator must return {m} weights, got {tuple(weights.shape)}"
                )
        self._gram_weights = weights
        outputs = [objs[i] for i in live]
        if outputs:
            # p.grad = sum_i w_i g_i (scaled like Lightning's loss): the update J^T w.
            seeds = [torch.full_like(objs[i], float(weights[i])) for i in live]
            torch.autograd.backward(outputs, grad_tensors=seeds)
