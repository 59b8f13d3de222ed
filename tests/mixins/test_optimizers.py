"""`OptimizerMixin`: the recipe's defaults, replaced piecewise by LightningCLI class configs."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import LightningModule

from lightning_losses.mixins.optimizers import OptimizerMixin


class _Net(OptimizerMixin, LightningModule):
    """Two parameter groups (no decay on the bias) and a default step schedule."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 2)

    def optimizer_param_groups(self):
        return [
            {"params": [self.layer.weight], "weight_decay": 0.1},
            {"params": [self.layer.bias], "weight_decay": 0.0},
        ]

    def default_optimizer(self, params):
        return torch.optim.AdamW(params, lr=1e-3)

    def default_lr_scheduler(self, optimizer):
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=7)
        return {"scheduler": scheduler, "interval": "step"}


def _sgd(lr: float = 0.1) -> dict:
    return {"class_path": "torch.optim.SGD", "init_args": {"lr": lr}}


def test_defaults_without_configuration():
    out = _Net().configure_optimizers()
    assert type(out["optimizer"]) is torch.optim.AdamW
    assert out["lr_scheduler"]["interval"] == "step"
    assert out["lr_scheduler"]["scheduler"].step_size == 7


def test_optimizer_replaced_keeps_groups_and_default_schedule():
    net = _Net()
    net.set_optimizer_config(_sgd(0.25))
    out = net.configure_optimizers()
    optimizer = out["optimizer"]
    assert type(optimizer) is torch.optim.SGD
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
    assert [g["lr"] for g in optimizer.param_groups] == [0.25, 0.25]
    assert out["lr_scheduler"]["scheduler"].optimizer is optimizer


def test_scheduler_replaced_on_the_default_optimizer():
    net = _Net()
    config = {"class_path": "torch.optim.lr_scheduler.ExponentialLR", "init_args": {"gamma": 0.5}}
    net.set_optimizer_config(lr_scheduler=config)
    (optimizer,), (scheduler,) = net.configure_optimizers()
    assert type(optimizer) is torch.optim.AdamW
    assert type(scheduler) is torch.optim.lr_scheduler.ExponentialLR and scheduler.gamma == 0.5


def test_plateau_scheduler_names_its_monitor():
    net = _Net()
    plateau = {
        "class_path": "lightning.pytorch.cli.ReduceLROnPlateau",
        "init_args": {"monitor": "val/loss"},
    }
    net.set_optimizer_config(_sgd(), plateau)
    out = net.configure_optimizers()
    assert out["lr_scheduler"]["monitor"] == "val/loss"


def test_configuration_can_be_reset_to_the_defaults():
    net = _Net()
    net.set_optimizer_config(_sgd())
    net.set_optimizer_config(None, None)
    assert type(net.configure_optimizers()["optimizer"]) is torch.optim.AdamW


@pytest.mark.parametrize("bad", ["SGD", {"init_args": {"lr": 0.1}}, 3])
def test_a_config_without_class_path_is_a_type_error(bad):
    with pytest.raises(TypeError, match="optimizer must be a LightningCLI class config"):
        _Net().set_optimizer_config(bad)


def test_a_module_without_default_optimizer_says_so():
    class Bare(OptimizerMixin, LightningModule):
        pass

    with pytest.raises(NotImplementedError, match="Bare must implement default_optimizer"):
        Bare().configure_optimizers()
