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

Checkpoints do not hold the reference: it is the initial policy, which the constructor built
from the torch generator's state at that moment. A checkpoint stores that state (5 KB) instead
of the `reference.*` weights, and loading rebuilds them from it (before a strict
`load_state_dict`, so `load_from_checkpoint` and resuming work unchanged). Before dropping the
weights the first time, the module rebuilds them once and checks they are bit-identical; if they
are not (or the reference was changed after construction), the checkpoint keeps them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
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

_REFERENCE = "reference."
_CKPT_KEY = "preference_reference_init"  # the checkpoint entry that replaces `reference.*`


def _fingerprint(model: nn.Module) -> list[float]:
    """Per-tensor float64 sums: notices a reference changed since it was last verified."""
    return [float(t.double().sum()) for t in model.state_dict().values()]


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
        self._build_args: dict[str, Any] = dict(
            model_type=model_type,
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            num_heads=num_heads,
            max_position_embeddings=max_position_embeddings,
            **dict(model_config or {}),
        )
        # The generator state the initial weights come from: rebuilds the reference on load.
        self._init_rng_state = torch.get_rng_state()
        self.model = build_causal_lm(**self._build_args)
        # The reference policy: the initial weights, frozen (not in checkpoints: module docs).
        self.reference = copy.deepcopy(self.model).requires_grad_(False).eval()
        self._verified: list[float] | None = None  # fingerprint of the last verified reference
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
                    sync_dist=True,  # the mean over the ranks, like LossMixin's entries
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

    # -- checkpoints: the reference is rebuilt, not stored --------------------------------------
    def _rebuild_reference(self, rng_state: Tensor) -> dict[str, Tensor]:
        """The initial policy's weights, rebuilt from the generator state it was built from."""
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(rng_state)
            return build_causal_lm(**self._build_args).state_dict()

    def _reference_rebuildable(self) -> bool:
        fingerprint = _fingerprint(self.reference)
        if fingerprint != self._verified:
            rebuilt = self._rebuild_reference(self._init_rng_state)
            current = self.reference.state_dict()
            same = rebuilt.keys() == current.keys() and all(
                torch.equal(rebuilt[k], v.detach().cpu()) for k, v in current.items()
            )
            self._verified = fingerprint if same else None
        return self._verified is not None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Replace the `reference.*` weights by the generator state that rebuilds them."""
        super().on_save_checkpoint(checkpoint)
        weights = checkpoint.get("state_dict")
        if weights is None or not self._reference_rebuildable():
            return
        for key in [k for k in weights if k.startswith(_REFERENCE)]:
            del weights[key]
        checkpoint[_CKPT_KEY] = {"rng_state": self._init_rng_state.clone()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Rebuild the `reference.*` weights a checkpoint left out (before a strict load)."""
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get(_CKPT_KEY)
        weights = checkpoint.get("state_dict")
        if saved is None or weights is None or any(k.startswith(_REFERENCE) for k in weights):
            return
        self._init_rng_state = saved["rng_state"]
        weights.update(_prefixed(self._rebuild_reference(self._init_rng_state), _REFERENCE))

    def optimizer_param_groups(self) -> list[nn.Parameter]:
        """The policy's and the criterion's trainable parameters (never the frozen reference)."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        return params + [p for p in self.criterion.parameters() if p.requires_grad]

    def default_optimizer(self, params: Any) -> torch.optim.Optimizer:
        """AdamW with `lr` and `weight_decay` (replaced by `--optimizer` on the command line)."""
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)


def _prefixed(state: dict[str, Tensor], prefix: str) -> Iterator[tuple[str, Tensor]]:
    return ((prefix + k, v) for k, v in state.items())
