r"""Contrastive deep supervision: SupCon on every intermediate level's projected embeddings.

From *Contrastive Deep Supervision* (Zhang, Chen, Zhang, Dong, Ma; ECCV
2022, arXiv:2207.05306), checked against the authors' code
(`ArchipLab-LinfengZhang/contrastive-deep-supervision`, `CIFAR/train.py`, `CIFAR/resnet.py`,
`ImageNet/Contrastive_Deep_Supervision/main.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from torch import Tensor

from lightning_losses.losses._embedding import EmbeddingLoss
from lightning_losses.losses.contrastive.supcon import supcon_loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_number, check_reduction, check_tensor

__all__ = ["ContrastiveDeepSupervisionLoss", "contrastive_deep_supervision_loss"]


def _check_cds_args(
    *, level_weight: Any, weights: Any, temperature: Any, base_temperature: Any
) -> dict[str, Any]:
    # The one validator of the hyperparameters: the functional and the class use it.
    if weights is not None:
        if isinstance(weights, (str, bytes, Tensor)) or not isinstance(weights, Sequence):
            raise TypeError(f"weights must be a sequence of numbers or None, got {weights!r}")
        if not weights:
            raise ValueError("weights must not be empty")
        weights = tuple(check_number(f"weights[{i}]", w, low=0.0) for i, w in enumerate(weights))
    return {
        "level_weight": check_number("level_weight", level_weight, low=0.0),
        "weights": weights,
        "temperature": check_number("temperature", temperature, low=0.0, low_inclusive=False),
        "base_temperature": check_number(
            "base_temperature", base_temperature, low=0.0, low_inclusive=False
        ),
    }


def contrastive_deep_supervision_loss(
    input: Tensor | Sequence[Tensor],
    labels: Tensor | None = None,
    *,
    level_weight: float = 0.1,
    weights: Sequence[float] | None = None,
    temperature: float = 0.07,
    base_temperature: float = 0.07,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Weighted sum of SupCon over the projected embeddings of every supervised level.

    $$
    \mathcal L_{cds} = \sum_{l=1}^{L} w_l\, \mathcal L_{SupCon}\big(z^{(l)}, y\big),
    \qquad \mathcal L = \mathcal L_{CE}(\text{final logits}, y) + \mathcal L_{cds},
    $$

    where $z^{(l)}$ `[N, V, D_l]` are the $V$ augmented views of each sample passed through
    level $l$'s projection head (the authors' heads: separable convolutions and average pooling
    to the final width; the last level is the backbone's own pooled feature) and
    $\mathcal L_{SupCon}$ is [supcon_loss][lightning_losses.functional.supcon_loss]
    (normalised inside). The final classifier keeps its cross-entropy, computed by the caller
    on the first view's logits, as in the authors' code. Without `labels` each level uses
    SimCLR's NT-Xent (the paper's self-supervised variant).

    **Checked against the authors' code:** every level, the final pooled feature included, gets
    the same weight $w = 0.1$; SupCon with $\tau = \tau_{base} = 0.07$ (HobbitLong's
    `SupConLoss` defaults); two views per sample (the original with Cutout and a SimCLR-style
    augmentation), the embeddings split into `[N, 2, D]`. With views concatenated along the
    batch, as the authors' forward returns them, pass
    `torch.stack(z.split(n), dim=1)` per level.

    Paper: *Contrastive Deep Supervision*, Zhang et al., ECCV 2022 (arXiv:2207.05306).

    Args:
        input: one level's embeddings `[N, V, D]`, or a list of levels (shallow to deep or
            any order; the weights follow the list). `[N, D]` levels are one view each, as in
            SupCon (positives are then other samples of the class only).
        labels: class ids `[N]`; `None` for the self-supervised variant.
        level_weight: $w \ge 0$, the weight of every level when `weights` is not given.
        weights: explicit per-level weights ($\ge 0$), one per level.
        temperature: SupCon's $\tau > 0$.
        base_temperature: SupCon's $\tau_{base} > 0$ (the loss is scaled by
            $\tau/\tau_{base}$).
        reduction: `"mean" | "sum" | "none"`, passed to SupCon (`"none"`: `[N, V]` per anchor
            view, summed over the levels with their weights).
        validate_args: passed to SupCon.

    Returns:
        The weighted sum over the levels.

    Raises:
        TypeError: `input` is not a tensor or a non-empty list of tensors; bad `weights` type.
        ValueError: levels of different `N` or `V` or not 2-D/3-D, `weights` of the wrong
            length, bad hyperparameters.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import contrastive_deep_supervision_loss, supcon_loss
        >>> g = torch.Generator().manual_seed(0)
        >>> levels = [torch.randn(8, 2, 16, generator=g), torch.randn(8, 2, 32, generator=g)]
        >>> y = torch.randint(0, 3, (8,), generator=g)
        >>> got = contrastive_deep_supervision_loss(levels, y)
        >>> bool(torch.isclose(got, 0.1 * (supcon_loss(levels[0], y) + supcon_loss(levels[1], y))))
        True
    """
    check_reduction(reduction)
    hp = _check_cds_args(
        level_weight=level_weight,
        weights=weights,
        temperature=temperature,
        base_temperature=base_temperature,
    )
    levels = [input] if isinstance(input, Tensor) else input
    if isinstance(levels, (str, bytes)) or not isinstance(levels, Sequence) or not levels:
        raise TypeError(
            f"input must be a tensor or a non-empty list of tensors, got {type(input).__name__}"
        )
    for i, z in enumerate(levels):
        check_tensor(f"input[{i}]", z, floating=True)
        if z.ndim not in (2, 3) or z.shape[:-1] != levels[0].shape[:-1]:
            raise ValueError(
                f"input[{i}] must be [N, V, D] (or [N, D], one view) with the leading shape of "
                f"input[0] {tuple(levels[0].shape[:-1])}, got {tuple(z.shape)}"
            )
    ws = hp["weights"]
    if ws is None:
        ws = (hp["level_weight"],) * len(levels)
    elif len(ws) != len(levels):
        raise ValueError(f"weights has {len(ws)} entries for {len(levels)} levels")
    total: Tensor | None = None
    for w, z in zip(ws, levels, strict=True):
        term = w * supcon_loss(
            z,
            labels,
            temperature=hp["temperature"],
            base_temperature=hp["base_temperature"],
            reduction=reduction,
            validate_args=validate_args,
        )
        total = term if total is None else total + term
    assert total is not None
    return total


