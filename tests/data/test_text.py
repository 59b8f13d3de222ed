"""Text data: grammar corpus, reading files and folders, BPE tokenizer cache, packing, noise."""

from __future__ import annotations

import random
import re

import pytest
import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_losses.data.grammar import GRAMMAR_NOUNS, generate_corpus, generate_sentence
from lightning_losses.data.text import DUPLICATE, GARBLED, TextDataModule, pack_blocks, read_text
from lightning_losses.data.tokenizer import train_or_load_tokenizer
from tests._lightning import quiet_trainer


def test_grammar_is_deterministic_and_agrees_in_number():
    assert generate_corpus(20, seed=3) == generate_corpus(20, seed=3)
    assert generate_corpus(20, seed=3) != generate_corpus(20, seed=4)
    rng = random.Random(0)
    singular = {s for s, _ in GRAMMAR_NOUNS}
    plural = {p for _, p in GRAMMAR_NOUNS}
    # Simple clauses "Det Noun Verb" must agree: singular subjects take an -s verb.
    checked = 0
    for _ in range(400):
        s = generate_sentence(rng).lower()
        m = re.match(r"^(the|a|every|this|that|some|many|these|those|two|three) (\w+) (\w+)", s)
        if (
            m
            and m.group(2) in singular | plural
            and m.group(3)
            not in ("who", "that", "near", "behind", "under", "beside", "across", "with")
        ):
            verb = m.group(3)
            if m.group(2) in singular:
                assert verb.endswith("s"), s
            else:
                assert not verb.endswith("s"), s
            checked += 1
    assert checked > 100


def test_pack_blocks_overlap_by_one():
    blocks = pack_blocks(list(range(11)), block_size=4)
    assert blocks.tolist() == [[0, 1, 2, 3, 4], [4, 5, 6, 7, 8]]
    with pytest.raises(ValueError, match="too short"):
        pack_blocks([1, 2], block_size=4)


def test_read_text_file_and_folder(tmp_path):
    (tmp_path / "b.txt").write_text("second", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first é", encoding="utf-8")
    (tmp_path / ".hidden").write_text("no", encoding="utf-8")
    assert read_text(tmp_path) == "first é\n\nsecond"
    assert read_text(tmp_path / "b.txt") == "second"
    (tmp_path / "bad.bin").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="UTF-8"):
        read_text(tmp_path)
    with pytest.raises(FileNotFoundError):
        read_text(tmp_path / "missing")


def test_tokenizer_is_cached_and_roundtrips(tmp_path):
    text = generate_corpus(100, seed=1)
    tok = train_or_load_tokenizer(text, 300, tmp_path)
    files = list(tmp_path.rglob("tokenizer.json"))
    assert len(files) == 1 and "-v300" in str(files[0])
    mtime = files[0].stat().st_mtime_ns
    again = train_or_load_tokenizer(text, 300, tmp_path)
    assert files[0].stat().st_mtime_ns == mtime  # loaded, not retrained
    sample = "The brave cats sleep. Ünïcödé ✓"
    assert again.decode(again.encode(sample).ids) == sample  # byte-level: no unknowns
    assert tok.get_vocab_size() <= 300
    with pytest.raises(ValueError, match="vocab_size"):
        train_or_load_tokenizer(text, 100, tmp_path)


def test_datamodule_blocks_and_corruption_mask(tmp_path):
    dm = TextDataModule(
        num_docs=300,
        block_size=32,
        vocab_size=300,
        batch_size=4,
        tokenizer_dir=str(tmp_path),
        duplicate_fraction=0.2,
        garble_fraction=0.1,
    )
    dm.prepare_data()
    dm.setup("fit")
    item = dm.train_set[0]
    assert item["input_ids"].shape == (32,) and item["labels"].shape == (32,)
    blocks = dm.train_set.blocks
    torch.testing.assert_close(dm.train_set[1]["input_ids"][1:], blocks[1, 1:32])
    kinds = dm.train_set.kinds
    n = len(kinds)
    assert (kinds == DUPLICATE).sum() == int(n * 0.2)
    assert (kinds == GARBLED).sum() == int(n * 0.1)
    dup = blocks[kinds == DUPLICATE]
    assert len(torch.unique(dup, dim=0)) <= 4  # copies of num_duplicate_sources blocks
    assert blocks.max() < dm.tokenizer_vocab_size
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == (4, 32) and batch["kind"].shape == (4,)
    # Validation documents are disjoint from training documents and uncorrupted.
    assert (dm.val_set.kinds == 0).all() and len(dm.val_set) > 0


