"""Language-model losses.

Logits put the vocabulary at dimension 1 (`[N, V, *]`), as every loss of the catalog and
`F.cross_entropy` do; the chunked linear cross-entropy takes the LM head's hidden states
`[N, H]` / `[B, T, H]` and weight `[V, H]` instead of logits. Layout only: the classes are
public in [lightning_losses.losses][], the functions in [lightning_losses.functional][].
"""

__all__: list[str] = []
