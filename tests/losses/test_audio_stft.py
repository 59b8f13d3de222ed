"""The multi-resolution STFT loss against auraloss and a NumPy reference written from the paper."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from lightning_losses import get_loss
from lightning_losses.functional import multi_resolution_stft_loss
from lightning_losses.losses import MultiResolutionSTFTLoss

auraloss_freq = pytest.importorskip("auraloss.freq")  # test-only dependency

SMALL = {"fft_sizes": (64, 128, 32), "hop_sizes": (16, 32, 8), "win_lengths": (48, 128, 20)}


def _auraloss(**kwargs):
    # Built under float64 so that its window (torch.*_window at the default dtype) is float64.
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return auraloss_freq.MultiResolutionSTFTLoss(**kwargs)
    finally:
        torch.set_default_dtype(old)


def _waves(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    target = torch.randn(*shape, generator=g, dtype=torch.float64)
    pred = target + 0.5 * torch.randn(*shape, generator=g, dtype=torch.float64)
    return pred.requires_grad_(), target.requires_grad_()


def _value_and_grads(fn, pred, target):
    out = fn(pred, target)
    return (out.detach(), *torch.autograd.grad(out, (pred, target)))


@pytest.mark.parametrize(
    ("w_sc", "w_log_mag", "w_lin_mag", "mag_distance"),
    [
        (1.0, 1.0, 0.0, "L1"),  # the defaults
        (1.0, 0.0, 0.0, "L1"),
        (0.0, 1.0, 0.0, "L2"),
        (0.5, 2.0, 1.5, "L1"),
        (0.0, 0.0, 1.0, "L2"),
    ],
)
def test_matches_auraloss_value_and_gradient_with_batch_pooling(
    w_sc, w_log_mag, w_lin_mag, mag_distance
):
    pred, target = _waves((3, 2, 400))
    weights = {"w_sc": w_sc, "w_log_mag": w_log_mag, "w_lin_mag": w_lin_mag}
    ref = _auraloss(**SMALL, **weights, mag_distance=mag_distance)
    want = _value_and_grads(ref, pred, target)
    got = _value_and_grads(
        lambda x, y: multi_resolution_stft_loss(
            x, y, **SMALL, **weights, mag_distance=mag_distance, batch=True
        ),
        pred,
        target,
    )
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize(
    "window",
    ["hann_window", "hamming_window", "blackman_window", "bartlett_window", "kaiser_window"],
)
def test_matches_auraloss_for_every_window_and_the_default_resolutions(window):
    pred, target = _waves((2, 1, 2100), seed=1)  # > 1024 samples for the 2048-point FFT
    want = _value_and_grads(_auraloss(window=window), pred, target)
    got = _value_and_grads(
        MultiResolutionSTFTLoss(window=window, batch=True).double(), pred, target
    )
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def test_per_clip_loss_is_auraloss_on_each_clip_alone():
    # batch=False (the paper's per-utterance spectral convergence): clip n's loss is auraloss's
    # loss of that clip as a batch of one; "mean" averages them.
    pred, target = _waves((4, 2, 300), seed=2)
    ref = _auraloss(**SMALL)
    per_clip = multi_resolution_stft_loss(pred, target, **SMALL, reduction="none")
    assert per_clip.shape == (4,)
    for n in range(4):
        torch.testing.assert_close(per_clip[n], ref(pred[n : n + 1], target[n : n + 1]))
    torch.testing.assert_close(multi_resolution_stft_loss(pred, target, **SMALL), per_clip.mean())
    torch.testing.assert_close(
        multi_resolution_stft_loss(pred, target, **SMALL, reduction="sum"), per_clip.sum()
    )
    # [N, T] is one channel.
    torch.testing.assert_close(
        multi_resolution_stft_loss(pred[:, 0], target[:, 0], **SMALL, reduction="none"),
        torch.stack([ref(pred[n : n + 1, :1], target[n : n + 1, :1]) for n in range(4)]),
    )


def _naive_magnitude(x, fft, hop, win, eps):
    """|STFT| of a 1-D signal from the definition: reflect-padded centred frames, periodic Hann
    window of `win` samples centred in the `fft`-point frame, one-sided DFT."""
    pad = fft // 2
    padded = np.pad(x, pad, mode="reflect")
    n = np.arange(win)
    window = np.zeros(fft)
    left = (fft - win) // 2
    window[left : left + win] = 0.5 - 0.5 * np.cos(2 * np.pi * n / win)  # periodic Hann
    frames = [padded[s : s + fft] * window for s in range(0, len(padded) - fft + 1, hop)]
    spec = np.fft.rfft(np.stack(frames), axis=-1).T  # [F, frames]
    return np.sqrt(np.maximum(spec.real**2 + spec.imag**2, eps))


def test_matches_numpy_reference_from_the_paper_formula():
    # Parallel WaveGAN, Section 2.3: L_sc = ||Y - X||_F / ||Y||_F and L_mag = mean |log Y - log X|,
    # averaged over the M resolutions (w_sc = w_log_mag = 1).
    pred, target = _waves((2, 500), seed=3)
    x, y = pred.detach().numpy(), target.detach().numpy()
    want = []
    for i in range(2):
        total = 0.0
        for fft, hop, win in zip(*SMALL.values(), strict=True):
            xm = _naive_magnitude(x[i], fft, hop, win, 1e-8)
            ym = _naive_magnitude(y[i], fft, hop, win, 1e-8)
            total += np.linalg.norm(ym - xm) / np.linalg.norm(ym)
            total += np.abs(np.log(ym) - np.log(xm)).mean()
        want.append(total / 3)
    got = multi_resolution_stft_loss(pred, target, **SMALL, reduction="none")
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64))


@pytest.mark.parametrize(("batch", "reduction"), [(False, "none"), (True, "mean")])
def test_gradcheck_at_small_resolutions(batch, reduction):
    # The contract tests skip gradcheck for this loss (their default-resolution clips are
    # > 1024 samples long); the formula is the same at any resolution. Two clips of 40 samples
    # keep the numerical Jacobian cheap.
    pred, target = _waves((2, 40), seed=8)
    small = {"fft_sizes": (16, 8), "hop_sizes": (4, 2), "win_lengths": (12, 8)}

    def fn(x, y):
        return multi_resolution_stft_loss(
            x, y, **small, w_lin_mag=0.5, batch=batch, reduction=reduction
        )

    assert torch.autograd.gradcheck(
        fn, (pred, target), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True
    )


def test_perfect_prediction_is_zero_with_zero_gradient_and_silence_is_finite():
    _, target = _waves((2, 1, 300), seed=4)
    pred = target.detach().clone().requires_grad_()
    for batch in (False, True):
        out = multi_resolution_stft_loss(pred, target.detach(), **SMALL, batch=batch)
        (grad,) = torch.autograd.grad(out, pred)
        assert out == 0 and (grad == 0).all()  # the Frobenius norm's subgradient at 0
    # Silent target: the magnitude floor keeps log and the division finite.
    silent = torch.zeros(2, 300, dtype=torch.float64)
    out = multi_resolution_stft_loss(silent.clone().requires_grad_(), silent, **SMALL)
    assert torch.isfinite(out) and out == 0


def test_loss_grows_with_the_error_and_half_inputs_are_upcast():
    _, target = _waves((2, 300), seed=5)
    target = target.detach()
    noise = torch.randn(2, 300, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    values = [
        multi_resolution_stft_loss(target + s * noise, target, **SMALL).item()
        for s in (0.01, 0.1, 1.0)
    ]
    assert values[0] < values[1] < values[2]
    pred = target + 0.1 * noise
    half = multi_resolution_stft_loss(pred.bfloat16(), target.bfloat16(), **SMALL)
    assert half.dtype == torch.float32
    ref = multi_resolution_stft_loss(pred.bfloat16().double(), target.bfloat16().double(), **SMALL)
    torch.testing.assert_close(half.double(), ref, rtol=1e-4, atol=1e-5)


def test_class_matches_functional_and_is_built_by_name():
    pred, target = _waves((3, 2, 300), seed=7)
    options = [{}, {"batch": True, "w_lin_mag": 0.5, "window": "hamming_window"}]
    for kwargs, reduction in itertools.product(options, ("none", "mean", "sum")):
        torch.testing.assert_close(
            MultiResolutionSTFTLoss(**SMALL, **kwargs, reduction=reduction)(pred, target),
            multi_resolution_stft_loss(pred, target, **SMALL, **kwargs, reduction=reduction),
        )
    built = get_loss("mrstft", fft_sizes=[64, 32], hop_sizes=[16, 8], win_lengths=[64, 32])
    assert type(built) is MultiResolutionSTFTLoss and built.fft_sizes == (64, 32)
    assert "fft_sizes=(64, 32)" in repr(built)


def test_bad_shapes_and_short_clips_raise_naming_the_argument():
    x = torch.randn(2, 300)
    with pytest.raises(ValueError, match="input"):
        multi_resolution_stft_loss(torch.randn(300), torch.randn(300), **SMALL)
    with pytest.raises(ValueError, match="target"):
        multi_resolution_stft_loss(x, torch.randn(2, 299), **SMALL)
    with pytest.raises(ValueError, match="more than 64 samples"):
        multi_resolution_stft_loss(x[:, :64], x[:, :64], **SMALL)  # reflect padding needs > 64
    with pytest.raises(TypeError, match="input"):
        multi_resolution_stft_loss(x.long(), x, **SMALL)
    with pytest.raises(ValueError, match="win_lengths"):
        MultiResolutionSTFTLoss(fft_sizes=(64,), hop_sizes=(16,), win_lengths=(65,))
    with pytest.raises(ValueError, match="fft_sizes"):
        MultiResolutionSTFTLoss(fft_sizes=(), hop_sizes=(), win_lengths=())
