r"""Sharpness-aware minimization (SAM) and adaptive SAM (ASAM) as a callback (`docs/guide/sam.md`).

From *Sharpness-Aware Minimization for Efficiently Improving Generalization* (Foret, Kleiner,
Mobahi, Neyshabur; ICLR 2021, arXiv:2010.01412) and *ASAM: Adaptive Sharpness-Aware Minimization
for Scale-Invariant Learning of Deep Neural Networks* (Kwon, Kim, Park, Choi; ICML 2021,
arXiv:2102.11600).

One SAM step on the mini-batch loss $L$ at weights $w$:

$$
\hat\epsilon = \rho\,\frac{T_w^2\,\nabla L(w)}{\lVert T_w \nabla L(w)\rVert_2 + 10^{-12}},\qquad
g_{SAM} = \nabla L(w + \hat\epsilon),
$$

then the weights are restored to $w$ and the base optimizer steps with $g_{SAM}$. The norm runs
over all parameters as one vector. Plain SAM: $T_w = I$ (so $\lVert\hat\epsilon\rVert = \rho$).
ASAM (`adaptive=True`): $T_w = \mathrm{diag}(|w| + \eta)$ elementwise. Checked against the
authors' code: `google-research/sam` (JAX) for SAM; for ASAM, `SamsungLabs/ASAM` applies
$T_w = |w| + \eta$ with $\eta = 0.01$, $\rho = 0.5$ to parameters named `weight` only, and the
widely used PyTorch port `davda54/sam` (`adaptive=True`) applies $T_w = |w|$ ($\eta = 0$) to every
parameter. Ours applies $T_w = |w| + \eta$ to every parameter with `eta=0.0` by default, i.e.
`davda54/sam`'s `SAM(params, base, rho, adaptive=True)`; `eta=0.01, rho=0.5` gives the paper's
setting except on biases and normalisation parameters.

**Seam.** [SAM][lightning_losses.callbacks.SAM] wraps the module's `training_step` (an instance
attribute installed in `setup`, removed in `teardown`), so any module and whatever optimizer
`configure_optimizers` returns work under automatic optimization. Inside one call of the wrapped
step:

1. pass 1: the module's `training_step` at $w$; its loss is differentiated with
   `torch.autograd.grad` (outside DDP's reducer: no gradient synchronisation, and `p.grad` is not
   touched);
2. $\hat\epsilon$ from that gradient; $w \leftarrow w + \hat\epsilon$ (a copy of $w$ is kept);
3. pass 2: the module's `training_step` at $w + \hat\epsilon$; its output is what Lightning
   back-propagates (and reduces under DDP);
4. `on_after_backward`: $w$ is restored exactly from the copy, before clipping and the optimizer
   step.

The obvious alternative, an optimizer wrapper whose `step(closure)` calls the closure twice, does
not work under fp16 AMP (Lightning's grad-scaler plugin evaluates the closure itself and calls
`scaler.step(optimizer)` without it) nor under gradient accumulation (only the last micro-batch's
closure reaches `step`). Wrapping the step works for both.

**What runs twice, deliberately:**

- logging: `self.log`/`self.log_dict` are disabled in pass 2, so `train/loss` is the loss at $w$
  (pass 1) and epoch means count each batch once. The callback logs `sam/sharpness`
  ($L(w + \hat\epsilon) - L(w)$) and `sam/ascent_grad_norm` ($\lVert T_w \nabla L(w)\rVert$);
- batch normalisation: the running statistics are updated by pass 1 only (pass 2 runs every
  `_BatchNorm` with momentum 0 and `num_batches_tracked` restored); pass 2 still normalises with
  the batch statistics, as in training;
- a sample weighter (`LossReweighting`, role `sample_weighter`): the weights are computed from
  the pass-1 losses and replayed unchanged in pass 2, so both passes optimise the same weighted
  objective;
- dropout and other randomness: with `replay_rng=True` (default) pass 2 restarts from the RNG
  state of pass 1, so both passes draw the same dropout masks and the ascent and descent
  gradients are of one stochastic objective;
- any other side effect of the forward (counters, EMA buffers updated in `forward`) runs twice.

**Gradient clipping** (`Trainer(gradient_clip_val=...)`) acts on $\nabla L(w + \hat\epsilon)$, the
gradient the optimizer uses; the pass-1 gradient is never clipped.

**Gradient accumulation:** each micro-batch takes its own ascent step from its own gradient and
contributes $\nabla L_j(w + \hat\epsilon_j)$; the optimizer steps with their mean. This is SAM's
m-sharpness with $m$ = the micro-batch size (the paper's own implementation perturbs per
accelerator the same way).

**DDP:** by default each rank perturbs with its own gradient (m-sharpness with $m$ = the per-rank
batch, as in the paper; no extra communication), and DDP averages the pass-2 gradients. With
`sync_perturbation=True` the pass-1 gradients are averaged over ranks first (one all-reduce of
the flat gradient), so every rank uses the global-batch ascent direction.

**FSDP2** (`ModelParallelStrategy`): needs `sync_perturbation=True`. The forward runs on
all-gathered copies, so `torch.autograd.grad` cannot reach the sharded parameters; pass 1 runs a
plain backward instead (FSDP2 reduce-scatters: each rank gets its shard of the rank-averaged
gradient; the gradients accumulated by earlier micro-batches are set aside and put back), the
norm is the square root of the shards' summed squares (one scalar all-reduce), and each rank
perturbs and restores its own shards in place. A per-rank direction would need each rank's full
unreduced gradient and is refused; so are FSDP1 and DeepSpeed (flat or partitioned parameters).

**fp16 AMP:** pass 1 differentiates `scaler.scale(loss)` and divides by `scaler.get_scale()`
itself (it never calls `scaler.unscale_`, which Lightning calls once for pass 2 before
`on_before_optimizer_step`). A non-finite pass-1 gradient skips the perturbation for that
micro-batch ($\hat\epsilon = 0$, counted in `sam/skipped`); the scaler handles pass 2 as usual.

Cost: two forward and two backward passes per SAM step (`interval=k` takes a SAM step every
$k$-th optimizer step and plain steps otherwise, as Composer's `SAM(interval=k)` does), and one
copy of the parameters.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor
from typing_extensions import override

from lightning_losses.callbacks.base import (
    BehaviourCallback,
    amp_scale,
    grads_set_aside,
    is_dtensor,
    local_shard,
    shard_sum_fn,
    trained_parameters,
)
from lightning_losses.distributed import all_reduce_sum, get_world_size, is_distributed
from lightning_losses.mixins.loss import Role
from lightning_losses.nn.vat import frozen_batchnorm_stats
from lightning_losses.validation import check_bool, check_int, check_number

__all__ = ["SAM", "sam_perturbation"]

_NORM_EPS = 1e-12


def sam_perturbation(
    params: Sequence[Tensor],
    grads: Sequence[Tensor | None],
    rho: float = 0.05,
    *,
    adaptive: bool = False,
    eta: float = 0.0,
    sum_fn: Callable[[Tensor], Tensor] | None = None,
) -> tuple[list[Tensor], Tensor]:
    r"""The SAM / ASAM ascent step $\hat\epsilon$ for every parameter (fp32 norm).

    $\hat\epsilon = \rho\,T_w^2 g / (\lVert T_w g\rVert_2 + 10^{-12})$ with the norm over all
    parameters as one vector; $T_w = I$ (SAM) or $T_w = |w| + \eta$ elementwise
    (`adaptive=True`, ASAM). A parameter whose gradient is `None` gets $\hat\epsilon = 0$.

    Args:
        params: the parameters $w$ (tensors of any shapes).
        grads: their gradients $g$ at $w$, same length (entries may be `None`).
        rho: the neighbourhood radius $\rho \ge 0$.
        adaptive: ASAM's scale-invariant neighbourhood.
        eta: ASAM's $\eta \ge 0$ (ignored unless `adaptive`).
        sum_fn: for sharded parameters (`params` and `grads` are this rank's shards): sums the
            local sum of squares over the ranks that hold the other shards (e.g.
            `lightning_losses.callbacks.base.shard_sum_fn`), so that the norm is the global one.
            `None`: `params` are whole.

    Returns:
        `(eps, norm)`: the list of $\hat\epsilon$ (each like its parameter) and the scalar
        $\lVert T_w g\rVert_2$ (fp32).

    Raises:
        ValueError: `params` and `grads` differ in length or a gradient's shape differs.

    Example:
        >>> import torch
        >>> from lightning_losses.callbacks import sam_perturbation
        >>> w = [torch.tensor([1.0, 2.0])]
        >>> eps, norm = sam_perturbation(w, [torch.tensor([3.0, 4.0])], rho=0.5)
        >>> eps[0], norm
        (tensor([0.3000, 0.4000]), tensor(5.))
    """
    rho = check_number("rho", rho, low=0.0)
    eta = check_number("eta", eta, low=0.0)
    adaptive = check_bool("adaptive", adaptive)
    if len(params) != len(grads):
        raise ValueError(f"params and grads differ in length: {len(params)} vs {len(grads)}")
    scaled: list[Tensor | None] = []
    for p, g in zip(params, grads, strict=True):
        if g is None:
            scaled.append(None)
            continue
        if g.shape != p.shape:
            raise ValueError(
                f"a gradient of shape {tuple(g.shape)} does not match its parameter's "
                f"{tuple(p.shape)}"
            )
        t = (p.detach().abs().float() + eta) if adaptive else None
        scaled.append(g.float() * t if t is not None else g.float())
    present = [s for s in scaled if s is not None]
    device = params[0].device if len(params) else torch.device("cpu")
    if sum_fn is not None:
        # Shards: the global norm is the square root of the summed local sums of squares.
        local = [s.square().sum() for s in present]
        squares = torch.stack(local).sum() if local else torch.zeros((), device=device)
        norm = sum_fn(squares).sqrt()
    elif present:
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s) for s in present]))
    else:
        norm = torch.zeros((), device=device)
    scale = rho / (norm + _NORM_EPS)
    eps = []
    for p, s in zip(params, scaled, strict=True):
        if s is None:
            eps.append(torch.zeros_like(p))
            continue
        e = s * (p.detach().abs().float() + eta) if adaptive else s
        eps.append((e * scale).to(p.dtype))
    return eps, norm


def _loss_of(output: Any) -> Tensor | None:
    # Lightning's contract for training_step: a Tensor, a dict with "loss", or None (skip).
    if isinstance(output, Tensor):
        return output
    if isinstance(output, dict):
        loss = output.get("loss")
        return loss if isinstance(loss, Tensor) else None
    return None


class _RecordingWeighter:
    """Pass 1: forwards to the real sample weighter and records the weights it returns."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.recorded: list[Tensor] = []

    def notify_called(self) -> None:
        notify = getattr(self.inner, "notify_called", None)
        if notify is not None:
            notify()

    def sample_weights(self, per_sample: Tensor) -> Tensor:
        weights = self.inner.sample_weights(per_sample)
        self.recorded.append(weights.detach())
        return weights


class _ReplayingWeighter:
    """Pass 2: returns the pass-1 weights in order (the weighter is not called again)."""

    def __init__(self, recorded: list[Tensor]) -> None:
        self.recorded = list(recorded)

    def notify_called(self) -> None:
        pass

    def sample_weights(self, per_sample: Tensor) -> Tensor:
        if not self.recorded:
            raise RuntimeError(
                "SAM: the second pass reduced more per-sample losses than the first; a "
                "training_step under SAM must compute the same losses at both points"
            )
        return self.recorded.pop(0)


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


class SAM(BehaviourCallback):
    r"""Sharpness-aware minimization (SAM / ASAM) for any module and optimizer.

    `Trainer(callbacks=[SAM(rho=0.05)])`: every training step (every `interval`-th optimizer
    step) runs the module's `training_step` at $w$, perturbs the weights to
    $w + \hat\epsilon$ (see `sam_perturbation`), runs it again, back-propagates the second loss,
    restores $w$ and lets the optimizer step. The module's `train/loss` stays the loss at $w$.
    See the module docstring for what runs twice, clipping, accumulation, DDP and AMP.

    Args:
        rho: the neighbourhood radius $\rho \ge 0$ (paper default 0.05 for SAM; ASAM uses
            larger values, e.g. 0.5 to 2). `rho=0` trains like the base optimizer (two passes).
        adaptive: ASAM ($T_w = |w| + \eta$).
        eta: ASAM's $\eta \ge 0$.
        interval: take a SAM step every `interval` optimizer steps (`global_step % interval ==
            0`), plain steps in between.
        sync_perturbation: under DDP, average the pass-1 gradients over ranks before the
            perturbation (one all-reduce); default `False` is per-rank m-sharpness. Required
            under FSDP2, where the pass-1 gradient is always the rank-averaged one.
        replay_rng: run pass 2 from pass 1's RNG state (identical dropout masks).

    Example:
        >>> from lightning_losses.callbacks import SAM
        >>> SAM(rho=0.05).state_dict()["config"]["rho"]
        0.05
    """

    config_keys = ("rho", "adaptive", "eta", "interval", "sync_perturbation", "replay_rng")

    def __init__(
        self,
        rho: float = 0.05,
        adaptive: bool = False,
        eta: float = 0.0,
        interval: int = 1,
        sync_perturbation: bool = False,
        replay_rng: bool = True,
    ) -> None:
        super().__init__()
        self.rho = check_number("rho", rho, low=0.0)
        self.adaptive = check_bool("adaptive", adaptive)
        self.eta = check_number("eta", eta, low=0.0)
        self.interval = check_int("interval", interval, low=1)
        self.sync_perturbation = check_bool("sync_perturbation", sync_perturbation)
        self.replay_rng = check_bool("replay_rng", replay_rng)
        self._backup: list[tuple[Tensor, Tensor]] | None = None
        self._installed: LightningModule | None = None
        self._skipped = torch.zeros((), dtype=torch.long)

    # -------------------------------------------------------------------------- checking
    @override
    def check_module(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().check_module(trainer, pl_module)
        if not pl_module.automatic_optimization:
            raise ValueError(
                "SAM needs automatic optimization (it wraps training_step and lets Lightning "
                "back-propagate the second pass); with manual optimization, compute the two "
                "passes yourself with sam_perturbation"
            )
        strategy = type(trainer.strategy).__name__
        if "FSDP" in strategy or "DeepSpeed" in strategy:
            raise ValueError(
                f"SAM does not support the sharded strategy {strategy}: its flat or partitioned "
                "parameters hide the per-parameter shards the ascent step edits; use "
                "ModelParallelStrategy (FSDP2, with sync_perturbation=True), DDP or a single device"
            )
        if "ModelParallel" in strategy and not self.sync_perturbation:
            raise ValueError(
                "SAM under ModelParallelStrategy (FSDP2) needs sync_perturbation=True: a rank "
                "holds only the reduce-scattered (rank-averaged) gradient shard, so the ascent "
                "direction is the global batch's; the per-rank direction (m-sharpness) would need "
                "each rank's full unreduced gradient"
            )

    # ------------------------------------------------------------------------------ hooks
    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit" or self._installed is pl_module:
            return
        original = pl_module.training_step  # the bound method of the class
        pl_module.__dict__["training_step"] = functools.update_wrapper(
            functools.partial(self._training_step, trainer, pl_module, original), original
        )
        self._installed = pl_module

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._restore()
        if self._installed is pl_module:
            pl_module.__dict__.pop("training_step", None)
            self._installed = None
        super().teardown(trainer, pl_module, stage)

    @override
    def on_after_backward(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # After the pass-2 backward (and DDP's all-reduce), before clipping and the step.
        self._restore()

    @override
    def on_before_optimizer_step(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: Any
    ) -> None:
        # A backward that bypassed on_after_backward must never let the optimizer step from w+eps.
        self._restore()

    # ---------------------------------------------------------------------------- the step
    def _active(self, trainer: Trainer, pl_module: LightningModule) -> bool:
        return pl_module.training and trainer.global_step % self.interval == 0

    def _training_step(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        original: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        if not self._active(trainer, pl_module):
            return original(*args, **kwargs)
        params = trained_parameters(pl_module)
        rng = self._rng_state(params) if self.replay_rng else None
        weighter = pl_module.__dict__.get(Role.SAMPLE_WEIGHTER)
        recorder = _RecordingWeighter(weighter) if weighter is not None else None
        with _attribute(pl_module, Role.SAMPLE_WEIGHTER, recorder):
            first = original(*args, **kwargs)
        loss = _loss_of(first)
        if loss is None or not params:
            return first  # a skipped step: nothing to perturb
        if any(is_dtensor(p) for p in params):
            grads = self._ascent_grads_sharded(loss, params, trainer)
            norm = self._perturb(
                [local_shard(p) for p in params],
                [None if g is None else local_shard(g) for g in grads],
                shard_sum_fn(params, type(self).__name__),
            )
        else:
            norm = self._perturb(params, self._ascent_grads(loss, params, trainer))
        if rng is not None:
            self._set_rng_state(rng)
        replay = _ReplayingWeighter(recorder.recorded) if recorder is not None else None
        with (
            _attribute(pl_module, Role.SAMPLE_WEIGHTER, replay),
            frozen_batchnorm_stats(pl_module),
            _silenced_logging(trainer, pl_module),
        ):
            second = original(*args, **kwargs)
        second_loss = _loss_of(second)
        if second_loss is None:
            self._restore()
            return second
        if trainer.global_step % self.log_interval(trainer) == 0:
            # One call, on logging steps only: each `log` costs Python time on every step.
            pl_module.log_dict(
                {
                    "sam/sharpness": (second_loss - loss).detach().float(),
                    "sam/ascent_grad_norm": norm.float(),
                    "sam/skipped": self._skipped.float(),
                },
                on_step=True,
                on_epoch=False,
                batch_size=1,
            )
        return second

    def _ascent_grads(
        self, loss: Tensor, params: list[Tensor], trainer: Trainer
    ) -> list[Tensor | None]:
        plugin = getattr(trainer, "precision_plugin", None)
        scaler = getattr(plugin, "scaler", None)
        target = scaler.scale(loss) if scaler is not None else loss
        grads = _unscaled(list(torch.autograd.grad(target, params, allow_unused=True)), scaler)
        if self.sync_perturbation and is_distributed():
            grads = _mean_over_ranks(grads, params)
        return grads

    def _ascent_grads_sharded(
        self, loss: Tensor, params: list[Tensor], trainer: Trainer
    ) -> list[Tensor | None]:
        # FSDP2: the forward ran on all-gathered copies, so the sharded parameters are not in the
        # autograd graph (torch.autograd.grad cannot reach them). A plain backward runs FSDP2's
        # reduce-scatter and leaves each rank its shard of the rank-averaged gradient in p.grad;
        # the gradients accumulated so far (earlier micro-batches) are set aside and put back.
        plugin = getattr(trainer, "precision_plugin", None)
        scaler = getattr(plugin, "scaler", None)
        with grads_set_aside(params):
            (scaler.scale(loss) if scaler is not None else loss).backward()
            grads: list[Tensor | None] = [p.grad for p in params]
        return _unscaled(grads, scaler)

    def _perturb(
        self,
        params: list[Tensor],
        grads: list[Tensor | None],
        sum_fn: Callable[[Tensor], Tensor] | None = None,
    ) -> Tensor:
        # Under FSDP2 `params` and `grads` are the local shards (views: the edits reach the
        # parameters) and `sum_fn` makes the norm global.
        eps, norm = sam_perturbation(
            params, grads, self.rho, adaptive=self.adaptive, eta=self.eta, sum_fn=sum_fn
        )
        # A non-finite gradient (fp16 overflow in pass 1) has a non-finite norm: no ascent for
        # this micro-batch (the scaler judges pass 2). Decided on the device, without a sync.
        ok = torch.isfinite(norm)
        self._skipped = self._skipped.to(norm.device) + (~ok).long()
        backup = []
        with torch.no_grad():
            for p, e in zip(params, eps, strict=True):
                backup.append((p, p.detach().clone()))
                p.add_(torch.where(ok, e, torch.zeros_like(e)))
        self._backup = backup
        return norm.detach()

    @property
    def skipped(self) -> int:
        """Micro-batches whose pass-1 gradient was non-finite (not perturbed), this run."""
        return int(self._skipped)

    def _restore(self) -> None:
        if self._backup is None:
            return
        with torch.no_grad():
            for p, saved in self._backup:
                p.copy_(saved)
        self._backup = None

    @staticmethod
    def _rng_state(params: list[Tensor]) -> tuple[Tensor, list[tuple[int, Tensor]]]:
        cuda = sorted({p.device.index or 0 for p in params if p.device.type == "cuda"})
        return torch.get_rng_state(), [(i, torch.cuda.get_rng_state(i)) for i in cuda]

    @staticmethod
    def _set_rng_state(state: tuple[Tensor, list[tuple[int, Tensor]]]) -> None:
        cpu, cuda = state
        torch.set_rng_state(cpu)
        for index, s in cuda:
            torch.cuda.set_rng_state(s, index)

    @override
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["skipped"] = self.skipped
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._skipped = torch.tensor(int(state_dict.get("skipped", 0)))


def _unscaled(grads: list[Tensor | None], scaler: Any | None) -> list[Tensor | None]:
    """The gradients of `scaler.scale(loss)` divided by the scale, in fp32 (as they are without)."""
    if scaler is None:
        return grads
    inv = 1.0 / amp_scale(scaler)
    return [None if g is None else g.float() * inv for g in grads]


def _mean_over_ranks(grads: list[Tensor | None], params: list[Tensor]) -> list[Tensor | None]:
    # One collective over the flat fp32 gradient; a None gradient contributes zeros.
    full = [
        torch.zeros_like(p, dtype=torch.float32) if g is None else g.float()
        for p, g in zip(params, grads, strict=True)
    ]
    flat = torch.cat([f.reshape(-1) for f in full])
    all_reduce_sum(flat)
    flat /= get_world_size()
    out: list[Tensor | None] = []
    offset = 0
    for f in full:
        out.append(flat[offset : offset + f.numel()].view_as(f))
        offset += f.numel()
    return out


@contextmanager
def _attribute(module: Any, name: str, value: Any) -> Iterator[None]:
    """Shadow `module.name` by an instance attribute for the block (`None`: leave it alone)."""
    if value is None:
        yield
        return
    missing = object()
    previous = module.__dict__.get(name, missing)
    module.__dict__[name] = value
    try:
        yield
    finally:
        if previous is missing:
            module.__dict__.pop(name, None)
        else:
            module.__dict__[name] = previous


@contextmanager
def _silenced_logging(trainer: Trainer, pl_module: LightningModule) -> Iterator[None]:
    """Pass 2 logs nothing: `self.log`/`self.log_dict` and the trainer's result collection.

    Shadowing the module's methods is not enough: a mixin may call `LightningModule.log` through
    `super()`, which ends in `trainer._results.log` (Lightning's result collection, a private
    API); its `log` is shadowed too when it exists.
    """
    results = getattr(trainer, "_results", None)
    target = results if results is not None and hasattr(results, "__dict__") else None
    with _attribute(pl_module, "log", _noop), _attribute(pl_module, "log_dict", _noop):
        if target is None:
            yield
            return
        with _attribute(target, "log", _noop):
            yield
