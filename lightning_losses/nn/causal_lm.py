"""Causal language models built from a `transformers` config: randomly initialised, nothing
downloaded.

`build_causal_lm` is the one model builder of the NLP recipes (`CausalLM` pretraining and
`PreferenceLM` fine-tuning). `transformers` is imported inside it, so that importing
`lightning_losses` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lightning_losses.nn.moe import build_moe_llama

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = ["build_causal_lm"]


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
) -> PreTrainedModel:
    """A randomly initialised `AutoModelForCausalLM` from `AutoConfig.for_model(model_type)`.

    Args:
        model_type: a `transformers` model type (`"llama"`, `"mixtral"`, `"qwen2"`, ...), or
            `"llama_moe"` (Llama with our `MoEFeedForward` blocks, see `build_moe_llama`).
        vocab_size: embedding size.
        hidden_size: model width.
        num_layers: decoder layers.
        num_heads: attention heads (also the key/value heads unless overridden).
        intermediate_size: MLP width (default `4 * hidden_size`).
        max_position_embeddings: longest sequence.
        config_overrides: passed to the config unchanged (e.g. `num_local_experts` for
            Mixtral; `num_experts`, `num_experts_per_tok`, `gating`, ... for `"llama_moe"`).

    Returns:
        The model (`transformers` `PreTrainedModel`).

    Example:
        >>> from lightning_losses.nn import build_causal_lm
        >>> lm = build_causal_lm(vocab_size=32, hidden_size=16, num_layers=1, num_heads=2)
        >>> type(lm).__name__, lm.config.vocab_size
        ('LlamaForCausalLM', 32)
    """
    if model_type == "llama_moe":
        return build_moe_llama(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            num_heads=num_heads,
            intermediate_size=intermediate_size,
            max_position_embeddings=max_position_embeddings,
            **config_overrides,
        )
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
    model: PreTrainedModel = AutoModelForCausalLM.from_config(config)
    return model
