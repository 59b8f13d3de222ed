r"""ELLE: local linearity of the loss against catastrophic overfitting (guide: procedures).

From *Efficient Local Linearity Regularization to Overcome Catastrophic Overfitting* (Abad
Rocamora, Liu, Chrysos, Olmos, Cevher; ICLR 2024, arXiv:2401.11618), checked against the
authors' code (`LIONS-EPFL/ELLE`, `core/utils/train.py`, `parser.py`, `scripts/`). Single-step
adversarial training (FGSM) can suddenly lose all robustness to multi-step attacks
(*catastrophic overfitting*), which goes with the loss becoming highly curved in the input. ELLE
penalises the loss's deviation from linearity on random segments inside the $\ell_\infty$ ball:
for each sample draw $x_a, x_b \sim U(x + [-\epsilon, \epsilon]^d)$ and $\alpha \sim U(0, 1)$,
put $x_c = (1 - \alpha)\,x_a + \alpha\,x_b$, and

$$
R = \frac1B \sum_{i=1}^B \Big(L(x_{c,i}, y_i) - (1 - \alpha_i)\,L(x_{a,i}, y_i)
    - \alpha_i\,L(x_{b,i}, y_i)\Big)^2,
\qquad \mathcal L = L_{adv} + \lambda R .
$$

A loss that is linear (affine) in $x$ on the ball gives $R = 0$. The three points of a batch go
through the model in **one** forward of $3B$ samples, as in the authors' code; the points are
not clipped to the valid input range (the authors' code does not clip them either).

**Weight $\lambda$** (the authors' CIFAR-10 scripts, PreAct ResNet-18, FGSM at radius
$\epsilon$): ELLE uses a constant $\lambda$ of 1000 for $\epsilon \le 8/255$, 5000 for
$10/255 \le \epsilon \le 20/255$ and 10000 for $\epsilon \ge 22/255$. **ELLE-A**
([ElleAdaptiveWeight][lightning_losses.nn.ElleAdaptiveWeight]) starts at $\lambda = 0$ and
switches to $\lambda_{max} = 4000$ when the batch's $R$ exceeds the mean of all previous values
by `sensitivity = 2` standard deviations; otherwise $\lambda$ decays by `decay = 0.99` per step.

**Batch normalisation:** the $3B$ forward runs in the model's current mode; in training mode it
updates the running statistics as the authors' code does. `freeze_batchnorm=True` keeps them
(see [frozen_batchnorm_stats][lightning_losses.nn.frozen_batchnorm_stats]).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_losses.nn.vat import frozen_batchnorm_stats
from lightning_losses.validation import check_bool, check_choice, check_number, check_tensor

__all__ = ["ElleAdaptiveWeight", "elle_loss", "elle_points"]


def elle_points(
    x: Tensor, eps: float, *, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""The random triplet of ELLE: $x_a, x_b$ uniform in the $\ell_\infty$ ball, $x_c$ between.

    The noise is drawn on the CPU (so a `generator` reproduces it on any device) in the
    authors' order: first the `[2B, *]` uniform offsets of $x_a$ and $x_b$, then $\alpha$ `[B]`.

    Args:
        x: `[B, *]` clean inputs (detached here).
        eps: the ball's radius $\epsilon \ge 0$ (per coordinate, input units).
        generator: for the noise.

    Returns:
        `(x_a, x_b, x_c, alpha)`: three `[B, *]` tensors with $x_c = (1-\alpha) x_a + \alpha x_b$
        and `alpha` `[B]`, all detached.

    Raises:
        TypeError: `x` is not a floating tensor.
        ValueError: `x` is not batched or `eps` is negative.

    Example:
        >>> import torch
        >>> from lightning_losses.nn import elle_points
        >>> x = torch.zeros(4, 3)
        >>> xa, xb, xc, alpha = elle_points(x, 0.1, generator=torch.Generator().manual_seed(0))
        >>> bool(xa.abs().max() <= 0.1), xc.shape, alpha.shape
        (True, torch.Size([4, 3]), torch.Size([4]))
    """
    check_tensor("x", x, floating=True)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch [B, *], got shape {tuple(x.shape)}")
    eps = check_number("eps", eps, low=0.0)
    x = x.detach()
    b = x.shape[0]
    shape = (2 * b, *x.shape[1:])
    u = torch.rand(shape, generator=generator, dtype=x.dtype).to(x.device)
    alpha = torch.rand(b, generator=generator, dtype=x.dtype).to(x.device)
    x_ab = x.repeat(2, *([1] * (x.ndim - 1))) + eps * (2.0 * u - 1.0)
    x_a, x_b = x_ab[:b], x_ab[b:]
    a = alpha.reshape(b, *([1] * (x.ndim - 1)))
    x_c = (1.0 - a) * x_a + a * x_b
    return x_a, x_b, x_c, alpha


