r"""Generalized end-to-end (GE2E) loss for speaker verification.

*Generalized End-to-End Loss for Speaker Verification*, Wan, Wang, Papir and Lopez Moreno,
ICASSP 2018 (arXiv:1710.10467). Tested against a naive float64 loop written from the paper's
equations (6)-(10).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_losses.losses._embedding import DistributedSemantics, EmbeddingLoss, check_embeddings
from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_choice, check_number, check_reduction

__all__ = ["GE2ELoss", "ge2e_loss"]

_METHODS = ("softmax", "contrast")
_W_MIN = 1e-6


def _check_ge2e_args(*, method: Any) -> dict[str, Any]:
    return {"method": check_choice("method", method, _METHODS)}


def ge2e_loss(
    embeddings: Tensor,
    w: float | Tensor = 10.0,
    b: float | Tensor = -5.0,
    *,
    method: str = "softmax",
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""GE2E loss of a batch of `N` speakers × `M` utterances.

    With L2-normalised embeddings $e_{ji}$, centroids $c_k = \frac1M\sum_m e_{km}$ and the
    own-speaker centroid without the utterance, $c_j^{(-i)} = \frac{1}{M-1}\sum_{m\ne i} e_{jm}$:

    $$
    S_{ji,k} = w\cos(e_{ji}, c_k^{(\cdot)}) + b \quad (c_j^{(-i)} \text{ for } k = j),
    $$

    softmax: $\ell_{ji} = -S_{ji,j} + \log\sum_k e^{S_{ji,k}}$; contrast:
    $\ell_{ji} = 1 - \sigma(S_{ji,j}) + \max_{k\ne j}\sigma(S_{ji,k})$ (0 for the max when
    $N = 1$). $w$ is clamped to $\ge 10^{-6}$ (the paper requires $w > 0$).

    *Generalized End-to-End Loss for Speaker Verification*, Wan et al., ICASSP 2018
    (arXiv:1710.10467).

    Args:
        embeddings: `[N, M, D]`, `M ≥ 2` utterances per speaker.
        w: similarity scale (learnable in the module, init 10).
        b: similarity bias (learnable in the module, init −5).
        method: `"softmax"` or `"contrast"`.
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N, M]`, one value per utterance).
        validate_args: kept for the uniform signature (every check here is sync-free).

    Returns:
        The loss: a scalar, or `[N, M]` with `reduction="none"`.

    Raises:
        ValueError: `M < 2` (the exclusive centroid needs another utterance) or a bad shape.
        TypeError: on integer embeddings.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import ge2e_loss
        >>> emb = torch.tensor([[[1.0, 0.1], [0.9, -0.1]], [[0.0, 1.0], [0.2, 1.0]]])
        >>> ge2e_loss(emb)
        tensor(0.0002)
    """
    check_reduction(reduction)
    hp = _check_ge2e_args(method=method)
    x = check_embeddings("embeddings", embeddings, ndim=3, validate_args=validate_args)
    n, m, _ = x.shape
    if m < 2:
        raise ValueError(
            "embeddings must hold M ≥ 2 utterances per speaker ([N, M, D]), "
            f"got shape {tuple(x.shape)}"
        )
    e = F.normalize(x, dim=-1)
    total = e.sum(dim=1)  # [N, D]
    centroids = total / m
    own = (total[:, None, :] - e) / (m - 1)  # [N, M, D]: c_j^(-i)
    cos = torch.einsum("jid,kd->jik", e, F.normalize(centroids, dim=-1))  # [N, M, N]
    own_cos = F.cosine_similarity(e, own, dim=-1, eps=1e-8)  # [N, M]
    eye = torch.eye(n, dtype=torch.bool, device=x.device)[:, None, :]  # [N, 1, N]
    cos = torch.where(eye, own_cos[:, :, None], cos)
    w = torch.as_tensor(w, dtype=cos.dtype, device=cos.device).clamp_min(_W_MIN)
    b = torch.as_tensor(b, dtype=cos.dtype, device=cos.device)
    s = w * cos + b
    pos = s.diagonal(dim1=0, dim2=2).T  # [N, M]: S_{ji,j}
    if hp["method"] == "softmax":
        rows = torch.logsumexp(s, dim=-1) - pos
    else:
        others = torch.where(eye, torch.finfo(s.dtype).min, s).amax(dim=-1)
        top = torch.sigmoid(others) if n > 1 else torch.zeros_like(pos)
        rows = 1 - torch.sigmoid(pos) + top
    return reduce_loss(rows, reduction)


@register_loss("ge2e")
class GE2ELoss(EmbeddingLoss):
    r"""GE2E loss with learnable similarity scale `w` and bias `b` (speaker verification).

    See [ge2e_loss][lightning_losses.functional.ge2e_loss] for the formula. `w` (init 10) and
    `b` (init −5) are `nn.Parameter`s trained with the model. Distributed semantics: local
    (each rank's batch holds whole speakers).

    *Generalized End-to-End Loss for Speaker Verification*, Wan et al., ICASSP 2018
    (arXiv:1710.10467).

    Args:
        method: `"softmax"` (default) or `"contrast"`.
        init_w: initial $w$ (10).
        init_b: initial $b$ (−5).
        reduction: `"mean" | "sum" | "none"` (`"none"`: `[N, M]`).
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - embeddings: `[N, M, D]` (`N` speakers, `M ≥ 2` utterances each).
        - output: scalar, or `[N, M]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import GE2ELoss
        >>> loss = GE2ELoss()
        >>> loss(torch.randn(4, 3, 8)).shape, [n for n, _ in loss.named_parameters()]
        (torch.Size([]), ['w', 'b'])
    """

    distributed_semantics = DistributedSemantics.LOCAL
    functional = staticmethod(ge2e_loss)

    def __init__(
        self,
        method: str = "softmax",
        init_w: float = 10.0,
        init_b: float = -5.0,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction, validate_args=validate_args, **_check_ge2e_args(method=method)
        )
        self.init_w = check_number("init_w", init_w, low=_W_MIN)
        self.init_b = check_number("init_b", init_b)
        self.w = nn.Parameter(torch.tensor(self.init_w))
        self.b = nn.Parameter(torch.tensor(self.init_b))

    def _functional_kwargs(self) -> dict[str, Any]:
        # The learnable scale and bias are the module's own parameters.
        return {**super()._functional_kwargs(), "w": self.w, "b": self.b}

    def forward(self, embeddings: Tensor) -> Tensor:
        """Loss of `embeddings [N, M, D]`: `N` speakers, `M ≥ 2` utterances each."""
        return self._call_functional(embeddings)
