"""NLP recipe: causal language-model pretraining with a catalog criterion.

`CausalLM` is a [LossMixin][lightning_losses.mixins.LossMixin] LightningModule around a
Hugging Face `transformers` causal LM built from a config (Llama-like by default, nothing is
downloaded). The per-token cross-entropy is computed with `reduction="none"` through
`compute_loss` with `element_mask = labels != -100`, so the per-sample loss is each
sequence's mean token CE: the $l_i$ that
[LossReweighting][lightning_losses.callbacks.LossReweighting] reweights. The logit z-loss
(*Small-scale proxies for large-scale Transformer training instabilities*, Wortsman et al.,
ICLR 2024, arXiv:2309.14322) is an optional auxiliary term. Validation perplexity comes
from `torchmetrics.text.Perplexity`. Run it from YAML:

```bash
lightning-losses fit --config recipes/nlp/grammar_llama.yaml
lightning-losses fit --config recipes/nlp/grammar_llama.yaml \
    --config recipes/nlp/grammar_llama_reweighting.yaml     # overlay: + LossReweighting
lightning-losses fit --config recipes/nlp/grammar_llama.yaml \
    --trainer.devices 2 --trainer.strategy ddp
lightning-losses fit --config recipes/nlp/grammar_moe.yaml \
    --config recipes/nlp/grammar_moe_lossfree.yaml          # MoE + LossFreeBalancing
```

MoE: `model_type="llama_moe"` replaces every Llama MLP with a routed
[MoEFeedForward][lightning_losses.nn.MoEFeedForward] (settings in `model_config`:
`num_experts`, `num_experts_per_tok`, `moe_intermediate_size`, `gating`);
`balance_loss_coeff > 0` adds the Switch/Mixtral balance loss as the aux objective
`balance_loss`. A `transformers` DeepSeek-V3 (`model_type="deepseek_v3"`) is adapted with
[track_expert_load][lightning_losses.nn.track_expert_load]. Either works with
[LossFreeBalancing][lightning_losses.callbacks.LossFreeBalancing]; routers count only the
tokens of a batch's `attention_mask` (all tokens when the batch has none).

FSDP2: with `--trainer.strategy lightning.pytorch.strategies.ModelParallelStrategy
--trainer.strategy.data_parallel_size 2 --trainer.strategy.tensor_parallel_size 1`
(the strategy's default sizes on one node are all tensor-parallel, which the recipe refuses),
`CausalLM.configure_model` applies `fully_shard` to every decoder layer, then the root.

At setup the model checks the data: the tokenizer's vocabulary must fit `vocab_size`, and
`--data.block_size` must not exceed `--model.max_position_embeddings`.

Criteria that consume hidden states: a criterion implementing the
[HiddenStatesCriterion][lightning_losses.losses.HiddenStatesCriterion] protocol
(such as `"chunked_linear_cross_entropy"`, or your own loss) receives the final hidden states and
the LM head's weight instead of the `[B, T, V]` logits, which are then never materialised; the
terms its `loss_terms()` reports (e.g. its z-loss) are logged as `{stage}/{name}`.

The model comes from [build_causal_lm][lightning_losses.nn.build_causal_lm]; `transformers` is
imported lazily (inside it) so that `import lightning_losses` stays fast.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, cast

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torch.optim import Optimizer

from lightning_losses.distributed import data_parallel_mesh
from lightning_losses.functional import chunked_linear_cross_entropy, z_loss
from lightning_losses.losses import HiddenStatesCriterion, InputKind
from lightning_losses.losses.hidden_states import consumes_hidden_states
from lightning_losses.mixins import CriterionSpec, LossMixin, LossOutput, OptimizerMixin
from lightning_losses.nn.causal_lm import build_causal_lm
from lightning_losses.nn.moe import (
    TopKRouter,
    collect_balance_loss,
    moe_token_mask,
    track_expert_load,
)
from lightning_losses.validation import check_number

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = ["CausalLM"]


class CausalLM(OptimizerMixin, LossMixin, LightningModule):
    """Causal LM pretraining with a catalog criterion, optional z-loss and validation perplexity.

    Args:
        criterion: token-level criterion (registry name, dict, `class_path` dict or, in Python,
            a module) taking `[B, V, T]` logits and `[B, T]` labels; default cross-entropy. A
            criterion that consumes hidden states (the
            [HiddenStatesCriterion][lightning_losses.losses.HiddenStatesCriterion]
            protocol, e.g. `"chunked_linear_cross_entropy"`: memory-lean, in token chunks, with
            its own `z_loss_coeff`) takes the final hidden states and the LM-head weight and
            never materialises the logits.
        model_type: a `transformers` model type (`"llama"`, `"mixtral"`, `"qwen2"`,
            `"deepseek_v3"`, ...) or `"llama_moe"` (our MoE blocks in a Llama).
        vocab_size: embedding size (at least the tokenizer's vocabulary).
        hidden_size: model width.
        num_layers: decoder layers.
        num_heads: attention heads.
        intermediate_size: MLP width (default `4 * hidden_size`).
        max_position_embeddings: longest sequence (at least the data's `block_size`).
        model_config: extra config keyword arguments (e.g. MoE settings).
        z_loss_coeff: coefficient of the z-loss auxiliary term (0 disables it).
        balance_loss_coeff: coefficient of the Switch/Mixtral load-balancing aux loss
            (`balance_loss`, mean over MoE layers; needs `model_type="llama_moe"`; 0 disables it).
        lr: peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        betas: AdamW betas.
        warmup_steps: linear warm-up steps of the LR schedule.
        min_lr_ratio: final LR of the cosine decay, as a fraction of `lr`.

    Raises:
        ValueError: a negative `z_loss_coeff` or `balance_loss_coeff`, a balance loss on a
            model without `TopKRouter`s, or `z_loss_coeff > 0` with a hidden-states criterion;
            at setup, a tokenizer larger than `vocab_size` or a `block_size` above
            `max_position_embeddings` (naming both flags).

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
    model: PreTrainedModel

    def __init__(
        self,
        criterion: CriterionSpec = "cross_entropy",
        model_type: str = "llama",
        vocab_size: int = 512,
        hidden_size: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        intermediate_size: int | None = None,
        max_position_embeddings: int = 512,
        model_config: dict[str, Any] | None = None,
        z_loss_coeff: float = 0.0,
        balance_loss_coeff: float = 0.0,
        lr: float = 3e-3,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.95),
        warmup_steps: int = 20,
        min_lr_ratio: float = 0.1,
    ) -> None:
        super().__init__()
        self.z_loss_coeff = check_number("z_loss_coeff", z_loss_coeff, low=0.0)
        self.balance_loss_coeff = check_number("balance_loss_coeff", balance_loss_coeff, low=0.0)
        self.vocab_size = vocab_size
        self.max_position_embeddings = max_position_embeddings
        self.lr, self.weight_decay, self.betas = lr, weight_decay, (betas[0], betas[1])
        self.warmup_steps, self.min_lr_ratio = warmup_steps, min_lr_ratio
        extra = dict(model_config or {})
        if model_type == "llama_moe":
            extra.setdefault("compute_balance_loss", balance_loss_coeff > 0)
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
            **extra,
        )
        track_expert_load(self.model)  # DeepSeek-V3 routers: count tokens for balancing
        if balance_loss_coeff > 0 and not any(
            isinstance(m, TopKRouter) for m in self.model.modules()
        ):
            raise ValueError(
                f"balance_loss_coeff={balance_loss_coeff} needs MoE routers that compute the "
                f"balance loss: use model_type='llama_moe' (got {model_type!r})"
            )
        built = self.configure_criterion(criterion)
        # Decided once: the runtime Protocol check costs ~10 µs and `lm_loss` runs every step.
        self._hidden_states_criterion: HiddenStatesCriterion | None = (
            cast(HiddenStatesCriterion, built) if consumes_hidden_states(built) else None
        )
        from torchmetrics.aggregation import MeanMetric
        from torchmetrics.text import Perplexity

        self.val_ppl = Perplexity(ignore_index=-100)
        self.val_nll = MeanMetric()  # the hidden-states path's token-mean NLL
        if self.uses_hidden_states and z_loss_coeff > 0:
            raise ValueError(
                "z_loss_coeff > 0 needs logits; with a criterion that consumes the hidden states "
                "(e.g. the chunked linear cross-entropy) set the criterion's own z_loss_coeff "
                "instead (one log-sum-exp)"
            )

    # -- model ---------------------------------------------------------------------------------
    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """`[B, T]` token ids (and optional `[B, T]` attention mask, whose pads MoE routers do not
        count) -> `[B, T, V]` logits."""
        kwargs = {} if attention_mask is None else {"attention_mask": attention_mask}
        with self._count_tokens(attention_mask):
            logits: Tensor = self.model(input_ids=input_ids, use_cache=False, **kwargs).logits
        return logits

    def _count_tokens(self, attention_mask: Tensor | None) -> AbstractContextManager[None]:
        """MoE routers count only the tokens with `attention_mask == 1` (all without a mask)."""
        return moe_token_mask(self.model, None if attention_mask is None else attention_mask > 0)

    def criterion_elements(self, logits: Tensor, labels: Tensor) -> tuple[Tensor, ...]:
        """The criterion's inputs: `([B, V, T] logits, [B, T] labels)` (a transposed view).

        Not used with a criterion that consumes hidden states (see `uses_hidden_states`), which
        takes the final hidden states and the LM-head weight instead (see
        `final_hidden_states`): the `[B, T, V]` logits are then never materialised.
        """
        return logits.transpose(1, 2), labels

    @property
    def uses_hidden_states(self) -> bool:
        """The criterion consumes the final hidden states and the LM-head weight (not logits).

        True when it implements
        [HiddenStatesCriterion][lightning_losses.losses.HiddenStatesCriterion].
        """
        return self._hidden_states_criterion is not None

    def lm_head(self) -> tuple[Tensor, Tensor | None]:
        """The output projection's `(weight [V, H], bias [V] or None)`.

        Raises:
            TypeError: the model's output embeddings are not an `nn.Linear`.
        """
        head = self.model.get_output_embeddings()
        if not isinstance(head, nn.Linear):
            raise TypeError(
                "a criterion that consumes hidden states needs an nn.Linear LM head, got "
                f"{type(head).__name__}"
            )
        return head.weight, head.bias

    def final_hidden_states(
        self, input_ids: Tensor, attention_mask: Tensor | None = None
    ) -> Tensor:
        """`[B, T, H]` hidden states after the final norm, i.e. the LM head's input.

        Runs the whole model (its root forward, so FSDP2 unshards the LM head and keeps it
        unsharded for the loss) with `logits_to_keep=1`: only the last position's logits are
        computed. The hidden states are read from the decoder's output by a forward hook
        (`hidden_states[-1]` of `transformers` is recorded before the final norm).
        """
        captured: dict[str, Tensor] = {}

        def keep(module: nn.Module, args: Any, output: Any) -> None:
            captured["hidden"] = output.last_hidden_state

        handle = self.model.get_decoder().register_forward_hook(keep)
        try:
            kwargs = {} if attention_mask is None else {"attention_mask": attention_mask}
            with self._count_tokens(attention_mask):
                self.model(input_ids=input_ids, use_cache=False, logits_to_keep=1, **kwargs)
        finally:
            handle.remove()
        return captured["hidden"]

    def _moe_aux(self) -> dict[str, Tensor]:
        balance = collect_balance_loss(self.model)
        if balance is not None and self.balance_loss_coeff > 0:
            return {"balance_loss": self.balance_loss_coeff * balance}
        return {}

    def lm_loss(
        self,
        input_ids: Tensor,
        labels: Tensor,
        stage: str = "train",
        attention_mask: Tensor | None = None,
    ) -> LossOutput:
        """Per-token criterion, per-sequence mean over `labels != -100`, aux terms.

        The aux terms are the z-loss and, for MoE models, the balance loss. MoE routers count
        only the tokens with `attention_mask == 1` (pad tokens excluded; all without a mask).
        With a hidden-states criterion, `extras["hidden_states"]` holds the final hidden states
        and the criterion's `loss_terms()` are logged; otherwise `extras["logits"]`.
        """
        if self.uses_hidden_states:
            hidden = self.final_hidden_states(input_ids, attention_mask)
            weight, bias = self.lm_head()
            out = self.compute_loss(
                hidden,
                weight,
                labels,
                *(() if bias is None else (bias,)),
                aux=self._moe_aux(),
                element_mask=labels != -100,
                extras={"hidden_states": hidden},
                stage=stage,
            )
            criterion = self._hidden_states_criterion
            if self._trainer is not None and criterion is not None:
                # Diagnostics only: these terms are inside `main` already.
                for name, value in criterion.loss_terms().items():
                    self.log(f"{stage}/{name}", value, on_step=stage == "train", on_epoch=True)
            return out
        logits = self(input_ids, attention_mask)
        aux = self._moe_aux()
        if self.z_loss_coeff > 0:  # vocabulary at dimension 1, as for every loss
            aux["z_loss"] = z_loss(logits.transpose(1, 2), labels, coeff=self.z_loss_coeff)
        return self.compute_loss(
            *self.criterion_elements(logits, labels),
            aux=aux,
            element_mask=labels != -100,
            extras={"logits": logits},
            stage=stage,
        )

    # -- Lightning -----------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        tokenizer = getattr(dm, "tokenizer", None)
        vocab = tokenizer.get_vocab_size() if tokenizer is not None else None
        if vocab and vocab > self.vocab_size:
            raise ValueError(
                f"the tokenizer has {vocab} tokens but the model's vocab_size is "
                f"{self.vocab_size}; set --model.vocab_size >= {vocab}"
            )
        block_size = getattr(dm, "block_size", None)
        max_pos = self.max_position_embeddings
        if isinstance(block_size, int) and block_size > max_pos:
            raise ValueError(
                f"--data.block_size {block_size} exceeds the model's --model."
                f"max_position_embeddings {max_pos}; lower --data.block_size or raise "
                f"--model.max_position_embeddings to >= {block_size}"
            )

        if stage == "fit" and self._trainer is not None:
            self._warn_no_validation(self.trainer)

    @staticmethod
    def _warn_no_validation(trainer: Any) -> None:
        # `val_check_interval: 50` (steps) with `--trainer.max_steps 30` silently never validates,
        # so no val/ppl and no checkpoint chosen on it.
        interval, max_steps = trainer.val_check_interval, trainer.max_steps
        if not isinstance(interval, int) or isinstance(interval, bool) or max_steps is None:
            return
        if 0 <= max_steps < interval and trainer.check_val_every_n_epoch is None:
            rank_zero_warn(
                f"max_steps={max_steps} is below val_check_interval={interval}: this run never "
                "validates (no val/ppl, no checkpoint at a validation); lower "
                "--trainer.val_check_interval or raise --trainer.max_steps",
                category=UserWarning,
            )

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Any]:
        out = self.lm_loss(
            batch["input_ids"], batch["labels"], attention_mask=batch.get("attention_mask")
        )
        return out.to_dict()

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        out = self.lm_loss(
            batch["input_ids"],
            batch["labels"],
            stage="val",
            attention_mask=batch.get("attention_mask"),
        )
        if not self.uses_hidden_states:
            self.val_ppl.update(out.extras["logits"].float(), batch["labels"])
            self.log("val/ppl", self.val_ppl, on_epoch=True, prog_bar=True)
            return
        # No logits on the hidden-states path: perplexity = exp(token-mean CE), the plain CE
        # (what torchmetrics' Perplexity measures, whatever the criterion adds) recomputed in
        # chunks of about 2^24 logits, without gradient.
        labels = batch["labels"]
        weight, bias = self.lm_head()
        with torch.no_grad():
            nll = chunked_linear_cross_entropy(
                out.extras["hidden_states"], weight, labels, bias, reduction="sum"
            )
        tokens = (labels != -100).sum()
        self.val_nll.update(nll / tokens.clamp(min=1), weight=tokens)

    def on_validation_epoch_end(self) -> None:
        if self.uses_hidden_states and self.val_nll.update_count > 0:
            self.log("val/ppl", torch.exp(self.val_nll.compute()), prog_bar=True)
            self.val_nll.reset()

    def configure_model(self) -> None:
        # FSDP2 under ModelParallelStrategy: shard each decoder layer, then the root module.
        mesh = getattr(self, "device_mesh", None)
        if mesh is None or getattr(self, "_fsdp_applied", False):
            return
        from torch.distributed.fsdp import fully_shard

        dp_mesh = data_parallel_mesh(mesh, "NLP")
        for layer in self.model.get_decoder().layers:
            fully_shard(layer, mesh=dp_mesh)
        fully_shard(self.model, mesh=dp_mesh)
        self._fsdp_applied = True

    def optimizer_param_groups(self) -> list[dict[str, Any]]:
        """Two groups: matrices with `weight_decay`, vectors (norms, biases) without."""
        decay = [p for p in self.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in self.parameters() if p.requires_grad and p.ndim < 2]
        return [
            {"params": decay, "weight_decay": self.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    def default_optimizer(self, params: Any) -> Optimizer:
        """AdamW with `lr` and `betas` (replaced by `--optimizer` on the command line)."""
        return torch.optim.AdamW(params, lr=self.lr, betas=self.betas)

    def default_lr_scheduler(self, optimizer: Optimizer) -> dict[str, Any]:
        """Linear warm-up (`warmup_steps`), then cosine decay to `min_lr_ratio · lr`, per step."""
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup, min_ratio = self.warmup_steps, self.min_lr_ratio

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            t = min((step - warmup) / max(total - warmup, 1), 1.0)
            return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))

        sched = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"scheduler": sched, "interval": "step"}
