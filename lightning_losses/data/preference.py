"""Synthetic preference pairs with a known preferred rule, from the bundled grammar corpus.

Each pair shares a prompt: the first `prompt_words` words of a sentence of the grammar
(`lightning_losses.data.grammar`). The **chosen** response is the sentence's true continuation;
the **rejected** one is the same words in a shuffled order (never the true order), so it is
ungrammatical by construction and has the same length. A model that prefers grammatical text
prefers the chosen response: the preference label is correct for every pair, unless
`flip_fraction` swaps a known subset (label noise for robust DPO, with the mask kept in
`flipped`).

Text is tokenized at the word level (the grammar has ~130 words; `.` is its own token), so no
tokenizer has to be trained. Every item is one pair:
`{"chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels", "index",
"flipped"}`, each sequence `[T]` right-padded, with `labels` aligned to `input_ids` (position
`t` predicts `labels[t]`) and `-100` on prompt and padding positions: what
[sequence_log_probs][lightning_losses.functional.sequence_log_probs] takes.

Example:
    >>> from lightning_losses.data.preference import synthetic_preference_pairs
    >>> pairs = synthetic_preference_pairs(3, seed=0)
    >>> len(pairs), sorted(pairs[0])
    (3, ['chosen', 'prompt', 'rejected'])
    >>> sorted(pairs[0]["chosen"].split()) == sorted(pairs[0]["rejected"].split())
    True
"""

from __future__ import annotations

import random

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lightning_losses.data.grammar import generate_sentence
from lightning_losses.data.sampling import epoch_shuffled_loader, eval_loader, require_setup
from lightning_losses.validation import check_int, check_number

__all__ = [
    "PAD_TOKEN",
    "PreferenceDataModule",
    "PreferencePairDataset",
    "WordVocab",
    "synthetic_preference_pairs",
]

PAD_TOKEN, BOS_TOKEN, EOS_TOKEN = "<pad>", "<bos>", "<eos>"


def _words(sentence: str) -> list[str]:
    return sentence.lower().replace(".", " .").split()


def synthetic_preference_pairs(
    num_pairs: int,
    *,
    prompt_words: int = 3,
    min_response_words: int = 3,
    max_response_words: int = 12,
    seed: int = 0,
) -> list[dict[str, str]]:
    """`num_pairs` prompts with a grammatical (chosen) and a word-shuffled (rejected) continuation.

    Args:
        num_pairs: how many pairs.
        prompt_words: words of the sentence given as the prompt.
        min_response_words: sentences with fewer continuation words are skipped.
        max_response_words: sentences with more continuation words are skipped.
        seed: generation seed (the pairs are a pure function of the arguments).

    Returns:
        A list of `{"prompt", "chosen", "rejected"}` strings (lower-case, `.` as a word).

    Raises:
        ValueError: `num_pairs < 1`, `prompt_words < 1`, `min_response_words < 2` or
            `max_response_words < min_response_words`.
        TypeError: a count that is not an int.
    """
    check_int("num_pairs", num_pairs, low=1)
    check_int("prompt_words", prompt_words, low=1)
    check_int("min_response_words", min_response_words, low=2)
    check_int("max_response_words", max_response_words, low=min_response_words)
    rng = random.Random(seed)
    pairs: list[dict[str, str]] = []
    while len(pairs) < num_pairs:
        words = _words(generate_sentence(rng))
        prompt, response = words[:prompt_words], words[prompt_words:]
        if not min_response_words <= len(response) <= max_response_words or len(set(response)) < 2:
            continue
        shuffled = response[:]
        while shuffled == response:  # a different order: never the grammatical sentence
            rng.shuffle(shuffled)
        pairs.append(
            {
                "prompt": " ".join(prompt),
                "chosen": " ".join(response),
                "rejected": " ".join(shuffled),
            }
        )
    return pairs


class WordVocab:
    """Word-level vocabulary: `<pad>`=0, `<bos>`=1, `<eos>`=2, then the words in sorted order.

    Args:
        texts: the texts whose words make up the vocabulary.
    """

    def __init__(self, texts: list[str]) -> None:
        words = sorted({w for t in texts for w in t.split()})
        self.itos = [PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, *words]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """Token ids of a space-separated text (every word must be in the vocabulary)."""
        return [self.stoi[w] for w in text.split()]


