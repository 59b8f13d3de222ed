"""LossMixin: criterion building, per-sample reduction through the sample-weighting protocol."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import LightningModule
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightning_losses
import lightning_losses.mixins.loss as mixin_module
from lightning_losses.callbacks.base import BehaviourCallback
from lightning_losses.functional import cross_entropy
from lightning_losses.losses import CrossEntropyLoss, LabelSmoothingCrossEntropyLoss
from lightning_losses.losses.base import InputKind
from lightning_losses.mixins import LossMixin, LossModel, LossOutput, Role, build_criterion
from tests._lightning import quiet_trainer


class Model(LossMixin, LightningModule):
    def __init__(self, criterion="cross_entropy", with_aux=False):
        super().__init__()
        self.net = nn.Linear(4, 3)
        self.with_aux = with_aux
        self.configure_criterion(criterion)
        self.seen_weights = []

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        aux = {"logit_l2": 1e-3 * logits.square().mean()} if self.with_aux else None
        out = self.compute_loss(logits, y, aux=aux)
        self.seen_weights.append(out.weights)
        return out.to_dict()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class FirstSampleWeighter(BehaviourCallback):
    """Test double: weight 3 on the first sample, 1 elsewhere, normalised to sum 1."""

    role = Role.SAMPLE_WEIGHTER
    requires = LossModel

    def sample_weights(self, per_sample):
        w = torch.ones_like(per_sample)
        w[0] = 3.0
        return w / w.sum()


class OtherWeighter(FirstSampleWeighter):
    pass


def _data(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_build_criterion_from_name_dict_class_path_and_module():
    assert build_criterion("cross_entropy").reduction == "none"
    c = build_criterion({"name": "label_smoothing_ce", "smoothing": 0.2})
    assert isinstance(c, LabelSmoothingCrossEntropyLoss) and c.reduction == "none"
    assert 0.2 in c.hparams.values()
    c = build_criterion(
        {"class_path": "lightning_losses.losses.CrossEntropyLoss", "init_args": {"ignore_index": 3}}
    )
    assert isinstance(c, CrossEntropyLoss) and c.ignore_index == 3 and c.reduction == "none"
    mine = CrossEntropyLoss()
    built = build_criterion(mine)
    assert built is not mine and mine.reduction == "mean" and built.reduction == "none"
    already = CrossEntropyLoss(reduction="none")
    assert build_criterion(already) is already
    torch_ce = build_criterion(nn.CrossEntropyLoss())
    assert torch_ce.reduction == "none"


def test_requested_sum_reduction_is_replaced_with_one_warning(monkeypatch):
    monkeypatch.setattr(mixin_module, "_REDUCTION_WARNED", set())
    with pytest.warns(UserWarning, match="reduction='sum'.*replaced"):
        built = build_criterion("cross_entropy", reduction="sum")
    assert built.reduction == "none"
    with pytest.warns(UserWarning, match="CrossEntropyLoss"):
        build_criterion(nn.CrossEntropyLoss(reduction="sum"))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_criterion("cross_entropy", reduction="sum")  # once per criterion
        build_criterion("cross_entropy", reduction="mean")  # the mixin's own semantics
        build_criterion(CrossEntropyLoss())


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        ({"epsilon": 1.0}, ValueError, "name"),
        (nn.Linear(2, 2), TypeError, "reduction"),
        (3.0, TypeError, "criterion"),
        ("cross_entrop", KeyError, "cross_entrop"),
    ],
)
def test_build_criterion_errors(bad, exc, match):
    with pytest.raises(exc, match=match):
        build_criterion(bad)


def test_unweighted_loss_equals_the_criterion_mean():
    x, y = _data()
    model = Model({"name": "cross_entropy"})
    out = model.compute_loss(model(x), y)
    torch.testing.assert_close(out.loss, cross_entropy(model(x), y))
    torch.testing.assert_close(out.per_sample, cross_entropy(model(x), y, reduction="none"))
    assert out.per_sample.requires_grad and out.main is out.loss and out.extras == {}


def test_ignored_samples_are_left_out_of_the_mean_like_torch():
    x, y = _data()
    y[:3] = -100
    model = Model()
    out = model.compute_loss(model(x), y)
    torch.testing.assert_close(out.loss, nn.functional.cross_entropy(model(x), y))
    assert out.weights[:3].eq(0).all()


def test_element_mask_is_explicit_or_declared_by_the_criterion():
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(2, 3, 4, generator=g), torch.randint(0, 3, (2, 4), generator=g)
    target[0, 0] = -100
    model = Model()
    calls = []
    orig = model.criterion.element_mask
    model.criterion.element_mask = lambda *a, **k: calls.append((a, k)) or orig(*a, **k)
    model.compute_loss(logits, target=target)
    assert len(calls) == 1 and calls[0][1]["target"] is target  # keyword inputs work too
    # An explicit mask wins and the criterion is not asked.
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[1, 2:] = False
    out = model.compute_loss(logits, target, element_mask=mask)
    assert len(calls) == 1
    elem = cross_entropy(logits, target, reduction="none")
    torch.testing.assert_close(out.per_sample[1], elem[1, :2].mean())
    # A torch loss declares nothing: every element counts unless a mask is passed.
    torch_model = Model(nn.CrossEntropyLoss())
    out = torch_model.compute_loss(logits, target)
    torch.testing.assert_close(out.per_sample, elem.mean(1))


def test_ignored_nan_elements_do_not_poison_the_sample():
    logits = torch.randn(1, 3, 4, requires_grad=True)
    target = torch.tensor([[0, 1, -100, 2]])
    model = Model()
    elements = torch.tensor([[1.0, 2.0, float("nan"), 3.0]], requires_grad=True)
    per = model.per_sample_losses(elements, target != -100)
    per.sum().backward()
    torch.testing.assert_close(per, torch.tensor([2.0]))
    torch.testing.assert_close(elements.grad, torch.tensor([[1 / 3, 1 / 3, 0.0, 1 / 3]]))
    assert logits.grad is None


def test_capability_check_rejects_a_loss_of_another_kind():
    class Classifier(Model):
        accepted_input_kinds = (InputKind.CLASSIFICATION,)

    class Ranker(Model):
        accepted_input_kinds = (InputKind.RANKING, InputKind.EMBEDDINGS)

    Classifier()  # cross_entropy is a classification loss
    with pytest.raises(ValueError, match=r"CrossEntropyLoss takes 'classification'.*Ranker"):
        Ranker()
    with pytest.raises(ValueError, match=r"BPRLoss takes 'ranking'.*'classification'"):
        Classifier("bpr")
    Ranker("bpr")
    Ranker(nn.CrossEntropyLoss())  # a torch loss declares no kind: accepted

    class AnyLoss(Model):
        accepted_input_kinds = InputKind.ALL

    AnyLoss("bpr")


class NoDefault(LossMixin, LightningModule):
    def __init__(self, criterion):
        super().__init__()
        self.configure_criterion(criterion)


def test_input_kind_is_importable_from_the_top_level():
    from lightning_losses import InputKind as TopLevel

    assert TopLevel is InputKind and TopLevel.CLASSIFICATION == "classification"


def test_input_kind_is_inferred_from_the_criterion_default_without_opting_in():
    # Model(criterion="cross_entropy") calls its criterion on logits and class indices.
    classification = mixin_module.loss_names_of_kind(InputKind.CLASSIFICATION)
    for name, kind in [("supcon", "embeddings"), ("bpr", "ranking"), ("dpo", "preference")]:
        with pytest.raises(ValueError, match=rf"takes '{kind}' inputs, but Model takes") as exc:
            Model(name)
        message = str(exc.value)
        assert all(n in message for n in classification), message  # the accepted names
        assert "get_loss_class" not in message  # names, not a Python snippet
    # Losses called alike (logits at dim 1 and class indices) stay accepted.
    Model("focal")
    Model("z_loss")
    Model({"name": "poly", "epsilon": 1.0})
    # Without a default nothing is inferred: every kind is accepted when the module is built.
    NoDefault("bpr")
    assert mixin_module._inferred_input_kinds(NoDefault) is None
    assert mixin_module.loss_names_of_kind("preference") == sorted(
        n
        for n in lightning_losses.list_losses()
        if lightning_losses.get_loss_class(n).input_kind == "preference"
    )


@pytest.mark.parametrize("name,kind", [("bpr", "ranking"), ("dpo", "preference")])
def test_a_call_with_inputs_of_another_kind_names_the_kind(name, kind):
    x, y = _data()
    with pytest.raises(ValueError, match=rf"'{name}' .* takes '{kind}' inputs") as exc:
        NoDefault(name).compute_loss(x[:, :3], y)
    message = str(exc.value)
    assert "int64[8]" in message and "looks like logits and class indices" in message
    assert "cross_entropy" in message and "focal" in message
    # A call of the right kind is untouched, and a real error of the right kind is not renamed.
    out = NoDefault("bpr").compute_loss(torch.randn(8), torch.randn(8, 3))
    assert out.per_sample.shape == (8,)
    with pytest.raises(ValueError) as exc:
        NoDefault("cross_entropy").compute_loss(torch.randn(8, 3), torch.full((8,), 5))
    assert "inputs (" not in str(exc.value)


class OwnLogging(Model):
    """A user's module that logs `train/loss` itself, as Lightning's docs show."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self.compute_loss(self(x), y)
        self.log("train/loss", out.loss)  # defaults: on_step only, no progress bar
        self.log("train/own", 2 * out.loss)
        return out.loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        out = self.compute_loss(self(x), y, stage="val")
        self.log("val/loss", out.loss, on_epoch=True)


