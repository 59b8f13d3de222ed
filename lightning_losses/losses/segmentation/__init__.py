"""Dense losses: Dice, generalized Dice, Tversky, Dice + CE / focal, deep supervision.

`dice` (Dice / soft Jaccard, generalized Dice, Tversky), `combined` (Dice + cross-entropy, Dice +
focal) and `deep_supervision` (a weighted sum of one loss over several output heads), on the
shared dense plumbing of `_dense`. Layout only: the classes are public in
[lightning_losses.losses][], the functions in [lightning_losses.functional][].
"""

__all__: list[str] = []
