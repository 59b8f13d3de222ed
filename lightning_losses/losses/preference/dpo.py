r"""DPO and its sigmoid-family variants: conservative (label-smoothed), robust, SFT-regularised.

All take per-sequence log-probabilities summed over the response tokens, of the policy and of a
frozen reference, for the chosen ($y_w$) and rejected ($y_l$) response of each pair, and build
the log-ratio margin

$$
h = \big(\log\pi_\theta(y_w) - \log\pi_{ref}(y_w)\big)
    - \big(\log\pi_\theta(y_l) - \log\pi_{ref}(y_l)\big).
$$

Papers:

- DPO: *Direct Preference Optimization: Your Language Model is Secretly a Reward Model*,
  Rafailov et al., NeurIPS 2023 (arXiv:2305.18290).
- cDPO: *A note on DPO with noisy preferences & relationship to IPO*, Mitchell, 2023
  (https://ericmitchell.ai/cdpo.pdf).
- rDPO: *Provably Robust DPO: Aligning Language Models with Noisy Feedback*, Chowdhury et al.,
  ICML 2024 (arXiv:2403.00409).
- RPO: *Provably Mitigating Overoptimization in RLHF: Your SFT Loss is Implicitly an Adversarial
  Regularizer*, Liu et al., NeurIPS 2024 (arXiv:2405.16436).

Every formula is checked against TRL's `DPOTrainer` (`trl/trainer/dpo_trainer.py`, `loss_type`
`"sigmoid"`, `"robust"`, `"sft"`) in `tests/losses/test_preference.py`.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from lightning_losses.losses._reduction import reduce_loss
from lightning_losses.losses.base import InputKind, Loss
from lightning_losses.losses.preference._inputs import prepare_preference
from lightning_losses.registry import register_loss
from lightning_losses.validation import check_bool, check_choice, check_number, check_reduction

__all__ = [
    "ConservativeDPOLoss",
    "DPOLoss",
    "RPOLoss",
    "RobustDPOLoss",
    "conservative_dpo_loss",
    "dpo_loss",
    "implicit_rewards",
    "robust_dpo_loss",
    "rpo_loss",
]

_NLL_NORMALIZE = ("token_mean", "sum")


def _check_beta(beta: Any) -> float:
    return check_number("beta", beta, low=0.0, low_inclusive=False)


def _check_dpo_args(*, beta: Any, reference_free: Any) -> dict[str, Any]:
    # The one validator of dpo_loss's hyperparameters: the functional and the class use it.
    return {
        "beta": _check_beta(beta),
        "reference_free": check_bool("reference_free", reference_free),
    }


def _check_cdpo_args(*, beta: Any, label_smoothing: Any) -> dict[str, Any]:
    return {
        "beta": _check_beta(beta),
        "label_smoothing": check_number("label_smoothing", label_smoothing, low=0.0, high=0.5),
    }


def _check_rdpo_args(*, beta: Any, epsilon: Any) -> dict[str, Any]:
    # ε < 1/2: at 1/2 the flipped and clean terms cancel and the 1/(1 − 2ε) correction diverges.
    eps = check_number("epsilon", epsilon, low=0.0, high=0.5, high_inclusive=False)
    return {"beta": _check_beta(beta), "epsilon": eps}


def _check_rpo_args(*, beta: Any, eta: Any, nll_normalize: Any) -> dict[str, Any]:
    return {
        "beta": _check_beta(beta),
        "eta": check_number("eta", eta, low=0.0),
        "nll_normalize": check_choice("nll_normalize", nll_normalize, _NLL_NORMALIZE),
    }


def _smoothed_sigmoid_terms(z: Tensor) -> tuple[Tensor, Tensor]:
    # −log σ(z) and −log σ(−z) as softplus: finite for any finite z (|z| up to 1e4 and beyond).
    return F.softplus(-z), F.softplus(z)


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor | None,
    reference_rejected_logps: Tensor | None,
    *,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    beta: float = 0.1,
    reference_free: bool = False,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Direct preference optimisation loss, one value per preference pair.

    $$
    \ell = -\log\sigma(\beta h), \qquad
    h = \log\frac{\pi_\theta(y_w)}{\pi_{ref}(y_w)} - \log\frac{\pi_\theta(y_l)}{\pi_{ref}(y_l)}
    $$

    With `reference_free=True` the reference is the uniform "policy" ($\log\pi_{ref} = 0$) and
    the reference arguments may be `None`. The implicit rewards $\beta(\log\pi_\theta -
    \log\pi_{ref})$ of each response are given by
    [implicit_rewards][lightning_losses.functional.implicit_rewards]. The reference log-probs are
    constants: they are detached. Same value as TRL `DPOConfig(loss_type="sigmoid", beta=β)`.

    Paper: *Direct Preference Optimization: Your Language Model is Secretly a Reward Model*,
    Rafailov et al., NeurIPS 2023 (arXiv:2305.18290), Eq. 7.

    Args:
        policy_chosen_logps: $\log\pi_\theta(y_w \mid x)$ summed over response tokens `[N]`.
        policy_rejected_logps: $\log\pi_\theta(y_l \mid x)$ `[N]`.
        reference_chosen_logps: $\log\pi_{ref}(y_w \mid x)$ `[N]` (or `None` if reference-free).
        reference_rejected_logps: $\log\pi_{ref}(y_l \mid x)$ `[N]` (or `None`).
        chosen_lengths: accepted for the family's common signature (unused here).
        rejected_lengths: accepted for the family's common signature (unused here).
        beta: $\beta > 0$, the strength of the implicit KL regularisation.
        reference_free: ignore the reference (treat its log-probs as 0).
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N]`, one loss per pair).
        validate_args: check that given lengths are positive (a host sync).

    Returns:
        The reduced loss, or `[N]` with `reduction="none"`.

    Raises:
        TypeError: non-floating log-probs.
        ValueError: shapes that differ, a missing reference without `reference_free`, $\beta \le 0$.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import dpo_loss
        >>> pc, pr = torch.tensor([-5.0, -8.0]), torch.tensor([-9.0, -6.0])
        >>> rc, rr = torch.tensor([-7.0, -7.0]), torch.tensor([-7.0, -7.0])
        >>> dpo_loss(pc, pr, rc, rr, beta=0.5, reduction="none")
        tensor([0.1269, 1.3133])
    """
    check_reduction(reduction)
    hp = _check_dpo_args(beta=beta, reference_free=reference_free)
    batch = prepare_preference(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        reference_free=hp["reference_free"],
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
        validate_args=validate_args,
    )
    clean, _ = _smoothed_sigmoid_terms(hp["beta"] * batch.margin())
    return reduce_loss(clean, reduction)