def test_own_log_of_train_loss_coexists_with_compute_loss(tmp_path):
    x, y = _data(16)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    model = OwnLogging()
    trainer = quiet_trainer(
        max_steps=3,
        limit_val_batches=2,
        val_check_interval=2,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, loader, loader)
    metrics = trainer.logged_metrics
    # The module's own entry (on_step only) replaced the automatic one (step + epoch).
    assert "train/loss" in metrics and "train/loss_step" not in metrics
    assert "train/loss_epoch" not in trainer.callback_metrics
    torch.testing.assert_close(metrics["train/own"], 2 * metrics["train/loss"])
    assert "val/loss" in trainer.callback_metrics
    assert model._user_logged_names == {"train/loss", "val/loss"}


def test_compute_loss_keeps_logging_when_the_module_logs_other_names(tmp_path):
    x, y = _data(16)
    model = Model()
    trainer = quiet_trainer(max_steps=2, enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=4))
    assert {"train/loss_step", "train/loss_epoch"} <= set(trainer.callback_metrics)
    assert "_user_logged_names" not in model.__dict__


def test_weighted_reduction_and_gradients_match_hand_computation():
    x, y = _data()
    model = Model()
    weighter = FirstSampleWeighter()
    model.__dict__["sample_weighter"] = weighter
    out = model.compute_loss(model(x), y)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}

    # Hand computation in float64 from the functional CE.
    ref = Model().double()
    ref.load_state_dict(model.state_dict())
    per = cross_entropy(ref(x.double()), y, reduction="none")
    w = torch.ones(len(y), dtype=torch.float64)
    w[0] = 3.0
    w = w / w.sum()
    expected = (w * per).sum()
    expected.backward()
    torch.testing.assert_close(out.loss.double(), expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(out.weights.double(), w)
    for n, p in ref.named_parameters():
        torch.testing.assert_close(grads[n].double(), p.grad, rtol=1e-5, atol=1e-6)
    # The weights never carry gradient: the loss gradient is Σ w_i ∇l_i, nothing through w.
    assert not out.weights.requires_grad


def test_weighter_is_ignored_in_eval_mode():
    x, y = _data()
    model = Model().eval()
    model.__dict__["sample_weighter"] = FirstSampleWeighter()
    out = model.compute_loss(model(x), y)
    torch.testing.assert_close(out.loss, out.per_sample.mean())


def test_weighter_returning_wrong_shape_is_reported():
    class Bad(FirstSampleWeighter):
        def sample_weights(self, per_sample):
            return torch.ones(per_sample.shape[0] + 1)

    x, y = _data()
    model = Model()
    model.__dict__["sample_weighter"] = Bad()
    with pytest.raises(ValueError, match="sample_weights must return"):
        model.compute_loss(model(x), y)


def test_dense_losses_reduce_per_sample_over_valid_elements():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 7, generator=g)
    target = torch.randint(0, 5, (3, 7), generator=g)
    target[0, :3] = -100
    target[2, :] = -100  # a sample with no valid element contributes 0, not NaN
    model = Model()
    out = model.compute_loss(logits, target)
    elem = cross_entropy(logits, target, reduction="none")
    valid = target != -100
    expected = torch.stack(
        [elem[i][valid[i]].mean() if valid[i].any() else torch.tensor(0.0) for i in range(3)]
    )
    torch.testing.assert_close(out.per_sample, expected)
    torch.testing.assert_close(out.loss, expected[:2].mean())  # the empty sample does not count
    model.loss_granularity = "element"
    out = model.compute_loss(logits, target)
    torch.testing.assert_close(out.per_sample, elem[valid])
    torch.testing.assert_close(out.loss, cross_entropy(logits, target))


