r"""PLD: resample the positive to train on from the user's Personal Loss Distribution.

Paper: *Personalized Denoising Implicit Feedback for Robust Recommender System*
(Zhang et al., WWW 2025, arXiv:2502.00348). Spec: DYNAMICS.md §3.

Noisy implicit interactions overlap with clean ones in the *global* loss distribution but stand
out inside each user's own one. Every iteration, each training instance carries a pool of ``k``
of its user's observed positives; PLD scores each candidate's loss with the current model (no
grad) and draws the positive to train on with probability

.. math:: P(i \mid u) = \frac{\exp(-\ell_{ui}/\tau)}{\sum_{i' \in C_u}\exp(-\ell_{ui'}/\tau)},

so likely-noisy (high-loss) interactions are optimised less. ``τ → ∞`` is uniform sampling
(standard training), ``τ → 0`` always picks the lowest-loss candidate.

Batch schema (a dict, rewritten in place)::

    user        LongTensor[B]       user ids
    cand_items  LongTensor[B, k]    candidate pool: k of the user's observed positives
    neg_item    LongTensor[B] or [B, K]  sampled negatives (the same j scores and trains)
    pos_item    LongTensor[B]       the positive to train on; the data side puts a uniform
                                    choice here, PLD overwrites it
    cand_noisy  BoolTensor[B, k]    optional: known-noisy flags (synthetic data)
    pos_is_noisy BoolTensor[B]      optional: written by PLD when ``cand_noisy`` is present

Why a batch rewrite (DYNAMICS option (a)) rather than a sampler: a sampler runs in the data
workers, which have no access to the current model, and the candidate losses must come from the
model being trained *at this step*. ``on_train_batch_start`` sees the model and the batch, keeps
the data pipeline model-free, and works unchanged for any module that implements one method:

* ``pl_module.pld_candidate_losses(batch) -> Tensor[B, k]`` — the per-candidate training loss
  (same negatives as for training). The callback calls it under ``torch.no_grad()`` with the
  module in eval mode (restored afterwards).

Option (b), for models whose scoring is expensive (LightGCN's graph propagation): a module that
sets ``pld_inline = True`` computes the candidate losses itself inside ``training_step`` from the
embeddings of its one propagation and calls ``self.pld.select(batch, losses)`` (the callback is
attached as ``pl_module.pld``). The callback then does nothing in ``on_train_batch_start`` and
checks at ``on_train_batch_end`` that ``select`` was called.

Distributed: purely local. Every rank resamples its own users; the generator is seeded with
``seed + global_rank`` so ranks draw from distinct streams; nothing is all-reduced except the
logged diagnostics (``sync_dist`` at epoch end). The checkpoint holds every rank's generator
state (gathered when the checkpoint is built), so a resumed run — single device or multi-rank on
the same number of ranks — replays exactly the draws of an uninterrupted one; a rank with no saved
state (resuming on more ranks) reseeds from ``(seed, rank, global_step)``. Under FSDP use option
(b) (scoring inside the wrapped forward). Checkpoint state: the generator states and the
configuration.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor

from lightning_losses.callbacks.base import (
    BehaviourCallback,
    generator_state,
    restore_generator,
)

__all__ = ["PLDResampling", "pld_entropy", "pld_probabilities", "pld_sample"]


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
    r"""Per-user resampling distribution :math:`\mathrm{softmax}(-\ell/\tau)` over the pool.

    Args:
        losses: candidate losses ``[B, k]`` (one row per training instance).
        temperature: :math:`\tau > 0`; ``math.inf`` gives the uniform distribution.

    Returns:
        ``[B, k]`` probabilities (float32 or float64), each row summing to 1.

    Example:
        >>> import torch
        >>> from lightning_losses.callbacks.pld import pld_probabilities
        >>> pld_probabilities(torch.tensor([[0.0, 0.6931]]), temperature=1.0)
        tensor([[0.6667, 0.3333]])
    """
    _check_losses(losses)
    temperature = _check_temperature(temperature)
    losses = losses.detach()
    if losses.dtype in (torch.float16, torch.bfloat16):
        losses = losses.float()
    if math.isinf(temperature):
        return torch.full_like(losses, 1.0 / losses.shape[1])
    return torch.softmax(-losses / temperature, dim=1)


def pld_sample(
    losses: Tensor, temperature: float, generator: torch.Generator | None = None
) -> Tensor:
    """Draw one candidate index per row from :func:`pld_probabilities`.

    Inverse-CDF sampling with uniforms from ``generator`` (a CPU generator, moved to the
    losses' device), so the draw is reproducible and device-independent.

    Returns:
        ``LongTensor[B]`` indices into the pool.

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
    idx = torch.searchsorted(cdf, u.to(cdf.device), right=True).squeeze(1)
    return idx.clamp_max(probs.shape[1] - 1)


def pld_entropy(probs: Tensor) -> Tensor:
    """Mean entropy of the rows of ``probs``, normalised by ``log k`` (1 = uniform)."""
    k = probs.shape[1]
    if k < 2:
        return probs.new_ones(())
    ent = -(probs * probs.clamp_min(1e-30).log()).sum(1)
    return ent.mean() / math.log(k)


class PLDResampling(BehaviourCallback):
    """Resample each instance's positive from its pool by the user's personal loss distribution.

    See the module docstring for the batch schema and the module interface.

    Args:
        temperature: :math:`\\tau > 0` acting on *losses* (default 0.5, DYNAMICS' proposal for
            BPR with loss scale ~0-3; sweep ``{0.05, 0.1, 0.5, 1}``). ``math.inf`` = uniform.
        seed: base seed; rank ``r`` uses ``seed + r``.
        start_epoch: train with the uniform choice before this epoch (PLD needs a model that
            has learned something; 0 = from the start, as the paper).

    Logged (epoch means, ``sync_dist``): ``pld/entropy`` (normalised entropy of the resampling
    distribution), ``pld/noisy_share`` (share of chosen positives that are known-noisy) and
    ``pld/pool_noisy_share`` (the same share under uniform choice) when the batch has
    ``cand_noisy``. :attr:`history` keeps the per-epoch values for benchmarks.

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

    role = "pld"
    requires_loss_mixin = False

    def __init__(self, temperature: float = 0.5, seed: int = 0, start_epoch: int = 0) -> None:
        super().__init__()
        self.temperature = _check_temperature(temperature)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        if isinstance(start_epoch, bool) or not isinstance(start_epoch, int) or start_epoch < 0:
            raise ValueError(f"start_epoch must be an int ≥ 0, got {start_epoch!r}")
        self.seed = seed
        self.start_epoch = start_epoch
        self.generator = torch.Generator().manual_seed(seed)
        self.history: list[dict[str, float]] = []
        self._active = True
        self._selected = False
        self._reset_stats()

    # ----------------------------------------------------------------------------- core
    def select(self, batch: MutableMapping[str, Tensor], losses: Tensor) -> Tensor:
        """Draw one candidate per row and write ``batch["pos_item"]`` (and noise flags) in place.

        Args:
            batch: dict batch with ``cand_items [B, k]`` (and optionally ``cand_noisy``).
            losses: detached candidate losses ``[B, k]``.

        Returns:
            the chosen indices ``LongTensor[B]`` into the pool.
        """
        cand = batch.get("cand_items") if isinstance(batch, MutableMapping) else None
        if cand is None:
            raise ValueError(
                "PLDResampling needs a dict batch with 'cand_items' [B, k]; got "
                f"{type(batch).__name__} with keys {sorted(batch) if hasattr(batch, 'keys') else '-'}"
            )
        if losses.shape != cand.shape:
            raise ValueError(
                f"candidate losses must have the shape of batch['cand_items'] "
                f"{tuple(cand.shape)}, got {tuple(losses.shape)}"
            )
        self._selected = True
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
    def check_module(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().check_module(trainer, pl_module)
        inline = bool(getattr(pl_module, "pld_inline", False))
        if not inline and not callable(getattr(pl_module, "pld_candidate_losses", None)):
            raise TypeError(
                f"PLDResampling needs {type(pl_module).__name__} to implement "
                "`pld_candidate_losses(batch) -> Tensor[B, k]` (scored by the callback in "
                "on_train_batch_start), or to set `pld_inline = True` and call "
                "`self.pld.select(batch, losses)` inside training_step"
            )

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            # Distinct stream per rank; a checkpoint restore (after setup) overrides this.
            self.generator.manual_seed(self.seed + trainer.global_rank)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._active = trainer.current_epoch >= self.start_epoch
        self._reset_stats()

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
        was_training = pl_module.training
        pl_module.eval()  # no dropout while scoring (DYNAMICS pitfall)
        try:
            with torch.no_grad():
                losses = pl_module.pld_candidate_losses(batch)
        finally:
            pl_module.train(was_training)
        self.select(batch, losses)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self._selected:
            raise RuntimeError(
                f"{type(pl_module).__name__} sets pld_inline=True but its training_step did not "
                "call self.pld.select(batch, losses)"
            )

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        record: dict[str, float] = {"epoch": float(trainer.current_epoch)}
        for name, total in self._sums.items():
            value = (total / max(self._counts[name], 1)).float()
            pl_module.log(f"pld/{name}", value, on_step=False, on_epoch=True, sync_dist=True)
            record[name] = float(value)
        self.history.append(record)
        self._reset_stats()

    # ------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": generator_state(self.generator),
            "temperature": self.temperature,
            "seed": self.seed,
            "start_epoch": self.start_epoch,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._missing_state = not restore_generator(self.generator, state_dict.get("generator"))

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # A rank the checkpoint has no stream for (resumed on more ranks) derives a fresh,
        # distinct one from (seed, rank, step) instead of replaying another rank's.
        if getattr(self, "_missing_state", False):
            self.generator.manual_seed(
                self.seed + trainer.global_rank + 1_000_003 * (trainer.global_step + 1)
            )
        self._missing_state = False
