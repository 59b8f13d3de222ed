r"""Identity preference optimisation (IPO) on per-token averaged log-probabilities.

*A General Theoretical Paradigm to Understand Learning from Human Preferences*, Azar et al.,
AISTATS 2024 (arXiv:2310.12036), Eq. 17. Averaging the log-probs over response tokens follows
TRL's `loss_type="ipo"` (`trl/trainer/dpo_trainer.py`), which its authors confirmed is the form
behind the paper's results.
"""

from __future__ import annotations

from typing import Any, cast

from torch import Tensor

from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.preference._inputs import prepare_preference
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_bool, check_number, check_reduction

__all__ = ["IPOLoss", "ipo_loss"]


def _check_ipo_args(*, beta: Any, average_log_probs: Any) -> dict[str, Any]:
    # The one validator of ipo_loss's hyperparameters: the functional and the class use it.
    return {
        "beta": check_number("beta", beta, low=0.0, low_inclusive=False),
        "average_log_probs": check_bool("average_log_probs", average_log_probs),
    }


def ipo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    beta: float = 0.1,
    average_log_probs: bool = True,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""IPO: squared regression of the (length-averaged) log-ratio margin onto $1/(2\beta)$.

    $$
    \ell = \Big(\bar h - \frac{1}{2\beta}\Big)^2, \qquad
    \bar h = \frac{\log\pi_\theta(y_w) - \log\pi_{ref}(y_w)}{|y_w|}
           - \frac{\log\pi_\theta(y_l) - \log\pi_{ref}(y_l)}{|y_l|}
    $$

    Unlike DPO's, the minimiser is a finite margin: $\bar h^* = 1/(2\beta)$, where loss and
    gradient are 0 ($\beta$ is the paper's $\tau$). With `average_log_probs=False` the summed
    log-probs are used ($|y| = 1$), Eq. 17 as printed. Same value as TRL `loss_type="ipo"`.

    Paper: *A General Theoretical Paradigm to Understand Learning from Human Preferences*,
    Azar et al., AISTATS 2024 (arXiv:2310.12036).

    Args:
        policy_chosen_logps: summed $\log\pi_\theta(y_w \mid x)$ `[N]`.
        policy_rejected_logps: `[N]`.
        reference_chosen_logps: `[N]`.
        reference_rejected_logps: `[N]`.
        chosen_lengths: `[N]` response token counts $|y_w|$ (required when averaging).
        rejected_lengths: `[N]` token counts $|y_l|$ (required when averaging).
        beta: $\beta > 0$ (the regularisation $\tau$).
        average_log_probs: divide each summed log-prob by its response length.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N]`).
        validate_args: check that the lengths are positive (a host sync).

    Returns:
        The reduced loss, or `[N]` with `reduction="none"`.

    Raises:
        TypeError: non-floating log-probs.
        ValueError: mismatched shapes, $\beta \le 0$, lengths missing when averaging.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import ipo_loss
        >>> lp = [torch.tensor([v]) for v in (-5.0, -9.0, -7.0, -7.0)]
        >>> n = torch.tensor([2]), torch.tensor([2])
        >>> ipo_loss(*lp, chosen_lengths=n[0], rejected_lengths=n[1], beta=0.25)  # h̄ = 2 = 1/(2β)
        tensor(0.)
    """
    check_reduction(reduction)
    hp = _check_ipo_args(beta=beta, average_log_probs=average_log_probs)
    batch = prepare_preference(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
        need_lengths="average_log_probs=True" if hp["average_log_probs"] else None,
        validate_args=validate_args,
    )
    chosen, rejected = batch.chosen_logratio(), batch.rejected_logratio()
    if hp["average_log_probs"]:  # the lengths are then required (checked above)
        lengths = cast(Tensor, batch.chosen_lengths), cast(Tensor, batch.rejected_lengths)
        chosen, rejected = chosen / lengths[0], rejected / lengths[1]
    return reduce_loss((chosen - rejected - 1 / (2 * hp["beta"])) ** 2, reduction)


@register_loss("ipo")
class IPOLoss(Loss):
    r"""IPO: $(\bar h - 1/(2\beta))^2$ on length-averaged log-ratios.

    See [ipo_loss][lightning_losses.functional.ipo_loss] (arXiv:2310.12036). Pass
    `chosen_lengths=` and `rejected_lengths=` (the token counts from
    [sequence_log_probs][lightning_losses.functional.sequence_log_probs]).

    Args:
        beta: $\beta > 0$ (default 0.1).
        average_log_probs: average the log-probs over response tokens (TRL's form).
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - every log-prob input and both lengths: `[N]`.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> from lightning_losses.losses import IPOLoss
        >>> IPOLoss()
        IPOLoss(beta=0.1, average_log_probs=True, reduction='mean')
    """

    functional = staticmethod(ipo_loss)
    input_kind = InputKind.PREFERENCE
    target_arg = None

    def __init__(
        self,
        beta: float = 0.1,
        average_log_probs: bool = True,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_ipo_args(beta=beta, average_log_probs=average_log_probs),
        )

    def forward(
        self,
        policy_chosen_logps: Tensor,
        policy_rejected_logps: Tensor,
        reference_chosen_logps: Tensor,
        reference_rejected_logps: Tensor,
        *,
        chosen_lengths: Tensor | None = None,
        rejected_lengths: Tensor | None = None,
    ) -> Tensor:
        """Loss per pair from `[N]` summed response log-probs; lengths `[N]` where used."""
        return self._call_functional(
            policy_chosen_logps,
            policy_rejected_logps,
            reference_chosen_logps,
            reference_rejected_logps,
            chosen_lengths=chosen_lengths,
            rejected_lengths=rejected_lengths,
        )
