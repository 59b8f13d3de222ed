"""Distributed helpers: rank/world queries and gathers that losses and callbacks share.

Semantics of [`all_gather_with_grad`][lightning_losses.distributed.all_gather_with_grad]: every
rank receives the concatenation of all ranks' tensors (first dimension, sizes may differ); in
backward, the gradient that *every* rank's loss sends to a shard is summed onto the rank that owns
it (an all-reduce of the gathered gradient). Under DDP, which averages parameter gradients over
ranks, a loss computed on the gathered batch therefore gets exactly the gradient of the
single-process loss on the concatenated batch (tested with 2 gloo ranks in `tests/distributed`).

Everything degrades to the identity when `torch.distributed` is not initialised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import Tensor

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup
    from torch.distributed.device_mesh import DeviceMesh

__all__ = [
    "all_gather_no_grad",
    "all_gather_with_grad",
    "all_reduce_sum",
    "data_parallel_mesh",
    "get_rank",
    "get_world_size",
    "is_distributed",
]


def is_distributed() -> bool:
    """True when `torch.distributed` is available, initialised and has more than one rank.

    Example:
        >>> from lightning_losses.distributed import is_distributed
        >>> is_distributed()  # a plain process
        False
    """
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank(group: ProcessGroup | None = None) -> int:
    """This process's rank in `group` (0 when not distributed).

    Args:
        group: process group (default: the world).

    Example:
        >>> from lightning_losses.distributed import get_rank
        >>> get_rank()
        0
    """
    return dist.get_rank(group) if dist.is_available() and dist.is_initialized() else 0


def get_world_size(group: ProcessGroup | None = None) -> int:
    """Number of ranks in `group` (1 when not distributed).

    Args:
        group: process group (default: the world).

    Example:
        >>> from lightning_losses.distributed import get_world_size
        >>> get_world_size()
        1
    """
    return dist.get_world_size(group) if dist.is_available() and dist.is_initialized() else 1


def _gather_sizes(tensor: Tensor, group: ProcessGroup | None) -> list[int]:
    world = get_world_size(group)
    local = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
    sizes = [torch.zeros_like(local) for _ in range(world)]
    dist.all_gather(sizes, local, group=group)
    return [int(s.item()) for s in sizes]


def _gather_padded(tensor: Tensor, sizes: list[int], group: ProcessGroup | None) -> Tensor:
    # all_gather needs equal shapes: pad every shard to the largest first dimension.
    max_size = max(sizes)
    padded = tensor
    if tensor.shape[0] < max_size:
        pad = tensor.new_zeros((max_size - tensor.shape[0], *tensor.shape[1:]))
        padded = torch.cat([tensor, pad])
    buffers = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(buffers, padded.contiguous(), group=group)
    return torch.cat([b[:n] for b, n in zip(buffers, sizes)])


class _AllGatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: Tensor, group, sizes: list[int] | None) -> Tensor:
        sizes = _gather_sizes(tensor, group) if sizes is None else sizes
        rank = get_rank(group)
        ctx.group = group
        ctx.offset = sum(sizes[:rank])
        ctx.size = sizes[rank]
        return _gather_padded(tensor, sizes, group)

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad[ctx.offset : ctx.offset + ctx.size], None, None


def all_gather_with_grad(
    tensor: Tensor, group: ProcessGroup | None = None, *, sizes: Sequence[int] | None = None
) -> Tensor:
    """Concatenate `tensor` from every rank along dim 0, with gradients flowing back.

    Shards may have different first dimensions. The result is ordered by rank. Identity when
    not distributed. In backward, each rank receives the sum over ranks of the gradient sent to
    its shard, so a loss on the gathered batch under DDP gets the single-process gradient.

    Args:
        tensor: the local shard `[n_local, *]`.
        group: process group (default: the world).
        sizes: every rank's first dimension, when the caller already knows them (skips the size
            exchange and its host sync); `None` exchanges them.

    Returns:
        `[n_total, *]`, the concatenation over ranks, rank 0's shard first.

    Example:
        >>> import torch
        >>> from lightning_losses.distributed import all_gather_with_grad
        >>> all_gather_with_grad(torch.ones(2, 3)).shape  # not distributed: identity
        torch.Size([2, 3])
    """
    if not is_distributed() and group is None:
        return tensor
    return _AllGatherWithGrad.apply(tensor, group, None if sizes is None else list(sizes))


@torch.no_grad()
def all_gather_no_grad(
    tensor: Tensor, group: ProcessGroup | None = None, *, sizes: Sequence[int] | None = None
) -> Tensor:
    """Detached concatenation of `tensor` over ranks (dim 0, uneven sizes allowed).

    Args:
        tensor: the local shard `[n_local, *]`.
        group: process group (default: the world).
        sizes: every rank's first dimension when known (skips the size exchange).

    Returns:
        `[n_total, *]`, detached, ordered by rank (the detached input when not distributed).

    Example:
        >>> import torch
        >>> from lightning_losses.distributed import all_gather_no_grad
        >>> all_gather_no_grad(torch.ones(2, requires_grad=True)).requires_grad
        False
    """
    if not is_distributed() and group is None:
        return tensor.detach()
    sizes = _gather_sizes(tensor, group) if sizes is None else list(sizes)
    return _gather_padded(tensor.detach(), sizes, group)


def all_reduce_sum(tensor: Tensor, group: ProcessGroup | None = None) -> Tensor:
    """In-place SUM all-reduce over ranks (a no-op when not distributed).

    Args:
        tensor: reduced in place.
        group: process group (default: the world).

    Returns:
        `tensor` itself, now holding the sum over ranks.

    Example:
        >>> import torch
        >>> from lightning_losses.distributed import all_reduce_sum
        >>> all_reduce_sum(torch.tensor([1.0, 2.0]))
        tensor([1., 2.])
    """
    if is_distributed() or group is not None:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
    return tensor


def data_parallel_mesh(mesh: DeviceMesh, recipe: str) -> DeviceMesh:
    """The data-parallel sub-mesh a recipe shards over with FSDP2, refusing tensor-parallel ranks.

    Lightning's `ModelParallelStrategy` builds a 2-D mesh (`data_parallel` × `tensor_parallel`);
    its "auto" sizes on one node put every device in the tensor-parallel dimension. A recipe that
    applies no tensor parallelism would then shard over a mesh of one rank while every rank trains
    on the same batches, so that configuration is refused with the flags that fix it.

    Args:
        mesh: the LightningModule's `device_mesh`.
        recipe: the recipe's name, for the error message.

    Returns:
        The `data_parallel` sub-mesh (the mesh itself when it has no named dimensions).

    Raises:
        ValueError: the mesh has tensor-parallel ranks.
    """
    dp_mesh = mesh["data_parallel"] if "data_parallel" in (mesh.mesh_dim_names or ()) else mesh
    if dp_mesh.size() < mesh.size():
        raise ValueError(
            f"the {recipe} recipe shards over data parallelism only, but the device mesh has "
            f"{mesh.size()} ranks of which {dp_mesh.size()} data-parallel: pass "
            f"--trainer.strategy.data_parallel_size {mesh.size()} "
            "--trainer.strategy.tensor_parallel_size 1"
        )
    return dp_mesh
