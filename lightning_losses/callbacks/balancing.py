r"""Auxiliary-loss-free MoE load balancing (guide: `docs/guide/moe_balancing.md`).

From *Auxiliary-Loss-Free Load Balancing Strategy for Mixture-of-Experts* (Wang, Gao, Zhu,
Zhang, Dai; DeepSeek 2024, arXiv:2408.15664), used in DeepSeek-V3 (arXiv:2412.19437).

Each expert $i$ of each MoE layer has a bias $b_i$ that is added to its routing score for the
top-K *selection* only (see `lightning_losses.nn.moe`). After every optimizer step, with $c_i$ the
number of tokens routed to expert $i$ during that step (all micro-batches, all data-parallel
ranks):

$$
b_i \leftarrow b_i + u \cdot \operatorname{sign}(\bar c - c_i),\qquad
\mathrm{MaxVio} = \frac{\max_i c_i - \bar c}{\bar c}
$$

so overloaded experts become less likely to be chosen and underloaded ones more. No auxiliary
loss, hence no gradient that interferes with the language-modeling objective.

The functional cores are `balance_bias_update` and `max_violation`;
[LossFreeBalancing][lightning_losses.callbacks.LossFreeBalancing] is the thin callback. What it
needs from the module is the Protocol [MoEModel][lightning_losses.callbacks.balancing.MoEModel]:
every module that contains our routers (or `transformers` routers adapted with
`track_expert_load`) serves it without writing anything.

Distributed: the counts are all-reduced (SUM) over the world before the sign, so every rank
applies the identical update (under DDP the biases stay equal, so `broadcast_buffers` changes
nothing; under FSDP2 the buffers are replicated, not sharded, and get the same update). With
expert or tensor parallelism every rank still routes its own tokens, so a world all-reduce is
again the right sum.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor, nn
from typing_extensions import override

from lightning_losses.callbacks.base import BehaviourCallback
from lightning_losses.distributed import all_gather_no_grad, all_reduce_sum, get_rank
from lightning_losses.mixins.loss import Role
from lightning_losses.nn.moe import BalanceState, moe_balance_state
from lightning_losses.validation import check_bool, check_number, check_tensor

__all__ = ["LossFreeBalancing", "MoEModel", "balance_bias_update", "max_violation"]


@runtime_checkable
class MoEModel(Protocol):
    """What [LossFreeBalancing][lightning_losses.callbacks.LossFreeBalancing] needs: its routers.

    `moe_balance_state()` returns one `BalanceState(name, bias, load)` per MoE layer: the fp32
    selection bias the callback updates in place and the per-expert token counts it reads and
    zeroes. A module need not implement it when its routers are found by
    [moe_balance_state][lightning_losses.nn.moe.moe_balance_state] (our `TopKRouter` /
    `MoEFeedForward`, e.g. `CausalLM(model_type="llama_moe")`, or a `transformers` DeepSeek-V3
    model adapted with `track_expert_load`); implement it for routers of your own.

    Example:
        >>> from torch import nn
        >>> from lightning_losses.callbacks.balancing import MoEModel
        >>> from lightning_losses.nn import MoEFeedForward, moe_balance_state
        >>> class Model(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.ffn = MoEFeedForward(8, 16, 4)
        ...     def moe_balance_state(self):
        ...         return moe_balance_state(self)
        >>> isinstance(Model(), MoEModel), [s.name for s in Model().moe_balance_state()]
        (True, ['ffn.router'])
    """

    def moe_balance_state(self) -> list[BalanceState]:
        """One `BalanceState` per MoE layer, read afresh (device moves replace the buffers)."""
        ...


class _FoundRouters:
    # MoEModel for a module whose routers lightning_losses.nn.moe.moe_balance_state finds.
    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def moe_balance_state(self) -> list[BalanceState]:
        return moe_balance_state(self.module)


def _check_counts(counts: Any) -> Tensor:
    check_tensor("counts", counts)
    if counts.ndim not in (1, 2) or counts.shape[-1] < 1:
        raise ValueError(
            f"counts must be [N] or [L, N] (layers × experts), got shape {tuple(counts.shape)}"
        )
    return counts


def balance_bias_update(bias: Tensor, counts: Tensor, rate: float) -> Tensor:
    r"""One loss-free balancing step: $b + u \cdot \operatorname{sign}(\bar c - c)$.

    $\bar c$ is the mean over experts (the last dimension), so `[L, N]` inputs update $L$
    layers at once. Computed in float32 whatever the bias dtype (a 0.001 step must not vanish in
    bf16). An expert exactly at the mean keeps its bias.

    Args:
        bias: `[N]` or `[L, N]` current biases.
        counts: same shape, tokens routed to each expert in the step (any real dtype).
        rate: the update rate $u \ge 0$ (paper: 0.001).

    Returns:
        The new float32 biases (a new tensor; `bias` is not modified).

    Raises:
        TypeError: `counts`/`bias` not tensors, `rate` not a number.
        ValueError: a negative `rate` or mismatched shapes.

    Example:
        >>> balance_bias_update(torch.zeros(4), torch.tensor([5.0, 1.0, 3.0, 3.0]), 0.01)
        tensor([-0.0100,  0.0100,  0.0000,  0.0000])
    """
    rate = check_number("rate", rate, low=0.0)
    check_tensor("bias", bias, floating=True)
    counts = _check_counts(counts)
    if bias.shape != counts.shape:
        raise ValueError(
            f"counts must have the shape of bias: expected {tuple(bias.shape)}, "
            f"got {tuple(counts.shape)}"
        )
    c = counts.to(device=bias.device, dtype=torch.float64)
    err = c.mean(-1, keepdim=True) - c
    return bias.float() + rate * torch.sign(err).float()


def max_violation(counts: Tensor) -> Tensor:
    r"""Maximal load violation $(\max_i c_i - \bar c) / \bar c$ over the experts (last dim).

    0 for perfectly balanced loads, $N - 1$ when one expert takes every token (top-1). Layers
    (or any leading dims) are kept; no tokens at all gives 0.

    Args:
        counts: `[N]` or `[L, N]` token counts (any real dtype).

    Returns:
        Float32 scalar (`[N]` input) or `[L]`.

    Raises:
        TypeError / ValueError: not a tensor, or not 1-D/2-D.

    Example:
        >>> max_violation(torch.tensor([[4.0, 2.0, 0.0, 2.0], [2.0, 2.0, 2.0, 2.0]]))
        tensor([1., 0.])
    """
    c = _check_counts(counts).double()
    mean = c.mean(-1)
    return ((c.amax(-1) - mean) / mean.clamp_min(1e-12)).float()


class LossFreeBalancing(BehaviourCallback):
    """Loss-free MoE load balancing: update every router's selection bias once per step.

    Finds the routers through the module's `moe_balance_state()` when it implements
    [MoEModel][lightning_losses.callbacks.balancing.MoEModel], else through
    `lightning_losses.nn.moe.moe_balance_state` (our `TopKRouter`, or a `transformers`
    DeepSeek-V3 router adapted with `track_expert_load`), and fails at setup when there is none.
    Each optimizer step (in `on_before_optimizer_step`, i.e. once after all
    accumulated micro-batches): all-reduce(SUM) the per-layer counts, apply `balance_bias_update`
    to every layer's bias in place, compute `max_violation`, zero the counts. During validation it
    accumulates the counts of the whole validation loop and logs the global violation, without
    updating the biases (training counts pending at that moment are set aside and restored).

    Logged with `pl_module.log` (training values on steps where `global_step + 1` is a multiple
    of `trainer.log_every_n_steps`):

    - `moe/maxvio_batch`, `moe/maxvio_batch_max`: mean and max over layers of the step's MaxVio;
    - `moe/load_e{i}` (with `log_expert_load`): expert `i`'s load relative to the mean,
      averaged over layers (1 = balanced);
    - `moe/maxvio_global`, `moe/maxvio_global_max`: the same over the whole validation loop.

    The biases are module buffers (saved in the model's `state_dict`); the callback's state holds
    the pending (mid-accumulation) counts, the last violations and the configuration (`rate`,
    `update`; a resume with other values warns), so a resumed run equals an uninterrupted one.
    The biases must stay float32: the callback raises at train start if a
    bias was cast to a lower precision.

    Args:
        rate: the bias update rate $u$ (paper and DeepSeek-V3: 0.001; 0.01 for short toy runs).
        update: apply the updates (`False`: only measure, e.g. for the no-balancing baseline).
        log_expert_load: also log the per-expert relative loads.

    Example:
        >>> cb = LossFreeBalancing(rate=0.001)
        >>> cb.rate
        0.001
    """

    role = Role.LOAD_BALANCER
    requires = MoEModel
    requires_hint = (
        "or contain a supported MoE router: lightning_losses.nn.TopKRouter / MoEFeedForward "
        "(e.g. CausalLM(model_type='llama_moe')), or a transformers DeepSeek-V3 model adapted "
        "with lightning_losses.nn.track_expert_load(model)"
    )
    config_keys = ("rate", "update")

    def __init__(
        self, rate: float = 1e-3, update: bool = True, log_expert_load: bool = True
    ) -> None:
        super().__init__()
        self.rate = check_number("rate", rate, low=0.0)
        self.update = check_bool("update", update)
        self.log_expert_load = check_bool("log_expert_load", log_expert_load)
        self._source: MoEModel | None = None
        self._pending_restore: Tensor | None = None
        self._train_snapshot: list[Tensor] | None = None
        self.last_maxvio_batch: Tensor | None = None  # [L], for tests and inspection
        self.last_maxvio_global: Tensor | None = None

    # -- helpers -----------------------------------------------------------------------------
    def _states(self) -> list[BalanceState]:
        # Re-read each time: device/dtype moves replace the buffers.
        return [] if self._source is None else self._source.moe_balance_state()

    @staticmethod
    def _counts(states: list[BalanceState]) -> Tensor:
        device = states[0].bias.device
        return torch.stack([s.load.counts.to(device).float() for s in states])

    def _zero(self, states: list[BalanceState] | None = None) -> None:
        for s in self._states() if states is None else states:
            s.load.zero()

    def _set_counts(self, counts: Tensor | list[Tensor]) -> None:
        for s, c in zip(self._states(), counts, strict=True):
            s.load.counts = c.to(device=s.bias.device, dtype=torch.float32).clone()

    # -- hooks -------------------------------------------------------------------------------
    @override
    def interface(self, pl_module: LightningModule) -> Any:
        # A module without moe_balance_state() serves MoEModel through the routers nn finds.
        if callable(getattr(pl_module, "moe_balance_state", None)):
            return pl_module
        return _FoundRouters(pl_module) if moe_balance_state(pl_module) else pl_module

    @override
    def check_module(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().check_module(trainer, pl_module)
        source: MoEModel = self.interface(pl_module)
        if not source.moe_balance_state():
            raise ValueError(
                f"LossFreeBalancing found no MoE router in {type(pl_module).__name__}: its "
                "moe_balance_state() returned no layer"
            )
        self._source = source

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self._zero()  # forwards before fit (user code) are no training step's load

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        for name, bias, _ in self._states():
            if bias.dtype != torch.float32:
                raise TypeError(
                    f"the expert bias of {name} is {bias.dtype}; it must stay float32 (updates "
                    f"of {self.rate} vanish in low precision). Use a mixed precision that keeps "
                    "buffers in fp32 (e.g. bf16-mixed, FSDP MixedPrecisionPolicy) or TopKRouter"
                )
        if self._pending_restore is not None:
            self._set_counts(self._pending_restore)
            self._pending_restore = None

    @override
    def on_before_optimizer_step(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: Any
    ) -> None:
        states = self._states()  # one module walk per step
        counts = all_reduce_sum(self._counts(states))  # identical on all ranks
        if self.update:
            with torch.no_grad():
                for s, c in zip(states, counts, strict=True):
                    s.bias.copy_(balance_bias_update(s.bias, c, self.rate))
        self._zero(states)
        maxvio = max_violation(counts)
        self.last_maxvio_batch = maxvio
        if (trainer.global_step + 1) % self.log_interval(trainer) != 0:
            return
        logs = {"moe/maxvio_batch": maxvio.mean(), "moe/maxvio_batch_max": maxvio.max()}
        if self.log_expert_load:
            rel = counts / counts.mean(-1, keepdim=True).clamp_min(1e-12)
            for i, v in enumerate(rel.mean(0)):
                logs[f"moe/load_e{i}"] = v
        pl_module.log_dict(logs, on_step=True, on_epoch=False, batch_size=1)

    @override
    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Set the training step's pending counts aside; validation counts from zero.
        self._train_snapshot = [s.load.counts.clone() for s in self._states()]
        self._zero()

    @override
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        counts = all_reduce_sum(self._counts(self._states()))
        if self._train_snapshot is not None:
            self._set_counts(self._train_snapshot)
            self._train_snapshot = None
        if trainer.sanity_checking or counts.sum() == 0:
            return
        maxvio = max_violation(counts)
        self.last_maxvio_global = maxvio
        pl_module.log_dict(
            {"moe/maxvio_global": maxvio.mean(), "moe/maxvio_global_max": maxvio.max()},
            on_step=False,
            on_epoch=True,
            batch_size=1,
        )

    # -- checkpointing ------------------------------------------------------------------------
    @override
    def state_dict(self) -> dict[str, Any]:
        # Every rank's pending counts (non-zero only mid-accumulation): Lightning saves rank 0's
        # callback state, so rank 0 keeps all of them (a collective, like the generator state).
        counts = self._train_snapshot or [s.load.counts for s in self._states()]
        local = torch.stack([c.float() for c in counts]) if counts else torch.zeros(0)
        return {
            **super().state_dict(),
            "pending_counts": all_gather_no_grad(local[None]).cpu(),
            "last_maxvio_batch": self.last_maxvio_batch,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        pending = state_dict.get("pending_counts")
        rank = get_rank()
        # A rank the checkpoint has no counts for (resume on more ranks) starts from zero.
        self._pending_restore = (
            pending[rank] if pending is not None and rank < pending.shape[0] else None
        )
        self.last_maxvio_batch = state_dict.get("last_maxvio_batch")
