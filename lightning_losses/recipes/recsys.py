"""Recommendation recipe: MF / LightGCN trained with a ranking loss, optionally with PLD.

Built on *BPR: Bayesian Personalized Ranking from Implicit Feedback* (Rendle et al., UAI 2009,
arXiv:1205.2618), *LightGCN* (He et al., SIGIR 2020, arXiv:2002.02126), SimpleX's cosine
contrastive loss (*SimpleX: A Simple and Strong Baseline for Collaborative Filtering*, Mao et
al., CIKM 2021, arXiv:2109.12613) and PLD (*Personalized Denoising Implicit Feedback for Robust
Recommender System*, Zhang et al., WWW 2025, arXiv:2502.00348).

Run (YAMLs in `recipes/recsys/`; `pld.yaml` is an overlay that adds the callback):

```bash
lightning-losses fit --config recipes/recsys/mf_bpr.yaml --config recipes/recsys/pld.yaml
lightning-losses test --config recipes/recsys/mf_bpr.yaml --ckpt_path <checkpoint>
```

The module talks to the data through
[InteractionDataModule][lightning_losses.data.InteractionDataModule]'s dict batches and to
[PLDResampling][lightning_losses.callbacks.PLDResampling] through the
[PLDScorer][lightning_losses.callbacks.pld.PLDScorer] interface: `pld_candidate_losses(batch,
*tables)`, scored by the callback (`pld_inline=False`) or, with `pld_inline=True` (the default),
by `pld_select(self, batch, tables)` inside `training_step` from the embeddings of the step's
single graph propagation. Regularisation: the per-batch L2 of the BPR literature on the embeddings
the batch touches (`l2_reg`, logged as `train/l2`, an aux objective) and/or Adam's
`weight_decay`. Evaluation is full ranking over all items, excluding the user's training items
(and validation items at test time), with Recall@k / NDCG@k from `torchmetrics.retrieval`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.retrieval import RetrievalNormalizedDCG, RetrievalRecall

from lightning_losses.callbacks.pld import pld_select
from lightning_losses.losses import InputKind
from lightning_losses.mixins import CriterionSpec, LossMixin, OptimizerMixin
from lightning_losses.nn.recsys import LightGCN, MatrixFactorization
from lightning_losses.validation import check_choice, check_int

__all__ = ["RecsysModule"]


class RecsysModule(OptimizerMixin, LossMixin, LightningModule):
    """Collaborative filtering on implicit feedback with a catalog ranking loss.

    Args:
        model: `"mf"` (matrix factorisation) or `"lightgcn"`.
        embedding_dim: embedding size `d`.
        num_layers: LightGCN propagation depth.
        similarity: `"dot"` or `"cosine"` (use cosine with the `ccl` loss).
        criterion: a ranking loss by registry name or dict (`bpr`, `bce_rec`, `sampled_softmax`,
            `ccl`); called as `criterion(pos_score [B], neg_score)`. Non-ranking losses are
            rejected when the module is built.
        lr: Adam learning rate.
        weight_decay: Adam weight decay on every parameter, every step (default 0; it shrinks
            the embeddings of items a batch does not touch too, and on noisy data it undoes PLD's
            gain, see docs/recipes/recsys.md).
        l2_reg: $\\lambda$ of the per-batch L2 on the layer-0 embeddings of the batch's users,
            positives and negatives (see `MatrixFactorization.l2_penalty`), added to the loss as
            the aux objective `l2`. The recipes use it instead of `weight_decay`.
        top_k: cut-offs for Recall@k / NDCG@k.
        pld_inline: compute PLD candidate losses inside `training_step` from the step's own
            embeddings (option (b), the default: no second propagation for LightGCN); `False`
            lets the callback call `pld_candidate_losses` in `on_train_batch_start` (option (a)).
        n_users: number of users; `None` = read from the DataModule at setup (named apart from
            the DataModule's `num_users` so Lightning's hparams merge never clashes).
        n_items: number of items; `None` = read from the DataModule at setup.

    Example:
        >>> import torch
        >>> from lightning_losses.recipes.recsys import RecsysModule
        >>> m = RecsysModule(n_users=3, n_items=5, embedding_dim=4)
        >>> batch = {"user": torch.tensor([0, 1]), "cand_items": torch.tensor([[1, 2], [3, 4]]),
        ...          "neg_item": torch.tensor([0, 0])}
        >>> m.pld_candidate_losses(batch).shape
        torch.Size([2, 2])
    """

    accepted_input_kinds = (InputKind.RANKING,)

    def __init__(
        self,
        model: str = "mf",
        embedding_dim: int = 32,
        num_layers: int = 3,
        similarity: str = "dot",
        criterion: CriterionSpec = "bpr",
        lr: float = 1e-2,
        weight_decay: float = 0.0,
        l2_reg: float = 0.0,
        top_k: Sequence[int] = (20,),
        pld_inline: bool = True,
        n_users: int | None = None,
        n_items: int | None = None,
    ) -> None:
        super().__init__()
        self.model_name = check_choice("model", model, ("mf", "lightgcn"))
        top_k = [top_k] if isinstance(top_k, int) else list(top_k)
        if not top_k:
            raise ValueError("top_k must hold at least one cut-off, got []")
        self.top_k = [check_int("top_k", k, low=1) for k in top_k]
        self.embedding_dim, self.num_layers, self.similarity = embedding_dim, num_layers, similarity
        self.lr, self.weight_decay, self.l2_reg = lr, weight_decay, l2_reg
        self.save_hyperparameters()
        self.pld_inline = bool(pld_inline)
        self.configure_criterion(criterion)
        self.model: MatrixFactorization | LightGCN | None = None
        if n_users is not None and n_items is not None:
            self._build(n_users, n_items)
        self.val_metrics = self._metrics("val")
        self.test_metrics = self._metrics("test")

    # ------------------------------------------------------------------------- building
    def _build(self, num_users: int, num_items: int) -> None:
        self.hparams["n_users"], self.hparams["n_items"] = num_users, num_items  # for checkpoints
        if self.model_name == "mf":
            self.model = MatrixFactorization(
                num_users, num_items, self.embedding_dim, self.similarity, l2_reg=self.l2_reg
            )
        else:
            self.model = LightGCN(
                num_users,
                num_items,
                self.embedding_dim,
                self.num_layers,
                self.similarity,
                l2_reg=self.l2_reg,
            )

    def _require_model(self) -> MatrixFactorization | LightGCN:
        """The built recommendation model.

        Raises:
            RuntimeError: before `setup` (or the constructor's `n_users` / `n_items`) built it.
        """
        if self.model is None:
            raise RuntimeError(
                "RecsysModule has no model yet: pass n_users/n_items or run setup() with a "
                "DataModule"
            )
        return self.model

    def _metrics(self, stage: str) -> MetricCollection:
        metrics: dict[str, Metric | MetricCollection] = {}
        for k in self.top_k:
            metrics[f"recall@{k}"] = RetrievalRecall(top_k=k)
            metrics[f"ndcg@{k}"] = RetrievalNormalizedDCG(top_k=k)
        return MetricCollection(metrics, prefix=f"{stage}/")

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if self.model is None:
            if dm is None:
                raise ValueError(
                    "RecsysModule needs n_users/n_items or a DataModule with num_users, "
                    "num_items and data.train (e.g. InteractionDataModule)"
                )
            self._build(dm.num_users, dm.num_items)
        if isinstance(self.model, LightGCN) and self.model.adjacency is None:
            if dm is None:
                raise ValueError("LightGCN needs the DataModule's training interactions")
            self.model.set_graph(*dm.data.train)

    # ----------------------------------------------------------------------------- losses
    def _scores(self, tables: tuple[Tensor, Tensor], users: Tensor, items: Tensor) -> Tensor:
        return self._require_model().score(*tables, users, items)

    def pld_candidate_losses(self, batch: dict[str, Tensor], *reuse: Tensor) -> Tensor:
        """Per-candidate training losses `[B, k]`, the interface of
        [PLDScorer][lightning_losses.callbacks.pld.PLDScorer].

        Every candidate of `batch["cand_items"]` is scored against the batch's own negatives
        (the same negatives then train the chosen positive), with the main criterion only (no
        L2).

        Args:
            batch: the dict batch.
            *reuse: optionally the step's `(user_table, item_table)`; else `embeddings()` runs.

        Returns:
            The candidate losses.
        """
        user_table, item_table = reuse if reuse else self._require_model().embeddings()
        tables = (user_table, item_table)
        user, cand, neg = batch["user"], batch["cand_items"], batch["neg_item"]
        b, k = cand.shape
        neg = neg if neg.ndim == 2 else neg.unsqueeze(1)
        # One gather + one batched product for the whole pool and the negatives.
        scores = self._scores(tables, user, torch.cat([cand, neg], 1))
        pos, neg_s = scores[:, :k], scores[:, k:]
        neg_s = neg_s.unsqueeze(1).expand(b, k, neg_s.shape[1]).reshape(b * k, -1)
        return self.criterion(pos.reshape(-1), neg_s).view(b, k)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Any]:
        model = self._require_model()
        tables = model.embeddings()  # one propagation per step for LightGCN
        if self.pld_inline:
            pld_select(self, batch, *tables)  # a no-op without an attached PLDResampling
        neg_item = batch["neg_item"]
        items = torch.cat([batch["pos_item"].unsqueeze(1), neg_item.view(len(neg_item), -1)], 1)
        scores = self._scores(tables, batch["user"], items)
        neg = scores[:, 1:] if neg_item.ndim == 2 else scores[:, 1]
        aux = {}
        if model.l2_reg > 0:
            aux["l2"] = model.l2_penalty(batch["user"], batch["pos_item"], neg_item)
        out = self.compute_loss(scores[:, 0], neg, aux=aux)
        noisy = batch.get("pos_is_noisy")
        if noisy is not None:
            self.log(
                "train/noisy_share",
                noisy.float().mean(),
                on_step=False,
                on_epoch=True,
                batch_size=len(noisy),
                sync_dist=True,
            )
        return out.to_dict()

    # --------------------------------------------------------------------------- evaluation
    def full_ranking_scores(self, batch: dict[str, Tensor]) -> Tensor:
        """`[b, I]` scores of the batch's users; excluded (seen) items get the lowest score."""
        model = self._require_model()
        scores = model.full_scores(*model.embeddings(), batch["user"])
        return scores.masked_fill(batch["exclude"], torch.finfo(scores.dtype).min)

    def _eval_step(self, batch: dict[str, Tensor], metrics: MetricCollection) -> None:
        scores = self.full_ranking_scores(batch)
        indexes = batch["user"].unsqueeze(1).expand_as(scores)
        metrics.update(scores.reshape(-1), batch["target"].reshape(-1), indexes=indexes.reshape(-1))

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute(), prog_bar=True)
        self.val_metrics.reset()

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics)

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()

    def default_optimizer(self, params: Any) -> torch.optim.Optimizer:
        """Adam with `lr` and `weight_decay` (replaced by `--optimizer` on the command line)."""
        return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
