"""Dynamic loss-based sample reweighting (DYNAMICS.md §2).

Paper:
    Dynamic Loss-Based Sample Reweighting for Improved Large Language Model Pretraining
    (Sow, Woisetschläger, Bulusu, Wang, Jacobsen, Liang; ICLR 2025, arXiv:2502.06733).
    Reference code: ``sowmaster/Sample-Level-Loss-Reweighting-ICLR-2025``.

Each sample's weight in the batch objective is set online from its current (detached) loss,
relative to the other samples of the same — by default *global* — batch:

1. ``x_i = δ (2 l_i − l_max − l_min) / max(l_max − l_min, 1e-6)``  (losses mapped to [−δ, δ]);
2. a strategy ``f`` scores each sample (``linupper``: ``min(x + δ, δ)``, the paper's default);
3. ``w = softmax(f(x) / r)``, the closed form of ``max_w Σ w_i f_i − r·KL(w ‖ uniform)``.

The pure functional core is :func:`loss_weights`; :class:`LossReweighting` is the thin callback:
it attaches itself to a :class:`~lightning_losses.mixins.LossMixin` module as
``sample_weighter``, so the module's loss becomes ``Σ_i w_i l_i`` inside ``training_step``.

Distributed semantics (DDP, or FSDP/``ModelParallelStrategy`` with data parallelism over the
world): with ``global_normalization=True`` the detached losses are all-gathered (uneven sizes
allowed), the weights are normalised over the global batch and each rank returns its slice
multiplied by ``world_size``, so DDP's gradient *average* yields exactly ``Σ_global w_i ∇l_i``.
With ``global_normalization=False`` each rank normalises its own batch (weights sum to 1 per
rank) and the optimised objective is ``(1/world) Σ_ranks Σ_{i∈rank} w_i^{(rank)} l_i``. Only
the ``[B]`` loss vector (plus rank ids) is communicated; nothing else is all-reduced.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor

from lightning_losses.callbacks.base import BehaviourCallback
from lightning_losses.distributed import all_gather_no_grad, get_rank, get_world_size
from lightning_losses.losses._validation import check_number

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
    r"""Map losses affinely to :math:`[-\delta, \delta]` using their min and max (fp32).

    :math:`x_i = \delta (2 l_i - l_{max} - l_{min}) / \max(l_{max} - l_{min}, 10^{-6})`.
    """
    losses = losses.detach().float()
    lo, hi = losses.min(), losses.max()
    return delta * (2 * losses - hi - lo) / (hi - lo).clamp_min(1e-6)


def loss_weights(
    losses: Tensor,
    strategy: str = "linupper",
    *,
    kl_reg: float = 1.0,
    delta: float = 1.0,
) -> Tensor:
    r"""Sample weights from per-sample losses (Sow et al., ICLR 2025, arXiv:2502.06733).

    .. math::
        x_i = \delta\,\frac{2 l_i - l_{max} - l_{min}}{\max(l_{max} - l_{min}, 10^{-6})},\qquad
        w = \operatorname{softmax}\big(f(x) / r\big)

    with the strategies ``linupper`` :math:`f(x) = \min(x + \delta, \delta)` (recommended),
    ``quadratic`` (code name ``mid``) :math:`1 - x^2/\delta^2`, ``extremes`` :math:`|x|`,
    ``upper`` :math:`x/2 + \delta/2`, and ``uniform`` :math:`w_i = 1/N`. ``w`` maximises
    :math:`\sum_i w_i f_i - r\,\mathrm{KL}(w \,\|\, \mathrm{uniform})` over the simplex, so
    :math:`r \to \infty` gives uniform weights and the max/min weight ratio is at most
    :math:`e^{(\max f - \min f)/r}`.

    Args:
        losses: detached per-sample losses ``[N]`` (any float dtype; computed in fp32).
        strategy: ``"linupper" | "quadratic" | "extremes" | "upper" | "uniform"``.
        kl_reg: the temperature :math:`r > 0` (KL strength; larger = closer to uniform).
        delta: the normalisation half-width :math:`\delta > 0`.

    Returns:
        ``[N]`` float32 weights, non-negative, summing to 1, without gradient.

    Example:
        >>> import torch
        >>> w = loss_weights(torch.tensor([1.0, 2.0, 3.0]), "linupper")
        >>> w  # x = [-1, 0, 1] -> f = [0, 1, 1] -> softmax
        tensor([0.1554, 0.4223, 0.4223])
        >>> float(w.sum())
        1.0
    """
    name = _check_strategy(strategy)
    kl_reg = _check_positive("kl_reg", kl_reg)
    delta = _check_positive("delta", delta)
    if not isinstance(losses, Tensor) or losses.ndim != 1:
        raise ValueError(
            f"losses must be a 1-D tensor [N], got {getattr(losses, 'shape', type(losses))}"
        )
    n = losses.numel()
    if n == 0:
        return torch.zeros(0, dtype=torch.float32, device=losses.device)
    if name == "uniform":
        return torch.full((n,), 1.0 / n, dtype=torch.float32, device=losses.device)
    x = normalize_losses(losses, delta)
    if name == "linupper":
        f = torch.clamp_max(x + delta, delta)
    elif name == "quadratic":
        f = 1 - x.square() / delta**2
    elif name == "extremes":
        f = x.abs()
    else:  # upper
        f = 0.5 * x + 0.5 * delta
    return torch.softmax(f / kl_reg, dim=0)


def weight_stats(weights: Tensor) -> dict[str, Tensor]:
    """Diagnostics of normalised weights: min, max, entropy (nats), effective sample size.

    ``ess = 1 / Σ w_i²`` (= N for uniform weights); ``ess_frac = ess / N``.
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

    Attaches to a :class:`~lightning_losses.mixins.LossMixin` module as ``sample_weighter``;
    the mixin then reduces the per-sample losses (classification samples, LM sequences or tokens
    with ``loss_granularity="element"``, recsys interactions) as ``Σ_i w_i l_i`` with the weights
    of :func:`loss_weights`, computed from the detached losses in fp32.

    Args:
        strategy: see :func:`loss_weights` (default ``"linupper"``, the paper's best).
        kl_reg: the temperature ``r`` (default 1.0, the reference code's value).
        delta: normalisation half-width ``δ`` (default 1.0).
        burnout_steps: optimizer steps with uniform weights before reweighting starts
            (default 1000, the reference code's value).
        kl_reg_start: optional larger ``r`` used right after the warm-up, decayed linearly to
            ``kl_reg`` over ``kl_reg_decay_steps`` (the README's "large r early" advice).
        kl_reg_decay_steps: length of that decay (0: no schedule).
        global_normalization: normalise over the all-gathered global batch (reference
            behaviour; weights carry a ``× world_size`` factor) or per rank.
        log_stats: log ``reweight/{w_min,w_max,entropy,ess,ess_frac,kl_reg,active}`` (weights
            over the normalisation scope) on every step the loggers write
            (``Trainer(log_every_n_steps=...)``).

    Example:
        >>> cb = LossReweighting(burnout_steps=0)
        >>> cb.sample_weights(torch.tensor([1.0, 2.0, 3.0]))
        tensor([0.1554, 0.4223, 0.4223])
    """

    role = "sample_weighter"
    requires_loss_mixin = True

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
        if (
            isinstance(burnout_steps, bool)
            or not isinstance(burnout_steps, int)
            or burnout_steps < 0
        ):
            raise ValueError(f"burnout_steps must be an int ≥ 0, got {burnout_steps!r}")
        self.burnout_steps = burnout_steps
        self.kl_reg_start = (
            None if kl_reg_start is None else _check_positive("kl_reg_start", kl_reg_start)
        )
        if not isinstance(kl_reg_decay_steps, int) or kl_reg_decay_steps < 0:
            raise ValueError(f"kl_reg_decay_steps must be an int ≥ 0, got {kl_reg_decay_steps!r}")
        self.kl_reg_decay_steps = kl_reg_decay_steps
        self.global_normalization = bool(global_normalization)
        self.log_stats = bool(log_stats)
        self._trainer: Trainer | None = None
        self._pending: tuple[Tensor, float, bool] | None = None
        self.last_weights: Tensor | None = None  # normalised (sum 1) over the scope, for tests

    # -- schedule ----------------------------------------------------------------------------
    @property
    def step(self) -> int:
        """The trainer's ``global_step`` (optimizer steps); ``burnout_steps`` when detached."""
        return self._trainer.global_step if self._trainer is not None else self.burnout_steps

    def current_kl_reg(self, step: int | None = None) -> float:
        """``r`` at ``step``: linear from ``kl_reg_start`` to ``kl_reg`` after the warm-up."""
        step = self.step if step is None else step
        if self.kl_reg_start is None or self.kl_reg_decay_steps == 0:
            return self.kl_reg
        t = min(max(step - self.burnout_steps, 0) / self.kl_reg_decay_steps, 1.0)
        return self.kl_reg_start + t * (self.kl_reg - self.kl_reg_start)

    def is_active(self, step: int | None = None) -> bool:
        """Whether reweighting is on (past the warm-up) at ``step``."""
        return (self.step if step is None else step) >= self.burnout_steps

    # -- SampleWeighter protocol -------------------------------------------------------------
    @torch.no_grad()
    def sample_weights(self, per_sample: Tensor) -> Tensor:
        """``[B]`` detached local losses -> ``[B]`` fp32 weights for ``loss = Σ w_i l_i``."""
        losses = per_sample.detach().float().reshape(-1)
        n_local = losses.numel()
        active = self.is_active()
        r = self.current_kl_reg()
        world = get_world_size() if self.global_normalization else 1
        if not active or (n_local == 0 and world == 1):
            # Warm-up: the plain local mean (DDP's averaging makes it the global mean).
            local = torch.full_like(losses, 1.0 / max(n_local, 1))
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
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._trainer = trainer

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        self._trainer = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Logged here, not inside sample_weights: the weight path stays free of Lightning
        # bookkeeping. Each `self.log` costs ~0.5 ms of Python, so the statistics are logged
        # only on the steps the trainer's loggers write (`log_every_n_steps`; 1 = every step).
        pending, self._pending = self._pending, None
        if not self.log_stats or pending is None:
            return
        connector = getattr(trainer, "_logger_connector", None)
        if connector is not None and not connector.should_update_logs:
            return
        weights, r, active = pending
        stats = weight_stats(weights) if weights.numel() else {}
        stats["kl_reg"] = torch.tensor(r)
        stats["active"] = torch.tensor(float(active))
        values = torch.stack(list(stats.values())).to(pl_module.device)
        pl_module.log_dict(
            {f"reweight/{k}": v for k, v in zip(stats, values)},
            on_step=True,
            on_epoch=False,
            batch_size=1,
        )

    # -- checkpointing ----------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "kl_reg": self.kl_reg,
            "delta": self.delta,
            "burnout_steps": self.burnout_steps,
            "kl_reg_start": self.kl_reg_start,
            "kl_reg_decay_steps": self.kl_reg_decay_steps,
            "global_normalization": self.global_normalization,
        }

    def state_dict(self) -> dict[str, Any]:
        # The schedule derives from trainer.global_step (restored by Lightning); the config is
        # saved so that a resume with a different configuration is noticed.
        return {"config": self._config()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("config", {})
        diff = {k: (v, getattr(self, k)) for k, v in saved.items() if getattr(self, k, v) != v}
        if diff:
            warnings.warn(
                "LossReweighting resumed with a configuration that differs from the checkpoint "
                f"(saved, current): {diff}; the current configuration is used",
                stacklevel=2,
            )
