"""MIM + hard-patch mining on 2 CPU ranks (gloo), DDP and FSDP2, against one process.

One ``torchrun`` launch runs both (see ``_mim_distributed_worker.py``). The single-process replay
feeds the recorded per-rank batches and masks to the same model: the per-rank losses, the hard
part of every mask (top teacher scores), the final weights, the EMA teacher (DDP) and the
linear-probe accuracy must match. Tolerances: losses and weights 1e-5 (float32 reduction order),
probe 0.01.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from lightning_losses.data import DigitsImageDataModule
from lightning_losses.recipes.masked_image_modeling import (
    MaskedImageModeling,
    linear_probe_accuracy,
)
from tests._dist import run_torchrun

pytestmark = [pytest.mark.slow, pytest.mark.distributed]
HERE = Path(__file__).resolve().parent


def _load():
    spec = importlib.util.spec_from_file_location(
        "_mim_distributed_worker", HERE / "_mim_distributed_worker.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _top_in_mask(scores, mask):
    n_hard = int(mask.sum(1)[0] * 0.5)  # alpha = 0.5 (epoch + 1) / 1
    return bool(mask.gather(1, scores.argsort(1, descending=True)[:, :n_hard]).all())


def _replay(w, ranks, kind, data):
    torch.manual_seed(0)
    model = MaskedImageModeling(**w.MODEL)
    opt = torch.optim.AdamW(
        model.parameters(), lr=w.MODEL["lr"], betas=(0.9, 0.95), weight_decay=0.05
    )
    teacher = {k: v.clone() for k, v in model.mae.state_dict().items()}
    ema = MaskedImageModeling(**w.MODEL).mae
    for step in range(2):
        losses = []
        for r in ranks:
            rec = r[kind]["steps"][step]
            x = data.splits.x_train[rec["index"]]
            with torch.no_grad():
                if kind == "ddp":
                    ema.load_state_dict(teacher)
                    scores = ema.predict_patch_loss(x)
                else:  # teacher="self": the student before this step's update
                    scores = model.predict_patch_loss(x)
            assert _top_in_mask(scores, rec["mask"]), (kind, step)
            loss = model.mim_loss({"image": x}, mask=rec["mask"]).loss
            torch.testing.assert_close(rec["loss"], loss.detach(), atol=1e-5, rtol=1e-5)
            losses.append(loss)
        opt.zero_grad()
        (sum(losses) / len(losses)).backward()  # what DDP / FSDP gradient averaging gives
        opt.step()
        with torch.no_grad():
            for k, v in model.mae.state_dict().items():
                teacher[k] = w.EMA[0] * teacher[k] + (1 - w.EMA[0]) * v
    return model, teacher


# Parameters whose true gradient is exactly zero: the attention key bias (softmax is invariant to
# a per-query shift) and the loss predictor's output bias and final-norm bias (the pairwise
# ranking objective is invariant to shifting every patch score alike). Their gradient is rounding
# noise, which AdamW's g / (|g| + eps) turns into updates of up to ±lr, differently for each
# summation order (thread count, all-reduce): compare everything else.
_ZERO_GRADIENT = ("loss_decoder.head.bias", "loss_decoder.norm.bias")


def _comparable(name: str, value: torch.Tensor) -> torch.Tensor | None:
    if name in _ZERO_GRADIENT:
        return None
    if name.endswith("attn.qkv.bias"):  # [q | k | v]: drop the key part
        third = value.numel() // 3
        return torch.cat([value[:third], value[2 * third :]])
    return value


def test_ddp_and_fsdp2_match_single_process(tmp_path):
    out = tmp_path / "mim"
    run_torchrun(str(HERE / "_mim_distributed_worker.py"), str(out), cwd=tmp_path, timeout=300)
    ranks = [torch.load(f"{out}.rank{r}", weights_only=False) for r in range(2)]
    w = _load()
    data = DigitsImageDataModule(**w.DATA)
    data.setup("fit")
    for kind in ("ddp", "fsdp"):
        assert [r[kind]["seed"] for r in ranks] == [0, 1]  # per-rank streams
        # Each rank trained on its own images.
        idx = [set(r[kind]["steps"][0]["index"].tolist()) for r in ranks]
        assert not idx[0] & idx[1]
        model, teacher = _replay(w, ranks, kind, data)
        for r in ranks:
            for k, v in model.mae.state_dict().items():
                got, want = _comparable(k, r[kind]["mae"][k]), _comparable(k, v)
                if got is not None:
                    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5, msg=k)
        if kind == "ddp":
            for r in ranks:
                for k, v in teacher.items():
                    got, want = _comparable(k, r["ddp"]["teacher"][k]), _comparable(k, v)
                    if got is not None:
                        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5, msg=k)
        else:
            assert ranks[0]["fsdp"]["teacher"] is None
            assert all(r["fsdp"]["fsdp_modules"] == 5 for r in ranks)  # 2 + 1 + 1 blocks, root
        # The probe: fitted on the train images' features, scored on the validation images.
        s = data.splits
        with torch.no_grad():
            acc = linear_probe_accuracy(
                model.features(s.x_train), s.y_train, model.features(s.x_val), s.y_val, 10
            )
        assert all(abs(r[kind]["probe_acc"] - acc) <= 0.01 for r in ranks)
