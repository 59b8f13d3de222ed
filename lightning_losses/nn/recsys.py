r"""Collaborative-filtering models: matrix factorisation and LightGCN.

Matrix factorisation follows *Matrix Factorization Techniques for Recommender Systems* (Koren,
Bell, Volinsky, IEEE Computer 2009) with the BPR objective of *BPR: Bayesian Personalized
Ranking from Implicit Feedback* (Rendle et al., UAI 2009, arXiv:1205.2618); LightGCN is
*LightGCN: Simplifying and Powering Graph Convolution Network for Recommendation* (He et al.,
SIGIR 2020, arXiv:2002.02126).

Both models expose the same small interface, so losses, PLD and evaluation never look inside:

- `embeddings() -> (user_table [U, d], item_table [I, d])`: for LightGCN this runs the graph
  propagation once; reuse the result for every score of the step.
- `score(user_table, item_table, users, items)`: `users [B]` against `items [B]` or `[B, k]`
  (dot product, or cosine with `similarity="cosine"` for SimpleX's CCL).
- `l2_penalty(users, pos_items, neg_items)`: the per-batch L2 regulariser of the BPR literature
  on the layer-0 embeddings the batch touches, scaled by the model's `l2_reg`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_losses.validation import check_choice, check_int, check_number

__all__ = ["LightGCN", "MatrixFactorization", "normalized_adjacency"]


def _check_ids(name: str, ids: Tensor, upper: int) -> None:
    if not isinstance(ids, Tensor) or ids.is_floating_point() or ids.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got {getattr(ids, 'dtype', ids)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= upper):
        raise ValueError(
            f"{name} must lie in [0, {upper}), got range [{int(ids.min())}, {int(ids.max())}]"
        )


class _RecModel(nn.Module):
    def __init__(
        self, num_users: int, num_items: int, dim: int, similarity: str, l2_reg: float = 0.0
    ) -> None:
        super().__init__()
        self.l2_reg = check_number("l2_reg", l2_reg, low=0.0)
        self.num_users = check_int("num_users", num_users, low=1)
        self.num_items = check_int("num_items", num_items, low=1)
        check_int("dim", dim, low=1)
        self.similarity = check_choice("similarity", similarity, ("dot", "cosine"))
        self.user_embedding = nn.Embedding(num_users, dim)
        self.item_embedding = nn.Embedding(num_items, dim)
        nn.init.normal_(self.user_embedding.weight, std=0.1)
        nn.init.normal_(self.item_embedding.weight, std=0.1)

    def embeddings(self) -> tuple[Tensor, Tensor]:
        """The `(user_table [U, d], item_table [I, d])` used for scoring."""
        raise NotImplementedError

    def l2_penalty(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Tensor:
        r"""Per-batch L2 on the layer-0 embeddings the batch touches, times `l2_reg`.

        $$
        \Omega = \frac{\lambda}{B} \sum_{b=1}^{B} \Big(\lVert e^{(0)}_{u_b} \rVert^2
            + \lVert e^{(0)}_{i_b} \rVert^2 + \sum_{j \in N_b} \lVert e^{(0)}_{j} \rVert^2\Big)
        $$

        the regulariser of BPR (Rendle et al., 2009: $\lambda \lVert \Theta \rVert^2$ applied to
        the parameters each SGD step touches) in the per-batch form of LightGCN's training loss
        (He et al., 2020: $\lambda \lVert E^{(0)} \rVert^2$ on the *layer-0* embeddings of the
        batch's users, positives and negatives, not on the propagated ones) and RecBole's
        `EmbLoss`. The LightGCN reference code additionally halves it (its $\lambda$ = 2 × ours).
        Unlike Adam's `weight_decay`, it leaves the embeddings of items a batch does not touch
        alone and acts on the loss, not on Adam's normalised update.

        Args:
            users: `[B]` user ids.
            pos_items: `[B]` positive item ids.
            neg_items: `[B]` or `[B, K]` negative item ids.

        Returns:
            A scalar (0 when `l2_reg == 0`), attached to the embedding tables.

        Example:
            >>> import torch
            >>> from lightning_losses.nn import MatrixFactorization
            >>> mf = MatrixFactorization(2, 3, dim=2, l2_reg=0.5)
            >>> with torch.no_grad():
            ...     _ = mf.user_embedding.weight.fill_(1.0)
            ...     _ = mf.item_embedding.weight.fill_(2.0)
            >>> mf.l2_penalty(torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
            tensor(9., grad_fn=<MulBackward0>)
        """
        u = self.user_embedding(users)
        pos = self.item_embedding(pos_items)
        neg = self.item_embedding(neg_items)
        total = u.square().sum() + pos.square().sum() + neg.square().sum()
        return total * (self.l2_reg / max(users.shape[0], 1))

    def _prep(self, table: Tensor) -> Tensor:
        return F.normalize(table, dim=-1) if self.similarity == "cosine" else table

    def score(self, user_table: Tensor, item_table: Tensor, users: Tensor, items: Tensor) -> Tensor:
        """Scores of `users [B]` with `items [B]` (→ `[B]`) or `[B, k]` (→ `[B, k]`)."""
        u = self._prep(user_table[users])
        v = self._prep(item_table[items])
        if items.ndim == users.ndim:
            return (u * v).sum(-1)
        return torch.bmm(v, u.unsqueeze(-1)).squeeze(-1)  # [B, k, d] @ [B, d, 1]

    def full_scores(self, user_table: Tensor, item_table: Tensor, users: Tensor) -> Tensor:
        """Scores of `users [B]` against every item: `[B, I]` (full-ranking evaluation)."""
        return self._prep(user_table[users]) @ self._prep(item_table).T

    def forward(self, users: Tensor, items: Tensor) -> Tensor:
        _check_ids("users", users, self.num_users)
        _check_ids("items", items, self.num_items)
        return self.score(*self.embeddings(), users, items)


class MatrixFactorization(_RecModel):
    r"""Matrix factorisation: $s_{ui} = \langle p_u, q_i \rangle$.

    Args:
        num_users: number of users `U`.
        num_items: number of items `I`.
        dim: embedding size `d`.
        similarity: `"dot"` (default) or `"cosine"`.
        l2_reg: $\lambda \ge 0$ of `l2_penalty` (0 = none).

    Example:
        >>> import torch
        >>> from lightning_losses.nn import MatrixFactorization
        >>> mf = MatrixFactorization(3, 4, dim=2)
        >>> mf(torch.tensor([0, 2]), torch.tensor([[1, 3], [0, 0]])).shape
        torch.Size([2, 2])
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int = 32,
        similarity: str = "dot",
        l2_reg: float = 0.0,
    ) -> None:
        super().__init__(num_users, num_items, dim, similarity, l2_reg)

    def embeddings(self) -> tuple[Tensor, Tensor]:
        """The embedding tables themselves."""
        return self.user_embedding.weight, self.item_embedding.weight


def normalized_adjacency(users: Tensor, items: Tensor, num_users: int, num_items: int) -> Tensor:
    r"""Symmetrically normalised bipartite adjacency $D^{-1/2} A D^{-1/2}$ (sparse COO).

    Nodes `0..U-1` are users and `U..U+I-1` items; duplicate interactions count once;
    isolated nodes get zero rows.

    Example:
        >>> import torch
        >>> from lightning_losses.nn.recsys import normalized_adjacency
        >>> a = normalized_adjacency(torch.tensor([0, 0]), torch.tensor([0, 1]), 1, 2)
        >>> a.to_dense()[0]
        tensor([0.0000, 0.7071, 0.7071])
    """
    _check_ids("users", users, num_users)
    _check_ids("items", items, num_items)
    n = num_users + num_items
    key = torch.unique(users.long() * num_items + items.long())
    u, i = key // num_items, key % num_items + num_users
    rows = torch.cat([u, i])
    cols = torch.cat([i, u])
    deg = torch.bincount(rows, minlength=n).float()
    inv_sqrt = deg.clamp_min(1).rsqrt()
    vals = inv_sqrt[rows] * inv_sqrt[cols]
    return torch.sparse_coo_tensor(
        torch.stack([rows, cols]), vals, (n, n), check_invariants=False
    ).coalesce()


class LightGCN(_RecModel):
    r"""LightGCN: `num_layers` rounds of $E^{(l+1)} = \hat A E^{(l)}$, output the layer mean.

    $$
    E = \frac{1}{L+1}\sum_{l=0}^{L} \hat A^{l} E^{(0)}, \qquad \hat A = D^{-1/2} A D^{-1/2}
    $$

    The adjacency is a sparse tensor built by `set_graph` from the training interactions.
    It is data, not state: it is kept out of `state_dict` (checkpoints stay small) and out of
    the buffers (DDP broadcasts buffers and refuses sparse ones), and follows the embeddings'
    device and dtype lazily.

    Args:
        num_users: number of users `U`.
        num_items: number of items `I`.
        dim: embedding size `d`.
        num_layers: propagation depth `L` (paper: 3).
        similarity: `"dot"` (default) or `"cosine"`.
        l2_reg: $\lambda \ge 0$ of `l2_penalty` (0 = none), on the layer-0 embeddings.

    Example:
        >>> import torch
        >>> from lightning_losses.nn import LightGCN
        >>> gcn = LightGCN(2, 3, dim=4, num_layers=2)
        >>> gcn.set_graph(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 2]))
        >>> users, items = gcn.embeddings()
        >>> tuple(users.shape), tuple(items.shape)
        ((2, 4), (3, 4))
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        dim: int = 32,
        num_layers: int = 3,
        similarity: str = "dot",
        l2_reg: float = 0.0,
    ) -> None:
        super().__init__(num_users, num_items, dim, similarity, l2_reg)
        self.num_layers = check_int("num_layers", num_layers, low=0)
        # A plain attribute, not a buffer: DDP broadcasts buffers and cannot handle sparse ones.
        self.adjacency: Tensor | None = None

    def set_graph(self, users: Tensor, items: Tensor) -> None:
        """Build the normalised adjacency from training interactions `(users[n], items[n])`."""
        adj = normalized_adjacency(users, items, self.num_users, self.num_items)
        w = self.user_embedding.weight
        self.adjacency = adj.to(device=w.device, dtype=w.dtype)

    def embeddings(self) -> tuple[Tensor, Tensor]:
        if self.adjacency is None:
            raise RuntimeError("LightGCN has no graph: call set_graph(users, items) first")
        x = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        if self.adjacency.device != x.device or self.adjacency.dtype != x.dtype:
            self.adjacency = self.adjacency.to(device=x.device, dtype=x.dtype)
        total = x
        # Propagation in the embeddings' dtype with autocast off: under bf16 autocast the sparse
        # product's backward would otherwise meet a bf16 gradient for a float32 adjacency.
        with torch.autocast(device_type=x.device.type, enabled=False):
            for _ in range(self.num_layers):
                x = torch.sparse.mm(self.adjacency, x)
                total = total + x
        out = total / (self.num_layers + 1)
        return out[: self.num_users], out[self.num_users :]
