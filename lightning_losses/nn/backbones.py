"""Backbones of the vision recipes: a small MLP, or any timm model built offline.

The image-classification and metric-learning recipes build their networks here, so neither recipe
imports the other.
"""

from __future__ import annotations

from torch import nn

from lightning_losses.validation import check_int

__all__ = ["build_backbone"]


def build_backbone(name: str, num_features: int, num_outputs: int, hidden: int) -> nn.Module:
    """`"mlp"` (2 hidden layers) or `"timm:<model>"` (built offline, `pretrained=False`).

    timm backbones see the features as a square single-channel image (`64 -> 1×8×8`).

    Args:
        name: `"mlp"` or `"timm:<model name>"`.
        num_features: flattened input size.
        num_outputs: output size: the number of classes of a classifier, the embedding size of
            an encoder.
        hidden: MLP width.

    Returns:
        The backbone, mapping `[N, num_features]` to `[N, num_outputs]`.

    Raises:
        TypeError: a size that is not an int.
        ValueError: a size below 1, an unknown backbone, or a timm backbone with non-square
            inputs.

    Example:
        >>> import torch
        >>> from lightning_losses.nn.backbones import build_backbone
        >>> net = build_backbone("mlp", num_features=64, num_outputs=10, hidden=32)
        >>> tuple(net(torch.zeros(3, 64)).shape)
        (3, 10)
    """
    num_features = check_int("num_features", num_features, low=1)
    num_outputs = check_int("num_outputs", num_outputs, low=1)
    hidden = check_int("hidden", hidden, low=1)
    if name == "mlp":
        return nn.Sequential(
            nn.Linear(num_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_outputs),
        )
    if name.startswith("timm:"):
        import timm  # heavy import, only when a timm backbone is asked for

        side = round(num_features**0.5)
        if side * side != num_features:
            raise ValueError(f"timm backbones need square images; num_features={num_features}")
        model = timm.create_model(name[5:], pretrained=False, num_classes=num_outputs, in_chans=1)
        return nn.Sequential(nn.Unflatten(1, (1, side, side)), model)
    raise ValueError(f"backbone must be 'mlp' or 'timm:<model name>', got {name!r}")
