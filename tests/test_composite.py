"""Compositing a region fix back onto the approved photo."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from portrait_studio.finishing.composite import composite, feathered_alpha


def _images(size: tuple[int, int] = (80, 60)) -> tuple[Image.Image, Image.Image, Image.Image]:
    rng = np.random.RandomState(3)
    original = Image.fromarray(rng.randint(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    generated = Image.fromarray(rng.randint(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    mask = Image.new("L", size, 0)
    mask.paste(255, (30, 20, 50, 40))
    return original, generated, mask


@pytest.mark.parametrize("feather", [0, 1, 4, 9])
def test_pixels_beyond_the_feather_are_byte_identical_to_the_original(feather):
    original, generated, mask = _images()
    out = np.asarray(composite(original, generated, mask, feather_px=feather))
    alpha = feathered_alpha(mask, feather)
    keep = alpha == 0
    assert (out[keep] == np.asarray(original)[keep]).all()
    inside = np.asarray(mask) == 255
    assert (out[inside] == np.asarray(generated)[inside]).all()
    # the feather reaches exactly `feather` pixels beyond the mask edge, no further
    row = alpha[30]
    assert row[30 - feather : 30].tolist() == sorted(row[30 - feather : 30].tolist())
    assert row[: 30 - feather].max() == 0
    if feather:
        assert 0 < row[30 - feather] < 1


def test_a_generated_image_of_another_size_is_fitted_to_the_original():
    original, generated, mask = _images()
    out = composite(original, generated.resize((64, 48)), mask, feather_px=2)
    assert out.size == original.size and out.mode == "RGB"
    keep = feathered_alpha(mask, 2) == 0
    assert (np.asarray(out)[keep] == np.asarray(original)[keep]).all()


def test_grey_mask_values_blend_partially():
    original, generated, _ = _images()
    mask = Image.new("L", original.size, 0)
    mask.paste(128, (0, 0, 10, 10))
    out = np.asarray(composite(original, generated, mask)).astype(int)
    o, g = np.asarray(original).astype(int), np.asarray(generated).astype(int)
    expected = np.rint(o[:10, :10] * (1 - 128 / 255) + g[:10, :10] * (128 / 255))
    assert np.abs(out[:10, :10] - expected).max() <= 1


def test_an_empty_mask_returns_the_original_unchanged():
    original, generated, _ = _images()
    out = composite(original, generated, Image.new("L", original.size, 0), feather_px=5)
    assert out.tobytes() == original.tobytes()


def test_negative_feather_is_refused():
    original, generated, mask = _images()
    with pytest.raises(ValueError, match="feather_px"):
        composite(original, generated, mask, feather_px=-1)
