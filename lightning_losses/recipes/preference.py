"""Preference fine-tuning recipe: a tiny causal LM trained with any DPO-family loss.

`PreferenceLM` is a [LossMixin][lightning_losses.mixins.LossMixin] LightningModule around a
Hugging Face `transformers` causal LM built from config
([build_causal_lm][lightning_losses.nn.build_causal_lm], nothing downloaded) and a
frozen copy of it as the reference policy. Each step runs chosen and rejected sequences as one
`[2B, T]` batch, turns logits into per-sequence summed log-probs with
[sequence_log_probs][lightning_losses.functional.sequence_log_probs] (chunked, no second
`[2B, T, V]` tensor), computes the reference log-probs without gradient, and hands the four
`[B]` vectors (+ response lengths) to the criterion through `compute_loss` (one loss per pair:
the per-sample loss reweighting callbacks act on). Diagnostics go to `LossOutput.extras` and the
logger: `{stage}/rewards/chosen`, `rewards/rejected`, `rewards/margins` (mean $\\beta h$),
`rewards/accuracies` (fraction of pairs with $h > 0$), `logps/chosen`, `logps/rejected`.

```bash
lightning-losses fit --config recipes/nlp/preference_dpo.yaml
lightning-losses fit --config recipes/nlp/preference_dpo.yaml --model.criterion ipo
lightning-losses fit --config recipes/nlp/preference_dpo.yaml \\
    --data.flip_fraction 0.2 --model.criterion '{"name": "robust_dpo", "epsilon": 0.2}'
```

`transformers` is imported lazily (inside `build_causal_lm`).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from lightning_losses.functional import implicit_rewards, sequence_log_probs
from lightning_losses.losses import InputKind
from lightning_losses.mixins import CriterionSpec, LossMixin, LossOutput, OptimizerMixin
from lightning_losses.nn.causal_lm import build_causal_lm

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = ["PreferenceLM"]


class PreferenceLM(OptimizerMixin, LossMixin, LightningModule):
    """DPO-family fine-tuning of a tiny causal LM against a frozen reference copy.

    Args:
        criterion: a preference loss (registry name such as `"dpo"`, `"ipo"`, `"robust_dpo"`,
            a dict or `class_path` dict, or, in Python, a module).
        model_type: a `transformers` model type (`"llama"`, `"qwen2"`, ...).
        vocab_size: embedding size (at least the data's vocabulary, checked at setup).
        hidden_size: model width.
        num_layers: decoder layers.
        num_heads: attention heads.
        max_position_embeddings: longest sequence (at least the data's `max_length`).
        model_config: extra config keyword arguments.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        chunk_size: positions per chunk of `sequence_log_probs`.

    Raises:
        ValueError: a criterion that is not a preference loss; at setup, a vocabulary larger than
            `vocab_size` or sequences longer than `max_position_embeddings`.

    Example:
        >>> import torch
        >>> model = PreferenceLM(vocab_size=32, hidden_size=16, num_layers=1, num_heads=2)
        >>> ids = torch.randint(32, (2, 6))
        >>> labels = ids.clone(); labels[:, :2] = -100
        >>> batch = {"chosen_input_ids": ids, "chosen_labels": labels,
        ...          "rejected_input_ids": ids.flip(1), "rejected_labels": labels}
        >>> out = model.preference_loss(batch)
        >>> tuple(out.per_sample.shape), round(out.extras["rewards/margins"].item(), 4)
        ((2,), 0.0)
    """

    accepted_input_kinds = (InputKind.PREFERENCE,)
    model: PreTrainedModel
    reference: PreTrainedModel

    def __init__(
        self,
        criterion: CriterionSpec = "dpo",
        model_type: str = "llama",
        vocab_size: int = 160,
        hidden_size: int = 64,
        num_layers: int = 2,
        num_heads: int = 4,
        max_position_embeddings: int = 64,
        model_config: dict[str, Any] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        chunk_size: int = 128,
    ) -> None:
        super().__init__()
        self.vocab_size, self.max_position_embeddings = vocab_size, max_position_embeddings
        self.lr, self.weight_decay, self.chunk_size = lr, weight_decay, chunk_size
        self.save_hyperparameters(
            ignore=["criterion"] if isinstance(criterion, nn.Module) else None
        )
        self.model = build_causal_lm(
            model_type,
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            num_heads=num_heads,
            max_position_embeddings=max_position_embeddings,
            **dict(model_config or {}),
        )
        # The reference policy: the initial weights, frozen (saved in checkpoints for resume).
        self.reference = copy.deepcopy(self.model).requires_grad_(False).eval()
        self.configure_criterion(criterion)

    # -- model ---------------------------------------------------------------------------------
    def forward(self, input_ids: Tensor) -> Tensor:
        """`[B, T]` token ids -> `[B, T, V]` policy logits."""
        logits: Tensor = self.model(input_ids=input_ids, use_cache=False).logits
        return logits

    def sequence_logps(
        self, model: nn.Module, input_ids: Tensor, labels: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Summed label log-probs `[B]` and token counts `[B]` of `model` on `input_ids`."""
        logits = model(input_ids=input_ids, use_cache=False).logits
        return sequence_log_probs(logits, labels, chunk_size=self.chunk_size)

    def preference_loss(self, batch: dict[str, Tensor], stage: str = "train") -> LossOutput:
        """Policy and reference log-probs of both responses, the criterion, the diagnostics."""
        ids = torch.cat([batch["chosen_input_ids"], batch["rejected_input_ids"]])
        labels = torch.cat([batch["chosen_labels"], batch["rejected_labels"]])
        logps, lengths = self.sequence_logps(self.model, ids, labels)
        with torch.no_grad():
            self.reference.eval()
            ref_logps, _ = self.sequence_logps(self.reference, ids, labels)
        pc, pr = logps.chunk(2)
        rc, rr = ref_logps.chunk(2)
        nc, nr = lengths.chunk(2)
        beta = float(getattr(self.criterion, "beta", 1.0))
        chosen_r, rejected_r = implicit_rewards(pc, pr, rc, rr, beta=beta)
        extras = {
            "rewards/chosen": chosen_r.mean(),
            "rewards/rejected": rejected_r.mean(),
            "rewards/margins": (chosen_r - rejected_r).mean(),
            "rewards/accuracies": (chosen_r > rejected_r).float().mean(),
            "logps/chosen": pc.detach().mean(),
            "logps/rejected": pr.detach().mean(),
        }
        out = self.compute_loss(
            pc, pr, rc, rr, chosen_lengths=nc, rejected_lengths=nr, extras=extras, stage=stage
        )
        if self._trainer is not None:
            on_step = stage == "train"
            for name, value in extras.items():
                self.log(
                    f"{stage}/{name}",
                    value,
                    on_step=on_step,
                    on_epoch=True,
                    batch_size=int(pc.shape[0]),
                    sync_dist=not on_step,
                    prog_bar=name == "rewards/margins",
                )
        return out

    # -- Lightning -----------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None or getattr(dm, "vocab", None) is None:
            return
        if dm.vocab_size > self.vocab_size:
            raise ValueError(
                f"the data has {dm.vocab_size} tokens but the model's vocab_size is "
                f"{self.vocab_size}; set --model.vocab_size >= {dm.vocab_size}"
            )
        max_length = getattr(dm, "max_length", None)
        if isinstance(max_length, int) and max_length > self.max_position_embeddings:
            raise ValueError(
                f"--data.max_length {max_length} exceeds --model.max_position_embeddings "
                f"{self.max_position_embeddings}"
            )

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Any]:
        return self.preference_loss(batch).to_dict()

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.preference_loss(batch, stage="val")

    def optimizer_param_groups(self) -> list[nn.Parameter]:
        """The policy's and the criterion's trainable parameters (never the frozen reference)."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        return params + [p for p in self.criterion.parameters() if p.requires_grad]

    def default_optimizer(self, params: Any) -> torch.optim.Optimizer:
        """AdamW with `lr` and `weight_decay` (replaced by `--optimizer` on the command line)."""
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
