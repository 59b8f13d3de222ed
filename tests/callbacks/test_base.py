"""BehaviourCallback's shared plumbing: step detection, scoring context, per-rank generator,
and, for each of the five behaviours, the Protocol check at setup and the configuration check on
resume."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import LightningModule
from torch.utils.data import DataLoader, TensorDataset

import lightning_losses.callbacks.base as base_module
import lightning_losses.mixins as mixins
from lightning_losses.callbacks import (
    EMAGradientProjection,
    HardPatchMining,
    HPMModel,
    HPMTeacherModel,
    LossFreeBalancing,
    LossModel,
    LossReweighting,
    MoEModel,
    PLDResampling,
    PLDScorer,
)
from lightning_losses.callbacks.base import BehaviourCallback, Role, resume_seed
from lightning_losses.nn import TopKRouter, moe_balance_state
from tests._lightning import quiet_trainer


class StepProbe(BehaviourCallback):
    def __init__(self):
        super().__init__()
        self.flags = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self.flags.append(self.optimizer_stepped(trainer))


class Tiny(LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.net(batch[0]).square().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_optimizer_stepped_is_true_only_on_the_stepping_micro_batch():
    probe = StepProbe()
    data = DataLoader(TensorDataset(torch.randn(12, 2)), batch_size=2)  # 6 micro-batches
    quiet_trainer(
        max_epochs=1, accumulate_grad_batches=3, enable_checkpointing=False, callbacks=[probe]
    ).fit(Tiny(), data)
    assert probe.flags == [False, False, True, False, False, True]


def test_scoring_is_eval_and_no_grad_and_restores_the_mode_even_on_error():
    net = torch.nn.Sequential(torch.nn.Dropout(0.5))
    with BehaviourCallback.scoring(net):
        assert not net.training and not net[0].training and not torch.is_grad_enabled()
    assert net.training and torch.is_grad_enabled()
    net.eval()
    with pytest.raises(KeyError), BehaviourCallback.scoring(net):
        raise KeyError
    assert not net.training and torch.is_grad_enabled()


class Seeded(BehaviourCallback):
    def __init__(self, seed):
        super().__init__(seed=seed)


def test_generator_is_per_rank_and_saved_and_reseeded_on_resume():
    cb = Seeded(10)
    assert BehaviourCallback().generator is None and BehaviourCallback().state_dict() == {}
    assert set(cb.state_dict()) == {"generator"}  # no config_keys: no "config" entry
    cb.setup(SimpleNamespace(global_rank=2), Tiny(), "fit")
    assert torch.equal(cb.generator.get_state(), torch.Generator().manual_seed(12).get_state())
    torch.rand(3, generator=cb.generator)
    saved = cb.state_dict()["generator"]
    assert saved.shape[0] == 1  # one row per rank (a single process here)
    expected_next = torch.rand(4, generator=cb.generator)

    resumed = Seeded(10)
    resumed.setup(SimpleNamespace(global_rank=0), Tiny(), "fit")
    resumed.load_state_dict({"generator": saved})
    resumed.on_train_start(SimpleNamespace(global_step=7, global_rank=0), None)  # restored: kept
    assert torch.equal(torch.rand(4, generator=resumed.generator), expected_next)

    fresh = Seeded(10)
    fresh.setup(SimpleNamespace(global_rank=0), Tiny(), "fit")
    fresh.on_train_start(SimpleNamespace(global_step=7, global_rank=0), None)  # no state: reseed
    reseeded = torch.Generator().manual_seed(resume_seed(10, 0, 7))
    assert torch.equal(fresh.generator.get_state(), reseeded.get_state())


def test_role_constants_live_in_one_place():
    assert Role.SAMPLE_WEIGHTER == "sample_weighter"
    assert Role.GRADIENT_HANDLER == "gradient_handler"
    # One public name per role: the legacy module-level aliases are gone.
    for alias in ("SAMPLE_WEIGHTER_ATTR", "GRADIENT_HANDLER_ATTR", "AUX_GRADIENT_HANDLER_ATTR"):
        assert not hasattr(mixins, alias) and not hasattr(base_module, alias)
    roles = {
        LossReweighting: Role.SAMPLE_WEIGHTER,
        EMAGradientProjection: Role.GRADIENT_HANDLER,
        PLDResampling: Role.PLD,
        HardPatchMining: Role.PATCH_MINER,
        LossFreeBalancing: Role.LOAD_BALANCER,
    }
    for cls, role in roles.items():
        assert cls.role == role, cls
    assert len(set(roles.values())) == 5


def test_seed_must_be_an_int():
    with pytest.raises(TypeError, match="seed"):
        Seeded(1.5)
    with pytest.raises(TypeError, match="seed"):
        Seeded(True)


# ------------------------------------------------------------ what each behaviour requires
def _stub(*members, base=LightningModule):
    """A module class with exactly `members` (methods, and the HPM mask flag as an attribute)."""
    namespace = {}
    for name in members:
        if name == "supports_external_mask":
            namespace[name] = True
        elif name == "patch_loss_model":
            namespace[name] = torch.nn.Linear(1, 1)
        else:
            namespace[name] = lambda self, *args, **kwargs: None
    return type("Stub", (base,), namespace)()


LOSS_MODEL = ("compute_loss", "reduce_per_sample", "route_backward")
HPM_SELF = ("supports_external_mask", "predict_patch_loss")
# (callback factory, its Protocol, the Protocol's members, kind of each member)
REQUIREMENTS = [
    (LossReweighting, LossModel, LOSS_MODEL),
    (EMAGradientProjection, LossModel, LOSS_MODEL),
    (PLDResampling, PLDScorer, ("pld_candidate_losses",)),
    (lambda: HardPatchMining(teacher="self"), HPMModel, HPM_SELF),
    (lambda: HardPatchMining(teacher="ema"), HPMTeacherModel, (*HPM_SELF, "patch_loss_model")),
    (LossFreeBalancing, MoEModel, ("moe_balance_state",)),
]
KINDS = {"supports_external_mask": "attribute", "patch_loss_model": "attribute"}
CASES = [
    pytest.param(factory, protocol, members, missing, id=f"{protocol.__name__}-{missing}")
    for factory, protocol, members in REQUIREMENTS
    for missing in members
]


@pytest.mark.parametrize("factory,protocol,members,missing", CASES)
def test_a_module_missing_a_required_member_gets_the_named_error(
    factory, protocol, members, missing
):
    cb = factory()
    module = _stub(*(m for m in members if m != missing))
    kind = KINDS.get(missing, "method")
    expected = (
        f"{type(cb).__name__} needs the module (Stub) to implement {protocol.__name__}: "
        f"missing {kind} '{missing}'"
    )
    with pytest.raises(TypeError) as info:
        cb.check_module(quiet_trainer(), module)
    assert str(info.value).startswith(expected), str(info.value)


def test_the_error_lists_every_missing_member_and_says_how_to_get_them():
    with pytest.raises(TypeError) as info:
        LossReweighting().check_module(quiet_trainer(), LightningModule())
    message = str(info.value)
    assert "missing method 'compute_loss', method 'reduce_per_sample', method 'route_backward'" in (
        message
    )
    assert "inherit lightning_losses.mixins.LossMixin" in message
    with pytest.raises(TypeError, match=r"llama_moe.*track_expert_load"):
        LossFreeBalancing().check_module(quiet_trainer(), LightningModule())


def test_modules_that_implement_the_protocols_pass_the_check():
    trainer = quiet_trainer()
    for cb in (LossReweighting(), EMAGradientProjection()):
        cb.check_module(trainer, _stub(*LOSS_MODEL))
    PLDResampling().check_module(trainer, _stub("pld_candidate_losses"))
    HardPatchMining(teacher="self").check_module(trainer, _stub(*HPM_SELF))

    class Routed(LightningModule):  # implements MoEModel for a router of its own
        def __init__(self):
            super().__init__()
            self.router = TopKRouter(4, 3, 1)

        def moe_balance_state(self):
            return moe_balance_state(self.router)

    balancer = LossFreeBalancing()
    balancer.check_module(trainer, Routed())
    assert [s.name for s in balancer._states()] == [""]
    with pytest.raises(ValueError, match=r"moe_balance_state\(\) returned no layer"):
        LossFreeBalancing().check_module(trainer, _stub("moe_balance_state"))


def test_protocol_attributes_served_by_nn_module_getattr_count():
    # `patch_loss_model` as a submodule lives in _modules (served by nn.Module.__getattr__).
    class Submodule(LightningModule):
        supports_external_mask = True

        def __init__(self):
            super().__init__()
            self.patch_loss_model = _stub("predict_patch_loss", base=torch.nn.Module)

        def predict_patch_loss(self, x):
            return x.flatten(1)

    HardPatchMining(teacher="ema").check_module(quiet_trainer(), Submodule())


# ---------------------------------------------------- configuration check on resume
# (callback factory, the changed hyperparameter, its value in the resumed run)
CONFIGS = [
    pytest.param(LossReweighting, "kl_reg", 2.0, id="reweighting"),
    pytest.param(EMAGradientProjection, "lbda", 0.25, id="bloop"),
    pytest.param(PLDResampling, "temperature", 0.2, id="pld"),
    pytest.param(HardPatchMining, "final_hard_fraction", 0.3, id="hpm"),
    pytest.param(LossFreeBalancing, "rate", 0.01, id="balancing"),
]


@pytest.mark.parametrize("factory,key,value", CONFIGS)
def test_resuming_with_a_changed_hyperparameter_warns_naming_it(factory, key, value):
    saved = factory().state_dict()
    old = saved["config"][key]
    assert old != value
    with pytest.warns(UserWarning, match="differs from the checkpoint") as record:
        factory(**{key: value}).load_state_dict(saved)
    (message,) = [str(w.message) for w in record if "differs" in str(w.message)]
    assert f"{key} = {old!r} in the checkpoint, {value!r} now" in message
    # Only the changed key is named.
    others = set(saved["config"]) - {key}
    assert not any(f"{other} = " in message for other in others), message


@pytest.mark.parametrize("factory,key,value", CONFIGS)
def test_an_unchanged_configuration_does_not_warn(factory, key, value):
    saved = factory(**{key: value}).state_dict()
    assert key in saved["config"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        factory(**{key: value}).load_state_dict(saved)


@pytest.mark.parametrize("factory,key,value", CONFIGS)
def test_a_checkpoint_without_a_configuration_loads_silently(factory, key, value):
    saved = factory().state_dict()
    del saved["config"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        factory(**{key: value}).load_state_dict(saved)
        factory().load_state_dict({})


def test_older_checkpoint_layouts_load():
    # Before the configuration moved into the base, some behaviours saved keys at top level.
    legacy = {
        PLDResampling: {"temperature": 0.5, "seed": 0, "start_epoch": 0},
        HardPatchMining: {"mask_ratio": None, "final_hard_fraction": 0.5, "teacher_mode": "ema"},
        LossFreeBalancing: {"rate": 1e-3, "pending_counts": None, "last_maxvio_batch": None},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for cls, state in legacy.items():
            cls().load_state_dict(state)


def test_hpm_config_uses_the_argument_names_and_compares_tuples_with_lists():
    cb = HardPatchMining(teacher="self", ema_decay=(0.9, 0.99))
    config = cb.config()
    assert config["teacher"] == "self" and "teacher_mode" not in config
    assert config["seed"] == 0 and config["ema_decay"] == (0.9, 0.99)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a tuple saved as a list is the same value
        cb.warn_on_config_change({**config, "ema_decay": [0.9, 0.99], "retired_key": 1})
    with pytest.warns(UserWarning, match="teacher = 'ema' in the checkpoint, 'self' now"):
        cb.warn_on_config_change({**config, "teacher": "ema"})
