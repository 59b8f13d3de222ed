r"""Hard-patch mining (HPM): mask the patches a teacher predicts to be hardest to reconstruct.

Paper: *Hard Patches Mining for Masked Image Modeling* (Wang et al., CVPR 2023,
arXiv:2304.05919); reference code `Haochen-Wang409/HPM`. Guide: `docs/guide/hpm.md`.

The MAE carries a second decoder that predicts each patch's reconstruction loss (trained with a
pairwise ranking objective, [loss_predictor_loss][lightning_losses.nn.mae.loss_predictor_loss]).
Before every training step, a slowly updated (EMA) teacher copy of the model predicts those
losses on the **unmasked** image; of the $M = L - \lfloor L(1-\rho)\rfloor$ patches to mask, the
$n_\text{hard} = \lfloor M\alpha_t\rfloor$ with the highest predicted loss are masked, and the
other $M - n_\text{hard}$ are drawn uniformly from the rest
([hard_patch_mask][lightning_losses.callbacks.hpm.hard_patch_mask]). The hard share grows from
easy to hard, $\alpha_t = \alpha_0 + (\alpha_T - \alpha_0)\,t/T$ with $t/T = (\text{epoch}+1)/
\text{epochs}$ (per-step option: `global_step / max_steps`), $\alpha_0 = 0$, $\alpha_T = 0.5$.

Where it acts: `on_train_batch_start` runs the teacher (eval mode, no grad), builds the mask and
writes it **in place** into the dict batch (`batch["mask"]`, `[B, L]` bool, True = masked); the
module reconstructs under that mask and returns the loss-predictor objective as an aux loss.
`on_train_batch_end` updates the EMA teacher only when an optimizer step happened (safe under
gradient accumulation), with the decay going linearly from 0.999 to 0.9999 over the first 100
epochs and constant after (the official schedule).

Module interface, the Protocol [HPMModel][lightning_losses.callbacks.hpm.HPMModel] (checked
at setup; the error names what is missing):

- `predict_patch_loss(x) -> Tensor[B, L]`: the teacher pass on all patches;
- `supports_external_mask = True`: `training_step` uses `batch["mask"]` when present;
- for `teacher="ema"` ([HPMTeacherModel][lightning_losses.callbacks.hpm.HPMTeacherModel]):
  `patch_loss_model`, the `nn.Module` (with `predict_patch_loss`) whose EMA copy is the teacher
  (e.g. the [MaskedAutoencoder][lightning_losses.nn.MaskedAutoencoder]).

Distributed: masks are per sample and need no communication; each rank draws the random part
from its own stream (`seed + global_rank`). Under DDP every rank updates its teacher from
identical parameters, so the teachers stay identical without a sync. Under FSDP the unsharded EMA
copy is not supported; use `teacher="self"` (the student itself, in eval mode and `no_grad`, as
the teacher; a fallback of ours, not the paper's method). Checkpoint state: the teacher's weights,
its update count, every rank's generator state and the configuration; the schedules are functions of
`current_epoch`/`global_step`, so a resumed run masks exactly as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Protocol, cast, runtime_checkable

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from typing_extensions import override

from lightning_losses.callbacks.base import BehaviourCallback
from lightning_losses.mixins.loss import Role
from lightning_losses.nn.patches import num_masked
from lightning_losses.validation import (
    check_choice,
    check_finite_tensor,
    check_int,
    check_number,
    check_tensor,
)

__all__ = [
    "HPMModel",
    "HPMTeacherModel",
    "HardPatchMining",
    "ema_decay_at",
    "hard_fraction_at",
    "hard_patch_mask",
]


@runtime_checkable
class HPMModel(Protocol):
    """What [HardPatchMining][lightning_losses.callbacks.HardPatchMining] needs from the module.

    A masked autoencoder with a loss predictor: it predicts each patch's reconstruction loss
    (the teacher pass) and reconstructs under a mask written into the batch. Optional: a
    `mask_ratio` attribute (the callback's default ratio) and `num_patches` on the scoring
    network (lets the callback skip the teacher pass when no patch is chosen by score).
    [MaskedImageModeling][lightning_losses.recipes.masked_image_modeling.MaskedImageModeling]
    implements it.

    Example:
        >>> import torch
        >>> from lightning_losses.callbacks.hpm import HPMModel
        >>> class Model:
        ...     supports_external_mask = True
        ...     def predict_patch_loss(self, x):
        ...         return x.flatten(1)
        >>> isinstance(Model(), HPMModel)
        True
    """

    supports_external_mask: bool
    """`True`: `training_step` reconstructs under `batch["mask"]` when the batch has one."""

    def predict_patch_loss(self, x: Tensor) -> Tensor:
        """`[B, L]` predicted reconstruction losses of all patches of `[B, C, H, W]` images."""
        ...


@runtime_checkable
class HPMTeacherModel(HPMModel, Protocol):
    """[HPMModel][lightning_losses.callbacks.hpm.HPMModel] plus the network the EMA teacher copies.

    Needed by `HardPatchMining(teacher="ema")` (the paper's teacher); `teacher="self"` needs only
    `HPMModel`.
    """

    @property
    def patch_loss_model(self) -> nn.Module:
        """The `nn.Module` with `predict_patch_loss` whose EMA copy scores the patches."""
        ...


def hard_patch_mask(
    scores: Tensor,
    mask_ratio: float = 0.75,
    hard_fraction: float = 0.5,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""HPM's mask: the top-scored patches for the hard share, uniform random for the rest.

    With $M = L - \lfloor L(1-\rho)\rfloor$ patches to mask per image and
    $n_\text{hard} = \lfloor M \cdot \text{hard\_fraction}\rfloor$: the $n_\text{hard}$ patches
    with the largest `scores` (ties broken by the lower index) are masked, then $M -
    n_\text{hard}$ more drawn uniformly without replacement from the others. `hard_fraction = 0`
    is MAE's uniformly random mask. The uniforms come from `generator` (a CPU generator, so the
    draw is reproducible and device-independent); exactly $L$ of them are drawn per image
    whatever `hard_fraction` is, so the stream advances the same way at every step.

    Args:
        scores: `[B, L]` predicted patch losses (higher = harder); finite.
        mask_ratio: $\rho \in [0, 1)$.
        hard_fraction: $\alpha \in [0, 1]$, share of the masked patches chosen by score.
        generator: CPU generator for the random part (`None`: the global one).

    Returns:
        `BoolTensor[B, L]` on `scores.device`, True = masked, exactly $M$ per row.

    Raises:
        TypeError: `scores` is not a floating tensor.
        ValueError: `scores` is not `[B, L]` or not finite; ratios out of range.

    Example:
        >>> import torch
        >>> from lightning_losses.callbacks import hard_patch_mask
        >>> scores = torch.arange(8.0).repeat(2, 1)
        >>> mask = hard_patch_mask(scores, 0.5, 1.0, torch.Generator().manual_seed(0))
        >>> mask.int()
        tensor([[0, 0, 0, 0, 1, 1, 1, 1],
                [0, 0, 0, 0, 1, 1, 1, 1]], dtype=torch.int32)
    """
    check_tensor("scores", scores, floating=True)
    if scores.ndim != 2 or scores.shape[1] < 1:
        raise ValueError(f"scores must have shape [B, L] with L ≥ 1, got {tuple(scores.shape)}")
    check_finite_tensor("scores", scores)
    hard_fraction = check_number("hard_fraction", hard_fraction, low=0.0, high=1.0)
    b, length = scores.shape
    n_mask = num_masked(length, mask_ratio)
    n_hard = int(n_mask * hard_fraction)
    key = torch.rand(b, length, generator=generator).to(scores.device)
    if n_hard > 0:
        hard = scores.detach().argsort(dim=1, descending=True, stable=True)[:, :n_hard]
        key = key.scatter(1, hard, 2.0)  # above every uniform: always among the M kept
    chosen = key.argsort(dim=1, descending=True)[:, :n_mask]
    return torch.zeros(b, length, dtype=torch.bool, device=scores.device).scatter(1, chosen, True)


def hard_fraction_at(progress: float, final: float = 0.5, start: float = 0.0) -> float:
    r"""Easy-to-hard schedule $\alpha_t = \alpha_0 + (\alpha_T - \alpha_0)\min(t/T, 1)$.

    Args:
        progress: $t/T \ge 0$ (per epoch `(epoch + 1) / epochs`, per step `step / max_steps`).
        final: $\alpha_T$ (0.5 in the paper).
        start: $\alpha_0$ (0 in the paper).

    Returns:
        $\alpha_t$.

    Example:
        >>> from lightning_losses.callbacks.hpm import hard_fraction_at
        >>> hard_fraction_at(1 / 10), hard_fraction_at(1.0), hard_fraction_at(3.0)
        (0.05, 0.5, 0.5)
    """
    progress = check_number("progress", progress, low=0.0)
    return start + (final - start) * min(progress, 1.0)


def ema_decay_at(
    epoch: float, start: float = 0.999, end: float = 0.9999, epochs: int = 100
) -> float:
    """EMA decay of the teacher: linear from `start` to `end` over `epochs` epochs, then constant.

    Args:
        epoch: the current (0-based) epoch.
        start: the decay at epoch 0 (0.999 officially).
        end: the decay from `epochs` on (0.9999 officially).
        epochs: length of the ramp (100 officially); 0 = always `end`.

    Returns:
        The decay.

    Example:
        >>> from lightning_losses.callbacks.hpm import ema_decay_at
        >>> ema_decay_at(0), round(ema_decay_at(50), 6), ema_decay_at(200)
        (0.999, 0.99945, 0.9999)
    """
    if epochs <= 0:
        return end
    return start + (end - start) * min(max(epoch, 0.0) / epochs, 1.0)


class HardPatchMining(BehaviourCallback):
    r"""Write HPM masks into the batch from an EMA teacher's predicted patch losses.

    See the module docstring for the algorithm and the module interface, and
    [MaskedImageModeling][lightning_losses.recipes.masked_image_modeling.MaskedImageModeling]
    for a module that implements it.

    Args:
        mask_ratio: $\rho$; `None` takes the module's `mask_ratio` (else 0.75).
        final_hard_fraction: $\alpha_T$ (0.5).
        start_hard_fraction: $\alpha_0$ (0).
        schedule: `"epoch"` (the official `(epoch + 1) / epochs`) or `"step"`
            (`global_step / max_steps`).
        schedule_length: $T$ in epochs or steps; `None` = the trainer's `max_epochs` /
            estimated stepping batches.
        teacher: `"ema"` (the paper's) or `"self"` (the student in eval mode and `no_grad`; the
            fallback required under FSDP).
        ema_decay: `(start, end)` of the teacher's decay ramp (official `(0.999, 0.9999)`).
        ema_epochs: epochs of the decay ramp (official 100).
        image_key: the batch key of the `[B, C, H, W]` images.
        mask_key: the batch key the mask is written to.
        seed: base seed of the per-rank generator (rank `r` uses `seed + r`).

    Logged (per step): `hpm/hard_fraction`, and with the EMA teacher `hpm/ema_decay`.

    Example:
        >>> from lightning_losses.callbacks import HardPatchMining
        >>> hpm = HardPatchMining(final_hard_fraction=0.5, teacher="self", seed=0)
        >>> hpm.current_hard_fraction(epoch=4, epochs=10)
        0.25
    """

    role = Role.PATCH_MINER
    requires_hint = (
        "see the HPMModel docs; "
        "lightning_losses.recipes.masked_image_modeling.MaskedImageModeling implements it"
    )
    config_keys = (
        "mask_ratio",
        "final_hard_fraction",
        "start_hard_fraction",
        "schedule",
        "schedule_length",
        "ema_decay",
        "ema_epochs",
        "seed",
    )

    def __init__(
        self,
        mask_ratio: float | None = None,
        final_hard_fraction: float = 0.5,
        start_hard_fraction: float = 0.0,
        schedule: str = "epoch",
        schedule_length: int | None = None,
        teacher: str = "ema",
        ema_decay: tuple[float, float] = (0.999, 0.9999),
        ema_epochs: int = 100,
        image_key: str = "image",
        mask_key: str = "mask",
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        if mask_ratio is not None:
            mask_ratio = check_number(
                "mask_ratio", mask_ratio, low=0.0, high=1.0, high_inclusive=False
            )
        self.mask_ratio = mask_ratio
        self.final_hard_fraction = check_number(
            "final_hard_fraction", final_hard_fraction, low=0.0, high=1.0
        )
        self.start_hard_fraction = check_number(
            "start_hard_fraction", start_hard_fraction, low=0.0, high=1.0
        )
        self.schedule = check_choice("schedule", schedule, ("epoch", "step"))
        self.schedule_length = (
            None
            if schedule_length is None
            else check_int("schedule_length", schedule_length, low=1)
        )
        self.teacher_mode = check_choice("teacher", teacher, ("ema", "self"))
        # The EMA teacher copies `patch_loss_model`; the student as its own teacher does not.
        self.requires = HPMTeacherModel if self.teacher_mode == "ema" else HPMModel
        if not isinstance(ema_decay, (tuple, list)) or len(ema_decay) != 2:
            raise TypeError(f"ema_decay must be a (start, end) pair, got {ema_decay!r}")
        self.ema_decay: tuple[float, float] = (
            check_number("ema_decay[0]", ema_decay[0], low=0.0, high=1.0),
            check_number("ema_decay[1]", ema_decay[1], low=0.0, high=1.0),
        )
        self.ema_epochs = check_int("ema_epochs", ema_epochs, low=0)
        self.image_key, self.mask_key = image_key, mask_key
        self.teacher: AveragedModel | None = None
        self._pending_teacher: dict[str, Any] | None = None
        self._ratio = 0.75 if mask_ratio is None else mask_ratio
        self._alpha = self.start_hard_fraction

    # ----------------------------------------------------------------------------- core
    def current_hard_fraction(
        self, *, epoch: int = 0, epochs: int = 1, step: int = 0, steps: int = 1
    ) -> float:
        """$\\alpha_t$ for the configured schedule at this epoch/step.

        Args:
            epoch: the 0-based epoch (`"epoch"` schedule).
            epochs: the schedule length in epochs.
            step: the global step (`"step"` schedule).
            steps: the schedule length in steps.

        Returns:
            The hard fraction.
        """
        progress = (epoch + 1) / epochs if self.schedule == "epoch" else step / steps
        return hard_fraction_at(progress, self.final_hard_fraction, self.start_hard_fraction)

    def teacher_scores(self, pl_module: LightningModule, images: Tensor) -> Tensor:
        """`[B, L]` predicted patch losses of the teacher on all patches (eval mode, no grad).

        Args:
            pl_module: the module being trained.
            images: `[B, C, H, W]`.

        Returns:
            The scores.
        """
        if self.teacher is not None:
            with self.scoring(self.teacher):
                return cast(HPMModel, self.teacher.module).predict_patch_loss(images)
        with self.scoring(pl_module):
            return cast(HPMModel, pl_module).predict_patch_loss(images)

    @staticmethod
    def _patch_loss_model(pl_module: LightningModule) -> nn.Module:
        return cast(HPMTeacherModel, pl_module).patch_loss_model

    # ------------------------------------------------------------------------- checking
    @override
    def config(self) -> dict[str, Any]:
        return {**super().config(), "teacher": self.teacher_mode}

    @override
    def check_module(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().check_module(trainer, pl_module)
        name = type(pl_module).__name__
        if not getattr(pl_module, "supports_external_mask", False):
            raise TypeError(
                f"HardPatchMining needs {name}.supports_external_mask = True: its training_step "
                f"must reconstruct under batch[{self.mask_key!r}] when the batch has one"
            )
        if self.teacher_mode == "ema":
            source = self._patch_loss_model(pl_module)
            if not isinstance(source, nn.Module) or not callable(
                getattr(source, "predict_patch_loss", None)
            ):
                raise TypeError(
                    f"HardPatchMining(teacher='ema') copies `{name}.patch_loss_model`, which must "
                    "be an nn.Module with predict_patch_loss; expose it or use teacher='self'"
                )
            from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy

            if isinstance(trainer.strategy, (FSDPStrategy, ModelParallelStrategy)):
                raise ValueError(
                    "HardPatchMining(teacher='ema') keeps an unsharded copy of the model, which "
                    f"{type(trainer.strategy).__name__} does not support; use teacher='self'"
                )

    # ---------------------------------------------------------------------------- hooks
    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        ratio = (
            self.mask_ratio
            if self.mask_ratio is not None
            else getattr(pl_module, "mask_ratio", 0.75)
        )
        self._ratio = check_number("mask_ratio", ratio, low=0.0, high=1.0, high_inclusive=False)
        if stage == "fit" and self.teacher_mode == "ema" and self.teacher is None:
            self.teacher = AveragedModel(self._patch_loss_model(pl_module))
            self.teacher.requires_grad_(False)
            # Count the copy as one average, so the first update is an EMA step, not a copy.
            self.teacher.n_averaged.fill_(1)
            if self._pending_teacher is not None:
                self.teacher.load_state_dict(self._pending_teacher)
                self._pending_teacher = None

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if self.teacher is not None:
            self.teacher.to(pl_module.device)

    def _schedule_length(self, trainer: Trainer) -> int:
        if self.schedule_length is not None:
            return self.schedule_length
        if self.schedule == "step":
            return max(int(trainer.estimated_stepping_batches), 1)
        if trainer.max_epochs is None or trainer.max_epochs < 1:
            raise ValueError(
                "HardPatchMining(schedule='epoch') needs trainer.max_epochs (or schedule_length); "
                "with max_steps only, use schedule='step'"
            )
        return trainer.max_epochs

    @override
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not isinstance(batch, MutableMapping) or self.image_key not in batch:
            raise ValueError(
                f"HardPatchMining needs dict batches with the images under {self.image_key!r}; "
                f"got {type(batch).__name__}"
            )
        length = self._schedule_length(trainer)
        self._alpha = self.current_hard_fraction(
            epoch=trainer.current_epoch, epochs=length, step=trainer.global_step, steps=length
        )
        images = batch[self.image_key]
        n_patches = getattr(getattr(pl_module, "patch_loss_model", pl_module), "num_patches", None)
        if n_patches is None or int(num_masked(n_patches, self._ratio) * self._alpha) > 0:
            scores = self.teacher_scores(pl_module, images).float()
        else:  # no hard patch this step: a uniform mask, no teacher pass needed
            scores = torch.zeros(images.shape[0], n_patches, device=images.device)
        # The mask is written in place: Lightning hands training_step this same dict.
        batch[self.mask_key] = hard_patch_mask(scores, self._ratio, self._alpha, self.generator)
        return None

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        pl_module.log("hpm/hard_fraction", float(self._alpha), on_step=True, on_epoch=False)
        if self.teacher is None or not self.optimizer_stepped(trainer):
            return
        decay = ema_decay_at(trainer.current_epoch, *self.ema_decay, epochs=self.ema_epochs)
        self.teacher.multi_avg_fn = get_ema_multi_avg_fn(decay)
        self.teacher.update_parameters(self._patch_loss_model(pl_module))
        pl_module.log("hpm/ema_decay", decay, on_step=True, on_epoch=False)

    # ---------------------------------------------------------------------------- state
    @override
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.teacher is not None:
            state["teacher"] = {
                k: v.detach().cpu().clone() for k, v in self.teacher.state_dict().items()
            }
        return state

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        teacher = state_dict.get("teacher")
        if teacher is None:
            return
        if self.teacher is None:
            self._pending_teacher = teacher  # setup builds the teacher and loads it
        else:
            self.teacher.load_state_dict(teacher)
