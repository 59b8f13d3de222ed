"""Audio losses: predicted waveforms compared with target waveforms in the spectral domain.

Layout only: the classes are public in [lightning_losses.losses][], the functions in
[lightning_losses.functional][].
"""

__all__: list[str] = []
