"""NLP recipe: causal language-model pretraining with a catalog criterion.

`CausalLM` is a [LossMixin][lightning_losses.mixins.LossMixin] LightningModule around a
Hugging Face `transformers` causal LM built from a config (Llama-like by default, nothing is
downloaded). The per-token cross-entropy is computed with `reduction="none"` through
`compute_loss` with `element_mask = labels != -100`, so the per-sample loss is each
sequence's mean token CE: the $l_i$ that
[LossReweighting][lightning_losses.callbacks.LossReweighting] reweights. The logit z-loss
(Wortsman et al., arXiv:2309.14322) is an optional auxiliary term. Validation perplexity comes
from `torchmetrics.text.Perplexity`. Run it from YAML:

```bash
lightning-losses fit --config recipes/nlp/grammar_llama.yaml
lightning-losses fit --config recipes/nlp/grammar_llama.yaml \
    --config recipes/nlp/grammar_llama_reweighting.yaml     # overlay: + LossReweighting
lightning-losses fit --config recipes/nlp/grammar_llama.yaml \
    --trainer.devices 2 --trainer.strategy ddp
```

FSDP2: with `--trainer.strategy lightning.pytorch.strategies.ModelParallelStrategy`,
`CausalLM.configure_model` applies `fully_shard` to every decoder layer, then the root.

At setup the model checks the data: the tokenizer's vocabulary must fit `vocab_size`, and
`--data.block_size` must not exceed `--model.max_position_embeddings`.

`transformers` is imported lazily (inside `build_causal_lm`) so that `import lightning_losses`
stays fast.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from lightning_losses.functional import z_loss
from lightning_losses.losses import InputKind
from lightning_losses.mixins import LossMixin

__all__ = ["CausalLM", "build_causal_lm"]

# What the CLI parses for `criterion` (a name or a dict); an `nn.Module` loss instance is
# accepted too, in Python, but kept out of the annotation so `--model.help` stays short.
CriterionArg = str | dict[str, Any]


def build_causal_lm(
    model_type: str = "llama",
    *,
    vocab_size: int = 512,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 512,
    **config_overrides: Any,
) -> nn.Module:
    """A randomly initialised `AutoModelForCausalLM` from `AutoConfig.for_model(model_type)`.

    Args:
        model_type: a `transformers` model type (`"llama"`, `"mixtral"`, `"qwen2"`, ...).
        vocab_size: embedding size.
        hidden_size: model width.
        num_layers: decoder layers.
        num_heads: attention heads (also the key/value heads unless overridden).
        intermediate_size: MLP width (default `4 * hidden_size`).
        max_position_embeddings: longest sequence.
        config_overrides: passed to the config unchanged (e.g. `num_local_experts` for
            Mixtral).

    Returns:
        The model (`transformers` `PreTrainedModel`).
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        model_type,
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=config_overrides.pop("num_key_value_heads", num_heads),
        intermediate_size=intermediate_size or 4 * hidden_size,
        max_position_embeddings=max_position_embeddings,
        **config_overrides,
    )
    return AutoModelForCausalLM.from_config(config)


