r"""Sigmoid contrastive loss of SigLIP, with a learnable temperature and bias.

*Sigmoid Loss for Language Image Pre-Training*, Zhai et al., ICCV 2023 (arXiv:2303.15343);
reference implementation `open_clip.loss.SigLipLoss` (mlfoundations/open_clip).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_losses.losses._embedding import (
    DistributedSemantics,
    EmbeddingLoss,
    check_embeddings,
    gather_batch,
)
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import (
    check_bool,
    check_number,
    check_reduction,
    check_same_shape,
    check_tensor,
)

__all__ = ["SigmoidContrastiveLoss", "sigmoid_contrastive_loss"]

LOG_10 = math.log(10.0)


def _scalar(name: str, value: Any, like: Tensor) -> Tensor:
    # A float hyperparameter, or a 0-d tensor (a learnable nn.Parameter), in the inputs' dtype.
    if isinstance(value, Tensor):
        check_tensor(name, value, floating=True)
        if value.numel() != 1:
            raise ValueError(
                f"{name} must be a scalar (one element), got shape {tuple(value.shape)}"
            )
        return value.reshape(()).to(like.dtype)
    return torch.tensor(check_number(name, value), dtype=like.dtype, device=like.device)


def sigmoid_contrastive_loss(
    image_emb: Tensor,
    text_emb: Tensor,
    *,
    log_scale: float | Tensor = LOG_10,
    bias: float | Tensor = -10.0,
    gather_distributed: bool = False,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""SigLIP's pairwise sigmoid loss between image and text embeddings.

    Over L2-normalised $x_i$ (images) and $y_j$ (texts), $t = e^{t'}$ (`log_scale` $= t'$),
    bias $b$, and $z_{ij} = +1$ for the matching pair $i = j$, $-1$ otherwise:

    $$
    \ell_i = \sum_j \log\left(1 + e^{-z_{ij}(t\, x_i \cdot y_j + b)}\right), \qquad
    \mathcal{L} = \frac{1}{N}\sum_i \ell_i
    $$

    Every image-text pair is an independent binary problem, so no softmax normaliser spans the
    batch. `reduction="mean"` is open_clip's `-logsigmoid(labels * logits).sum() / N`; one
    value per image with `"none"`. With $N = 1$ the loss is $\log(1 + e^{-(t\,x\cdot y + b)})$.

    *Sigmoid Loss for Language Image Pre-Training*, Zhai et al., ICCV 2023 (arXiv:2303.15343).
    Verified against open_clip's `SigLipLoss` formula (reproduced in the tests; init
    $t' = \log 10$, $b = -10$ as in the paper and open_clip), value and gradient, and the
    $N = 1$ limit.

    Args:
        image_emb: `[N, D]` image embeddings (normalised inside).
        text_emb: `[N, D]` text embeddings; `text_emb[i]` matches `image_emb[i]`.
        log_scale: $t'$, the log of the logit scale: a float or a 0-d tensor (learnable).
        bias: $b$: a float or a 0-d tensor (learnable).
        gather_distributed: all-gather the texts across ranks (with gradient): each rank's
            images are scored against every text. open_clip's ring exchange computes the same
            pairs without materialising the gathered texts.
        reduction: `"mean"` (over images, of each image's sum over texts) `| "sum" | "none"`.
        validate_args: unused (no host-sync checks); kept for the contract.

    Returns:
        The loss (`[N]` with `reduction="none"`).

    Shape:
        image_emb `[N, D]`, text_emb `[N, D]`.

    Raises:
        TypeError: non-floating inputs.
        ValueError: shape mismatch, a non-scalar `log_scale`/`bias`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import sigmoid_contrastive_loss
        >>> g = torch.Generator().manual_seed(0)
        >>> img, txt = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
        >>> sigmoid_contrastive_loss(img, txt)
        tensor(10.4028)
    """
    check_reduction(reduction)
    check_bool("gather_distributed", gather_distributed)
    x = check_embeddings("image_emb", image_emb)
    y = check_embeddings("text_emb", text_emb)
    check_same_shape("image_emb", x, "text_emb", y)
    dtype = torch.promote_types(x.dtype, y.dtype)
    x, y = F.normalize(x.to(dtype), dim=-1), F.normalize(y.to(dtype), dim=-1)
    t = _scalar("log_scale", log_scale, x).exp()
    b = _scalar("bias", bias, x)
    texts, _, offset = gather_batch(y, gather_distributed=gather_distributed)
    n = x.shape[0]
    # Scale the [N, D] side: the [N, M] logits are the only batch-squared tensor built.
    logits = (x * t) @ texts.T + b
    # -log σ(z · logits) = softplus(-z · logits): +logits off the diagonal, -logits on the
    # matching pairs, flipped in place (the matmul and add save no output).
    rows_idx = torch.arange(n, device=x.device)
    cols = rows_idx + offset
    logits[rows_idx, cols] = -logits[rows_idx, cols]
    rows = F.softplus(logits).sum(1)
    return reduce_loss(rows, reduction)