def test_datamodule_reads_a_user_folder(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(3):
        (corpus / f"{i}.txt").write_text(generate_corpus(40, seed=i), encoding="utf-8")
    dm = TextDataModule(
        path=str(corpus),
        block_size=16,
        vocab_size=280,
        tokenizer_dir=str(tmp_path / "tok"),
        val_fraction=0.2,
    )
    dm.setup("fit")
    assert len(dm.train_set) > len(dm.val_set) > 0


def test_invalid_arguments():
    with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\).*--data.val_path"):
        TextDataModule(val_fraction=0.0)
    with pytest.raises(ValueError, match=r"set --data.val_fraction 0"):
        TextDataModule(val_path="val.txt", val_fraction=0.1)
    with pytest.raises(ValueError, match="garble_fraction"):
        TextDataModule(duplicate_fraction=0.6, garble_fraction=0.5)
    with pytest.raises(ValueError, match=r"--data.block_size must be ≥ 1, got 0"):
        TextDataModule(block_size=0)


def test_separate_validation_file(tmp_path):
    train, val = tmp_path / "train.txt", tmp_path / "val.txt"
    train.write_text(generate_corpus(120, seed=1), encoding="utf-8")
    val.write_text(generate_corpus(20, seed=2), encoding="utf-8")
    dm = TextDataModule(
        path=str(train),
        val_path=str(val),
        block_size=16,
        vocab_size=280,
        tokenizer_dir=str(tmp_path / "tok"),
    )
    assert dm.hparams.val_fraction == 0.0
    dm.setup("fit")
    # Every training document trains; the validation blocks are exactly the val file's.
    expected = pack_blocks(dm._encode(dm._split_documents(val.read_text())), 16)
    assert torch.equal(dm.val_set.blocks, expected)
    expected = pack_blocks(dm._encode(dm._split_documents(train.read_text())), 16)
    assert torch.equal(dm.train_set.blocks, expected)
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    dm = TextDataModule(path=str(train), val_path=str(tmp_path / "empty.txt"), block_size=16)
    with pytest.raises(ValueError, match="holds no text"):
        dm.setup("fit")


class _Recorder(LightningModule):
    """Records the block indices of every training batch; one parameter so the optimizer runs."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[list[int]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch["index"].tolist())
        return (self.w - 1.0) ** 2

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_resumed_run_sees_the_same_batches_as_an_uninterrupted_one(tmp_path):
    def fit(max_epochs, ckpt_path=None, save=None):
        dm = TextDataModule(
            num_docs=120, block_size=16, vocab_size=280, batch_size=8, tokenizer_dir=str(tok)
        )
        model = _Recorder()
        trainer = quiet_trainer(
            max_epochs=max_epochs,
            limit_val_batches=0,
            enable_checkpointing=save is not None,
            callbacks=[ModelCheckpoint(dirpath=save, save_last=True)] if save else [],
            default_root_dir=tmp_path,
        )
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
        return model.seen

    tok = tmp_path / "tok"
    full = fit(3)
    first = fit(1, save=tmp_path / "ckpt")
    resumed = fit(3, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    per_epoch = len(first)
    assert per_epoch > 2 and len(full) == 3 * per_epoch
    assert first == full[:per_epoch]
    assert resumed == full[per_epoch:]  # epochs 1 and 2, not a replay of epoch 0
    assert full[:per_epoch] != full[per_epoch : 2 * per_epoch]  # epochs really differ


@pytest.mark.parametrize("flag", ["path", "val_path"])
def test_a_missing_file_fails_when_the_module_is_built(tmp_path, flag):
    kwargs = {flag: str(tmp_path / "nope.txt")}
    if flag == "val_path":
        kwargs["val_fraction"] = 0.0
    with pytest.raises(FileNotFoundError, match=rf"--data\.{flag} '.*nope\.txt': no such file"):
        TextDataModule(**kwargs)