class PreferencePairDataset(Dataset[dict[str, Tensor]]):
    """Tokenized pairs: `[bos] prompt response [eos]` per side, right-padded to `max_length + 1`.

    Args:
        pairs: `{"prompt", "chosen", "rejected"}` dicts.
        vocab: the word vocabulary.
        max_length: sequence length $T$ of `input_ids` / `labels`.
        flipped: `[len(pairs)]` bool, pairs whose chosen and rejected are swapped (label noise).

    Raises:
        ValueError: a pair longer than `max_length + 1` tokens (names `--data.max_length`).
    """

    def __init__(
        self, pairs: list[dict[str, str]], vocab: WordVocab, max_length: int, flipped: Tensor
    ) -> None:
        self.flipped = flipped
        rows: dict[str, list[tuple[Tensor, Tensor]]] = {"chosen": [], "rejected": []}
        for i, pair in enumerate(pairs):
            prompt = [vocab.stoi[BOS_TOKEN], *vocab.encode(pair["prompt"])]
            for side in ("chosen", "rejected"):
                # A flipped pair presents the shuffled response as the preferred one.
                src = ({"chosen": "rejected", "rejected": "chosen"}[side]) if flipped[i] else side
                seq = prompt + vocab.encode(pair[src]) + [vocab.stoi[EOS_TOKEN]]
                if len(seq) > max_length + 1:
                    raise ValueError(
                        f"a pair has {len(seq)} tokens, more than --data.max_length + 1 = "
                        f"{max_length + 1}; raise --data.max_length"
                    )
                ids = torch.full((max_length + 1,), vocab.stoi[PAD_TOKEN], dtype=torch.long)
                ids[: len(seq)] = torch.tensor(seq)
                labels = ids[1:].clone()
                labels[: len(prompt) - 1] = -100  # the prompt is given, not scored
                labels[len(seq) - 1 :] = -100  # padding
                rows[side].append((ids[:-1], labels))
        self.rows = rows

    def __len__(self) -> int:
        return len(self.flipped)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        (ci, cl), (ri, rl) = self.rows["chosen"][i], self.rows["rejected"][i]
        return {
            "chosen_input_ids": ci,
            "chosen_labels": cl,
            "rejected_input_ids": ri,
            "rejected_labels": rl,
            "index": torch.tensor(i),
            "flipped": self.flipped[i],
        }


class PreferenceDataModule(LightningDataModule):
    """Synthetic grammatical-vs-shuffled preference pairs as dict batches (see the module doc).

    Args:
        num_pairs: training pairs.
        num_val_pairs: validation pairs (generated with another seed, never flipped).
        prompt_words: words of each sentence given as the prompt.
        max_response_words: longest continuation (longer sentences are skipped).
        max_length: sequence length $T$ (at least `prompt_words + max_response_words + 1`; at
            most the model's `max_position_embeddings`).
        batch_size: pairs per batch (per rank under DDP).
        flip_fraction: fraction of training pairs whose preference is swapped (known mask in
            `batch["flipped"]`), in $[0, 0.5)$.
        seed: generation, flip and shuffling seed.
        num_workers: DataLoader workers.

    Raises:
        ValueError: a non-positive size or a `flip_fraction` outside $[0, 0.5)$ (names the flag).

    Example:
        >>> dm = PreferenceDataModule(num_pairs=8, num_val_pairs=4, batch_size=4)
        >>> dm.setup("fit")
        >>> batch = next(iter(dm.train_dataloader()))
        >>> tuple(batch["chosen_input_ids"].shape), dm.vocab_size > 50
        ((4, 16), True)
    """

    def __init__(
        self,
        num_pairs: int = 2048,
        num_val_pairs: int = 256,
        prompt_words: int = 3,
        max_response_words: int = 12,
        max_length: int = 16,
        batch_size: int = 32,
        flip_fraction: float = 0.0,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("num_pairs", num_pairs),
            ("num_val_pairs", num_val_pairs),
            ("prompt_words", prompt_words),
            ("max_response_words", max_response_words),
            ("max_length", max_length),
            ("batch_size", batch_size),
        ):
            check_int(f"--data.{name}", value, low=1)
        check_number("--data.flip_fraction", flip_fraction, low=0.0, high=0.5, high_inclusive=False)
        self.save_hyperparameters()
        self.num_pairs, self.num_val_pairs = num_pairs, num_val_pairs
        self.prompt_words, self.max_response_words = prompt_words, max_response_words
        self.max_length, self.batch_size, self.flip_fraction = max_length, batch_size, flip_fraction
        self.seed, self.num_workers = seed, num_workers
        self.vocab: WordVocab | None = None
        self.train_set: PreferencePairDataset | None = None
        self.val_set: PreferencePairDataset | None = None

    @property
    def vocab_size(self) -> int:
        """Size of the word vocabulary (after `setup`)."""
        return len(require_setup(self.vocab, self))

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        kw = {"prompt_words": self.prompt_words, "max_response_words": self.max_response_words}
        train = synthetic_preference_pairs(self.num_pairs, **kw, seed=self.seed)
        val = synthetic_preference_pairs(self.num_val_pairs, **kw, seed=self.seed + 10_000)
        self.vocab = WordVocab([p[k] for p in train + val for k in ("prompt", "chosen")])
        g = torch.Generator().manual_seed(self.seed + 1)
        flipped = torch.zeros(len(train), dtype=torch.bool)
        n_flip = int(len(train) * self.flip_fraction)
        flipped[torch.randperm(len(train), generator=g)[:n_flip]] = True
        self.train_set = PreferencePairDataset(train, self.vocab, self.max_length, flipped)
        self.val_set = PreferencePairDataset(
            val, self.vocab, self.max_length, torch.zeros(len(val), dtype=torch.bool)
        )

    def _dataset(self, split: str) -> PreferencePairDataset:
        return require_setup(self.train_set if split == "train" else self.val_set, self)

    def train_dataloader(self) -> DataLoader[dict[str, Tensor]]:
        # Epoch-seeded order: a resumed run sees the same batches as an uninterrupted one.
        return epoch_shuffled_loader(
            self._dataset("train"),
            batch_size=self.batch_size,
            seed=self.seed,
            drop_last=True,
            num_workers=self.num_workers,
            trainer=self.trainer,
        )

    def val_dataloader(self) -> DataLoader[dict[str, Tensor]]:
        return eval_loader(
            self._dataset("val"), batch_size=self.batch_size, num_workers=self.num_workers
        )