def _per_sample_ce(logits: Tensor, target: Tensor) -> Tensor:
    return F.cross_entropy(logits, target, reduction="none")


def elle_loss(
    model: Callable[[Tensor], Tensor],
    x: Tensor,
    target: Tensor,
    *,
    eps: float,
    criterion: Callable[[Tensor, Tensor], Tensor] | None = None,
    reduction: str = "mean",
    freeze_batchnorm: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""ELLE's local-linearity error $R$ of the loss on random segments in the $\ell_\infty$ ball.

    Call it inside `training_step` next to the adversarial loss and add it with a weight:
    `loss = ce(model(x_adv), y) + lam * elle_loss(model, x, y, eps=8 / 255)`, with `lam`
    constant (ELLE) or from [ElleAdaptiveWeight][lightning_losses.nn.ElleAdaptiveWeight]
    (ELLE-A). The formula and the authors' $\lambda$ are in the module docstring.

    Args:
        model: maps `[3B, *]` inputs to outputs the criterion takes (a module or its forward).
        x: `[B, *]` clean inputs.
        target: `[B, *]` targets of `x` (class indices for the default criterion); repeated
            for the three points.
        eps: the $\ell_\infty$ radius $\epsilon \ge 0$ (the adversarial budget, input units).
        criterion: `(outputs [3B, *], targets [3B, *]) -> [3B]` per-sample losses; default
            per-sample cross-entropy (the authors').
        reduction: `"mean"` (the authors' MSE), `"sum"` or `"none"` (`[B]` squared errors).
        freeze_batchnorm: keep the BatchNorm running statistics during the $3B$ forward.
        generator: for the triplet (see [elle_points][lightning_losses.nn.elle_points]).

    Returns:
        $R \ge 0$ (a scalar, or `[B]`), differentiable with respect to the model's parameters.

    Raises:
        TypeError: `model`/`criterion` not callable, `x` not floating, `target` not a tensor.
        ValueError: bad shapes, `eps < 0`, or a criterion that does not return `[3B]`.

    Example:
        >>> import torch
        >>> from lightning_losses.nn import elle_loss
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
        >>> x, y = torch.randn(5, 4), torch.randint(0, 3, (5,))
        >>> bool(elle_loss(net, x, y, eps=0.5) >= 0)
        True
        >>> bool(elle_loss(net, x, y, eps=0.0) < 1e-10)  # no segment: zero up to round-off
        True
    """
    if not callable(model):
        raise TypeError(f"model must be callable, got {type(model).__name__}")
    if criterion is not None and not callable(criterion):
        raise TypeError(f"criterion must be callable or None, got {type(criterion).__name__}")
    reduction = check_choice("reduction", reduction, ("mean", "sum", "none"))
    freeze_batchnorm = check_bool("freeze_batchnorm", freeze_batchnorm)
    check_tensor("target", target)
    x_a, x_b, x_c, alpha = elle_points(x, eps, generator=generator)
    b = x.shape[0]
    if target.ndim < 1 or target.shape[0] != b:
        raise ValueError(
            f"target must be batched like x (B = {b}), got shape {tuple(target.shape)}"
        )
    crit = criterion if criterion is not None else _per_sample_ce
    context = frozen_batchnorm_stats(model) if freeze_batchnorm else nullcontext()
    with context:
        out = model(torch.cat((x_a, x_b, x_c), dim=0))
    losses = crit(out, target.repeat(3, *([1] * (target.ndim - 1))))
    if not isinstance(losses, Tensor) or losses.shape != (3 * b,):
        shape = tuple(losses.shape) if isinstance(losses, Tensor) else type(losses).__name__
        raise ValueError(f"criterion must return per-sample losses [3B] = [{3 * b}], got {shape}")
    alpha = alpha.to(losses.dtype)
    l_a, l_b, l_c = losses[:b], losses[b : 2 * b], losses[2 * b :]
    sq = (l_c - (1.0 - alpha) * l_a - alpha * l_b).pow(2)
    if reduction == "none":
        return sq
    return sq.sum() if reduction == "sum" else sq.mean()


class ElleAdaptiveWeight(nn.Module):
    r"""ELLE-A's weight $\lambda$: off until the linearity error spikes, then on and decaying.

    The authors' rule (`lambda_schedule="onoff"`): $\lambda_0 = 0$; after each step with error
    $R_t$, if at least three earlier errors exist and $R_t > \mu + s\,\sigma$ (mean and
    population standard deviation of **all** earlier errors), $\lambda \leftarrow
    \lambda_{max}$, else $\lambda \leftarrow \text{decay}\cdot\lambda$; then $R_t$ joins the
    history. So the value used at step $t$ is the one read **before** `update(R_t)`. The
    history is kept as a running mean and variance (Welford), in buffers, so it is saved in a
    checkpoint with the module that owns it.

    Args:
        lambda_max: the weight when switched on (the authors' 4000 on CIFAR-10).
        decay: the per-step decay factor in $(0, 1]$ (0.99).
        sensitivity: $s$, standard deviations above the mean that switch it on (2).

    Example:
        >>> from lightning_losses.nn import ElleAdaptiveWeight
        >>> w = ElleAdaptiveWeight(lambda_max=10.0, decay=0.5)
        >>> [w.update(r) for r in (1.0, 1.1, 0.9, 1.0, 5.0, 1.0)]
        [0.0, 0.0, 0.0, 0.0, 10.0, 5.0]
        >>> w.value
        5.0
    """

    weight: Tensor
    count: Tensor
    mean: Tensor
    m2: Tensor

    def __init__(
        self, lambda_max: float = 4000.0, decay: float = 0.99, sensitivity: float = 2.0
    ) -> None:
        super().__init__()
        self.lambda_max = check_number("lambda_max", lambda_max, low=0.0)
        self.decay = check_number("decay", decay, low=0.0, high=1.0, low_inclusive=False)
        self.sensitivity = check_number("sensitivity", sensitivity)
        # float64 on purpose: the history may hold thousands of steps.
        self.register_buffer("weight", torch.zeros((), dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))
        self.register_buffer("mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("m2", torch.zeros((), dtype=torch.float64))

    @property
    def value(self) -> float:
        """The current $\\lambda$ (for this step's loss)."""
        return float(self.weight)

    def update(self, lin_err: float | Tensor) -> float:
        """Record this step's linearity error $R_t$ and return the $\\lambda$ of the next step.

        Args:
            lin_err: the step's $R$ (a float or a one-element tensor; read with a host sync).

        Returns:
            The new $\\lambda$.

        Raises:
            TypeError: `lin_err` is not a number or a one-element tensor.
            ValueError: `lin_err` is not finite.
        """
        if isinstance(lin_err, Tensor):
            if lin_err.numel() != 1:
                raise TypeError(f"lin_err must be a one-element tensor, got {lin_err.shape}")
            lin_err = float(lin_err.detach())
        err = check_number("lin_err", lin_err)
        n = int(self.count)
        mean, m2 = float(self.mean), float(self.m2)
        if n > 2 and err > mean + self.sensitivity * math.sqrt(m2 / n):
            self.weight.fill_(self.lambda_max)
        else:
            self.weight.mul_(self.decay)
        # Welford's update of the history's mean and sum of squared deviations.
        n += 1
        delta = err - mean
        mean += delta / n
        m2 += delta * (err - mean)
        self.count.fill_(n)
        self.mean.fill_(mean)
        self.m2.fill_(m2)
        return self.value

    def extra_repr(self) -> str:
        return f"lambda_max={self.lambda_max}, decay={self.decay}, sensitivity={self.sensitivity}"
