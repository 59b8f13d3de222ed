"""The process's random states (Python, NumPy, torch CPU and CUDA), captured and restored per rank.

Lightning's checkpoint holds the weights, the optimizer and the loops, not the random generators:
a run resumed mid-epoch draws its dropout masks (and any other global-RNG sampling) from the seed
`seed_everything` set at start, not from where the interrupted run stopped.
[ResumableLoader][lightning_losses.data.sampling.ResumableLoader] puts these states into its
`state_dict` (so every recipe's checkpoint has them, with no callback to remember) and restores
them just before the first resumed batch. Under DDP each rank has its own states; the checkpoint,
written by rank 0, holds all of them (`gather_rng_states`).

Example:
    >>> import torch
    >>> from lightning_losses.data.rng import rng_states, set_rng_states
    >>> state = rng_states()
    >>> a = torch.rand(3)
    >>> set_rng_states(state)
    >>> torch.equal(a, torch.rand(3))
    True
"""

from __future__ import annotations

import random
import warnings
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["gather_rng_states", "restore_rank_rng_states", "rng_states", "set_rng_states"]


def rng_states() -> dict[str, Any]:
    """This process's random states: Python, NumPy, torch CPU and (if initialised) CUDA.

    Returns:
        A dict `{"python", "numpy", "torch"[, "torch.cuda"]}` that `set_rng_states` restores.
    """
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    states: dict[str, Any] = {
        "python": random.getstate(),
        # Tensors, str and numbers only: a checkpoint loaded with `weights_only=True` reads it.
        "numpy": (name, torch.from_numpy(np.asarray(keys, np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    # Only when CUDA is already in use: querying it would otherwise initialise it.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["torch.cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore the states `rng_states` returned.

    Args:
        states: the dict of `rng_states` (a `"torch.cuda"` entry is skipped without CUDA, or
            when the number of visible devices changed).

    Raises:
        TypeError: `states` is not a dict.
    """
    if not isinstance(states, dict):
        raise TypeError(f"states must be a dict from rng_states(), got {type(states).__name__}")
    random.setstate(states["python"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    cuda = states.get("torch.cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def gather_rng_states() -> list[dict[str, Any]]:
    """Every rank's `rng_states()`, indexed by rank (a one-element list without a process group).

    A collective under `torch.distributed`: every rank must call it (Lightning builds the
    checkpoint on every rank and writes rank 0's).

    Returns:
        `[rng_states() of rank 0, of rank 1, ...]`.
    """
    mine = rng_states()
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [mine]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    return gathered


def restore_rank_rng_states(states: list[dict[str, Any]]) -> None:
    """Restore this rank's entry of a `gather_rng_states()` list.

    Args:
        states: the per-rank list; when its length is not the current world size (resuming on
            another number of devices), nothing is restored and a warning says so.
    """
    distributed = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if distributed else 0
    world_size = dist.get_world_size() if distributed else 1
    if len(states) != world_size:
        warnings.warn(
            f"the checkpoint holds random states of {len(states)} rank(s) but this run has "
            f"{world_size}: they are not restored, so global-RNG draws (dropout, ...) differ "
            "from the uninterrupted run",
            stacklevel=2,
        )
        return
    set_rng_states(states[rank])