@register_loss("sigmoid_contrastive", aliases=("siglip",))
class SigmoidContrastiveLoss(EmbeddingLoss):
    r"""SigLIP's sigmoid contrastive loss with learnable temperature $t = e^{t'}$ and bias $b$.

    $$
    \mathcal{L} = -\frac{1}{N}\sum_i \sum_j \log \sigma\left(z_{ij}(t\, x_i \cdot y_j + b)\right)
    $$

    Module form of
    [sigmoid_contrastive_loss][lightning_losses.functional.sigmoid_contrastive_loss]; $t'$ and
    $b$ are `nn.Parameter`s (`log_scale`, `bias`) initialised as in the paper, so a
    [LossMixin][lightning_losses.mixins.LossMixin] model trains them with its own weights.

    *Sigmoid Loss for Language Image Pre-Training*, Zhai et al., ICCV 2023 (arXiv:2303.15343).

    Args:
        init_log_scale: initial $t'$ (paper: $\log 10$).
        init_bias: initial $b$ (paper: $-10$).
        gather_distributed: all-gather the texts across ranks (with gradient).
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N]`, one value per image).
        validate_args: kept for the contract.

    Shape:
        forward(image_emb `[N, D]`, text_emb `[N, D]`).

    Example:
        >>> import torch
        >>> from lightning_losses.losses import SigmoidContrastiveLoss
        >>> g = torch.Generator().manual_seed(0)
        >>> img, txt = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
        >>> loss = SigmoidContrastiveLoss()
        >>> loss(img, txt)
        tensor(10.4028, grad_fn=<MeanBackward0>)
        >>> sorted(name for name, _ in loss.named_parameters())
        ['bias', 'log_scale']
    """

    functional = staticmethod(sigmoid_contrastive_loss)
    distributed_semantics: ClassVar[str] = DistributedSemantics.GATHER

    def __init__(
        self,
        init_log_scale: float = LOG_10,
        init_bias: float = -10.0,
        gather_distributed: bool = False,
        *,
        reduction: str = "mean",
        validate_args: bool = True,
    ):
        super().__init__(
            gather_distributed=gather_distributed,
            reduction=reduction,
            validate_args=validate_args,
        )
        self.init_log_scale = check_number("init_log_scale", init_log_scale)
        self.init_bias = check_number("init_bias", init_bias)
        self.log_scale = nn.Parameter(torch.tensor(self.init_log_scale))
        self.bias = nn.Parameter(torch.tensor(self.init_bias))

    def _functional_kwargs(self) -> dict[str, Any]:
        # The learnable temperature and bias are the module's own parameters.
        return {**super()._functional_kwargs(), "log_scale": self.log_scale, "bias": self.bias}

    def forward(self, image_emb: Tensor, text_emb: Tensor) -> Tensor:
        """Loss of `image_emb [N, D]` against `text_emb [N, D]` (row i of each: a matching pair)."""
        return self._call_functional(image_emb, text_emb)

    def extra_repr(self) -> str:
        return f"init_log_scale={self.init_log_scale:.4g}, init_bias={self.init_bias:.4g}, " + (
            super().extra_repr()
        )
