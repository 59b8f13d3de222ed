"""Synthetic implicit feedback with ground-truth preferences and a known noise mask.

The setting of the denoising experiments of *Personalized Denoising Implicit Feedback for Robust
Recommender System* (PLD; Zhang et al., WWW 2025, arXiv:2502.00348): users and items with
rank-$r$ ground-truth preferences, a fixed number of true positives per user (split into
train / val / test), plus uniformly random "noisy" training positives at a requested share,
with the noise mask kept so that denoising can be measured. Validation and test positives are
always clean.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lightning_losses.data.interactions.splits import InteractionData
from lightning_losses.validation import check_int, check_number

__all__ = ["synthetic_interactions"]


def synthetic_interactions(
    num_users: int = 500,
    num_items: int = 1000,
    rank: int = 8,
    positives_per_user: int = 40,
    noise_rate: float = 0.2,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> InteractionData:
    r"""Synthetic implicit feedback with ground-truth preferences and a known noise mask.

    Each user's true positives are the Gumbel-top-`positives_per_user` items of a rank-`rank`
    affinity $P Q^\top / \sqrt{r}$; `test_fraction` / `val_fraction` of them are held out.
    Then `round(n_train * noise_rate / (1 - noise_rate))` uniformly random items outside the
    user's true positives are added to the user's *training* positives, so that `noise_rate` is
    the share of noisy training interactions.

    Args:
        num_users: number of users.
        num_items: number of items.
        rank: rank $r$ of the ground-truth affinity.
        positives_per_user: true positives per user (before the split).
        noise_rate: share of noisy training interactions, in $[0, 1)$.
        test_fraction: share of each user's true positives held out for test.
        val_fraction: share held out for validation.
        seed: generator seed.

    Returns:
        The splits, with `train_noisy` set.

    Raises:
        ValueError: a size below 1, fractions out of range, or sizes that leave no training
            positive.
        TypeError: a size that is not an int.

    Example:
        >>> from lightning_losses.data.interactions import synthetic_interactions
        >>> d = synthetic_interactions(num_users=20, num_items=100, positives_per_user=10)
        >>> round(d.train_noisy.float().mean().item(), 2), len(d.test[0])
        (0.2, 40)
    """
    for name, value in (
        ("num_users", num_users),
        ("num_items", num_items),
        ("rank", rank),
        ("positives_per_user", positives_per_user),
    ):
        check_int(name, value, low=1)
    check_number("noise_rate", noise_rate, low=0.0, high=1.0, high_inclusive=False)
    check_number(
        "test_fraction", test_fraction, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False
    )
    check_number("val_fraction", val_fraction, low=0.0, high=1.0, high_inclusive=False)
    n_test = max(1, round(positives_per_user * test_fraction))
    n_val = round(positives_per_user * val_fraction)
    n_train = positives_per_user - n_test - n_val
    n_noise = round(n_train * noise_rate / (1.0 - noise_rate))
    if n_train < 1 or positives_per_user + n_noise > num_items:
        raise ValueError(
            f"positives_per_user={positives_per_user} leaves {n_train} training positives and "
            f"{n_noise} noisy ones for {num_items} items; adjust the sizes"
        )
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(num_users, rank, generator=g)
    q = torch.randn(num_items, rank, generator=g)
    affinity = p @ q.T / math.sqrt(rank)
    gumbel = -torch.log(-torch.log(torch.rand(num_users, num_items, generator=g).clamp(1e-12, 1)))
    true_pos = (affinity + 0.5 * gumbel).topk(positives_per_user, dim=1).indices
    order = torch.rand(num_users, positives_per_user, generator=g).argsort(1)
    true_pos = true_pos.gather(1, order)
    test_i = true_pos[:, :n_test]
    val_i = true_pos[:, n_test : n_test + n_val]
    train_i = true_pos[:, n_test + n_val :]
    # Noise: random items outside the user's true positives (rank by random keys, true ones last).
    keys = torch.rand(num_users, num_items, generator=g)
    keys.scatter_(1, true_pos, 2.0)
    noise_i = keys.topk(n_noise, dim=1, largest=False).indices
    users = torch.arange(num_users)

    def pairs(items: Tensor) -> tuple[Tensor, Tensor]:
        return users.repeat_interleave(items.shape[1]), items.reshape(-1)

    tr_u, tr_i = pairs(torch.cat([train_i, noise_i], 1))
    noisy = torch.cat(
        [
            torch.zeros(num_users, n_train, dtype=torch.bool),
            torch.ones(num_users, n_noise, dtype=torch.bool),
        ],
        1,
    ).reshape(-1)
    return InteractionData(
        num_users, num_items, (tr_u, tr_i), pairs(val_i), pairs(test_i), train_noisy=noisy
    )