@register_loss("contrastive_deep_supervision", aliases=("cds",))
class ContrastiveDeepSupervisionLoss(EmbeddingLoss):
    r"""SupCon on every intermediate level's projected embeddings, weighted (arXiv:2207.05306).

    See [the functional form][lightning_losses.functional.contrastive_deep_supervision_loss] for
    the formula and the authors' settings (every level weight 0.1, $\tau = 0.07$). Add the
    final head's cross-entropy yourself: `ce(logits[:n], y) + cds(levels, y)`. Not gathered
    across ranks (each rank contrasts its own batch).

    Args:
        level_weight: the weight of every level (0.1).
        weights: explicit per-level weights (one per level), or `None`.
        temperature: SupCon's $\tau$ (0.07).
        base_temperature: SupCon's $\tau_{base}$ (0.07).
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N, V]` per anchor view).
        validate_args: run SupCon's host-sync checks.

    Shape:
        - input: `[N, V, D]` or a list of levels `[N, V, D_l]` (or `[N, D_l]`, one view);
          labels: `[N]` or `None`.
        - output: scalar, or `[N, V]` (`[N]` for one view) with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import ContrastiveDeepSupervisionLoss
        >>> crit = ContrastiveDeepSupervisionLoss()
        >>> levels = [torch.randn(4, 2, 8), torch.randn(4, 2, 16), torch.randn(4, 2, 32)]
        >>> crit(levels, torch.tensor([0, 1, 0, 1])).shape
        torch.Size([])
    """

    functional = staticmethod(contrastive_deep_supervision_loss)
    target_arg: ClassVar[str | None] = "labels"

    def __init__(
        self,
        level_weight: float = 0.1,
        weights: Sequence[float] | None = None,
        temperature: float = 0.07,
        base_temperature: float = 0.07,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_cds_args(
                level_weight=level_weight,
                weights=weights,
                temperature=temperature,
                base_temperature=base_temperature,
            ),
        )

    def forward(self, input: Tensor | Sequence[Tensor], labels: Tensor | None = None) -> Tensor:
        """Loss of one level `[N, V, D]` or a list of levels, with `labels [N]` or `None`."""
        return self._call_functional(input, labels)
