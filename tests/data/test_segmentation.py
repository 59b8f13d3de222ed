"""Synthetic segmentation data: ground truth by construction, determinism, splits, argument
checks."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_losses.data import (
    SegmentationDataModule,
    load_digits_images,
    synthetic_digit_canvases,
    synthetic_shapes,
)
from lightning_losses.data.segmentation import DEFAULT_DIGIT_GROUPS


def test_digit_canvases_are_deterministic_by_seed():
    a = synthetic_digit_canvases(6, 32, digit_size=(10, 14), seed=3)
    b = synthetic_digit_canvases(6, 32, digit_size=(10, 14), seed=3)
    c = synthetic_digit_canvases(6, 32, digit_size=(10, 14), seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.masks, c.masks)
    assert a.images.dtype == torch.float32 and a.masks.dtype == torch.long
    assert a.images.min() >= 0.0 and a.images.max() <= 1.0


def test_digit_labels_follow_the_ink_threshold_exactly():
    # Without pixel noise the image is the pasted ink (objects never overlap), so the label of
    # every pixel is fixed by its value: class > 0 iff ink >= threshold; the rim is ignored.
    d = synthetic_digit_canvases(
        16,
        48,
        digit_size=(12, 20),
        class_probs=None,
        noise=0.0,
        ink_threshold=0.4,
        ignore_index=255,
        seed=0,
    )
    img = d.images[:, 0]
    fg = (d.masks > 0) & (d.masks < 4)
    assert torch.equal(fg, img >= 0.4)
    assert torch.equal(d.masks == 255, (img >= 0.1) & (img < 0.4))
    assert torch.equal(d.masks == 0, img < 0.1)
    assert set(d.masks.unique().tolist()) == {0, 1, 2, 3, 255}


def test_class_probs_decide_which_groups_appear_and_background_dominates():
    only_rare = synthetic_digit_canvases(8, 32, digit_size=(10, 14), class_probs=(0, 0, 1))
    assert set(only_rare.masks.unique().tolist()) == {0, 3}
    d = synthetic_digit_canvases(200, 32, digit_size=(10, 14), seed=1)
    share = [(d.masks == c).float().mean().item() for c in range(4)]
    assert share[0] > 0.7  # background dominates
    assert share[1] > share[2] > share[3] > 0  # objects drawn with 0.6 / 0.3 / 0.1
    assert d.class_names == ("background", "digits 0-3", "digits 4-6", "digits 7-9")


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_digit_canvases_paste_digits_of_their_own_split_only(split):
    # An 8×8 canvas holding one 8×8 digit is that digit image itself (no resampling): it must be
    # one of the split's images, of the labelled group, and none of the other splits'.
    d = synthetic_digit_canvases(
        12, 8, split=split, objects=(1, 1), digit_size=(8, 8), noise=0.0, seed=0
    )
    s = load_digits_images(8, seed=0)
    pools = {
        "train": (s.x_train, s.y_train),
        "val": (s.x_val, s.y_val),
        "test": (s.x_test, s.y_test),
    }
    for image, mask in zip(d.images[:, 0], d.masks):
        for name, (x, y) in pools.items():
            hits = (x[:, 0] == image).flatten(1).all(1)
            if name == split:
                assert hits.any()
                digit = int(y[hits][0])
                group = next(
                    g for g, members in enumerate(DEFAULT_DIGIT_GROUPS) if digit in members
                )
                assert set(mask.unique().tolist()) <= {0, group + 1}
            else:
                assert not hits.any()


def test_shapes_have_the_geometry_they_are_named_for():
    for cls, area in (
        (1, lambda s: math.pi * s * s / 4),
        (2, lambda s: s * s),
        (3, lambda s: s * s / 2),
    ):
        probs = [0.0, 0.0, 0.0]
        probs[cls - 1] = 1.0
        d = synthetic_shapes(4, 32, objects=(1, 1), shape_size=(16, 16), class_probs=probs, noise=0)
        for image, mask in zip(d.images[:, 0], d.masks):
            inside = mask == cls
            assert set(mask.unique().tolist()) == {0, cls}
            # One flat intensity inside, blank outside: the label is exact.
            assert image[inside].unique().numel() == 1 and 0.4 <= image[inside][0] <= 1.0
            assert (image[~inside] == 0).all()
            assert inside.sum().item() == pytest.approx(area(16), rel=0.12)
            rows, cols = inside.nonzero().unbind(1)
            extent = (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
            # Inside its 16×16 box; the square fills it (a pixel counts when its centre is in).
            assert extent == (16, 16) if cls == 2 else max(extent) <= 16 and min(extent) >= 14


def test_objects_never_overlap_or_touch():
    d = synthetic_shapes(20, 32, objects=(4, 4), shape_size=(6, 10), class_probs=(0, 1, 0), noise=0)
    from scipy import ndimage

    for mask in d.masks:
        labels, count = ndimage.label((mask == 2).numpy())
        # Four squares asked for; fewer when they do not fit, but never merged into one blob.
        boxes = ndimage.find_objects(labels)
        assert 1 <= count <= 4
        for box in boxes:  # every blob is a full square (two touching squares would not be)
            region = mask[box] == 2
            assert region.all() and region.shape[0] == region.shape[1]


def test_datamodule_serves_dict_batches_and_distinct_splits():
    dm = SegmentationDataModule(
        num_train=8, num_val=4, num_test=4, image_size=32, object_size=(8, 14), batch_size=4
    )
    with pytest.raises(RuntimeError, match=r"setup\(\)"):
        dm.train_dataloader()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"image", "mask", "index"}
    assert batch["image"].shape == (4, 1, 32, 32) and batch["mask"].shape == (4, 32, 32)
    train, val, test = dm.splits
    assert not torch.equal(train.images[:4], val.images) and not torch.equal(
        val.images, test.images
    )
    assert dm.num_classes == 4 and dm.class_names[0] == "background"
    shapes = SegmentationDataModule(
        dataset="shapes", num_train=4, num_val=2, num_test=2, image_size=32, object_size=(6, 10)
    )
    assert shapes.class_names == ("background", "circle", "square", "triangle")
    # Same arguments, same data (and the epoch order is seeded).
    again = SegmentationDataModule(
        num_train=8, num_val=4, num_test=4, image_size=32, object_size=(8, 14), batch_size=4
    )
    again.setup("fit")
    assert torch.equal(next(iter(again.train_dataloader()))["mask"], batch["mask"])


def test_arguments_are_checked_by_name():
    with pytest.raises(ValueError, match="digit_groups"):
        synthetic_digit_canvases(1, 32, digit_groups=((0, 1), (1, 2)))
    with pytest.raises(ValueError, match="digit_size"):
        synthetic_digit_canvases(1, 16, digit_size=(10, 20))
    with pytest.raises(ValueError, match="class_probs"):
        synthetic_digit_canvases(1, 32, class_probs=(0.5, 0.5))
    with pytest.raises(ValueError, match="ignore_index"):
        synthetic_digit_canvases(1, 32, ignore_index=2)
    with pytest.raises(ValueError, match="ink_threshold"):
        synthetic_digit_canvases(1, 32, ink_threshold=0.05)
    with pytest.raises(ValueError, match="split"):
        synthetic_digit_canvases(1, 32, split="validation")
    with pytest.raises(TypeError, match="objects"):
        synthetic_shapes(1, 32, objects=3)
    with pytest.raises(ValueError, match="shape_size"):
        synthetic_shapes(1, 32, shape_size=(10, 5))
    with pytest.raises(ValueError, match="dataset"):
        SegmentationDataModule(dataset="voc")
    with pytest.raises(ValueError, match="ignore_index"):
        SegmentationDataModule(dataset="shapes", ignore_index=255)
    with pytest.raises(ValueError, match="object_size"):
        SegmentationDataModule(image_size=16, object_size=(12, 24))
    with pytest.raises(ValueError, match="noise"):  # checked when built, not at setup
        SegmentationDataModule(noise=-0.1)
    with pytest.raises(TypeError, match="batch_size"):
        SegmentationDataModule(batch_size=4.0)
