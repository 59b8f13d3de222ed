r"""Rationale invariance (RIDG): each sample's per-feature logit contributions near its class mean.

From *Domain Generalization via Rationale Invariance* (Chen, Zhang, Song, van den Hengel, Liu;
ICCV 2023, arXiv:2308.11158), checked against the authors' code (`liangchen527/RIDG`,
`domainbed/algorithms.py` class `RIDG`, `domainbed/hparams_registry.py`). For a linear
classifier $z = W f$ ($W \in \mathbb{R}^{C \times D}$), the **rationale** of sample $i$ is the
full $C \times D$ matrix of element-wise contributions to every logit,

$$
R_i[k, d] = W[k, d]\, f_i[d], \qquad z_{i,k} = \textstyle\sum_d R_i[k, d] + b_k,
$$

and the regulariser keeps each sample's rationale near its class's mean rationale
$\bar R_c$, a running mean kept across batches:

$$
\mathcal L_{inv} = \sum_{c \in \text{batch}} \frac{1}{n_c\,C} \sum_{i:\,y_i = c}
    \big\lVert R_i - \operatorname{sg}(\bar R_c) \big\rVert_F^2 ,
\qquad \mathcal L = \mathcal L_{CE} + \lambda\, \mathcal L_{inv},
$$

the squared distance summed over the feature axis and averaged over the $C$ rows and the
class's $n_c$ samples, then **summed** over the classes present in the batch, as in the
authors' code. Before the loss is computed, the bank is updated with the batch's class means
$m_c$: $\bar R_c \leftarrow m_c$ the first time class $c$ is seen, else
$\bar R_c \leftarrow (1 - \mu)\,\bar R_c + \mu\, m_c$ with momentum $\mu$ (the weight of the
**new** batch; the authors' default `momentum=0.001`, searched in $[10^{-4}, 10^{-1}]$). The
authors' default weight is $\lambda = 0.01$ (`ridg_reg`, searched in $[10^{-2}, 10^{-1}]$).
The bank is stop-gradient: only $R_i$ (features and classifier) receive the gradient.

The bank is a buffer ($C \times C \times D$ floats), so it is saved in a checkpoint and follows
`.to(device)`; it is updated only in training mode (in eval mode the loss is measured against
the stored means). Under DDP each process keeps its own bank from its own batches, as the
authors' single-process code does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_losses.validation import check_bool, check_int, check_number, check_tensor

__all__ = ["RationaleInvariance", "rationale_invariance_loss", "rationales"]


def rationales(features: Tensor, weight: Tensor) -> Tensor:
    r"""The rationale matrices $R_i[k, d] = W[k, d]\, f_i[d]$ of a batch.

    Args:
        features: `[N, D]` inputs of the linear classifier.
        weight: `[C, D]` its weight (`classifier.weight`).

    Returns:
        `[N, C, D]` rationales (they sum over `D` to the logits without the bias).

    Raises:
        TypeError: non-floating tensors.
        ValueError: shapes are not `[N, D]` and `[C, D]`.

    Example:
        >>> import torch
        >>> from lightning_losses.nn import rationales
        >>> fc = torch.nn.Linear(3, 2, bias=False)
        >>> f = torch.randn(4, 3)
        >>> torch.allclose(rationales(f, fc.weight).sum(-1), fc(f))
        True
    """
    check_tensor("features", features, floating=True)
    check_tensor("weight", weight, floating=True)
    if features.ndim != 2 or weight.ndim != 2 or features.shape[1] != weight.shape[1]:
        raise ValueError(
            f"features must be [N, D] and weight [C, D] with the same D, got "
            f"{tuple(features.shape)} and {tuple(weight.shape)}"
        )
    return features[:, None, :] * weight[None, :, :]


def _class_stats(rationale: Tensor, target: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    # Per-class sums of the rationales and counts, without boolean indexing.
    onehot = F.one_hot(target, num_classes).to(rationale.dtype)  # [N, C]
    counts = onehot.sum(0)  # [C]
    sums = torch.einsum("nc,nkd->ckd", onehot, rationale)  # [C(class), C(row), D]
    return sums, counts


def rationale_invariance_loss(rationale: Tensor, target: Tensor, class_means: Tensor) -> Tensor:
    r"""$\sum_{c} \frac{1}{n_c C}\sum_{i: y_i = c} \lVert R_i - \bar R_c\rVert_F^2$, means detached.

    The functional core of [RationaleInvariance][lightning_losses.nn.RationaleInvariance],
    without the running-mean update; see the module docstring for the formula.

    Args:
        rationale: `[N, C, D]` rationales (see [rationales][lightning_losses.nn.rationales]).
        target: `[N]` class indices in `[0, C)`.
        class_means: `[C, C, D]` the class means $\bar R_c$ (stop-gradient here).

    Returns:
        The scalar loss (0 for an empty batch).

    Raises:
        TypeError: non-floating rationale/means or non-integer target.
        ValueError: bad shapes.

    Example:
        >>> import torch
        >>> from lightning_losses.nn import rationale_invariance_loss
        >>> r = torch.ones(3, 2, 4)  # identical rationales, class means equal to them
        >>> rationale_invariance_loss(r, torch.tensor([0, 0, 1]), torch.ones(2, 2, 4))
        tensor(0.)
    """
    check_tensor("rationale", rationale, floating=True)
    check_tensor("target", target, floating=False)
    check_tensor("class_means", class_means, floating=True)
    if rationale.ndim != 3:
        raise ValueError(f"rationale must be [N, C, D], got {tuple(rationale.shape)}")
    n, c, d = rationale.shape
    if target.shape != (n,):
        raise ValueError(f"target must be [N] = [{n}], got {tuple(target.shape)}")
    if class_means.shape != (c, c, d):
        raise ValueError(
            f"class_means must be [C, C, D] = {[c, c, d]}, got {list(class_means.shape)}"
        )
    per_sample = (rationale - class_means.detach()[target]).pow(2).sum(-1).mean(-1)  # [N]
    counts = F.one_hot(target, c).sum(0).to(per_sample.dtype)  # [C]
    # Mean within each class, sum over the classes: weight 1 / n_{y_i} per sample.
    return (per_sample / counts[target]).sum()


class RationaleInvariance(nn.Module):
    r"""RIDG's rationale-invariance regulariser with its running class means (arXiv:2308.11158).

    `forward(features, weight, target)` updates the class-mean bank (training mode only) and
    returns $\mathcal L_{inv}$; add it to the task loss with weight $\lambda$ (the authors'
    0.01). See the module docstring for the formula and the update rule.

    Args:
        num_classes: $C$.
        num_features: $D$, the classifier's input size.
        momentum: $\mu \in (0, 1]$, the weight of the new batch's class mean (the authors' 0.001).
        validate_args: check the class indices' range on every call (a host sync).

    Example:
        >>> import torch
        >>> from lightning_losses.nn import RationaleInvariance
        >>> fc = torch.nn.Linear(8, 3)
        >>> ridg = RationaleInvariance(num_classes=3, num_features=8)
        >>> feats, y = torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])
        >>> ce = torch.nn.functional.cross_entropy(fc(feats), y)
        >>> loss = ce + 0.01 * ridg(feats, fc.weight, y)
        >>> loss.backward()
        >>> ridg.bank.shape, bool(ridg.seen.all())
        (torch.Size([3, 3, 8]), True)
    """

    bank: Tensor
    seen: Tensor

    def __init__(
        self,
        num_classes: int,
        num_features: int,
        momentum: float = 0.001,
        validate_args: bool = True,
    ) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, low=1)
        self.num_features = check_int("num_features", num_features, low=1)
        self.momentum = check_number("momentum", momentum, low=0.0, high=1.0, low_inclusive=False)
        self.validate_args = check_bool("validate_args", validate_args)
        self.register_buffer("bank", torch.zeros(num_classes, num_classes, num_features))
        self.register_buffer("seen", torch.zeros(num_classes, dtype=torch.bool))

    @torch.no_grad()
    def update(self, rationale: Tensor, target: Tensor) -> None:
        """Fold the batch's class means into the bank (first sight: copy; then EMA)."""
        sums, counts = _class_stats(
            rationale.detach().to(self.bank.dtype), target, self.num_classes
        )
        present = counts > 0
        means = sums / counts.clamp_min(1)[:, None, None]
        ema = (1.0 - self.momentum) * self.bank + self.momentum * means
        new = torch.where(self.seen[:, None, None], ema, means)
        self.bank.copy_(torch.where(present[:, None, None], new, self.bank))
        self.seen.logical_or_(present)

    def forward(self, features: Tensor, weight: Tensor, target: Tensor) -> Tensor:
        """$\\mathcal L_{inv}$ of `features [N, D]`, classifier `weight [C, D]`, labels `[N]`."""
        rationale = rationales(features, weight)
        if rationale.shape[1:] != self.bank.shape[1:]:
            raise ValueError(
                f"weight must be [num_classes, num_features] = "
                f"{[self.num_classes, self.num_features]}, got {list(weight.shape)}"
            )
        check_tensor("target", target, floating=False)
        if target.shape != (features.shape[0],):
            raise ValueError(
                f"target must be [N] = [{features.shape[0]}], got {tuple(target.shape)}"
            )
        if (
            self.validate_args
            and target.numel()
            and not bool(((target >= 0) & (target < self.num_classes)).all())
        ):
            raise ValueError(f"target must hold class indices in [0, {self.num_classes})")
        if self.training:
            self.update(rationale, target)
        return rationale_invariance_loss(rationale, target, self.bank.to(rationale.dtype))

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, num_features={self.num_features}, "
            f"momentum={self.momentum}"
        )