def implicit_rewards(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor | None,
    reference_rejected_logps: Tensor | None,
    *,
    beta: float = 0.1,
) -> tuple[Tensor, Tensor]:
    r"""DPO's implicit rewards $r = \beta(\log\pi_\theta(y) - \log\pi_{ref}(y))$, both responses.

    The diagnostics TRL logs as `rewards/chosen`, `rewards/rejected`; their difference is the
    reward margin $\beta h$ and `(chosen > rejected)` the reward accuracy. Rafailov et al.,
    arXiv:2305.18290, Section 5.

    Args:
        policy_chosen_logps: `[N]`.
        policy_rejected_logps: `[N]`.
        reference_chosen_logps: `[N]` (or `None`: reference-free, log-probs 0).
        reference_rejected_logps: `[N]` (or `None`).
        beta: $\beta > 0$.

    Returns:
        `(chosen_rewards, rejected_rewards)`, each `[N]`, detached.

    Raises:
        TypeError: non-floating log-probs.
        ValueError: mismatched shapes, $\beta \le 0$.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import implicit_rewards
        >>> implicit_rewards(torch.tensor([-5.0]), torch.tensor([-9.0]), torch.tensor([-7.0]),
        ...                  torch.tensor([-7.0]), beta=0.5)
        (tensor([1.]), tensor([-1.]))
    """
    beta = _check_beta(beta)
    batch = prepare_preference(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        reference_free=reference_chosen_logps is None and reference_rejected_logps is None,
    )
    return (beta * batch.chosen_logratio()).detach(), (beta * batch.rejected_logratio()).detach()


