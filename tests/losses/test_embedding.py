"""The shared embedding-loss base (`lightning_losses/losses/_embedding.py`): input checks, the
single-process behaviour of `gather_batch`, and what `EmbeddingLoss` declares and stores.

The multi-process behaviour of `gather_batch` is tested in
`tests/distributed/test_embedding_gather.py`.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch

from lightning_losses.functional import gather_batch
from lightning_losses.losses import DistributedSemantics, EmbeddingLoss, InputKind
from lightning_losses.losses._embedding import check_embeddings, check_labels, check_ref


def test_check_embeddings_upcasts_and_names_the_argument():
    assert check_embeddings("z", torch.zeros(2, 3, dtype=torch.float16)).dtype == torch.float32
    x64 = torch.zeros(2, 3, dtype=torch.float64)
    assert check_embeddings("z", x64) is x64
    with pytest.raises(TypeError, match="z must be a floating-point tensor"):
        check_embeddings("z", torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match=r"z must be a torch\.Tensor"):
        check_embeddings("z", [[0.0]])
    with pytest.raises(ValueError, match=r"z must have shape \[N, D\], got \(3,\)"):
        check_embeddings("z", torch.zeros(3))
    with pytest.raises(ValueError, match=r"\[N, D\] or \[N, V, D\]"):
        check_embeddings("feats", torch.zeros(3), ndim=(2, 3))
    assert check_embeddings("feats", torch.zeros(3, 2, 4), ndim=(2, 3)).shape == (3, 2, 4)
    with pytest.raises(ValueError, match="at least one row"):
        check_embeddings("z", torch.zeros(0, 3))
    with pytest.raises(ValueError, match="non-empty embedding"):
        check_embeddings("z", torch.zeros(2, 0))


def test_check_labels():
    y = torch.tensor([1, 0, 2])
    assert check_labels("labels", y, 3) is y
    with pytest.raises(ValueError, match=r"labels must have shape \[N\] = \(4,\).*got \(3,\)"):
        check_labels("labels", y, 4)
    with pytest.raises(ValueError, match="labels"):
        check_labels("labels", y[None], 3)
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        check_labels("labels", y.float(), 3)
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        check_labels("labels", y.bool(), 3)


def test_check_ref():
    like = torch.zeros(1, dtype=torch.float64)
    assert check_ref(None, None, 4, need_labels=True, like=like) == (None, None)
    emb, lab = check_ref(torch.zeros(5, 4), torch.arange(5), 4, need_labels=True, like=like)
    assert emb.dtype == torch.float64 and lab.shape == (5,)
    with pytest.raises(ValueError, match="ref_labels was given without ref_emb"):
        check_ref(None, torch.arange(2), 4, need_labels=False, like=like)
    with pytest.raises(ValueError, match=r"ref_emb.*expected \[R, 4\]"):
        check_ref(torch.zeros(5, 3), None, 4, need_labels=False, like=like)
    with pytest.raises(ValueError, match="ref_labels"):
        check_ref(torch.zeros(5, 4), None, 4, need_labels=True, like=like)
    with pytest.raises(ValueError, match="ref_labels"):
        check_ref(torch.zeros(5, 4), torch.arange(4), 4, need_labels=True, like=like)


def test_gather_batch_is_the_identity_in_one_process():
    x = torch.randn(4, 3, requires_grad=True)
    y = torch.arange(4)
    for flag in (False, True):
        z, labels, offset = gather_batch(x, y, gather_distributed=flag)
        assert z is x and labels is y and offset == 0
    assert gather_batch(x)[1] is None


class _Local(EmbeddingLoss):
    functional = staticmethod(lambda x, **kw: x.sum())


class _Gather(EmbeddingLoss):
    functional = staticmethod(lambda x, *, gather_distributed, **kw: x.sum())
    distributed_semantics: ClassVar[str] = DistributedSemantics.GATHER


def test_embedding_loss_declares_and_stores():
    assert _Local.input_kind == InputKind.EMBEDDINGS
    assert _Local.distributed_semantics == DistributedSemantics.LOCAL
    loss = _Gather(gather_distributed=True)
    assert loss.hparams == {"gather_distributed": True}
    assert "gather_distributed=True" in repr(loss)
    assert loss(torch.ones(2, 3)).item() == 6.0
    with pytest.raises(TypeError, match="gather_distributed must be a bool"):
        _Gather(gather_distributed="True")
    with pytest.raises(TypeError, match="takes no gather_distributed"):
        _Local(gather_distributed=True)