class CausalLM(LossMixin, LightningModule):
    """Causal LM pretraining with a catalog criterion, optional z-loss and validation perplexity.

    Args:
        criterion: token-level criterion (registry name, dict, `class_path` dict or, in Python,
            a module) taking `[B, V, T]` logits and `[B, T]` labels; default cross-entropy.
        model_type: a `transformers` model type (`"llama"`, `"mixtral"`, `"qwen2"`, ...).
        vocab_size: embedding size (at least the tokenizer's vocabulary).
        hidden_size: model width.
        num_layers: decoder layers.
        num_heads: attention heads.
        intermediate_size: MLP width (default `4 * hidden_size`).
        max_position_embeddings: longest sequence (at least the data's `block_size`).
        model_config: extra config keyword arguments (e.g. MoE settings).
        z_loss_coeff: coefficient of the z-loss auxiliary term (0 disables it).
        lr: peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        betas: AdamW betas.
        warmup_steps: linear warm-up steps of the LR schedule.
        min_lr_ratio: final LR of the cosine decay, as a fraction of `lr`.

    Raises:
        ValueError: a negative `z_loss_coeff`; at setup, a tokenizer larger than `vocab_size`
            or a `block_size` above `max_position_embeddings` (naming both flags).

    Example:
        >>> import torch
        >>> model = CausalLM(vocab_size=64, hidden_size=32, num_layers=1, num_heads=2)
        >>> ids = torch.randint(64, (2, 8))
        >>> out = model.lm_loss(ids, ids)
        >>> tuple(out.per_sample.shape)
        (2,)
    """

    # Token-level classification losses on [B, V, T] logits; sequence losses (chunked CE, ...).
    accepted_input_kinds = (InputKind.CLASSIFICATION, InputKind.SEQUENCES)

    def __init__(
        self,
        criterion: CriterionArg = "cross_entropy",
        model_type: str = "llama",
        vocab_size: int = 512,
        hidden_size: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        intermediate_size: int | None = None,
        max_position_embeddings: int = 512,
        model_config: dict[str, Any] | None = None,
        z_loss_coeff: float = 0.0,
        lr: float = 3e-3,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.95),
        warmup_steps: int = 20,
        min_lr_ratio: float = 0.1,
    ) -> None:
        super().__init__()
        if z_loss_coeff < 0:
            raise ValueError(f"z_loss_coeff must be ≥ 0, got {z_loss_coeff}")
        self.save_hyperparameters(
            ignore=["criterion"] if isinstance(criterion, nn.Module) else None
        )
        self.model = build_causal_lm(
            model_type,
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            num_heads=num_heads,
            intermediate_size=intermediate_size,
            max_position_embeddings=max_position_embeddings,
            **dict(model_config or {}),
        )
        self.configure_criterion(criterion)
        from torchmetrics.text import Perplexity

        self.val_ppl = Perplexity(ignore_index=-100)

    # -- model ---------------------------------------------------------------------------------
    def forward(self, input_ids: Tensor) -> Tensor:
        """`[B, T]` token ids -> `[B, T, V]` logits."""
        return self.model(input_ids=input_ids, use_cache=False).logits

    def criterion_elements(self, logits: Tensor, labels: Tensor) -> tuple[Tensor, ...]:
        """The criterion's inputs: `([B, V, T] logits, [B, T] labels)` (a transposed view).

        Extension point: a memory-lean chunked cross-entropy takes the final hidden states and
        the LM-head weight instead of materialised logits; override this method and
        `lm_loss` to feed it.
        """
        return logits.transpose(1, 2), labels

    def lm_loss(self, input_ids: Tensor, labels: Tensor, stage: str = "train"):
        """Logits, per-token criterion, per-sequence mean over `labels != -100`, z-loss aux."""
        logits = self(input_ids)
        aux = {}
        if self.hparams.z_loss_coeff > 0:  # vocabulary at dimension 1, as for every loss
            aux["z_loss"] = z_loss(logits.transpose(1, 2), labels, coeff=self.hparams.z_loss_coeff)
        out = self.compute_loss(
            *self.criterion_elements(logits, labels),
            aux=aux,
            element_mask=labels != -100,
            extras={"logits": logits},
            stage=stage,
        )
        return out

    # -- Lightning -----------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        vocab = getattr(dm, "tokenizer", None) and dm.tokenizer.get_vocab_size()
        if vocab and vocab > self.hparams.vocab_size:
            raise ValueError(
                f"the tokenizer has {vocab} tokens but the model's vocab_size is "
                f"{self.hparams.vocab_size}; set --model.vocab_size >= {vocab}"
            )
        block_size = getattr(dm, "block_size", None)
        max_pos = self.hparams.max_position_embeddings
        if isinstance(block_size, int) and block_size > max_pos:
            raise ValueError(
                f"--data.block_size {block_size} exceeds the model's --model."
                f"max_position_embeddings {max_pos}; lower --data.block_size or raise "
                f"--model.max_position_embeddings to >= {block_size}"
            )

    def training_step(self, batch: dict[str, Tensor], batch_idx: int):
        out = self.lm_loss(batch["input_ids"], batch["labels"])
        return out.to_dict()

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        out = self.lm_loss(batch["input_ids"], batch["labels"], stage="val")
        self.val_ppl.update(out.extras["logits"].float(), batch["labels"])
        self.log("val/ppl", self.val_ppl, on_epoch=True, prog_bar=True)

    def configure_model(self) -> None:
        # FSDP2 under ModelParallelStrategy: shard each decoder layer, then the root module.
        mesh = getattr(self, "device_mesh", None)
        if mesh is None or getattr(self, "_fsdp_applied", False):
            return
        from torch.distributed.fsdp import fully_shard

        dp_mesh = mesh["data_parallel"] if "data_parallel" in (mesh.mesh_dim_names or ()) else mesh
        for layer in self.model.model.layers:
            fully_shard(layer, mesh=dp_mesh)
        fully_shard(self.model, mesh=dp_mesh)
        self._fsdp_applied = True

    def configure_optimizers(self):
        hp = self.hparams
        decay = [p for n, p in self.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in self.named_parameters() if p.ndim < 2]
        opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": hp.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=hp.lr,
            betas=tuple(hp.betas),
        )
        total = max(int(self.trainer.estimated_stepping_batches), 1)

        def schedule(step: int) -> float:
            # Linear warm-up, then cosine decay to min_lr_ratio.
            if step < hp.warmup_steps:
                return (step + 1) / hp.warmup_steps
            t = min((step - hp.warmup_steps) / max(total - hp.warmup_steps, 1), 1.0)
            return hp.min_lr_ratio + (1 - hp.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
