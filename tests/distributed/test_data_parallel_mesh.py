"""FSDP2 recipes shard over the data-parallel mesh only and refuse tensor-parallel ranks.

`ModelParallelStrategy`'s "auto" sizes put every device of one node in the tensor-parallel
dimension; a recipe without tensor parallelism would then train the same batches on every rank.
"""

from __future__ import annotations

import pytest

from lightning_losses.distributed import data_parallel_mesh
from lightning_losses.recipes.masked_image_modeling import MaskedImageModeling
from lightning_losses.recipes.nlp import CausalLM


class _Mesh:
    """A `data_parallel` × `tensor_parallel` device mesh of the given sizes (or an unnamed one)."""

    def __init__(self, dp: int, tp: int, named: bool = True) -> None:
        self.dp, self.tp = dp, tp
        self.mesh_dim_names = ("data_parallel", "tensor_parallel") if named else None

    def size(self) -> int:
        return self.dp * self.tp

    def __getitem__(self, name: str) -> _Mesh:
        assert name == "data_parallel"
        return _Mesh(self.dp, 1)


def test_data_parallel_mesh_returns_the_data_parallel_dimension():
    mesh = _Mesh(4, 1)
    assert data_parallel_mesh(mesh, "x").size() == 4
    unnamed = _Mesh(2, 1, named=False)
    assert data_parallel_mesh(unnamed, "x") is unnamed


@pytest.mark.parametrize(("dp", "tp"), [(1, 2), (2, 2)])
def test_data_parallel_mesh_refuses_tensor_parallel_ranks(dp, tp):
    flags = f"data_parallel_size {dp * tp} --trainer.strategy.tensor_parallel_size 1"
    with pytest.raises(ValueError, match=flags):
        data_parallel_mesh(_Mesh(dp, tp), "my")


@pytest.mark.parametrize(
    ("build", "name"),
    [
        (lambda: CausalLM(vocab_size=64, hidden_size=16, num_layers=1, num_heads=2), "NLP"),
        (lambda: MaskedImageModeling(), "masked image modeling"),
    ],
)
def test_recipes_refuse_a_tensor_parallel_mesh(build, name):
    model = build()
    model._device_mesh = _Mesh(1, 2)
    with pytest.raises(ValueError, match=f"the {name} recipe shards over data parallelism only"):
        model.configure_model()
