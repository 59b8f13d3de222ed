"""Byte-level BPE tokenizer trained offline with Hugging Face `tokenizers`, cached on disk.

The tokenizer is trained on the training corpus at first use (seconds for a few MB) and cached
under `<cache_dir>/<sha256(corpus)[:16]>-v<vocab_size>/tokenizer.json`. The default cache
directory is `$LIGHTNING_LOSSES_CACHE/tokenizers` or `~/.cache/lightning_losses/tokenizers`.
Byte-level BPE (BPE from *Neural Machine Translation of Rare Words with Subword Units*, Sennrich
et al., ACL 2016, arXiv:1508.07909; on bytes as in GPT-2, *Language Models are Unsupervised
Multitask Learners*, Radford et al., 2019) never produces unknown tokens, so any UTF-8 text can
be encoded. `tokenizers` is the `[nlp]` extra (`transformers` depends on it too), imported only
when a tokenizer is trained or loaded.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from lightning_losses.validation import check_int

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = ["EOS_TOKEN", "default_cache_dir", "train_or_load_tokenizer"]

EOS_TOKEN = "<|endoftext|>"


def default_cache_dir() -> Path:
    """`$LIGHTNING_LOSSES_CACHE/tokenizers` or `~/.cache/lightning_losses/tokenizers`.

    Returns:
        The folder (not created).
    """
    root = os.environ.get("LIGHTNING_LOSSES_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "lightning_losses"
    return base / "tokenizers"


def train_or_load_tokenizer(
    text: str, vocab_size: int = 1024, cache_dir: str | Path | None = None
) -> Tokenizer:
    """Return a `tokenizers.Tokenizer` trained on `text` (loaded from the cache if present).

    Args:
        text: the training corpus.
        vocab_size: target vocabulary size, at least 258 (the 256 byte tokens,
            `<|endoftext|>` and one merge).
        cache_dir: where `<hash>-v<vocab>/tokenizer.json` lives (default
            `default_cache_dir()`).

    Returns:
        The tokenizer.

    Raises:
        ValueError: `vocab_size` below 258 (named as `--data.vocab_size`).
        TypeError: `vocab_size` is not an int.
        ImportError: `tokenizers` is missing (the `[nlp]` extra).
    """
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    except ImportError as err:  # the [nlp] extra
        raise ImportError(
            'the BPE tokenizer needs tokenizers: pip install "lightning-losses[nlp]"'
        ) from err

    check_int("--data.vocab_size", vocab_size, low=258)  # 256 bytes + specials
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    path = Path(cache_dir or default_cache_dir()) / f"{digest}-v{vocab_size}" / "tokenizer.json"
    if path.exists():
        return Tokenizer.from_file(str(path))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Paragraph chunks keep the trainer's memory bounded on large files.
    tok.train_from_iterator((p for p in text.split("\n\n") if p), trainer=trainer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tok.save(str(tmp))
    os.replace(tmp, path)  # atomic: concurrent ranks never read a half-written file
    return tok
