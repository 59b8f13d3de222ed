"""Text data for causal LM pretraining: read UTF-8 text, tokenize with byte-level BPE, pack blocks.

`TextDataModule` reads any UTF-8 text file or folder (`path`) or, by default, the bundled
synthetic grammar corpus (`lightning_losses.data.grammar`, generated deterministically, no
licence issues, runs offline). Documents (blank-line separated paragraphs) are split into
train/validation by document, or the validation text comes from its own file (`val_path`).
They are tokenized with a byte-level BPE tokenizer trained on the training text and cached
(`lightning_losses.data.tokenizer`), joined with `<|endoftext|>` and packed into fixed blocks
of `block_size + 1` tokens: `input_ids = block[:-1]`, `labels = block[1:]`.

The training order is a pure function of `(seed, epoch)`
([EpochShuffleSampler][lightning_losses.data.sampling.EpochShuffleSampler]), so a run resumed
from a checkpoint sees the same batches as an uninterrupted one.

For experiments on data quality, a known fraction of the *training* blocks can be replaced by
duplicates of a few clean blocks (redundant, quickly memorised: low loss) or by uniformly random
tokens (garbled: high loss); every item carries `kind` (0 clean, 1 duplicate, 2 garbled) so
the mask is known.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lightning_losses.data.grammar import generate_corpus
from lightning_losses.data.sampling import epoch_shuffled_loader, eval_loader, require_setup
from lightning_losses.data.tokenizer import EOS_TOKEN, train_or_load_tokenizer
from lightning_losses.validation import check_int, check_number

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = ["BlockDataset", "TextDataModule", "pack_blocks", "read_text"]

CLEAN, DUPLICATE, GARBLED = 0, 1, 2


def read_text(path: str | Path) -> str:
    """Read a UTF-8 file, or every non-hidden file under a folder (sorted, joined by blank lines).

    Args:
        path: a file or a folder.

    Returns:
        The text.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: a folder without files, or a file that is not valid UTF-8 (named).
    """
    path = Path(path)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise ValueError(f"data path {str(path)!r} is a folder without files")
    else:
        raise FileNotFoundError(f"data path {str(path)!r} does not exist")
    parts = []
    for f in files:
        try:
            parts.append(f.read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise ValueError(f"data file {str(f)!r} is not valid UTF-8: {err}") from err
    return "\n\n".join(parts)


def pack_blocks(ids: list[int] | Tensor, block_size: int, *, name: str = "corpus") -> Tensor:
    """Cut a token stream into `[n, block_size + 1]` blocks (the tail that does not fit is dropped).

    Consecutive blocks overlap by one token so every token is predicted exactly once.

    Args:
        ids: the token stream.
        block_size: tokens per sequence $T$.
        name: what the stream is, for the error message.

    Returns:
        `[n, block_size + 1]` LongTensor.

    Raises:
        ValueError: fewer than `block_size + 1` tokens.

    Example:
        >>> pack_blocks(list(range(11)), block_size=4).tolist()
        [[0, 1, 2, 3, 4], [4, 5, 6, 7, 8]]
    """
    ids = torch.as_tensor(ids, dtype=torch.long)
    n = (ids.numel() - 1) // block_size
    if n < 1:
        raise ValueError(
            f"{name} too short: {ids.numel()} tokens for one block of --data.block_size "
            f"{block_size}"
        )
    idx = torch.arange(n)[:, None] * block_size + torch.arange(block_size + 1)[None, :]
    return ids[idx]


class BlockDataset(Dataset[dict[str, Tensor]]):
    """Items `{"input_ids", "labels", "index", "kind"}` from packed `[n, T + 1]` blocks.

    Args:
        blocks: `[n, T + 1]` packed blocks.
        kinds: `[n]` block kinds (0 clean, 1 duplicate, 2 garbled); default all clean.
    """

    def __init__(self, blocks: Tensor, kinds: Tensor | None = None) -> None:
        self.blocks = blocks
        self.kinds = kinds if kinds is not None else torch.zeros(len(blocks), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        block = self.blocks[i]
        return {
            "input_ids": block[:-1],
            "labels": block[1:],
            "index": torch.tensor(i),
            "kind": self.kinds[i],
        }


class TextDataModule(LightningDataModule):
    """Causal-LM blocks from a UTF-8 text file/folder or the bundled grammar corpus.

    Args:
        path: a UTF-8 text file or folder; `None` uses the synthetic grammar corpus.
        val_path: a UTF-8 text file or folder holding the validation text; then every
            document of `path` trains and `val_fraction` must be 0 (its default then).
        block_size: tokens per training sequence (at most the model's
            `max_position_embeddings`, checked by the NLP recipe at setup).
        vocab_size: BPE vocabulary size (the model's embedding must be at least this large).
        batch_size: sequences per batch (per rank under DDP).
        val_fraction: fraction of the documents held out for validation, in $(0, 1)$;
            default 0.05, or 0 with `val_path`.
        num_docs: documents of the grammar corpus (ignored with `path`).
        tokenizer_dir: tokenizer cache folder (default `~/.cache/lightning_losses/tokenizers`).
        duplicate_fraction: fraction of training blocks replaced by copies of
            `num_duplicate_sources` clean blocks.
        garble_fraction: fraction of training blocks replaced by uniformly random tokens.
        num_duplicate_sources: how many distinct blocks the duplicates copy.
        seed: corpus, split, corruption and shuffling seed.
        num_workers: DataLoader workers.

    Raises:
        ValueError: a bad size or fraction; `val_fraction` > 0 together with `val_path`, or
            0 without it. Messages name the `--data.*` flag.
        FileNotFoundError: `path` or `val_path` does not exist.

    Example:
        >>> dm = TextDataModule(num_docs=50, block_size=32, vocab_size=300)
        >>> dm.block_size, dm.bpe_vocab_size
        (32, 300)
    """

    def __init__(
        self,
        path: str | None = None,
        val_path: str | None = None,
        block_size: int = 128,
        vocab_size: int = 512,
        batch_size: int = 16,
        val_fraction: float | None = None,
        num_docs: int = 3000,
        tokenizer_dir: str | None = None,
        duplicate_fraction: float = 0.0,
        garble_fraction: float = 0.0,
        num_duplicate_sources: int = 4,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("block_size", block_size),
            ("batch_size", batch_size),
            ("num_docs", num_docs),
            ("num_duplicate_sources", num_duplicate_sources),
        ):
            check_int(f"--data.{name}", value, low=1)
        if val_fraction is None:
            val_fraction = 0.0 if val_path is not None else 0.05
        if val_path is not None and val_fraction != 0:
            raise ValueError(
                f"--data.val_fraction {val_fraction} would hold out training documents, but "
                "--data.val_path already gives the validation text; set --data.val_fraction 0"
            )
        if val_path is None and not 0.0 < val_fraction < 1.0:
            raise ValueError(
                f"--data.val_fraction must be in (0, 1), got {val_fraction} (0 only together "
                "with --data.val_path)"
            )
        check_number("--data.duplicate_fraction", duplicate_fraction, low=0.0)
        check_number("--data.garble_fraction", garble_fraction, low=0.0)
        if duplicate_fraction + garble_fraction >= 1:
            raise ValueError(
                "--data.duplicate_fraction and --data.garble_fraction must be >= 0 with a sum "
                f"< 1, got {duplicate_fraction} and {garble_fraction}"
            )
        for flag, file in (("--data.path", path), ("--data.val_path", val_path)):
            if file is not None and not Path(file).exists():
                # At construction, not in setup: the CLI reports it before any work starts.
                raise FileNotFoundError(f"{flag} {str(file)!r}: no such file or folder")
        self.save_hyperparameters()
        self.hparams["val_fraction"] = val_fraction  # the resolved default, for the record
        self.path, self.val_path, self.val_fraction = path, val_path, val_fraction
        self.block_size, self.batch_size = block_size, batch_size
        self.bpe_vocab_size = vocab_size  # the target; `tokenizer_vocab_size` is the actual size
        self.num_docs, self.tokenizer_dir, self.seed = num_docs, tokenizer_dir, seed
        self.duplicate_fraction, self.garble_fraction = duplicate_fraction, garble_fraction
        self.num_duplicate_sources, self.num_workers = num_duplicate_sources, num_workers
        self.tokenizer: Tokenizer | None = None
        self.train_set: BlockDataset | None = None
        self.val_set: BlockDataset | None = None

    # -- corpus --------------------------------------------------------------------------------
    @staticmethod
    def _split_documents(text: str) -> list[str]:
        return [d.strip() for d in text.split("\n\n") if d.strip()]

    def _documents(self) -> tuple[list[str], list[str]]:
        if self.path is None:
            text = generate_corpus(self.num_docs, self.seed)
        else:
            text = read_text(self.path)
        docs = self._split_documents(text)
        if self.val_path is not None:
            val = self._split_documents(read_text(self.val_path))
            if not val:
                raise ValueError(f"--data.val_path {self.val_path!r} holds no text")
            return docs, val
        if len(docs) < 2:
            # One long document: hold out its tail.
            cut = int(len(text) * (1 - self.val_fraction))
            return [text[:cut]], [text[cut:]]
        order = list(range(len(docs)))
        random.Random(self.seed).shuffle(order)
        n_val = max(1, round(len(docs) * self.val_fraction))
        val = [docs[i] for i in sorted(order[:n_val])]
        train = [docs[i] for i in sorted(order[n_val:])]
        return train, val

    def _trained_tokenizer(self) -> Tokenizer:
        return require_setup(self.tokenizer, self)

    def _encode(self, docs: list[str]) -> list[int]:
        tokenizer = self._trained_tokenizer()
        eos = tokenizer.token_to_id(EOS_TOKEN)
        if eos is None:  # a tokenizer from `train_or_load_tokenizer` always has it
            raise ValueError(f"the tokenizer has no {EOS_TOKEN!r} token")
        ids: list[int] = []
        for enc in tokenizer.encode_batch(docs):
            ids.extend(enc.ids)
            ids.append(eos)
        return ids

    def _corrupt(self, blocks: Tensor) -> tuple[Tensor, Tensor]:
        n = len(blocks)
        kinds = torch.zeros(n, dtype=torch.long)
        n_dup, n_garb = int(n * self.duplicate_fraction), int(n * self.garble_fraction)
        if n_dup + n_garb == 0:
            return blocks, kinds
        g = torch.Generator().manual_seed(self.seed + 1)
        perm = torch.randperm(n, generator=g)
        n_src = self.num_duplicate_sources
        sources = perm[:n_src]
        dup_idx = perm[n_src : n_src + n_dup]
        garb_idx = perm[n_src + n_dup : n_src + n_dup + n_garb]
        blocks = blocks.clone()
        pick = torch.randint(len(sources), (len(dup_idx),), generator=g)
        blocks[dup_idx] = blocks[sources[pick]]
        blocks[garb_idx] = torch.randint(
            self._trained_tokenizer().get_vocab_size(),
            (len(garb_idx), blocks.shape[1]),
            generator=g,
        )
        kinds[dup_idx] = DUPLICATE
        kinds[garb_idx] = GARBLED
        return blocks, kinds

    # -- LightningDataModule ---------------------------------------------------------------------
    def prepare_data(self) -> None:
        # Local rank 0 trains and caches the tokenizer; the other ranks load it in setup.
        train, _ = self._documents()
        train_or_load_tokenizer("\n\n".join(train), self.bpe_vocab_size, self.tokenizer_dir)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train, val = self._documents()
        self.tokenizer = train_or_load_tokenizer(
            "\n\n".join(train), self.bpe_vocab_size, self.tokenizer_dir
        )
        train_blocks = pack_blocks(self._encode(train), self.block_size, name="training text")
        self.train_set = BlockDataset(*self._corrupt(train_blocks))
        self.val_set = BlockDataset(
            pack_blocks(self._encode(val), self.block_size, name="validation text")
        )

    @property
    def tokenizer_vocab_size(self) -> int:
        """Actual vocabulary size of the trained tokenizer (at most `vocab_size`)."""
        return self._trained_tokenizer().get_vocab_size()

    def _dataset(self, split: str) -> BlockDataset:
        return require_setup(self.train_set if split == "train" else self.val_set, self)

    def train_dataloader(self) -> DataLoader[dict[str, Tensor]]:
        # Epoch-seeded order (not shuffle=True with a generator, whose running state a resumed
        # run does not have): epoch e's permutation depends only on (seed, e).
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