@register_loss("dpo")
class DPOLoss(Loss):
    r"""Direct preference optimisation: $-\log\sigma(\beta h)$ per preference pair.

    See [dpo_loss][lightning_losses.functional.dpo_loss] for the formula (arXiv:2305.18290).
    `forward(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
    reference_rejected_logps, *, chosen_lengths=None, rejected_lengths=None)`; log-probs
    summed over response tokens come from
    [sequence_log_probs][lightning_losses.functional.sequence_log_probs].

    Args:
        beta: $\beta > 0$ (TRL default 0.1).
        reference_free: ignore the reference model.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - every log-prob input: `[N]` (one preference pair per row).
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> import torch
        >>> from lightning_losses.losses import DPOLoss
        >>> lp = [torch.tensor([v]) for v in (-5.0, -9.0, -7.0, -7.0)]
        >>> DPOLoss(beta=0.5)(*lp)
        tensor(0.1269)
        >>> DPOLoss()
        DPOLoss(beta=0.1, reference_free=False, reduction='mean')
    """

    functional = staticmethod(dpo_loss)
    input_kind = InputKind.PREFERENCE
    target_arg = None

    def __init__(
        self,
        beta: float = 0.1,
        reference_free: bool = False,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_dpo_args(beta=beta, reference_free=reference_free),
        )

    def forward(
        self,
        policy_chosen_logps: Tensor,
        policy_rejected_logps: Tensor,
        reference_chosen_logps: Tensor | None,
        reference_rejected_logps: Tensor | None,
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


def conservative_dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    beta: float = 0.1,
    label_smoothing: float = 0.1,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Conservative DPO (cDPO): DPO with label smoothing $\varepsilon$.

    $$
    \ell = -(1-\varepsilon)\log\sigma(\beta h) - \varepsilon\log\sigma(-\beta h)
    $$

    The binary cross-entropy of $\sigma(\beta h)$ against the soft label $1 - \varepsilon$ (each
    preference assumed flipped with probability $\varepsilon$). $\varepsilon = 0$ is DPO. Same
    value as TRL `loss_type="sigmoid"` with `label_smoothing=ε` (TRL ≤ 0.29; see the test);
    TRL's `label_smoothing` defaults to 0 (plain DPO), and `label_smoothing=0.1` there
    reproduces this loss's default.
    Its minimiser is a finite margin, $\beta h^* = \log\frac{1-\varepsilon}{\varepsilon}$, unlike
    DPO's; it is a biased estimate of the clean DPO loss (Chowdhury et al., arXiv:2403.00409).

    Paper: Mitchell, *A note on DPO with noisy preferences & relationship to IPO* (2023,
    https://ericmitchell.ai/cdpo.pdf), on DPO (arXiv:2305.18290).

    Args:
        policy_chosen_logps: `[N]`.
        policy_rejected_logps: `[N]`.
        reference_chosen_logps: `[N]`.
        reference_rejected_logps: `[N]`.
        chosen_lengths: accepted for the family's common signature (unused here).
        rejected_lengths: accepted for the family's common signature (unused here).
        beta: $\beta > 0$.
        label_smoothing: $\varepsilon \in [0, 0.5]$.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N]`).
        validate_args: check that given lengths are positive (a host sync).

    Returns:
        The reduced loss, or `[N]` with `reduction="none"`.

    Raises:
        TypeError: non-floating log-probs.
        ValueError: mismatched shapes, $\beta \le 0$, $\varepsilon \notin [0, 0.5]$.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import conservative_dpo_loss
        >>> lp = [torch.tensor([v]) for v in (-5.0, -9.0, -7.0, -7.0)]
        >>> conservative_dpo_loss(*lp, beta=0.5, label_smoothing=0.1)
        tensor(0.3269)
    """
    check_reduction(reduction)
    hp = _check_cdpo_args(beta=beta, label_smoothing=label_smoothing)
    batch = prepare_preference(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
        validate_args=validate_args,
    )
    eps = hp["label_smoothing"]
    clean, flipped = _smoothed_sigmoid_terms(hp["beta"] * batch.margin())
    return reduce_loss((1 - eps) * clean + eps * flipped, reduction)


@register_loss("conservative_dpo", aliases=("cdpo",))
class ConservativeDPOLoss(Loss):
    r"""Conservative DPO: $-(1-\varepsilon)\log\sigma(\beta h) - \varepsilon\log\sigma(-\beta h)$.

    See [conservative_dpo_loss][lightning_losses.functional.conservative_dpo_loss]
    (cDPO note; DPO arXiv:2305.18290).

    Args:
        beta: $\beta > 0$.
        label_smoothing: $\varepsilon \in [0, 0.5]$ (default 0.1).
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - every log-prob input: `[N]`.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> from lightning_losses.losses import ConservativeDPOLoss
        >>> ConservativeDPOLoss(label_smoothing=0.2)
        ConservativeDPOLoss(beta=0.1, label_smoothing=0.2, reduction='mean')
    """

    functional = staticmethod(conservative_dpo_loss)
    input_kind = InputKind.PREFERENCE
    target_arg = None

    def __init__(
        self,
        beta: float = 0.1,
        label_smoothing: float = 0.1,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_cdpo_args(beta=beta, label_smoothing=label_smoothing),
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


def robust_dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    beta: float = 0.1,
    epsilon: float = 0.1,
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Robust DPO (rDPO): the unbiased DPO loss under preference flips of known rate $\varepsilon$.

    $$
    \ell = \frac{(1-\varepsilon)\,\big(-\log\sigma(\beta h)\big)
        - \varepsilon\,\big(-\log\sigma(-\beta h)\big)}{1 - 2\varepsilon}
    $$

    If each observed preference is flipped independently with probability $\varepsilon < 1/2$,
    the expectation of $\ell$ over the flips equals the clean DPO loss
    (Chowdhury et al., Eq. 9 / Lemma 3.1). $\varepsilon = 0$ is DPO. A single pair's loss can be
    negative. Same value as TRL `loss_type="robust"` with `label_smoothing=ε`; TRL's
    `label_smoothing` defaults to 0 (plain DPO), and `label_smoothing=0.1` there reproduces this
    loss's default `epsilon=0.1` (both tested end to end).

    Paper: *Provably Robust DPO: Aligning Language Models with Noisy Feedback*, Chowdhury et al.,
    ICML 2024 (arXiv:2403.00409).

    Args:
        policy_chosen_logps: `[N]`.
        policy_rejected_logps: `[N]`.
        reference_chosen_logps: `[N]`.
        reference_rejected_logps: `[N]`.
        chosen_lengths: accepted for the family's common signature (unused here).
        rejected_lengths: accepted for the family's common signature (unused here).
        beta: $\beta > 0$.
        epsilon: the flip rate $\varepsilon \in [0, 0.5)$.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N]`).
        validate_args: check that given lengths are positive (a host sync).

    Returns:
        The reduced loss, or `[N]` with `reduction="none"`.

    Raises:
        TypeError: non-floating log-probs.
        ValueError: mismatched shapes, $\beta \le 0$, $\varepsilon \notin [0, 0.5)$.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import robust_dpo_loss
        >>> lp = [torch.tensor([v]) for v in (-5.0, -9.0, -7.0, -7.0)]
        >>> robust_dpo_loss(*lp, beta=0.5, epsilon=0.1)
        tensor(-0.1231)
    """
    check_reduction(reduction)
    hp = _check_rdpo_args(beta=beta, epsilon=epsilon)
    batch = prepare_preference(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
        validate_args=validate_args,
    )
    eps = hp["epsilon"]
    clean, flipped = _smoothed_sigmoid_terms(hp["beta"] * batch.margin())
    return reduce_loss(((1 - eps) * clean - eps * flipped) / (1 - 2 * eps), reduction)


@register_loss("robust_dpo", aliases=("rdpo",))
class RobustDPOLoss(Loss):
    r"""Robust DPO: the DPO loss de-biased for preference flips of known rate $\varepsilon$.

    See [robust_dpo_loss][lightning_losses.functional.robust_dpo_loss] (arXiv:2403.00409).

    Args:
        beta: $\beta > 0$.
        epsilon: flip rate $\varepsilon \in [0, 0.5)$ (default 0.1).
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - every log-prob input: `[N]`.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> from lightning_losses.losses import RobustDPOLoss
        >>> RobustDPOLoss(epsilon=0.2)
        RobustDPOLoss(beta=0.1, epsilon=0.2, reduction='mean')
    """

    functional = staticmethod(robust_dpo_loss)
    input_kind = InputKind.PREFERENCE
    target_arg = None

    def __init__(
        self,
        beta: float = 0.1,
        epsilon: float = 0.1,
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_rdpo_args(beta=beta, epsilon=epsilon),
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


def rpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    beta: float = 0.1,
    eta: float = 1.0,
    nll_normalize: str = "token_mean",
    reduction: str = "mean",
    validate_args: bool = True,
) -> Tensor:
    r"""Regularised preference optimisation (RPO): DPO plus an SFT (NLL) term on the chosen.

    $$
    \ell = -\log\sigma(\beta h) + \eta\,\mathrm{NLL}(y_w), \qquad
    \mathrm{NLL}(y_w) = -\frac{\log\pi_\theta(y_w \mid x)}{|y_w|}\ (\texttt{"token\_mean"})
    \ \text{or}\ -\log\pi_\theta(y_w \mid x)\ (\texttt{"sum"})
    $$

    The SFT term imitates the chosen responses (the paper's baseline distribution) and keeps
    their likelihood from collapsing. $\eta = 0$ is DPO.

    Checked against TRL's implementation. TRL's `rpo_alpha` (`trl/trainer/dpo_trainer.py`,
    ≤ 0.28; since 0.29 `loss_type=["sigmoid", "sft"]`, `loss_weights=[1, η]`) adds $\eta$ times
    the token-mean cross-entropy of the chosen responses, with no $\beta$ factor, and TRL's
    paper index maps this paper's $\eta$ (Appendix E.1: $\eta = 0.005$, $\beta = 0.01$) to that
    weight directly. This loss does the same; TRL has the term off by default, and
    `loss_weights=[1.0, 1.0]` there reproduces this loss's default `eta=1.0` (tested end to
    end). Two documented differences: TRL's token mean is over all chosen tokens of the batch,
    this one is per pair ($\mathrm{NLL}_i / |y_{w,i}|$, needed for `reduction="none"`; equal when
    the lengths are equal); and the paper's Algorithm 2 may scale the term by $\beta$
    ($\eta\beta\,\mathrm{NLL}$), which is not checked here: for that form pass `eta=η·β`.

    Paper: *Provably Mitigating Overoptimization in RLHF: Your SFT Loss is Implicitly an
    Adversarial Regularizer*, Liu et al., NeurIPS 2024 (arXiv:2405.16436).

    Args:
        policy_chosen_logps: `[N]` (its negative is the chosen response's NLL).
        policy_rejected_logps: `[N]`.
        reference_chosen_logps: `[N]`.
        reference_rejected_logps: `[N]`.
        chosen_lengths: `[N]` response token counts (required with `"token_mean"`).
        rejected_lengths: accepted for the family's common signature (unused here).
        beta: $\beta > 0$.
        eta: weight $\eta \ge 0$ of the NLL term.
        nll_normalize: `"token_mean"` (TRL's) or `"sum"`.
        reduction: `"mean" | "sum" | "none"` (`"none"` returns `[N]`).
        validate_args: check that the lengths are positive (a host sync).

    Returns:
        The reduced loss, or `[N]` with `reduction="none"`.

    Raises:
        TypeError: non-floating log-probs.
        ValueError: mismatched shapes, $\beta \le 0$, $\eta < 0$, an unknown `nll_normalize`,
            `chosen_lengths` missing with `"token_mean"`.

    Example:
        >>> import torch
        >>> from lightning_losses.functional import rpo_loss
        >>> lp = [torch.tensor([v]) for v in (-5.0, -9.0, -7.0, -7.0)]
        >>> rpo_loss(*lp, chosen_lengths=torch.tensor([5]), beta=0.5, eta=1.0)
        tensor(1.1269)
    """
    check_reduction(reduction)
    hp = _check_rpo_args(beta=beta, eta=eta, nll_normalize=nll_normalize)
    token_mean = hp["nll_normalize"] == "token_mean"
    batch = prepare_preference(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
        validate_args=validate_args,
    )
    lengths = batch.chosen_lengths
    if token_mean and lengths is None:
        raise ValueError('chosen_lengths is required with nll_normalize="token_mean", got None')
    clean, _ = _smoothed_sigmoid_terms(hp["beta"] * batch.margin())
    nll = -batch.policy_chosen
    if lengths is not None and token_mean:
        nll = nll / lengths
    return reduce_loss(clean + hp["eta"] * nll, reduction)


@register_loss("rpo")
class RPOLoss(Loss):
    r"""RPO: DPO plus $\eta$ times the chosen responses' (token-mean) negative log-likelihood.

    See [rpo_loss][lightning_losses.functional.rpo_loss] for the formula and the verification
    notes (arXiv:2405.16436; TRL `rpo_alpha`).

    Args:
        beta: $\beta > 0$.
        eta: NLL weight $\eta \ge 0$ (default 1.0, TRL's recommended `rpo_alpha`).
        nll_normalize: `"token_mean"` or `"sum"`.
        reduction: `"mean" | "sum" | "none"`.
        validate_args: run the host-syncing data checks on every call.

    Shape:
        - every log-prob input and `chosen_lengths`: `[N]`.
        - output: scalar, or `[N]` with `reduction="none"`.

    Example:
        >>> from lightning_losses.losses import RPOLoss
        >>> RPOLoss(eta=0.5)
        RPOLoss(beta=0.1, eta=0.5, nll_normalize='token_mean', reduction='mean')
    """

    functional = staticmethod(rpo_loss)
    input_kind = InputKind.PREFERENCE
    target_arg = None

    def __init__(
        self,
        beta: float = 0.1,
        eta: float = 1.0,
        nll_normalize: str = "token_mean",
        reduction: str = "mean",
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            reduction=reduction,
            validate_args=validate_args,
            **_check_rpo_args(beta=beta, eta=eta, nll_normalize=nll_normalize),
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
