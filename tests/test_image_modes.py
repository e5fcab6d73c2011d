"""Images of every mode a photo folder holds read as 8-bit RGB, or are refused by name:
grayscale, CMYK, palette, bilevel, transparency (composited on white), 16-bit, 32-bit."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from csdseg.data.source import DataError, read_image


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P"])
def test_grayscale_cmyk_rgba_palette_images_read_as_rgb(tmp_path, mode):
    rgb = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    image = Image.fromarray(rgb).convert(mode)
    if mode == "RGBA":
        alpha = np.full((12, 10), 255, np.uint8)
        alpha[0, 0] = 0  # transparent pixels composite onto white, not black
        image.putalpha(Image.fromarray(alpha))
    path = tmp_path / ("x.jpg" if mode in ("L", "CMYK") else "x.png")
    image.save(path, quality=95) if path.suffix == ".jpg" else image.save(path)
    out = read_image(path)
    assert out.shape == (12, 10, 3) and out.dtype == np.uint8
    if mode == "L":
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    if mode == "RGBA":
        assert out[0, 0].tolist() == [255, 255, 255] and out[1, 1].tolist() == rgb[1, 1].tolist()




def test_16_bit_grayscale_png_reads_as_its_high_byte(tmp_path):
    import cv2

    gray16 = np.random.default_rng(0).integers(0, 65536, (12, 10), dtype=np.uint16)
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), gray16)
    with Image.open(path) as image:
        assert image.mode.startswith("I;16")
    out = read_image(path)
    assert out.shape == (12, 10, 3) and out.dtype == np.uint8
    assert np.array_equal(out[..., 0], (gray16 >> 8).astype(np.uint8))  # not saturated to white
    assert (out[..., 0] == out[..., 2]).all()


def test_16_bit_colour_png_reads_as_8_bit_rgb(tmp_path):
    import cv2

    rgb16 = np.random.default_rng(1).integers(0, 65536, (12, 10, 3), dtype=np.uint16)
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), rgb16[..., ::-1])  # OpenCV writes BGR
    assert np.array_equal(read_image(path), (rgb16 >> 8).astype(np.uint8))


@pytest.mark.parametrize("mode, kind", [("I", "32-bit integer"), ("F", "32-bit float")])
def test_32_bit_images_are_refused(tmp_path, mode, kind):
    path = tmp_path / "depth.tif"
    values = np.random.default_rng(0).integers(0, 70000, (12, 10))
    Image.fromarray(values.astype(np.int32 if mode == "I" else np.float32)).save(path)
    with pytest.raises(DataError) as info:
        read_image(path)
    assert str(info.value) == (f"image {path} has {kind} pixels (mode {mode}), which have no "
                               "standard 8-bit colour; convert it to an 8-bit RGB or grayscale "
                               "image (JPEG or PNG)")



@pytest.mark.parametrize("mode", ["LA", "P"])
def test_images_with_transparency_composite_on_white(tmp_path, mode):
    path = tmp_path / "x.png"
    if mode == "LA":
        alpha = np.full((6, 5), 255, np.uint8)
        alpha[0, 0] = 0
        Image.fromarray(np.stack([np.full((6, 5), 40, np.uint8), alpha], -1), "LA").save(path)
    else:  # a palette PNG whose index 0 is the transparent colour
        image = Image.new("P", (5, 6), 1)
        image.putpalette([255, 0, 0, 40, 40, 40] + [0, 0, 0] * 254)
        image.putpixel((0, 0), 0)
        image.save(path, transparency=0)
    out = read_image(path)
    assert out[0, 0].tolist() == [255, 255, 255]  # transparent -> white, not black (or red)
    assert out[1, 1].tolist() == [40, 40, 40]


@pytest.mark.parametrize("mode", ["L", "CMYK", "1"])
def test_grayscale_png_cmyk_and_bilevel_read_as_rgb(tmp_path, mode):
    rgb = np.random.default_rng(2).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    image = Image.fromarray(rgb).convert(mode)
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    image.save(path)
    out = read_image(path)
    assert out.shape == (12, 10, 3) and out.dtype == np.uint8
    if mode == "L":
        assert np.array_equal(out[..., 1], np.asarray(image))
