r"""KL-regularised DRO instance reweighting (guide: `docs/guide/procedures.md`).

From *Doubly Robust Instance-Reweighted Adversarial Training* (Sow, Lin, Wang, Liang; ICLR 2024,
arXiv:2308.00311). The importance weights of the $n$ samples solve the KL-regularised
distributionally robust problem

$$
\max_{w \in \Delta_n} \sum_i w_i \ell_i - \lambda\,\mathrm{KL}(w \,\|\, \tfrac{1}{n}\mathbf 1)
\quad\Longrightarrow\quad
w_i = \frac{\exp(\ell_i/\lambda)}{\sum_j \exp(\ell_j/\lambda)},
$$

and the model minimises $\sum_i w_i \ell_i$ with the weights held fixed (detached). Limits:
$\lambda \to \infty$ gives the mean (ERM), $\lambda \to 0$ the maximum loss (worst case). The
paper applies it to adversarial losses inside a bilevel algorithm; what ships here is the
weighting itself, for any per-sample loss (the closed form above is checked in the tests by
maximising the regularised objective over the simplex numerically).

Why a sample weighter and not a loss class: the weights are a function of the *per-sample
losses of the batch*, not of `(input, target)`. The [LossMixin][lightning_losses.mixins.LossMixin]
reduction seam (role `sample_weighter`) is exactly that place, so
[KLDROReweighting][lightning_losses.callbacks.KLDROReweighting] works with every catalog
criterion, and `kl_dro_loss` covers plain loops. Unlike `LossReweighting` (Sow et al., ICLR 2025),
the losses are not min-max normalised first: $\lambda$ is in the units of the loss.

Non-finite losses get weight 0 and are left out of the softmax. Distributed (DDP): with
`global_normalization=True` the detached `[B]` losses are all-gathered, the weights normalised
over the global batch, and each rank returns its slice times `world_size`, so DDP's gradient
average is exactly $\sum_{global} w_i \nabla\ell_i$; `False` normalises per rank.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor
from typing_extensions import override

from lightning_losses.callbacks.base import BehaviourCallback
from lightning_losses.distributed import all_gather_no_grad, get_rank, get_world_size
from lightning_losses.mixins.loss import LossModel, Role
from lightning_losses.validation import check_bool, check_number, check_tensor

__all__ = ["KLDROReweighting", "kl_dro_loss", "kl_dro_weights"]


def kl_dro_weights(losses: Tensor, lam: float = 1.0) -> Tensor:
    r"""KL-DRO sample weights $w = \mathrm{softmax}(\ell / \lambda)$ (fp32, detached).

    Args:
        losses: `[N]` per-sample losses.
        lam: the KL regularisation $\lambda > 0$ (in the units of the loss).

    Returns:
        `[N]` float32 weights summing to 1 over the finite losses (non-finite losses get 0; all
        non-finite: all 0).

    Raises:
        TypeError: `losses` is not a floating tensor.
        ValueError: `losses` is not 1-D, or `lam` is not positive.

    Example:
        >>> import torch
        >>> from lightning_losses.callbacks import kl_dro_weights
        >>> kl_dro_weights(torch.tensor([0.0, 1.0, 2.0]), lam=1.0)
        tensor([0.0900, 0.2447, 0.6652])
    """
    losses = check_tensor("losses", losses, floating=True)
    if losses.ndim != 1:
        raise ValueError(f"losses must be 1-D [N], got shape {tuple(losses.shape)}")
    lam = check_number("lam", lam, low=0.0, low_inclusive=False)
    x = losses.detach().float()
    finite = torch.isfinite(x)
    logits = torch.where(finite, x / lam, torch.full_like(x, -torch.inf))
    return torch.nan_to_num(torch.softmax(logits, dim=0), nan=0.0)


def kl_dro_loss(losses: Tensor, lam: float = 1.0) -> Tensor:
    r"""The KL-DRO objective $\sum_i w_i \ell_i$ with the detached weights of `kl_dro_weights`.

    A weight-0 (non-finite) loss is left out of the sum, not multiplied by 0.

    Args:
        losses: `[N]` per-sample losses (attached to the graph).
        lam: the KL regularisation $\lambda > 0$.

    Returns:
        The scalar objective, in the dtype of `losses`; its gradient is
        $\sum_i w_i \nabla \ell_i$.

    Example:
        >>> import torch
        >>> from lightning_losses.callbacks import kl_dro_loss
        >>> losses = torch.tensor([0.5, 1.0, 4.0])
        >>> kl_dro_loss(losses, lam=1e6), kl_dro_loss(losses, lam=1e-3)  # ~mean, ~max
        (tensor(1.8333), tensor(4.))
    """
    weights = kl_dro_weights(losses, lam).to(losses.dtype)
    zero = torch.zeros((), dtype=losses.dtype, device=losses.device)
    return torch.where(weights != 0, weights * losses, zero).sum()


class KLDROReweighting(BehaviourCallback):
    r"""KL-DRO instance reweighting as the module's sample weighter.

    Attaches to a [LossMixin][lightning_losses.mixins.LossMixin] module as `sample_weighter`: the
    main loss becomes $\sum_i w_i \ell_i$ with $w = \mathrm{softmax}(\ell / \lambda)$ over the
    (global) batch. Logs `kl_dro/max_weight` and `kl_dro/effective_n` ($1/\sum w_i^2$) of the
    normalised weights.

    Args:
        lam: the KL regularisation $\lambda > 0$.
        global_normalization: normalise over the global batch under DDP (else per rank).

    Example:
        >>> from lightning_losses.callbacks import KLDROReweighting
        >>> KLDROReweighting(lam=0.5).state_dict()
        {'config': {'lam': 0.5, 'global_normalization': True}}
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
    config_keys = ("lam", "global_normalization")

    def __init__(self, lam: float = 1.0, global_normalization: bool = True) -> None:
        super().__init__()
        self.lam = check_number("lam", lam, low=0.0, low_inclusive=False)
        self.global_normalization = check_bool("global_normalization", global_normalization)
        self.last_weights: Tensor | None = None

    @torch.no_grad()
    def sample_weights(self, per_sample: Tensor) -> Tensor:
        """`[B]` detached local losses to `[B]` weights (× `world_size` when global).

        Args:
            per_sample: this rank's per-sample losses.

        Returns:
            This rank's weights.
        """
        self.notify_called()
        losses = per_sample.detach().float().reshape(-1)
        world = get_world_size() if self.global_normalization else 1
        if world > 1:
            rank = get_rank()
            tagged = torch.stack([losses, torch.full_like(losses, float(rank))], dim=1)
            gathered = all_gather_no_grad(tagged)
            glob = kl_dro_weights(gathered[:, 0], self.lam)
            local = glob[gathered[:, 1] == rank] * world
            self.last_weights = glob
        else:
            local = kl_dro_weights(losses, self.lam)
            self.last_weights = local
        return local.reshape(per_sample.shape)

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        weights = self.last_weights
        if weights is None or weights.numel() == 0:
            return
        pl_module.log_dict(
            {
                "kl_dro/max_weight": weights.max(),
                "kl_dro/effective_n": 1.0 / weights.square().sum().clamp_min(1e-12),
            },
            on_step=True,
            on_epoch=False,
            batch_size=1,
        )
