"""Contract-test specs of the audio losses."""

from __future__ import annotations

import torch

from tests.losses.specs import LossSpec
from tests.losses.specs.examples import LossExample

_NAN = float("nan")


def waveform_example(n: int, size: int, generator: torch.Generator) -> LossExample:
    """Predicted (differentiable) and target waveforms `[n, T]`, `T = 1040 + size` samples.

    The default resolutions need `T` > 1024 (half the 2048-point FFT, for reflect padding); the
    target is a noisy sine so that its spectrum is not flat.
    """
    t = torch.arange(1040 + size) / 8000.0
    target = torch.sin(2 * torch.pi * 440 * t) + 0.1 * torch.randn(
        n, t.numel(), generator=generator
    )
    pred = target + 0.3 * torch.randn(n, t.numel(), generator=generator)
    return LossExample(inputs=(pred,), targets=(target,))


SPECS = [
    LossSpec(
        "multi_resolution_stft",
        waveform_example,
        invalid_kwargs=(
            {"fft_sizes": (1024, 2048)},  # three hop sizes and window lengths
            {"fft_sizes": (512, 256, 128)},  # window longer than the FFT
            {"fft_sizes": 1024},
            {"hop_sizes": (120, 0, 50)},
            {"win_lengths": (600.0, 1200, 240)},
            {"window": "hann"},
            {"w_sc": -1.0},
            {"w_log_mag": _NAN},
            {"mag_distance": "l1"},
            {"eps": 0.0},
        ),
        bool_flags=("batch",),
        # Not piecewise: at the default resolutions a clip needs > 1024 samples, and a float64
        # gradcheck perturbs each of them (minutes on CI). test_audio_stft.py runs gradcheck at
        # small resolutions and checks the gradient against auraloss' at the default ones.
        gradcheck=False,
        notes="reduction='none' gives one loss per clip [N]; batch=True repeats the pooled "
        "spectral convergence; gradcheck in test_audio_stft.py (small resolutions)",
    ),
]
