r"""Bloop: gradient surgery against an EMA of the main gradient (guide: `docs/guide/bloop.md`).

From *Careful with that Scalpel: Improving Gradient Surgery with an EMA* (Hsieh, Thornton, Dupont,
Ablin; ICML 2024, arXiv:2402.02998); reference code `apple/ml-bloop` (JAX, `src/bloop/optim.py`).

Goal: minimise an auxiliary objective only *among* the minimisers of the main (training) loss.
With $g = \nabla L_{main}$ and $h = \nabla L_{aux}$ (global-batch averages), one optimizer step is

$$
m \leftarrow (1-\alpha)\,m + \alpha\,g,\qquad
c = \frac{\langle h, m\rangle}{\lVert m\rVert^2 + 10^{-7}},\qquad
d = g + \lambda\,(h - c\,m),
$$

with the inner products over **all parameters as one vector**; $d$ replaces the gradient before
clipping and the optimizer step. $\alpha$ (`ema`) is the weight of the *new* gradient (default
0.1), $\lambda$ (`lbda`) the aux weight (default 0.1). A single mini-batch $g$ is too noisy to
define the orthogonal complement; the EMA $m$ estimates the full-batch main gradient, so $d$ moves
along $h$ only in directions that (on average) do not change the main loss. `ema=1` is the
projection against the instantaneous gradient, `lbda=0` plain training on the main loss.

The pure core is `bloop_direction` (flat tensors or lists of tensors; fp32 math). The callback
[EMAGradientProjection][lightning_losses.callbacks.EMAGradientProjection] (alias `Bloop`)
attaches to a [LossMixin][lightning_losses.mixins.LossMixin] module as its gradient handler: the
module's main loss and aux objectives reach it separately through
[LossMixin.backward][lightning_losses.mixins.loss.LossMixin.backward].

How the gradients are obtained (per micro-batch, then once per optimizer step):

- single process / DDP: $h$ by `torch.autograd.grad(aux, params, retain_graph=True)` (outside
  DDP's reducer), added into one flat fp32 buffer; then one `main.backward()` (DDP averages it into
  `p.grad`). In `on_before_optimizer_step` (AMP-unscaled, all-reduced, before clipping) the buffer
  is all-reduced (mean) with a single collective, so $m$ is identical on every rank.
- FSDP2 (`ModelParallelStrategy` + `fully_shard`): `autograd.grad` would skip FSDP's
  reduce-scatter, so the aux objective is back-propagated with `backward(retain_graph=True)` (FSDP
  reduce-scatters it), its sharded gradient moved into the buffer, the main gradient restored, then
  `main.backward()`. $m$ lives per shard; the partial sums of $\langle h,m\rangle$ and
  $\lVert m\rVert^2$ are all-reduced (one `[P, 3]` collective) so $c$ is global.

The parameters are those the optimizers step (`callbacks.base.trained_parameters`): under FSDP2,
`module.parameters()` lists the all-gathered copies of a module that is not resharded after
forward (the root, by default) until its backward ends, and those copies get no reduced gradient.
When the aux objectives reach a parameter the main objective does not (a loss predictor; found
once, from the first step's autograd graph, and always assumed under FSDP2), the main backward
seeds them with zero: that parameter gets a zero main gradient, so its direction is
$\lambda h$ (its $m$ is 0) and DDP's reducer sees it used.

State: $m$ is stored in the optimizer state (`optimizer.state[p]["bloop_ema"]`, a sharded
DTensor under FSDP2): it has the parameter's shape and sharding, so optimizer checkpointing saves
it next to the optimizer's own moments on every strategy (sharded under FSDP2, no rank-0 gather)
and it follows the optimizer's device placement. It is inserted after the optimizer's first step
(optimizers such as Adam initialise their state only when it is empty). Single process and DDP
restore it with the optimizer state; under FSDP2, Lightning loads the sharded optimizer state into
a template of the fresh optimizer's keys, so `on_load_checkpoint` reads the EMA shards from the
same distributed checkpoint.
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
    grads_set_aside,
    shard_sum_fn,
    trained_parameters,
)
from lightning_losses.callbacks.base import is_dtensor as _is_dtensor
from lightning_losses.callbacks.base import local_shard as _local
from lightning_losses.distributed import all_reduce_sum, get_world_size
from lightning_losses.mixins.loss import LossModel, Role
from lightning_losses.validation import check_bool, check_choice, check_number

__all__ = [
    "EMA_STATE_KEY",
    "SCOPES",
    "Bloop",
    "EMAGradientProjection",
    "bloop_direction",
    "ema_update_",
    "projection_coefficients",
]

SCOPES = ("global", "per_tensor")
EMA_STATE_KEY = "bloop_ema"
INITS = ("grad", "zeros")

TensorOrList = Tensor | Sequence[Tensor]


def _as_list(name: str, value: TensorOrList) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, Tensor) for v in value):
        return list(value)
    raise TypeError(f"{name} must be a tensor or a list of tensors, got {type(value).__name__}")


def _check_structure(g: list[Tensor], others: Mapping[str, list[Tensor]]) -> None:
    for name, tensors in others.items():
        if len(tensors) != len(g):
            raise ValueError(f"{name} must hold {len(g)} tensors like g, got {len(tensors)}")
        for i, (a, b) in enumerate(zip(g, tensors, strict=True)):
            if a.shape != b.shape:
                raise ValueError(
                    f"{name}[{i}] must have the shape of g[{i}]: expected {tuple(a.shape)}, "
                    f"got {tuple(b.shape)}"
                )


def _fp32(tensors: list[Tensor]) -> list[Tensor]:
    # Detached fp32 views (a copy only for another dtype).
    return [t.detach().float() for t in tensors]


def _partials(h: list[Tensor], ema: list[Tensor]) -> Tensor:
    # [P, 3] fp32 partial sums (<h,m>, |m|^2, |h|^2) per tensor: summed over shards/tensors later.
    # The norms are two fused multi-tensor kernels; the inner products one dot per tensor.
    hf, mf = _fp32(h), _fp32(ema)
    dots = torch.stack([torch.vdot(a.reshape(-1), b.reshape(-1)) for a, b in zip(hf, mf)])
    m_norm = torch.stack(torch._foreach_norm(mf))
    h_norm = torch.stack(torch._foreach_norm(hf))
    return torch.stack([dots, m_norm.square(), h_norm.square()], dim=1)


def projection_coefficients(
    h: TensorOrList,
    ema: TensorOrList,
    *,
    scope: str = "global",
    eps: float = 1e-7,
    reduce_fn: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    r"""The coefficient $c = \langle h, m\rangle / (\lVert m\rVert^2 + \epsilon)$ of the projection.

    Args:
        h: the aux gradient (a tensor or a list of tensors).
        ema: the EMA $m$ of the main gradient, shaped like `h`.
        scope: `"global"` (the reference: one $c$ over all tensors as one vector) or
            `"per_tensor"` (one $c$ per tensor; not the paper's method).
        eps: the denominator's $\epsilon$ (reference: `1e-7`).
        reduce_fn: called on the `[P, 3]` fp32 partial sums $(\langle h,m\rangle, \lVert
            m\rVert^2, \lVert h\rVert^2)$ per tensor before they are used, e.g. a SUM all-reduce
            when the tensors are shards (FSDP); `None` = local.

    Returns:
        A fp32 scalar (`"global"`) or `[P]` (`"per_tensor"`).

    Raises:
        TypeError: `h`/`ema` are not tensors or lists of tensors.
        ValueError: mismatched structures or shapes, an unknown `scope`, a negative `eps`.

    Example:
        >>> import torch
        >>> projection_coefficients(torch.tensor([1.0, 1.0]), torch.tensor([2.0, 0.0]), eps=0.0)
        tensor(0.5000)
    """
    return _coefficients(*_check_hm(h, ema), scope=scope, eps=eps, reduce_fn=reduce_fn)[0]


def _graph_leaves(root: Tensor) -> set[int]:
    """`id`s of the leaf tensors (parameters) the autograd graph of `root` accumulates into."""
    leaves: set[int] = set()
    seen: set[Any] = set()
    stack = [root.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # an AccumulateGrad node
        if variable is not None:
            leaves.add(id(variable))
        stack.extend(next_node for next_node, _ in node.next_functions)
    return leaves


def _check_hm(h: TensorOrList, ema: TensorOrList) -> tuple[list[Tensor], list[Tensor]]:
    h_list, ema_list = _as_list("h", h), _as_list("ema", ema)
    _check_structure(h_list, {"ema": ema_list})
    return h_list, ema_list


def _coefficients(
    h: list[Tensor],
    ema: list[Tensor],
    *,
    scope: str,
    eps: float,
    reduce_fn: Callable[[Tensor], Tensor] | None,
) -> tuple[Tensor, Tensor]:
    check_choice("scope", scope, SCOPES)
    eps = check_number("eps", eps, low=0.0)
    partials = _partials(h, ema)
    if reduce_fn is not None:
        partials = reduce_fn(partials)
    if scope == "global":
        partials = partials.sum(0)
    return partials[..., 0] / (partials[..., 1] + eps), partials


def bloop_direction(
    g: TensorOrList,
    h: TensorOrList,
    ema: TensorOrList,
    lbda: float = 0.1,
    *,
    dynamic_barrier: bool = False,
    scope: str = "global",
    eps: float = 1e-7,
    reduce_fn: Callable[[Tensor], Tensor] | None = None,
) -> TensorOrList:
    r"""Bloop's update direction $d = g + \lambda\,(h - c\,m)$ (Hsieh et al., arXiv:2402.02998).

    $$
    c = \frac{\langle h, m\rangle}{\lVert m\rVert^2 + \epsilon},\qquad
    d = g + \lambda\,(h - c\,m),
    $$

    where $m$ is the (already updated, see `ema_update_`) EMA of the main gradient and the inner
    products run over all tensors as one vector (`scope="global"`, the reference `tree_proj`).
    `dynamic_barrier=True` clips $c \le 1/\lambda$ (the reference `dynamic_barrier_direction`):
    with $g \approx m$ the $m$ component of $d$ is then $(1 - \lambda c) \ge 0$, so the aux term
    never reverses the main descent direction. The math runs in fp32; each output has its `g`'s
    dtype.

    Args:
        g: the main gradient (a tensor or a list of tensors).
        h: the aux gradient, shaped like `g`.
        ema: the EMA $m$, shaped like `g`.
        lbda: $\lambda \ge 0$, the weight of the projected aux gradient.
        dynamic_barrier: clip $c$ at $1/\lambda$.
        scope: `"global"` (reference) or `"per_tensor"` (one $c$ per tensor, a labelled variant).
        eps: the projection's $\epsilon$ (reference `1e-7`).
        reduce_fn: reduction of the `[P, 3]` partial sums (see `projection_coefficients`), e.g.
            a SUM all-reduce when `g`, `h`, `ema` are this rank's shards.

    Returns:
        $d$, a tensor or a list like `g`.

    Raises:
        TypeError: the inputs are not tensors or lists of tensors.
        ValueError: mismatched structures or shapes, a negative `lbda`/`eps`, an unknown `scope`.

    Example:
        >>> import torch
        >>> g, h, m = torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0])
        >>> bloop_direction(g, h, m, lbda=0.5)  # the part of h along m is removed
        tensor([1.0000, 0.5000])
    """
    lbda = check_number("lbda", lbda, low=0.0)
    check_bool("dynamic_barrier", dynamic_barrier)
    g_list = _as_list("g", g)
    h_list, ema_list = _as_list("h", h), _as_list("ema", ema)
    _check_structure(g_list, {"h": h_list, "ema": ema_list})
    coef, _ = _coefficients(h_list, ema_list, scope=scope, eps=eps, reduce_fn=reduce_fn)
    if dynamic_barrier and lbda > 0:
        coef = coef.clamp_max(1.0 / lbda)
    gf, hf, mf = _fp32(g_list), _fp32(h_list), _fp32(ema_list)
    fp32: list[Tensor]
    if coef.ndim == 0:  # one coefficient: three fused multi-tensor kernels for all tensors
        scaled = torch._foreach_sub(hf, torch._foreach_mul(mf, coef))
        fp32 = list(torch._foreach_add(gf, scaled, alpha=lbda))
    else:
        fp32 = [gi + lbda * (hi - ci * mi) for gi, hi, mi, ci in zip(gf, hf, mf, coef, strict=True)]
    out = [o.to(gi.dtype) for o, gi in zip(fp32, g_list, strict=True)]
    return out[0] if isinstance(g, Tensor) else out


@torch.no_grad()
def ema_update_(ema: TensorOrList, g: TensorOrList, alpha: float) -> TensorOrList:
    r"""In place $m \leftarrow m + \alpha\,(g - m) = (1-\alpha)\,m + \alpha\,g$.

    Args:
        ema: the EMA $m$ (updated in place).
        g: the new main gradient, shaped like `ema`.
        alpha: the weight of the new gradient, in $[0, 1]$ (1: $m = g$).

    Returns:
        `ema`.

    Raises:
        ValueError: `alpha` outside $[0, 1]$ or mismatched shapes.

    Example:
        >>> import torch
        >>> ema_update_(torch.zeros(2), torch.tensor([1.0, 2.0]), 0.1)
        tensor([0.1000, 0.2000])
    """
    alpha = check_number("alpha", alpha, low=0.0, high=1.0)
    ema_list, g_list = _as_list("ema", ema), _as_list("g", g)
    _check_structure(ema_list, {"g": g_list})
    torch._foreach_lerp_(ema_list, [gi.to(mi.dtype) for mi, gi in zip(ema_list, g_list)], alpha)
    return ema


class EMAGradientProjection(BehaviourCallback):
    r"""Bloop: add the aux gradient projected orthogonally to an EMA of the main gradient.

    *Careful with that Scalpel: Improving Gradient Surgery with an EMA* (Hsieh et al., ICML 2024,
    arXiv:2402.02998). Each optimizer step the gradient becomes
    $d = g + \lambda\,(h - c\,m)$ with $m \leftarrow (1-\alpha)m + \alpha g$ and
    $c = \langle h,m\rangle/(\lVert m\rVert^2 + \epsilon)$ over all parameters (see
    `bloop_direction`). It acts once per optimizer step on the accumulated, AMP-unscaled,
    all-reduced gradients, before clipping: `accumulate_grad_batches=N` gives the step of one
    N-times larger batch.

    The module must inherit [LossMixin][lightning_losses.mixins.LossMixin] and return
    `self.compute_loss(..., aux={...})` from `training_step` (automatic optimization), or call
    `self.manual_loss_backward(output)` (manual optimization, e.g. FSDP2); the aux objectives
    must not be summed into the main loss. It acts on the parameters the optimizers step;
    gradients only of those that receive a main gradient are changed.

    Args:
        ema: $\alpha \in (0, 1]$, the weight of the new main gradient in the EMA (reference
            default 0.1; `1.0` = projection on the instantaneous gradient).
        lbda: $\lambda \ge 0$, the weight of the projected aux gradient (reference default 0.1).
        dynamic_barrier: clip $c \le 1/\lambda$ (reference `dynamic_barrier_direction`).
        scope: `"global"` (reference) or `"per_tensor"` (one $c$ per parameter tensor; a variant
            that is not the paper's method).
        aux_weights: which aux objectives form $h$ and their weights: `None` = all, weight 1;
            a mapping `{name: weight}` = those only, $h = \sum_k w_k \nabla L_k$. Aux
            objectives not named are back-propagated with the main loss (part of $g$).
        init: first EMA value: `"grad"` ($m$ = the first main gradient, reference default) or
            `"zeros"`.
        eps: the projection's $\epsilon$ (reference `1e-7`).
        log_stats: log `bloop/{coef,cos,ema_norm,aux_grad_norm}` on optimizer steps that are
            multiples of `trainer.log_every_n_steps`.

    Raises:
        ValueError: bad arguments (at construction) or, at the first backward, a step without
            aux objectives or an `aux_weights` name the module does not produce.
        TypeError: at setup, a module that does not inherit `LossMixin`.

    Example:
        >>> cb = EMAGradientProjection(ema=0.1, lbda=0.1)
        >>> cb.role
        'gradient_handler'
    """

    role = Role.GRADIENT_HANDLER
    requires = LossModel
    requires_hint = (
        "inherit lightning_losses.mixins.LossMixin and return self.compute_loss(..., aux={...}) "
        "from training_step"
    )
    config_keys = ("ema", "lbda", "dynamic_barrier", "scope", "aux_weights", "init", "eps")
    call_hint = (
        "its training_step must compute the loss with self.compute_loss(..., aux={...}) "
        "(LossMixin) and let Lightning call LossMixin.backward (or call "
        "self.manual_loss_backward(output) in manual optimization)"
    )

    def __init__(
        self,
        ema: float = 0.1,
        lbda: float = 0.1,
        *,
        dynamic_barrier: bool = False,
        scope: str = "global",
        aux_weights: Mapping[str, float] | None = None,
        init: str = "grad",
        eps: float = 1e-7,
        log_stats: bool = True,
    ) -> None:
        super().__init__()
        self.ema = check_number("ema", ema, low=0.0, high=1.0, low_inclusive=False)
        self.lbda = check_number("lbda", lbda, low=0.0)
        self.dynamic_barrier = check_bool("dynamic_barrier", dynamic_barrier)
        self.scope = check_choice("scope", scope, SCOPES)
        if aux_weights is not None:
            if not isinstance(aux_weights, Mapping) or not aux_weights:
                raise ValueError(
                    "aux_weights must be None or a non-empty mapping {aux name: weight}, got "
                    f"{aux_weights!r}"
                )
            aux_weights = {
                str(k): check_number(f"aux_weights[{k!r}]", v) for k, v in aux_weights.items()
            }
        self.aux_weights = aux_weights
        self.init = check_choice("init", init, INITS)
        self.eps = check_number("eps", eps, low=0.0)
        self.log_stats = check_bool("log_stats", log_stats)
        self.steps = 0  # optimizer steps the projection was applied on (checkpointed)
        self.last_stats: dict[str, Tensor] = {}  # the last logged diagnostics, for inspection
        self._reset_buffers()

    def _reset_buffers(self) -> None:
        self._params: list[Tensor] | None = None
        self._flat: Tensor | None = None  # single process / DDP: one fp32 buffer, one all-reduce
        self._aux: list[Tensor] | None = None  # per-parameter views (or local shards under FSDP)
        self._sharded = False
        self._have_aux = False
        self._ema: dict[int, Tensor] = {}
        self._hooked: set[int] = set()
        self._pending: list[tuple[Tensor, Tensor]] = []
        self._warned_non_finite = False
        self._aux_only: bool | None = None  # do the aux objectives reach a parameter main misses?

    # -- GradientHandler protocol ----------------------------------------------------------
    def _split(self, main: Tensor, aux: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        if not aux:
            raise ValueError(
                f"{type(self).__name__} needs at least one aux objective: compute the loss with "
                "self.compute_loss(..., aux={'name': scalar}); got none"
            )
        weights = self.aux_weights or dict.fromkeys(aux, 1.0)
        missing = sorted(set(weights) - set(aux))
        if missing:
            raise ValueError(
                f"aux_weights names {missing} that the module's compute_loss does not produce "
                f"(aux objectives: {sorted(aux)})"
            )
        total = torch.stack([weights[k] * aux[k].to(main.dtype) for k in weights]).sum()
        return fold_unclaimed_aux(main, aux, weights), total

    def _allocate(self, params: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        # Returns (params, aux buffers), also kept as self._params / self._aux.
        self._params = params
        self._sharded = any(_is_dtensor(p) for p in params)
        if self._sharded:
            self._aux = [torch.zeros_like(_local(p), dtype=torch.float32) for p in params]
            return params, self._aux
        device = params[0].device if params else torch.device("cpu")
        total = sum(p.numel() for p in params)
        self._flat = torch.zeros(total, dtype=torch.float32, device=device)
        views, offset = [], 0
        for p in params:
            views.append(self._flat[offset : offset + p.numel()].view(p.shape))
            offset += p.numel()
        self._aux = views
        return params, views

    def backward(
        self,
        module: LightningModule,
        main: Tensor,
        aux: Mapping[str, Tensor],
        *,
        accumulation_factor: float,
        scaler: Any | None,
    ) -> None:
        """Back-propagate `main` into `p.grad` and add the aux gradient into the fp32 buffer.

        Called by [LossMixin.backward][lightning_losses.mixins.loss.LossMixin.backward] with
        `main` and `aux` already scaled like Lightning's loss (accumulation factor, AMP scale);
        the AMP scale is divided out of the buffer here, in fp32, so an fp16 aux gradient does
        not underflow.

        Args:
            module: the LightningModule.
            main: the scaled main objective.
            aux: the scaled aux objectives by name.
            accumulation_factor: unused (already applied to `main` and `aux`).
            scaler: the AMP grad scaler or `None`.
        """
        self.notify_called()
        main, aux_total = self._split(main, aux)
        if self._params is None or self._aux is None:
            # The optimizers' parameters: under FSDP2 the sharded ones (module.parameters() would
            # list the root's all-gathered copies at this point, which get no reduced gradient).
            params, bufs = self._allocate(trained_parameters(module))
        else:
            params, bufs = self._params, self._aux
        inv_scale = 1.0 / amp_scale(scaler)
        if aux_total.requires_grad and params:
            if self._sharded:
                # FSDP2: backward() so that FSDP reduce-scatters the aux gradient; keep the main
                # gradient accumulated so far aside and restore it afterwards.
                with grads_set_aside(params):
                    aux_total.backward(retain_graph=True)
                    for buf, p in zip(bufs, params, strict=True):
                        if p.grad is not None:
                            buf.add_(_local(p.grad).float(), alpha=inv_scale)
            else:
                grads = torch.autograd.grad(aux_total, params, retain_graph=True, allow_unused=True)
                for buf, grad in zip(bufs, grads, strict=True):
                    if grad is not None:
                        buf.add_(grad.float(), alpha=inv_scale)
                if self._aux_only is None:  # decided once, from the first step's graph
                    reached = _graph_leaves(main)
                    self._aux_only = any(
                        g is not None and id(p) not in reached
                        for p, g in zip(params, grads, strict=True)
                    )
            self._have_aux = True
        # Under FSDP2 the graph's leaves are the all-gathered copies, so whether the main
        # objective misses a parameter the aux objectives reach is not known: always seed there.
        if (self._sharded or self._aux_only) and aux_total.requires_grad:
            # A parameter only the aux objectives reach (a loss predictor) gets a zero main
            # gradient from a zero seed on them, so the projection applies to it (direction
            # λh) and DDP's reducer sees it used. Only then: the seed costs a second pass
            # through the aux graph.
            torch.autograd.backward(
                [main, aux_total], [torch.ones_like(main), torch.zeros_like(aux_total)]
            )
        else:
            main.backward()

    # -- the step ----------------------------------------------------------------------------
    def _reduce_fn(self) -> Callable[[Tensor], Tensor] | None:
        if not self._sharded:
            return None
        return shard_sum_fn(self._params or [], type(self).__name__)

    def _ema_for(self, optimizer: Any, p: Tensor, g: Tensor) -> tuple[Tensor, bool]:
        stored = optimizer.state.get(p, {}).get(EMA_STATE_KEY)
        if stored is None:
            stored = self._ema.get(id(p))
        if stored is not None:
            return stored, False
        local = torch.zeros_like(g)
        if self._sharded and _is_dtensor(p):
            from torch.distributed.tensor import DTensor

            stored = DTensor.from_local(
                local, p.device_mesh, p.placements, shape=p.shape, stride=p.stride()
            )
        else:
            stored = local
        return stored, True

    def _hook(self, optimizer: Any, items: list[tuple[Tensor, Tensor]]) -> None:
        # After the optimizer's step its own state exists (Adam initialises an empty state only):
        # then the EMA joins it, so optimizer checkpointing saves, shards and restores it.
        key = id(optimizer)
        self._pending = items
        if key in self._hooked:
            return
        self._hooked.add(key)

        def insert(opt: Any, args: Any, kwargs: Any) -> None:
            for p, m in self._pending:
                opt.state[p][EMA_STATE_KEY] = m
            self._pending = []

        optimizer.register_step_post_hook(insert)

    @override
    @torch.no_grad()
    def on_before_optimizer_step(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: Any
    ) -> None:
        if self._params is None or self._aux is None:
            return
        optimizer = getattr(optimizer, "optimizer", optimizer)  # a LightningOptimizer wraps it
        in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
        world = get_world_size()
        if self._flat is not None and world > 1 and self._have_aux:
            # autograd.grad bypassed DDP's reducer: average the aux gradient like p.grad.
            all_reduce_sum(self._flat).div_(world)
        entries = []
        for p, buf in zip(self._params, self._aux, strict=True):
            if p.grad is None or id(p) not in in_optimizer:
                continue
            g = _local(p.grad)
            m, fresh = self._ema_for(optimizer, p, g)
            entries.append((p, g, buf, m, fresh))
        if not entries:
            return
        g_list = [e[1] for e in entries]
        h_list = [e[2] for e in entries]
        m_list = [_local(e[3]) for e in entries]
        if getattr(trainer.precision_plugin, "scaler", None) is not None and not self._finite(
            g_list, h_list
        ):
            return
        for (_, g, _, _, fresh), m_local in zip(entries, m_list, strict=True):
            alpha = 1.0 if fresh and self.init == "grad" else self.ema
            ema_update_(m_local, g, alpha)
        for p, _, _, m, fresh in entries:
            if fresh:  # kept only once initialised (a skipped fp16 step leaves it fresh)
                self._ema[id(p)] = m
        direction = bloop_direction(
            g_list,
            h_list,
            m_list,
            self.lbda,
            dynamic_barrier=self.dynamic_barrier,
            scope=self.scope,
            eps=self.eps,
            reduce_fn=self._reduce_fn(),
        )
        for g, d in zip(g_list, direction, strict=True):
            g.copy_(d)
        self._hook(optimizer, [(e[0], e[3]) for e in entries])
        self._log(trainer, pl_module, h_list, m_list)
        self._clear_aux()
        self.steps += 1

    def _finite(self, g: list[Tensor], h: list[Tensor]) -> bool:
        # fp16 AMP only (one host sync): an overflowed main gradient means the scaler skips this
        # step, so the EMA must not absorb it; an overflowed aux gradient is dropped for the step.
        flags = torch.stack([torch.stack([x.isfinite().all() for x in t]).all() for t in (g, h)])
        reduce_fn = self._reduce_fn()
        if reduce_fn is not None:
            flags = reduce_fn((~flags).float()) == 0
        g_ok, h_ok = (bool(f) for f in flags)
        if g_ok and not h_ok:
            self._clear_aux()
            if not self._warned_non_finite:
                self._warned_non_finite = True
                warnings.warn(
                    f"{type(self).__name__}: the aux gradient overflowed (inf/NaN) under AMP; it "
                    "is dropped for this step (warned once)",
                    stacklevel=2,
                )
        if not g_ok:
            self._clear_aux()
        return g_ok

    def _clear_aux(self) -> None:
        if self._flat is not None:
            self._flat.zero_()
        else:
            for buf in self._aux or []:
                buf.zero_()
        self._have_aux = False

    def _log(
        self, trainer: Trainer, pl_module: LightningModule, h: list[Tensor], m: list[Tensor]
    ) -> None:
        if not self.log_stats:
            return
        # global_step advances after this hook: the step being taken is global_step + 1.
        if (trainer.global_step + 1) % self.log_interval(trainer) != 0:
            return
        _, partials = _coefficients(h, m, scope="global", eps=self.eps, reduce_fn=self._reduce_fn())
        hm, mm, hh = partials.unbind()
        stats = {
            "coef": hm / (mm + self.eps),
            "cos": hm / (mm.sqrt() * hh.sqrt()).clamp_min(1e-30),
            "ema_norm": mm.sqrt(),
            "aux_grad_norm": hh.sqrt(),
        }
        self.last_stats = stats
        pl_module.log_dict(
            {f"bloop/{k}": v.to(pl_module.device) for k, v in stats.items()},
            on_step=True,
            on_epoch=False,
            batch_size=1,
        )

    # -- lifecycle ------------------------------------------------------------------------------
    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        # Buffers are rebuilt for the module of this fit (FSDP2 swaps in DTensor parameters).
        steps = self.steps
        self._reset_buffers()
        self.steps = steps

    @override
    def on_load_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # FSDP2: Lightning loads a sharded optimizer checkpoint into a template of the fresh
        # optimizer's state keys, which lacks the EMA; read its shards from the same
        # distributed checkpoint here (each rank reads its own shard, in place).
        path = trainer.ckpt_path
        if path is None or not any(_is_dtensor(p) for p in pl_module.parameters()):
            return
        import torch.distributed.checkpoint as dcp

        names = {id(p): n for n, p in pl_module.named_parameters()}
        for index, optimizer in enumerate(trainer.optimizers):
            optimizer = getattr(optimizer, "optimizer", optimizer)
            slots = {
                names[id(p)]: torch.zeros_like(p.detach())
                for group in optimizer.param_groups
                for p in group["params"]
                if _is_dtensor(p) and id(p) in names
            }
            state = {
                f"optimizer_{index}": {"state": {n: {EMA_STATE_KEY: t} for n, t in slots.items()}}
            }
            try:
                dcp.load(state, checkpoint_id=path)
            except Exception as err:  # a checkpoint saved before the first Bloop step
                warnings.warn(
                    f"{type(self).__name__}: no EMA found in the checkpoint ({err}); it starts "
                    "afresh",
                    stacklevel=2,
                )
                return
            by_name = dict(pl_module.named_parameters())
            for n, t in slots.items():
                self._ema[id(by_name[n])] = t

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        steps = self.steps
        self._reset_buffers()
        self.steps = steps

    @override
    def state_dict(self) -> dict[str, Any]:
        # The EMA itself lives in the optimizer state (see the module docstring).
        return {**super().state_dict(), "steps": self.steps}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.steps = int(state_dict.get("steps", 0))


Bloop = EMAGradientProjection
"""Alias of [EMAGradientProjection][lightning_losses.callbacks.EMAGradientProjection]."""
