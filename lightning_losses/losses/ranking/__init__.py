"""Ranking and recommendation losses over (user, positive item, negative items) scores.

Every loss takes the score of the observed item `pos_score [N]` and of sampled negatives
`neg_score [N, K]` (`[N]` means `K = 1`) and, with `reduction="none"`, returns one loss per
interaction `(u, i)`: the granularity PLD resampling and sample reweighting act on. There is no
class target, so these losses keep the recommendation argument names (`input_kind` is
`InputKind.RANKING`, `target_arg` is `None`). Layout only: the classes are public in
[lightning_losses.losses][], the functions in [lightning_losses.functional][].
"""

__all__: list[str] = []
