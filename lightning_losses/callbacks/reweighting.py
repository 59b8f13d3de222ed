r"""Dynamic loss-based sample reweighting (guide: `docs/guide/reweighting.md`).

From *Dynamic Loss-Based Sample Reweighting for Improved Large Language Model Pretraining* (Sow,
Woisetschläger, Bulusu, Wang, Jacobsen, Liang; ICLR 2025, arXiv:2502.06733); reference code
`sowmaster/Sample-Level-Loss-Reweighting-ICLR-2025`.

Each sample's weight in the batch objective is set online from its current (detached) loss,
relative to the other samples of the same (by default *global*) batch:

1. $x_i = \delta (2 l_i - l_{max} - l_{min}) / \max(l_{max} - l_{min}, 10^{-6})$ (losses mapped
   to $[-\delta, \delta]$);
2. a strategy $f$ scores each sample (`linupper`: $\min(x + \delta, \delta)$, the paper's
   default);
3. $w = \mathrm{softmax}(f(x) / r)$, the closed form of
   $\max_w \sum_i w_i f_i - r\,\mathrm{KL}(w \,\|\, \mathrm{uniform})$.

Non-finite losses (NaN, $\pm\infty$) are excluded from the statistics ($l_{min}$, $l_{max}$, the
softmax) and get weight 0, with a one-time rank-zero warning; the other samples' weights still sum
to 1. [LossMixin][lightning_losses.mixins.LossMixin] leaves weight-0 samples out of the sum, so the
loss stays finite.

The pure functional core is `loss_weights`;
[LossReweighting][lightning_losses.callbacks.LossReweighting] is the thin callback: it attaches
itself to a `LossMixin` module as `sample_weighter`, so the module's loss becomes
$\sum_i w_i l_i$ inside `training_step`. A module whose `training_step` bypasses `compute_loss`
makes the callback raise after the first step.

Distributed semantics (DDP, or FSDP/`ModelParallelStrategy` with data parallelism over the world):
with `global_normalization=True` the detached losses are all-gathered (uneven sizes allowed), the
weights are normalised over the global batch and each rank returns its slice multiplied by
`world_size`, so DDP's gradient *average* yields exactly $\sum_{global} w_i \nabla l_i$. With
`global_normalization=False` each rank normalises its own batch (weights sum to 1 per rank) and the
optimised objective is $\frac{1}{world} \sum_{ranks} \sum_{i \in rank} w_i^{(rank)} l_i$. Only the
`[B]` loss vector (plus rank ids) is communicated; nothing else is all-reduced.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from typing_extensions import override

from lightning_losses.callbacks.base import BehaviourCallback
from lightning_losses.distributed import all_gather_no_grad, get_rank, get_world_size
from lightning_losses.mixins.loss import LossModel, Role
from lightning_losses.validation import check_bool, check_int, check_number

__all__ = ["STRATEGIES", "LossReweighting", "loss_weights", "normalize_losses", "weight_stats"]

STRATEGIES = ("linupper", "quadratic", "extremes", "upper", "uniform")
_ALIASES = {"mid": "quadratic", "lin_upper": "linupper"}


def _check_strategy(strategy: str) -> str:
    if not isinstance(strategy, str):
        raise TypeError(f"strategy must be a string, got {type(strategy).__name__}")
    name = _ALIASES.get(strategy.lower(), strategy.lower())
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES} (or 'mid'), got {strategy!r}")
    return name


def _check_positive(name: str, value: float) -> float:
    return check_number(name, value, low=0.0, low_inclusive=False)


def normalize_losses(losses: Tensor, delta: float = 1.0) -> Tensor:
    r"""Map losses affinely to $[-\delta, \delta]$ using their min and max (fp32).

    $x_i = \delta (2 l_i - l_{max} - l_{min}) / \max(l_{max} - l_{min}, 10^{-6})$; expects finite
    losses (`loss_weights` removes the others first).

    Args:
        losses: `[N]` losses.
        delta: the half-width $\delta$.

    Returns:
        `[N]` float32 values in $[-\delta, \delta]$.
    """
    losses = losses.detach().float()
    lo, hi = losses.min(), losses.max()
    return delta * (2 * losses - hi - lo) / (hi - lo).clamp_min(1e-6)


def _strategy_weights(losses: Tensor, name: str, kl_reg: float, delta: float) -> Tensor:
    # Masked, branch-free form: no host sync, the non-finite entries get exactly 0.
    losses = losses.detach().float()
    finite = torch.isfinite(losses)
    if name == "uniform":
        valid = finite.float()
        return valid / valid.sum().clamp_min(1)
    safe = torch.where(finite, losses, torch.zeros_like(losses))
    lo = torch.where(finite, safe, torch.full_like(safe, torch.inf)).min()
    hi = torch.where(finite, safe, torch.full_like(safe, -torch.inf)).max()
    x = delta * (2 * safe - hi - lo) / (hi - lo).clamp_min(1e-6)
    if name == "linupper":
        f = torch.clamp_max(x + delta, delta)
    elif name == "quadratic":
        f = 1 - x.square() / delta**2
    elif name == "extremes":
        f = x.abs()
    else:  # upper
        f = 0.5 * x + 0.5 * delta
    logits = torch.where(finite, f / kl_reg, torch.full_like(f, -torch.inf))
    # No finite loss at all: softmax of all -inf is NaN; every weight is 0 then.
    return torch.nan_to_num(torch.softmax(logits, dim=0), nan=0.0)


def loss_weights(
    losses: Tensor,
    strategy: str = "linupper",
    *,
    kl_reg: float = 1.0,
    delta: float = 1.0,
) -> Tensor:
    r"""Sample weights from per-sample losses (Sow et al., ICLR 2025, arXiv:2502.06733).

    $$
    x_i = \delta\,\frac{2 l_i - l_{max} - l_{min}}{\max(l_{max} - l_{min}, 10^{-6})},\qquad
    w = \operatorname{softmax}\big(f(x) / r\big)
    $$

    with the strategies `linupper` $f(x) = \min(x + \delta, \delta)$ (recommended), `quadratic`
    (code name `mid`) $1 - x^2/\delta^2$, `extremes` $|x|$, `upper` $x/2 + \delta/2$, and
    `uniform` $w_i = 1/N$. $w$ maximises
    $\sum_i w_i f_i - r\,\mathrm{KL}(w \,\|\, \mathrm{uniform})$ over the simplex, so
    $r \to \infty$ gives uniform weights and the max/min weight ratio is at most
    $e^{(\max f - \min f)/r}$.

    Non-finite losses (NaN, $\pm\infty$) are excluded: the statistics and the softmax run over
    the finite ones and the non-finite ones get weight exactly 0 (all weights are 0 when no loss
    is finite). The function does no host sync and does not warn;
    [LossReweighting][lightning_losses.callbacks.LossReweighting] warns once when it sees them.

    Args:
        losses: detached per-sample losses `[N]` (any float dtype; computed in fp32).
        strategy: `"linupper" | "quadratic" | "extremes" | "upper" | "uniform"`.
        kl_reg: the temperature $r > 0$ (KL strength; larger = closer to uniform).
        delta: the normalisation half-width $\delta > 0$.

    Returns:
        `[N]` float32 weights, non-negative, summing to 1 over the finite losses, without gradient.

    Raises:
        TypeError: `strategy` is not a string.
        ValueError: an unknown strategy, a non-positive `kl_reg`/`delta`, or `losses` not 1-D.

    Example:
        >>> import torch
        >>> w = loss_weights(torch.tensor([1.0, 2.0, 3.0]), "linupper")
        >>> w  # x = [-1, 0, 1] -> f = [0, 1, 1] -> softmax
        tensor([0.1554, 0.4223, 0.4223])
        >>> float(w.sum())
        1.0
        >>> loss_weights(torch.tensor([1.0, float("nan"), 3.0]), "uniform")
        tensor([0.5000, 0.0000, 0.5000])
    """
    name = _check_strategy(strategy)
    kl_reg = _check_positive("kl_reg", kl_reg)
    delta = _check_positive("delta", delta)
    if not isinstance(losses, Tensor) or losses.ndim != 1:
        raise ValueError(
            f"losses must be a 1-D tensor [N], got {getattr(losses, 'shape', type(losses))}"
        )
    if losses.numel() == 0:
        return torch.zeros(0, dtype=torch.float32, device=losses.device)
    return _strategy_weights(losses, name, kl_reg, delta)


def weight_stats(weights: Tensor) -> dict[str, Tensor]:
    """Diagnostics of normalised weights: min, max, entropy (nats), effective sample size.

    `ess = 1 / Σ w_i²` (= N for uniform weights); `ess_frac = ess / N`.

    Args:
        weights: `[N]` weights summing to 1.

    Returns:
        Scalar tensors by name: `w_min`, `w_max`, `entropy`, `ess`, `ess_frac`.
    """
    w = weights.detach().float()
    n = max(w.numel(), 1)
    ess = 1.0 / w.square().sum().clamp_min(1e-30)
    return {
        "w_min": w.min(),
        "w_max": w.max(),
        "entropy": -(w * torch.log(w.clamp_min(1e-30))).sum(),
        "ess": ess,
        "ess_frac": ess / n,
    }


class LossReweighting(BehaviourCallback):
    """Reweight each training sample by its current loss (Sow et al., ICLR 2025).

    Attaches to a [LossMixin][lightning_losses.mixins.LossMixin] module as `sample_weighter`; the
    mixin then reduces the per-sample losses (classification samples, LM sequences or tokens with
    `loss_granularity="element"`, recsys interactions) as $\\sum_i w_i l_i$ with the weights of
    `loss_weights`, computed from the detached losses in fp32. Non-finite losses get weight 0
    (also during the warm-up). If the module's `training_step` does not go through
    `compute_loss`, the callback raises `RuntimeError` after the first step.

    Args:
        strategy: see `loss_weights` (default `"linupper"`, the paper's best).
        kl_reg: the temperature `r` (default 1.0, the reference code's value).
        delta: normalisation half-width `δ` (default 1.0).
        burnout_steps: optimizer steps with uniform weights before reweighting starts (default
            1000, the reference code's value). A run whose `max_steps` does not exceed it warns
            once at setup, naming it.
        kl_reg_start: optional larger `r` used right after the warm-up, decayed linearly to
            `kl_reg` over `kl_reg_decay_steps` (the README's "large r early" advice).
        kl_reg_decay_steps: length of that decay (0: no schedule).
        global_normalization: normalise over the all-gathered global batch (reference behaviour;
            weights carry a `× world_size` factor) or per rank.
        log_stats: log `reweight/{w_min,w_max,entropy,ess,ess_frac,kl_reg,active}` (weights over
            the normalisation scope) with `pl_module.log` on the optimizer steps where
            `global_step % trainer.log_every_n_steps == 0`.

    Example:
        >>> cb = LossReweighting(burnout_steps=0)
        >>> cb.sample_weights(torch.tensor([1.0, 2.0, 3.0]))
        tensor([0.1554, 0.4223, 0.4223])
    """

    role = Role.SAMPLE_WEIGHTER
    requires = LossModel
    requires_hint = (
        "inherit lightning_losses.mixins.LossMixin and compute the loss with self.compute_loss()"
    )
    call_hint = (
        "its training_step must compute the loss with self.compute_loss(...) (LossMixin), "
        "which calls sample_weights"
    )
    # The schedule derives from trainer.global_step (restored by Lightning); the configuration
    # is saved so that a resume with a different one is noticed.
    config_keys = (
        "strategy",
        "kl_reg",
        "delta",
        "burnout_steps",
        "kl_reg_start",
        "kl_reg_decay_steps",
        "global_normalization",
    )

    def __init__(
        self,
        strategy: str = "linupper",
        kl_reg: float = 1.0,
        delta: float = 1.0,
        burnout_steps: int = 1000,
        kl_reg_start: float | None = None,
        kl_reg_decay_steps: int = 0,
        global_normalization: bool = True,
        log_stats: bool = True,
    ) -> None:
        super().__init__()
        self.strategy = _check_strategy(strategy)
        self.kl_reg = _check_positive("kl_reg", kl_reg)
        self.delta = _check_positive("delta", delta)
        self.burnout_steps = check_int("burnout_steps", burnout_steps, low=0)
        self.kl_reg_start = (
            None if kl_reg_start is None else _check_positive("kl_reg_start", kl_reg_start)
        )
        self.kl_reg_decay_steps = check_int("kl_reg_decay_steps", kl_reg_decay_steps, low=0)
        self.global_normalization = check_bool("global_normalization", global_normalization)
        self.log_stats = check_bool("log_stats", log_stats)
        self._trainer: Trainer | None = None
        self._pending: tuple[Tensor, float, bool] | None = None
        self.last_weights: Tensor | None = None  # normalised (sum 1) over the scope, for tests
        self._non_finite: Tensor | None = None  # device-side count, read on logging steps only
        self._warned_non_finite = False

    # -- schedule ----------------------------------------------------------------------------
    @property
    def step(self) -> int:
        """The trainer's `global_step` (optimizer steps); `burnout_steps` when detached."""
        return self._trainer.global_step if self._trainer is not None else self.burnout_steps

    def current_kl_reg(self, step: int | None = None) -> float:
        """`r` at `step`: linear from `kl_reg_start` to `kl_reg` after the warm-up.

        Args:
            step: an optimizer step (default: the trainer's).

        Returns:
            The temperature in use.
        """
        step = self.step if step is None else step
        if self.kl_reg_start is None or self.kl_reg_decay_steps == 0:
            return self.kl_reg
        t = min(max(step - self.burnout_steps, 0) / self.kl_reg_decay_steps, 1.0)
        return self.kl_reg_start + t * (self.kl_reg - self.kl_reg_start)

    def is_active(self, step: int | None = None) -> bool:
        """Whether reweighting is on (past the warm-up) at `step` (default: the trainer's).

        Args:
            step: an optimizer step.

        Returns:
            `step >= burnout_steps`.
        """
        return (self.step if step is None else step) >= self.burnout_steps

    # -- SampleWeighter protocol -------------------------------------------------------------
    @torch.no_grad()
    def sample_weights(self, per_sample: Tensor) -> Tensor:
        """`[B]` detached local losses to `[B]` fp32 weights for `loss = Σ w_i l_i`.

        Args:
            per_sample: this rank's per-sample losses.

        Returns:
            This rank's weights (× `world_size` under global normalization).
        """
        self.notify_called()
        losses = per_sample.detach().float().reshape(-1)
        if not self._warned_non_finite:
            bad = (~torch.isfinite(losses)).sum()
            self._non_finite = bad if self._non_finite is None else self._non_finite + bad
        n_local = losses.numel()
        active = self.is_active()
        r = self.current_kl_reg()
        world = get_world_size() if self.global_normalization else 1
        if not active or (n_local == 0 and world == 1):
            # Warm-up: the plain local mean over the finite losses (DDP's averaging makes it the
            # global mean when every rank has as many finite losses).
            local = loss_weights(losses, "uniform")
            self.last_weights = local
        elif world > 1:
            # Gather (loss, rank) pairs so the local slice is found without a size exchange.
            rank = get_rank()
            tagged = torch.stack([losses, torch.full_like(losses, float(rank))], dim=1)
            gathered = all_gather_no_grad(tagged)
            glob = loss_weights(gathered[:, 0], self.strategy, kl_reg=r, delta=self.delta)
            self.last_weights = glob
            local = glob[gathered[:, 1] == rank] * world
        else:
            local = loss_weights(losses, self.strategy, kl_reg=r, delta=self.delta)
            self.last_weights = local
        # Statistics are computed lazily in the logging hook, only on steps that are logged.
        self._pending = (self.last_weights, r, active)
        return local.reshape(per_sample.shape)

    # -- Lightning hooks ---------------------------------------------------------------------
    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._trainer = trainer
        if stage == "fit":
            self._warn_unreachable_burnout(trainer)

    def _warn_unreachable_burnout(self, trainer: Trainer) -> None:
        # A run shorter than the burn-out never reweights; without this it would only show
        # `reweight/active = 0`.
        max_steps = trainer.max_steps
        if max_steps is None or max_steps < 0 or max_steps > self.burnout_steps:
            return
        rank_zero_warn(
            f"LossReweighting(burnout_steps={self.burnout_steps}) never reweights in this run: "
            f"it stops at max_steps={max_steps}, and the weights stay uniform for the first "
            "burnout_steps optimizer steps; lower burnout_steps below max_steps",
            category=UserWarning,
        )

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        self._trainer = None

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        # Logged here, not inside sample_weights: the weight path stays free of Lightning
        # bookkeeping. Each `log` costs ~0.5 ms of Python, so the statistics are logged only on
        # optimizer steps that are a multiple of `log_every_n_steps` (1 = every step).
        pending, self._pending = self._pending, None
        if not self.optimizer_stepped(trainer):
            return
        if trainer.global_step % self.log_interval(trainer) != 0:
            return
        self._check_non_finite()
        if not self.log_stats or pending is None:
            return
        weights, r, active = pending
        stats = weight_stats(weights) if weights.numel() else {}
        stats["kl_reg"] = torch.tensor(r)
        stats["active"] = torch.tensor(float(active))
        values = torch.stack(list(stats.values())).to(pl_module.device)
        pl_module.log_dict(
            {f"reweight/{k}": v for k, v in zip(stats, values, strict=True)},
            on_step=True,
            on_epoch=False,
            batch_size=1,
        )

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._check_non_finite()

    @override
    def state_dict(self) -> dict[str, Any]:
        # The non-finite losses counted since the last logged step, and whether the one warning
        # was given: a resumed run neither warns twice nor forgets a count it has not reported.
        count = 0 if self._non_finite is None else int(self._non_finite)
        warned = self._warned_non_finite
        return {**super().state_dict(), "non_finite": {"count": count, "warned": warned}}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        saved = state_dict.get("non_finite")  # absent from checkpoints of older versions
        if saved is not None:
            self._warned_non_finite = bool(saved["warned"])
            count = int(saved["count"])
            self._non_finite = torch.tensor(count) if count else None

    def _check_non_finite(self) -> None:
        # One host read, on steps that are logged anyway (and at epoch end).
        count, self._non_finite = self._non_finite, None
        if self._warned_non_finite or count is None or int(count) == 0:
            return
        self._warned_non_finite = True
        rank_zero_warn(
            f"LossReweighting got {int(count)} non-finite per-sample losses (NaN/inf): they are "
            "left out of the weight statistics and get weight 0 (warned once)",
            category=UserWarning,
        )