def test_aux_is_kept_apart_and_added_to_loss():
    x, y = _data()
    model = Model()
    aux = {"reg": torch.tensor(0.25, requires_grad=True), "z": torch.tensor(0.5)}
    out = model.compute_loss(model(x), y, aux=aux, extras={"logits": "kept"})
    torch.testing.assert_close(out.main, out.per_sample.mean())
    torch.testing.assert_close(out.loss, out.main + 0.75)
    assert set(out.aux) == {"reg", "z"} and out.aux["reg"] is aux["reg"]  # never pre-summed
    torch.testing.assert_close(out.aux_total, torch.tensor(0.75))
    assert out.extras == {"logits": "kept"}
    assert set(out.to_dict()) == {"loss", "main", "per_sample", "aux", "extras"}
    assert LossOutput(loss=out.loss, per_sample=out.per_sample).aux_total is None
    with pytest.raises(ValueError, match="aux"):
        model.compute_loss(model(x), y, aux={"v": torch.ones(2)})


def _trainer(callbacks, tmp_path, steps=3):
    return quiet_trainer(
        max_steps=steps, enable_checkpointing=False, callbacks=callbacks, default_root_dir=tmp_path
    )


def test_callback_attaches_in_setup_drives_training_and_detaches(tmp_path):
    x, y = _data(16)
    model = Model(with_aux=True)
    weighter = FirstSampleWeighter()
    trainer = _trainer([weighter], tmp_path)
    trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=4))
    assert len(model.seen_weights) == 3
    for w in model.seen_weights:
        torch.testing.assert_close(w, torch.tensor([0.5, 1 / 6, 1 / 6, 1 / 6]))
    assert "sample_weighter" not in model.__dict__  # detached at teardown
    metrics = trainer.callback_metrics
    assert {"train/loss_step", "train/loss_main_step", "train/logit_l2_step"} <= set(metrics)
    torch.testing.assert_close(
        metrics["train/loss_step"], metrics["train/loss_main_step"] + metrics["train/logit_l2_step"]
    )


def test_setup_fails_clearly_for_modules_without_loss_mixin(tmp_path):
    class Plain(LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(4, 3)

        def training_step(self, batch, batch_idx):
            return self.net(batch[0]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    x, y = _data()
    with pytest.raises(TypeError, match="LossMixin"):
        _trainer([FirstSampleWeighter()], tmp_path).fit(Plain(), DataLoader(TensorDataset(x, y)))


def test_two_callbacks_cannot_share_a_role(tmp_path):
    x, y = _data()
    with pytest.raises(ValueError, match="one callback per role"):
        _trainer([FirstSampleWeighter(), OtherWeighter()], tmp_path).fit(
            Model(), DataLoader(TensorDataset(x, y))
        )
