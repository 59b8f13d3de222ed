"""MaskedAutoencoder, its patch utilities, its loss predictor's objective and ranking metric,
against naive float64 references written from the formulas (the reconstruction loss itself is
tested with the catalog, in `tests/losses/test_reconstruction.py`)."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_losses.functional import norm_pix_loss
from lightning_losses.nn.mae import MaskedAutoencoder, loss_predictor_loss, sincos_pos_embed_2d
from lightning_losses.nn.mae_metrics import pairwise_ranking_accuracy
from lightning_losses.nn.patches import (
    check_patch_mask,
    check_patch_rows,
    masked_rows,
    num_masked,
    patchify,
    random_patch_mask,
)

TINY = dict(
    img_size=16,
    patch_size=4,
    embed_dim=32,
    depth=1,
    num_heads=2,
    decoder_dim=32,
    decoder_depth=1,
    decoder_heads=2,
)


def test_patchify_matches_loop_and_num_masked():
    x = torch.randn(2, 3, 8, 12)
    p = patchify(x, 4)
    assert p.shape == (2, 6, 48)
    for i in range(2):
        for j in range(3):
            # patch (i, j): rows 4i..4i+3, cols 4j..4j+3, channel last.
            ref = x[:, :, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4].permute(0, 2, 3, 1).reshape(2, -1)
            torch.testing.assert_close(p[:, i * 3 + j], ref)
    assert [num_masked(n, 0.75) for n in (16, 49, 196)] == [12, 37, 147]
    with pytest.raises(ValueError, match="multiples of patch_size"):
        patchify(torch.zeros(1, 1, 6, 6), 4)


def test_sincos_embedding_formula():
    pe = sincos_pos_embed_2d(8, 3).double()
    # Column c of patch (r, c): [sin(c w), cos(c w)] with w_k = 10000^(-k/2), k = 0, 1.
    r, c = 2, 1
    w = torch.tensor([1.0, 10000**-0.5], dtype=torch.float64)
    ref = torch.cat([(c * w).sin(), (c * w).cos(), (r * w).sin(), (r * w).cos()])
    torch.testing.assert_close(pe[r * 3 + c], ref, atol=1e-6, rtol=0)


def _naive_relative(pred, target, eps=1e-6):
    num, den = 0.0, 0
    for b in range(pred.shape[0]):
        for i in range(pred.shape[1]):
            for j in range(pred.shape[1]):
                li, lj = float(target[b, i]), float(target[b, j])
                if li == lj:
                    continue  # ties (and i == j) are excluded
                s = 1 / (1 + math.exp(-(float(pred[b, j]) - float(pred[b, i]))))
                num += -math.log(s + eps) if lj > li else -math.log(1 - s + eps)
                den += 1
    return num / den


def test_relative_loss_matches_naive_pairwise_reference_with_ties_excluded():
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(3, 6, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(3, 6, generator=g, dtype=torch.float64)
    target[0, :3] = 0.25  # ties inside image 0
    target[1, 4] = target[1, 5]
    got = loss_predictor_loss(pred, target)
    assert got.item() == pytest.approx(_naive_relative(pred.detach(), target), rel=1e-12)
    torch.autograd.gradcheck(lambda p: loss_predictor_loss(p, target), (pred,))


def test_relative_loss_detaches_the_target_and_handles_all_ties():
    pred = torch.randn(2, 4, requires_grad=True)
    target = torch.rand(2, 4, requires_grad=True)
    loss_predictor_loss(pred, target).backward()
    assert target.grad is None and pred.grad is not None
    flat = loss_predictor_loss(pred, torch.ones(2, 4))  # every pair tied: no valid pair
    assert flat.item() == 0.0 and flat.requires_grad


def test_absolute_mode_is_mse_to_per_image_standardised_target():
    g = torch.Generator().manual_seed(2)
    pred, target = torch.randn(2, 5, generator=g), torch.rand(2, 5, generator=g)
    ref = 0.0
    for b in range(2):
        t = target[b].double()
        z = (t - t.mean()) / (t.var() + 1e-6).sqrt()  # unbiased variance, as the reference
        ref += ((pred[b].double() - z) ** 2).sum().item()
    got = loss_predictor_loss(pred, target, mode="absolute")
    assert got.item() == pytest.approx(ref / 10, rel=1e-5)
    with pytest.raises(ValueError, match="mode must be one of"):
        loss_predictor_loss(pred, target, mode="rank")


def test_pairwise_ranking_accuracy_matches_loop():
    g = torch.Generator().manual_seed(3)
    pred, target = torch.randn(2, 7, generator=g), torch.randn(2, 7, generator=g)
    target[0, 0] = target[0, 1]
    right = total = 0
    for b in range(2):
        for i in range(7):
            for j in range(7):
                if target[b, i] != target[b, j]:
                    total += 1
                    right += (pred[b, i] > pred[b, j]) == (target[b, i] > target[b, j])
    assert pairwise_ranking_accuracy(pred, target).item() == pytest.approx(right / total)
    assert pairwise_ranking_accuracy(torch.zeros(1, 3), torch.rand(1, 3)).item() == 0.5


def test_random_mask_counts_and_masked_rows():
    mask = random_patch_mask(50, 16, 0.75, generator=torch.Generator().manual_seed(0))
    assert (mask.sum(1) == 12).all() and mask.float().mean(0).min() > 0.4
    vals = torch.arange(32).reshape(2, 16)
    rows = masked_rows(vals, mask[:2])
    assert rows.shape == (2, 12) and torch.equal(rows[0], vals[0][mask[0]])


def test_encoder_sees_only_visible_patches():
    torch.manual_seed(0)
    mae = MaskedAutoencoder(**TINY).eval()
    x = torch.rand(2, 1, 16, 16)
    mask = random_patch_mask(2, 16, 0.75, generator=torch.Generator().manual_seed(0))
    out = mae(x, mask)
    # Changing the pixels of masked patches changes the targets, not the predictions.
    pix_mask = mask.reshape(2, 4, 4).repeat_interleave(4, 1).repeat_interleave(4, 2)[:, None]
    x2 = torch.where(pix_mask, torch.rand_like(x), x)
    out2 = mae(x2, mask)
    torch.testing.assert_close(out2.pred, out.pred)
    torch.testing.assert_close(out2.pred_loss, out.pred_loss)
    assert not torch.allclose(out2.target, out.target)
    ref = norm_pix_loss(out.pred, patchify(x, 4), reduction="none")
    torch.testing.assert_close(out.patch_loss, ref)
    # The teacher pass sees every patch: the same change moves its predictions.
    assert not torch.allclose(mae.predict_patch_loss(x2), mae.predict_patch_loss(x))


def test_predictor_loss_trains_the_loss_decoder_on_detached_losses():
    torch.manual_seed(0)
    mae = MaskedAutoencoder(**TINY)
    out = mae(torch.rand(2, 1, 16, 16), random_patch_mask(2, 16, 0.75))
    mae.predictor_loss(out).backward()
    # Only the encoder and the loss decoder get gradient: the reconstruction decoder does not.
    assert all(p.grad is None for p in mae.decoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in mae.loss_decoder.parameters())


def test_mask_and_image_validation():
    mae = MaskedAutoencoder(**TINY)
    x = torch.rand(2, 1, 16, 16)
    with pytest.raises(TypeError, match="mask must be a bool"):
        mae(x, torch.zeros(2, 16))
    bad = torch.zeros(2, 16, dtype=torch.bool)
    bad[0, :3] = True
    with pytest.raises(ValueError, match="same number of patches"):
        mae(x, bad)
    with pytest.raises(ValueError, match="mask must have shape"):
        mae(x, torch.zeros(2, 15, dtype=torch.bool))
    with pytest.raises(ValueError, match="x must have shape"):
        mae(torch.rand(2, 1, 8, 8), torch.zeros(2, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match="multiple of patch_size"):
        MaskedAutoencoder(img_size=10, patch_size=4)
    with pytest.raises(RuntimeError, match="loss predictor"):
        MaskedAutoencoder(**TINY, predictor="none").predict_patch_loss(x)


def test_patch_mask_and_row_checks():
    mask = torch.tensor([[True, False, True], [False, True, True]])
    assert check_patch_mask(mask, 2, 3) == 2
    with pytest.raises(ValueError, match="hides every patch"):
        check_patch_mask(torch.ones(2, 3, dtype=torch.bool), 2, 3)
    pred, target = check_patch_rows(torch.zeros(2, 3).bfloat16(), torch.ones(2, 3).requires_grad_())
    assert pred.dtype == torch.float32 and not target.requires_grad
    with pytest.raises(ValueError, match=r"pred must have shape \[B, M\]"):
        check_patch_rows(torch.zeros(2, 3, 1), torch.zeros(2, 3, 1))
    with pytest.raises(ValueError, match="target must have the same shape"):
        check_patch_rows(torch.zeros(2, 3), torch.zeros(2, 4))
    # No valid pair (every target tied): the accuracy is undefined, NaN.
    assert torch.isnan(pairwise_ranking_accuracy(torch.rand(2, 3), torch.ones(2, 3)))
