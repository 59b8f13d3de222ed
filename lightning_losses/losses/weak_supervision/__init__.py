r"""Weakly supervised losses: learning from aggregate responses and from label proportions.

The data come in *bags* of instances, and only a summary of each bag is known: the mean response
of a regression bag, or the class proportions of a classification bag. Every loss takes
per-instance predictions, the bag id of each instance (any integers, not necessarily contiguous)
and each instance's copy of its bag's summary. Layout only: the classes are public in
[lightning_losses.losses][], the functions in [lightning_losses.functional][].
"""

__all__: list[str] = []
