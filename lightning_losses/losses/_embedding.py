"""Shared base of the embedding losses (contrastive and metric-learning families).

What lives here, once: input checks for embeddings and labels, the cross-rank gather with
gradient (`gather_batch`), and the `EmbeddingLoss` module base that declares how a loss behaves
under `torch.distributed`.

Distributed semantics of a loss built with `gather_distributed=True`
(`DistributedSemantics.GATHER`):
every rank computes the losses of its *local* anchors against the batch gathered from all ranks
(gradients flow back to the rank that owns each row). `reduction="none"` stays local (one value
per local anchor, so sample reweighting never double-counts), and the per-rank `"mean"` is the
mean over local anchors. With equal shards the mean over ranks of those per-rank means, which is
what DDP's gradient averaging optimises, equals the single-process loss on the concatenated
batch, and so do the gradients (tested on 2 gloo ranks in `tests/distributed`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from lightning_losses.distributed import (
    all_gather_no_grad,
    all_gather_with_grad,
    get_rank,
    get_world_size,
    is_distributed,
)
from lightning_losses.losses._numerics import upcast
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.validation import check_bool, check_tensor

__all__ = [
    "DistributedSemantics",
    "EmbeddingLoss",
    "check_embeddings",
    "check_labels",
    "check_ref",
    "gather_batch",
]


def check_embeddings(
    name: str, x: Any, *, ndim: int | tuple[int, ...] = 2, validate_args: bool = True
) -> Tensor:
    """Check an embedding tensor: floating, of the given number of dims, non-empty rows.

    Args:
        name: the argument name used in error messages.
        x: the tensor.
        ndim: accepted number(s) of dimensions (`2` for `[N, D]`, `(2, 3)` to also allow
            `[N, V, D]`).
        validate_args: kept for a uniform signature; every check here is a shape/type check
            (no host sync), so all run. Non-finite values are not rejected: like torch, a NaN
            propagates to the loss.

    Returns:
        `x`, upcast to float32 when it is float16 / bfloat16.

    Raises:
        TypeError: `x` is not a floating-point tensor.
        ValueError: wrong number of dims, zero rows or an empty embedding dimension.

    Example:
        >>> import torch
        >>> from lightning_losses.losses._embedding import check_embeddings
        >>> check_embeddings("z", torch.zeros(2, 3, dtype=torch.bfloat16)).dtype
        torch.float32
    """
    del validate_args
    check_tensor(name, x, floating=True)
    dims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if x.ndim not in dims:
        shapes = " or ".join({2: "[N, D]", 3: "[N, V, D]"}.get(d, f"{d}-D") for d in dims)
        raise ValueError(f"{name} must have shape {shapes}, got {tuple(x.shape)}")
    if x.shape[0] < 1 or x.shape[-1] < 1 or x.numel() == 0:
        raise ValueError(
            f"{name} must have at least one row and a non-empty embedding dimension, got "
            f"shape {tuple(x.shape)}"
        )
    return upcast(x)


def check_labels(name: str, labels: Any, n: int, *, validate_args: bool = True) -> Tensor:
    """Check integer labels `[n]` (one per embedding row).

    Args:
        name: the argument name used in error messages.
        labels: the tensor.
        n: the required length (the number of embedding rows).
        validate_args: kept for a uniform signature (shape and dtype checks need no sync).

    Returns:
        `labels` unchanged.

    Raises:
        TypeError: not an integer tensor (floating and bool are rejected).
        ValueError: not 1-D of length `n`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses._embedding import check_labels
        >>> check_labels("labels", torch.tensor([0, 1, 1]), 3).tolist()
        [0, 1, 1]
    """
    del validate_args
    check_tensor(name, labels, floating=False)
    if labels.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got dtype {labels.dtype}")
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(
            f"{name} must have shape [N] = ({n},) (one label per embedding), got "
            f"{tuple(labels.shape)}"
        )
    return labels


def check_ref(
    ref_emb: Tensor | None,
    ref_labels: Tensor | None,
    dim: int,
    *,
    need_labels: bool,
    like: Tensor,
) -> tuple[Tensor | None, Tensor | None]:
    """Check optional reference embeddings `[R, D]` (queue, memory bank, other modality).

    Args:
        ref_emb: `None` or a floating `[R, D]` tensor with the anchors' embedding size `dim`.
        ref_labels: `None` or integer `[R]` labels of `ref_emb`.
        dim: the anchors' embedding size.
        need_labels: the loss needs `ref_labels` whenever `ref_emb` is given.
        like: a tensor whose dtype `ref_emb` is cast to.

    Returns:
        `(ref_emb, ref_labels)`, `ref_emb` cast to `like`'s dtype.

    Raises:
        ValueError: a size mismatch, `ref_labels` without `ref_emb`, or missing `ref_labels`.
        TypeError: a wrong dtype.
    """
    if ref_emb is None:
        if ref_labels is not None:
            raise ValueError("ref_labels was given without ref_emb")
        return None, None
    ref_emb = check_embeddings("ref_emb", ref_emb)
    if ref_emb.shape[1] != dim:
        raise ValueError(
            f"ref_emb must have the embedding size of the anchors: expected [R, {dim}], got "
            f"{tuple(ref_emb.shape)}"
        )
    if ref_labels is None:
        if need_labels:
            raise ValueError("ref_labels [R] are required with ref_emb for this loss")
    else:
        check_labels("ref_labels", ref_labels, ref_emb.shape[0])
    return ref_emb.to(like.dtype), ref_labels


# Row counts known to be equal on every rank, by (world size, local rows): the size exchange (and
# its host sync) runs once per distinct row count instead of once per call.
_EQUAL_ROWS: set[tuple[int, int]] = set()


def _shard_sizes(n: int, device: torch.device) -> list[int]:
    world = get_world_size()
    if (world, n) in _EQUAL_ROWS:
        return [n] * world
    local = torch.tensor([n], device=device, dtype=torch.long)
    sizes = all_gather_no_grad(local, sizes=[1] * world).tolist()
    if all(s == n for s in sizes):
        _EQUAL_ROWS.add((world, n))
    return sizes


def gather_batch(
    embeddings: Tensor, labels: Tensor | None = None, *, gather_distributed: bool = False
) -> tuple[Tensor, Tensor | None, int]:
    """Gather a batch of embeddings (and labels) from every rank, gradients flowing back.

    Built on [all_gather_with_grad][lightning_losses.distributed.all_gather_with_grad] (the
    embeddings) and [all_gather_no_grad][lightning_losses.distributed.all_gather_no_grad] (the
    labels). Shards may differ in size. The row counts are exchanged the first time a rank sees
    a given local row count; when every rank held that count it is remembered, so later calls
    with equal shards do no size exchange and no host sync. That cache assumes ranks change
    their batch size together (true under `DistributedSampler`, whose ranks get batches of the
    same size, the last one included); unequal shards are re-exchanged on every call.

    Args:
        embeddings: the local shard `[n, *]`.
        labels: its labels `[n]`, or `None`.
        gather_distributed: gather at all; `False` (or a non-distributed run) is the identity.

    Returns:
        `(embeddings [M, *], labels [M] or None, offset)`: the rank-ordered concatenation over
        ranks and the index of this rank's first row in it (`M = n`, offset 0 without gathering).

    Example:
        >>> import torch
        >>> from lightning_losses.functional import gather_batch
        >>> z, y, offset = gather_batch(torch.ones(4, 2), torch.arange(4), gather_distributed=True)
        >>> z.shape, offset  # a single process: the identity
        (torch.Size([4, 2]), 0)
    """
    if not gather_distributed or not is_distributed():
        return embeddings, labels, 0
    sizes = _shard_sizes(embeddings.shape[0], embeddings.device)
    offset = sum(sizes[: get_rank()])
    gathered = all_gather_with_grad(embeddings, sizes=sizes)
    all_labels = None if labels is None else all_gather_no_grad(labels, sizes=sizes)
    return gathered, all_labels, offset


class DistributedSemantics:
    """How a loss behaves under `torch.distributed`: `EmbeddingLoss.distributed_semantics`.

    - `LOCAL`: the loss of each rank's batch is independent of the other ranks (nothing to gather;
      DDP's gradient averaging gives the mean over ranks).
    - `GATHER`: with `gather_distributed=True`, local anchors are scored against the batch
      gathered from every rank, with gradients; per-rank `"mean"` = mean over local anchors;
      per-sample losses stay local. Equal shards: mean over ranks == one process on the
      concatenated batch, in value and gradient.
    """

    LOCAL = "local"
    GATHER = "gather"


class EmbeddingLoss(Loss):
    """Base of the contrastive and metric-learning losses (input kind `EMBEDDINGS`).

    Adds to [Loss][lightning_losses.losses.Loss]: the `gather_distributed` hyperparameter
    (stored once with the others and passed to the functional) for losses that declare
    `distributed_semantics = DistributedSemantics.GATHER`, and the convention for optional
    reference embeddings: a loss that contrasts against a queue, a cross-batch memory or another
    modality takes them as the `forward` arguments `ref_emb [R, D]` (and `ref_labels [R]`).
    References are never gathered (a queue is already global) and are never anchors.

    Learnable parameters (SigLIP's temperature and bias, class proxies) are `nn.Parameter`s of
    the subclass, so [LossMixin][lightning_losses.mixins.LossMixin] trains them with the model.

    Args:
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the checks that need a host sync.
        **hparams: the subclass's validated hyperparameters; among them `gather_distributed`
            (`GATHER` losses only: all-gather the batch across ranks with gradient, see
            [gather_batch][lightning_losses.functional.gather_batch] for the exact semantics; a
            `LOCAL` loss given it raises `TypeError`).
    """

    input_kind: ClassVar[str] = InputKind.EMBEDDINGS
    target_arg: ClassVar[str | None] = None
    distributed_semantics: ClassVar[str] = DistributedSemantics.LOCAL

    def __init__(
        self,
        *,
        reduction: str = "mean",
        validate_args: bool = True,
        **hparams: Any,
    ):
        if "gather_distributed" in hparams:
            if self.distributed_semantics != DistributedSemantics.GATHER:
                raise TypeError(
                    f"{type(self).__name__} declares distributed_semantics="
                    f"{self.distributed_semantics!r}: it takes no gather_distributed"
                )
            hparams["gather_distributed"] = check_bool(
                "gather_distributed", hparams["gather_distributed"]
            )
        super().__init__(reduction=reduction, validate_args=validate_args, **hparams)
