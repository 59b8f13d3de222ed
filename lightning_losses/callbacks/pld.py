r"""PLD: resample the positive to train on from the user's Personal Loss Distribution.

Paper: *Personalized Denoising Implicit Feedback for Robust Recommender System* (Zhang et al.,
WWW 2025, arXiv:2502.00348). Guide: `docs/guide/pld.md`.

Noisy implicit interactions overlap with clean ones in the *global* loss distribution but stand
out inside each user's own one. Every iteration, each training instance carries a pool of `k` of
its user's observed positives; PLD scores each candidate's loss with the current model (no grad)
and draws the positive to train on with probability

$$
P(i \mid u) = \frac{\exp(-\ell_{ui}/\tau)}{\sum_{i' \in C_u}\exp(-\ell_{ui'}/\tau)},
$$

so likely-noisy (high-loss) interactions are optimised less. $\tau \to \infty$ is uniform sampling
(standard training), $\tau \to 0$ always picks the lowest-loss candidate. A non-finite candidate
loss (NaN or $\pm\infty$) gets probability 0; a row with no finite candidate falls back to the
uniform distribution over its pool.

Batch schema (a dict, rewritten in place):

- `user`: `LongTensor[B]`, user ids;
- `cand_items`: `LongTensor[B, k]`, the candidate pool (k of the user's observed positives);
- `neg_item`: `LongTensor[B]` or `[B, K]`, sampled negatives (the same j scores and trains);
- `pos_item`: `LongTensor[B]`, the positive to train on: the data side puts a uniform choice
  here, PLD overwrites it;
- `cand_noisy`: optional `BoolTensor[B, k]`, known-noisy flags (synthetic data);
- `pos_is_noisy`: `BoolTensor[B]`, written by PLD when `cand_noisy` is present.

Why a batch rewrite rather than a sampler: a sampler runs in the data
workers, which have no access to the current model, and the candidate losses must come from the
model being trained *at this step*. `on_train_batch_start` sees the model and the batch, keeps
the data pipeline model-free, and works for any module that implements the small
[PLDScorer][lightning_losses.callbacks.pld.PLDScorer] Protocol (checked at setup):

- `pld_candidate_losses(batch, *reuse) -> Tensor[B, k]`: the per-candidate training loss (same
  negatives as for training). Option (a): the callback calls it (without `reuse`) in
  `on_train_batch_start` under
  [BehaviourCallback.scoring][lightning_losses.callbacks.base.BehaviourCallback.scoring]
  (eval mode, no grad, mode restored).
- `pld_inline: bool` (optional, default `False`). Option (b), for models whose scoring is
  expensive (LightGCN's graph propagation): with `pld_inline = True` the module calls
  [pld_select][lightning_losses.callbacks.pld.pld_select]`(self, batch, *reuse)` inside
  `training_step`, handing over what its one forward computed (e.g. the embedding tables);
  `pld_select` scores the pool with `pld_candidate_losses(batch, *reuse)` under `no_grad` and
  rewrites the batch. The callback then does nothing in `on_train_batch_start` and raises at the
  end of any step in which the module did not call it.

Distributed: purely local. Every rank resamples its own users; the generator is seeded with
`seed + global_rank` so ranks draw from distinct streams; nothing is all-reduced except the logged
diagnostics (`sync_dist` at epoch end). The checkpoint holds every rank's generator state
(gathered when the checkpoint is built), so a resumed run (single device, or multi-rank on the
same number of ranks) replays exactly the draws of an uninterrupted one; a rank with no saved
state reseeds from `(seed, rank, global_step)`. Under FSDP use option (b) (scoring inside the
wrapped forward). Checkpoint state: the generator states, the configuration, every rank's
running sums of the epoch's diagnostics and `history`, so a run resumed mid-epoch logs the same
epoch means as an uninterrupted one (Lightning does not call `on_train_epoch_start` when it
resumes mid-epoch: the restored sums carry on, and `start_epoch` is re-evaluated at train start).
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping
from typing import Any, Protocol, cast, runtime_checkable

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor
from typing_extensions import override

from lightning_losses.callbacks.base import BehaviourCallback
from lightning_losses.distributed import all_gather_no_grad, get_rank
from lightning_losses.mixins.loss import Role
from lightning_losses.validation import check_int

__all__ = [
    "PLDResampling",
    "PLDScorer",
    "pld_entropy",
    "pld_probabilities",
    "pld_sample",
    "pld_select",
]


@runtime_checkable
class PLDScorer(Protocol):
    """The model interface PLD needs: per-candidate training losses of a batch's pools.

    Implement `pld_candidate_losses`; optionally set the class attribute `pld_inline = True` and
    call [pld_select][lightning_losses.callbacks.pld.pld_select] from `training_step` to reuse the
    step's own forward (option (b)). See the module docstring and docs/guide/pld.md.

    Example:
        >>> import torch
        >>> from lightning_losses.callbacks.pld import PLDScorer
        >>> class Scorer:
        ...     def pld_candidate_losses(self, batch, *reuse):
        ...         return batch["cand_items"].float()
        >>> isinstance(Scorer(), PLDScorer)
        True
    """

    def pld_candidate_losses(self, batch: MutableMapping[str, Tensor], *reuse: Any) -> Tensor:
        """`[B, k]` training losses of the candidates `batch["cand_items"]`.

        Args:
            batch: the dict batch (see the module docstring).
            *reuse: option (b) only: whatever the module passed to `pld_select` (e.g. the step's
                embedding tables), so it need not run its forward again.

        Returns:
            The candidate losses; PLD detaches them.
        """
        ...


def _check_losses(losses: Tensor) -> None:
    if not isinstance(losses, Tensor) or not losses.is_floating_point():
        raise TypeError(f"losses must be a floating-point tensor [B, k], got {losses!r}")
    if losses.ndim != 2 or losses.shape[1] < 1:
        raise ValueError(f"losses must have shape [B, k] with k ≥ 1, got {tuple(losses.shape)}")


def _check_temperature(temperature: float) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a real number, got {temperature!r}")
    if math.isnan(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be > 0 (math.inf = uniform), got {temperature}")
    return float(temperature)


def pld_probabilities(losses: Tensor, temperature: float) -> Tensor:
    r"""Per-user resampling distribution $\mathrm{softmax}(-\ell/\tau)$ over the pool.

    Non-finite losses (NaN, $\pm\infty$) get probability 0; a row without any finite loss gets
    the uniform distribution over its `k` candidates.

    Args:
        losses: candidate losses `[B, k]` (one row per training instance).
        temperature: $\tau > 0$; `math.inf` gives the uniform distribution (over the finite
            candidates).

    Returns:
        `[B, k]` probabilities (float32 or float64), each row summing to 1.

    Raises:
        TypeError: `losses` is not a floating tensor.
        ValueError: `losses` is not `[B, k]` or `temperature` is not `> 0`.

    Example:
        >>> import torch
        >>> from lightning_losses.callbacks.pld import pld_probabilities
        >>> pld_probabilities(torch.tensor([[0.0, 0.6931]]), temperature=1.0)
        tensor([[0.6667, 0.3333]])
        >>> pld_probabilities(torch.tensor([[0.0, float("nan")], [float("inf")] * 2]), 1.0)
        tensor([[1.0000, 0.0000],
                [0.5000, 0.5000]])
    """
    _check_losses(losses)
    temperature = _check_temperature(temperature)
    losses = losses.detach()
    if losses.dtype in (torch.float16, torch.bfloat16):
        losses = losses.float()
    is_finite = torch.isfinite(losses)
    # Rows with no finite candidate: every candidate counts, with equal logits (uniform).
    finite = is_finite | ~is_finite.any(1, keepdim=True)
    if math.isinf(temperature):
        logits = torch.zeros_like(losses)
    else:
        # Shift by the row's smallest finite loss (softmax is shift-invariant): the best
        # candidate has logit 0, so a row never overflows to all -inf.
        safe = torch.where(is_finite, losses, torch.zeros_like(losses))
        low = torch.where(finite, safe, torch.full_like(safe, math.inf)).amin(1, keepdim=True)
        logits = -(safe - low) / temperature
    logits = logits.masked_fill(~finite, -math.inf)
    return torch.softmax(logits, dim=1)


def pld_sample(
    losses: Tensor, temperature: float, generator: torch.Generator | None = None
) -> Tensor:
    """Draw one candidate index per row from `pld_probabilities`.

    Inverse-CDF sampling with uniforms from `generator` (a CPU generator, moved to the losses'
    device), so the draw is reproducible and device-independent. A candidate with probability 0
    is never drawn.

    Args:
        losses: candidate losses `[B, k]`.
        temperature: $\\tau > 0$.
        generator: the CPU generator to draw from (`None`: the global one).

    Returns:
        `LongTensor[B]` indices into the pool.

    Example:
        >>> import torch
        >>> from lightning_losses.callbacks.pld import pld_sample
        >>> g = torch.Generator().manual_seed(0)
        >>> pld_sample(torch.tensor([[0.0, 50.0], [50.0, 0.0]]), 0.1, g)
        tensor([0, 1])
    """
    return _sample_from(pld_probabilities(losses, temperature), generator)


def _sample_from(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    u = torch.rand(probs.shape[0], 1, generator=generator, dtype=torch.float64)
    cdf = probs.to(torch.float64).cumsum(1)
    # Scale by the row total so rounding (total 1 - ε) cannot run past the last candidate.
    u = u.to(cdf.device) * cdf[:, -1:]
    idx = torch.searchsorted(cdf, u, right=True).squeeze(1)
    # Never past the last candidate with a positive probability (it is then the only choice).
    positions = torch.arange(probs.shape[1], device=probs.device)
    last = torch.where(probs > 0, positions, 0).amax(1)
    return torch.minimum(idx, last)


def pld_entropy(probs: Tensor) -> Tensor:
    """Mean entropy of the rows of `probs`, normalised by `log k` (1 = uniform).

    Args:
        probs: `[B, k]` row distributions.

    Returns:
        A scalar tensor in `[0, 1]`.
    """
    k = probs.shape[1]
    if k < 2:
        return probs.new_ones(())
    ent = -(probs * probs.clamp_min(1e-30).log()).sum(1)
    return ent.mean() / math.log(k)


def pld_select(
    pl_module: torch.nn.Module, batch: MutableMapping[str, Tensor], *reuse: Any
) -> Tensor | None:
    """Option (b): resample `batch` inside `training_step` with the step's own forward.

    Does nothing (returns `None`) when no [PLDResampling][lightning_losses.callbacks.PLDResampling]
    is attached to `pl_module`, so a module can call it unconditionally. Otherwise it scores the
    pool with `pl_module.pld_candidate_losses(batch, *reuse)` under `torch.no_grad()` (in the
    module's current mode) and lets the callback draw and rewrite `batch["pos_item"]`.

    Args:
        pl_module: the module (a [PLDScorer][lightning_losses.callbacks.pld.PLDScorer]).
        batch: the dict batch, rewritten in place.
        *reuse: passed on to `pld_candidate_losses` (e.g. the step's embedding tables).

    Returns:
        The chosen pool indices `LongTensor[B]` (`-1` before `start_epoch`), or `None`.
    """
    pld = pl_module.__dict__.get(Role.PLD)
    if pld is None:
        return None
    with torch.no_grad():
        losses = cast(PLDScorer, pl_module).pld_candidate_losses(batch, *reuse)
    return pld.select(batch, losses)


# The epoch diagnostics `select` accumulates (see `_acc`), in their checkpoint layout.
_STAT_NAMES = ("entropy", "noisy_share", "pool_noisy_share")


class PLDResampling(BehaviourCallback):
    r"""Resample each instance's positive from its pool by the user's personal loss distribution.

    See the module docstring for the batch schema and the model interface
    ([PLDScorer][lightning_losses.callbacks.pld.PLDScorer]).

    Args:
        temperature: $\tau > 0$ acting on *losses* (default 0.5, suited to BPR's loss scale
            ~0-3; sweep `{0.05, 0.1, 0.5, 1}`). `math.inf` = uniform.
        seed: base seed; rank `r` uses `seed + r`.
        start_epoch: train with the uniform choice before this epoch (PLD needs a model that has
            learned something; 0 = from the start, as the paper).

    Logged (epoch means, `sync_dist`): `pld/entropy` (normalised entropy of the resampling
    distribution), `pld/noisy_share` (share of chosen positives that are known-noisy) and
    `pld/pool_noisy_share` (the same share under uniform choice) when the batch has `cand_noisy`.
    `history` keeps the per-epoch values for benchmarks.

    Example:
        >>> import torch
        >>> from lightning_losses.callbacks import PLDResampling
        >>> pld = PLDResampling(temperature=0.1, seed=0)
        >>> batch = {"user": torch.tensor([0]), "cand_items": torch.tensor([[7, 8, 9]])}
        >>> pld.select(batch, torch.tensor([[3.0, 0.0, 3.0]]))
        tensor([1])
        >>> batch["pos_item"]
        tensor([8])
    """

    role = Role.PLD
    requires = PLDScorer
    requires_hint = (
        "it is scored by the callback in on_train_batch_start or, with `pld_inline = True`, by "
        "`pld_select(self, batch, *reuse)` called inside training_step"
    )
    config_keys = ("temperature", "start_epoch", "seed")
    call_hint = (
        "an inline module (pld_inline=True) must call pld_select(self, batch, ...) in training_step"
    )

    def __init__(self, temperature: float = 0.5, seed: int = 0, start_epoch: int = 0) -> None:
        super().__init__(seed=seed)
        self.temperature = _check_temperature(temperature)
        self.start_epoch = check_int("start_epoch", start_epoch, low=0)
        self.history: list[dict[str, float]] = []
        self._active = True
        self._selected = False
        self._reset_stats()

    # ----------------------------------------------------------------------------- core
    def select(self, batch: MutableMapping[str, Tensor], losses: Tensor) -> Tensor:
        """Draw one candidate per row and write `batch["pos_item"]` (and noise flags) in place.

        Args:
            batch: dict batch with `cand_items [B, k]` (and optionally `cand_noisy`).
            losses: candidate losses `[B, k]` (detached here).

        Returns:
            The chosen indices `LongTensor[B]` into the pool (`-1` before `start_epoch`).

        Raises:
            ValueError: no `cand_items`, or `losses` of another shape.
        """
        cand = batch.get("cand_items") if isinstance(batch, MutableMapping) else None
        if cand is None:
            keys = sorted(batch) if hasattr(batch, "keys") else "-"
            raise ValueError(
                "PLDResampling needs a dict batch with 'cand_items' [B, k]; got "
                f"{type(batch).__name__} with keys {keys}"
            )
        if losses.shape != cand.shape:
            raise ValueError(
                f"candidate losses must have the shape of batch['cand_items'] "
                f"{tuple(cand.shape)}, got {tuple(losses.shape)}"
            )
        self._selected = True
        self.notify_called()
        noisy = batch.get("cand_noisy")
        if not self._active:
            # Before start_epoch: keep the data side's uniform choice, only record statistics.
            chosen = batch.get("pos_is_noisy")
            if chosen is not None and noisy is not None:
                self._record_noise(chosen, noisy)
            return torch.full((cand.shape[0],), -1, dtype=torch.long, device=cand.device)
        probs = pld_probabilities(losses.detach(), self.temperature)
        idx = _sample_from(probs, self.generator)
        batch["pos_item"] = cand.gather(1, idx.unsqueeze(1)).squeeze(1)
        if noisy is not None:
            chosen = noisy.gather(1, idx.unsqueeze(1)).squeeze(1)
            batch["pos_is_noisy"] = chosen
            self._record_noise(chosen, noisy)
        self._acc("entropy", pld_entropy(probs) * probs.shape[0], probs.shape[0])
        return idx

    def _record_noise(self, chosen: Tensor, noisy: Tensor) -> None:
        self._acc("noisy_share", chosen.float().sum(), chosen.numel())
        self._acc("pool_noisy_share", noisy.float().mean(1).sum(), chosen.numel())

    # ------------------------------------------------------------------------- stats
    def _reset_stats(self) -> None:
        self._sums: dict[str, Tensor] = {}
        self._counts: dict[str, int] = {}

    def _acc(self, name: str, total: Tensor, count: int) -> None:
        # Accumulate on device; synchronise once per epoch, not per step.
        total = total.detach().float()
        self._sums[name] = self._sums[name] + total if name in self._sums else total
        self._counts[name] = self._counts.get(name, 0) + count

    # ------------------------------------------------------------------------- hooks
    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        # A mid-epoch resume skips on_train_epoch_start: decide the epoch's mode here too.
        self._active = trainer.current_epoch >= self.start_epoch

    @override
    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._active = trainer.current_epoch >= self.start_epoch
        self._reset_stats()

    @override
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._selected = False
        if getattr(pl_module, "pld_inline", False):
            return
        if not isinstance(batch, MutableMapping) or "cand_items" not in batch:
            raise ValueError(
                "PLDResampling needs dict batches with 'user', 'cand_items' [B, k], 'neg_item' "
                f"and 'pos_item'; got {type(batch).__name__}"
            )
        if not self._active:
            self.select(batch, torch.zeros(batch["cand_items"].shape))
            return
        # Eval mode: dropout would make the candidate losses noisy; no_grad: scoring only.
        with self.scoring(pl_module):
            losses = cast(PLDScorer, pl_module).pld_candidate_losses(batch)
        self.select(batch, losses)

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._selected:
            raise RuntimeError(
                f"{type(pl_module).__name__} sets pld_inline=True but its training_step did not "
                "call pld_select(self, batch, ...) (or self.pld.select(batch, losses))"
            )
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        record: dict[str, float] = {"epoch": float(trainer.current_epoch)}
        for name, total in self._sums.items():
            value = (total / max(self._counts[name], 1)).float()
            pl_module.log(f"pld/{name}", value, on_step=False, on_epoch=True, sync_dist=True)
            record[name] = float(value)
        # `fit` stopped by `max_steps` inside the epoch also lands here: keep the sums (and the
        # history) for the rest of the epoch, so a checkpoint written after the stop resumes them.
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            self.history.append(record)
            self._reset_stats()

    # ------------------------------------------------------------------------- state
    @override
    def state_dict(self) -> dict[str, Any]:
        # Every rank's running sums (the epoch means are synced over ranks): Lightning saves rank
        # 0's callback state only, so rank 0 keeps all of them (a collective, like the generator).
        # A fixed layout on every rank (a statistic a rank has not seen yet has count 0), so the
        # gather never depends on which statistics each rank has accumulated.
        names = list(_STAT_NAMES)
        sums = [float(self._sums[n]) if n in self._sums else 0.0 for n in names]
        counts = [float(self._counts.get(n, 0)) for n in names]
        local = torch.tensor([sums + counts], dtype=torch.float64)
        device = next(iter(self._sums.values())).device if self._sums else local.device
        stats = all_gather_no_grad(local.to(device)).cpu()
        return {
            **super().state_dict(),
            "epoch_stats": {"names": names, "values": stats},
            "history": [dict(h) for h in self.history],
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.history = [dict(h) for h in state_dict.get("history", [])]
        self._reset_stats()
        saved = state_dict.get("epoch_stats")
        rank = get_rank()
        if saved is None or rank >= saved["values"].shape[0]:
            return  # an older checkpoint, or a rank it has no sums for: the epoch starts afresh
        names, row = list(saved["names"]), saved["values"][rank]
        for i, name in enumerate(names):
            count = int(row[len(names) + i])
            if count > 0:
                self._sums[name] = row[i].float()
                self._counts[name] = count
