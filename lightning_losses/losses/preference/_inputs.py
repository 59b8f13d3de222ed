"""Shared input handling of the preference losses: four `[N]` log-prob vectors (+ lengths)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lightning_losses.losses._numerics import upcast
from lightning_losses.validation import check_tensor

POLICY_CHOSEN = "policy_chosen_logps"
POLICY_REJECTED = "policy_rejected_logps"
REFERENCE_CHOSEN = "reference_chosen_logps"
REFERENCE_REJECTED = "reference_rejected_logps"


@dataclass
class PreferenceBatch:
    """Validated `[N]` log-probs in one compute dtype; the references are detached constants."""

    policy_chosen: Tensor
    policy_rejected: Tensor
    reference_chosen: Tensor
    reference_rejected: Tensor
    chosen_lengths: Tensor | None
    rejected_lengths: Tensor | None

    def chosen_logratio(self) -> Tensor:
        return self.policy_chosen - self.reference_chosen

    def rejected_logratio(self) -> Tensor:
        return self.policy_rejected - self.reference_rejected

    def margin(self) -> Tensor:
        r"""The log-ratio margin `[N]`, chosen minus rejected.

        $h = (\log\pi(y_w) - \log\pi_{ref}(y_w)) - (\log\pi(y_l) - \log\pi_{ref}(y_l))$.
        """
        return self.chosen_logratio() - self.rejected_logratio()


def _check_vector(name: str, value: Tensor, like: Tensor | None, like_name: str) -> Tensor:
    check_tensor(name, value, floating=True)
    if value.ndim != 1:
        raise ValueError(f"{name} must be a 1-D [N] tensor of log-probs, got {tuple(value.shape)}")
    if like is not None and value.shape != like.shape:
        raise ValueError(
            f"{name} must have the shape of {like_name} {tuple(like.shape)}, "
            f"got {tuple(value.shape)}"
        )
    return value


def _check_lengths(name: str, value: Tensor, like: Tensor, validate_args: bool) -> Tensor:
    check_tensor(name, value)
    if value.shape != like.shape:
        raise ValueError(
            f"{name} must have the shape of {POLICY_CHOSEN} {tuple(like.shape)}, "
            f"got {tuple(value.shape)}"
        )
    if validate_args and value.numel() and not bool((value > 0).all()):
        raise ValueError(f"{name} must hold positive token counts, got {value.tolist()}")
    return value.to(like.dtype)


def prepare_preference(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor | None,
    reference_rejected_logps: Tensor | None,
    *,
    reference_free: bool = False,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    need_lengths: str | None = None,
    validate_args: bool = True,
) -> PreferenceBatch:
    """Check shapes/dtypes, upcast half precision, detach the references (zeros if reference-free).

    `need_lengths` names the option that requires `chosen_lengths`/`rejected_lengths`
    (for the error message), or `None` when they are optional.
    """
    pc = _check_vector(POLICY_CHOSEN, policy_chosen_logps, None, "")
    pr = _check_vector(POLICY_REJECTED, policy_rejected_logps, pc, POLICY_CHOSEN)
    dtype = torch.promote_types(upcast(pc).dtype, upcast(pr).dtype)
    pc, pr = pc.to(dtype), pr.to(dtype)
    refs = []
    for name, ref in (
        (REFERENCE_CHOSEN, reference_chosen_logps),
        (REFERENCE_REJECTED, reference_rejected_logps),
    ):
        if ref is None:
            if not reference_free:
                raise ValueError(f"{name} is required unless reference_free=True, got None")
            refs.append(torch.zeros_like(pc))
            continue
        _check_vector(name, ref, pc, POLICY_CHOSEN)
        # The reference model is a constant of the objective: never back-propagate into it.
        refs.append(torch.zeros_like(pc) if reference_free else ref.detach().to(dtype))
    lengths: list[Tensor | None] = []
    for name, value in (("chosen_lengths", chosen_lengths), ("rejected_lengths", rejected_lengths)):
        if value is None:
            if need_lengths is not None:
                raise ValueError(f"{name} is required with {need_lengths}, got None")
            lengths.append(None)
        else:
            lengths.append(_check_lengths(name, value, pc, validate_args))
    return PreferenceBatch(pc, pr, refs[0], refs[1], lengths[0], lengths[1])
