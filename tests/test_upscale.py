"""Upscale: exact sizes, kept metadata, restored detail, and tiles that do not show.

CPU Real-ESRGAN is slow (~2,500 input px/s on this machine), so the test images are small.
"""

from __future__ import annotations

import itertools

import numpy as np
import pyexiv2
import pytest
from PIL import Image, ImageCms, ImageFilter, PngImagePlugin
from scipy import ndimage

from portrait_studio.errors import LimitError, NotConfigured
from portrait_studio.finishing.upscale import (
    _spans,
    target_size,
    upscale,
    upscale_file,
    vulkan_devices,
)
from portrait_studio.testing import photos

FACE = (160, 60, 288, 188)  # the astronaut's face, 128x128
# exiv2 writes Iptc4xmpExt keys and reads them back under its own prefix, iptcExt
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


def face_crop(box: tuple[int, int, int, int] = FACE) -> Image.Image:
    return photos.astronaut().crop(box)


@pytest.mark.parametrize("scale", [1.5, 2])
@pytest.mark.parametrize("size", [(37, 23), (33, 17)])
def test_upscale_hits_the_exact_requested_size_on_odd_sizes(scale, size):
    image = face_crop().resize(size, Image.Resampling.LANCZOS)
    out = upscale(image, scale)
    assert out.size == (round(size[0] * scale), round(size[1] * scale)) == target_size(*size, scale)
    assert out.mode == "RGB"


@pytest.mark.parametrize("scale", [1.0, 0.5, 4.5])
def test_scales_outside_the_range_are_refused_with_the_range(scale):
    with pytest.raises(LimitError) as info:
        upscale(face_crop(), scale)
    assert info.value.field == "scale"
    assert "1.5 or 2" in (info.value.hint or "")


def laplacian_variance(image: Image.Image) -> float:
    return float(ndimage.laplace(np.asarray(image.convert("L"), dtype=float)).var())


def test_upscaled_face_has_the_detail_of_the_real_photo_where_bicubic_is_blurred():
    truth = face_crop()  # 128 px of the real photo
    small = truth.resize((64, 64), Image.Resampling.BICUBIC)
    restored = upscale(small, 2)
    bicubic = small.resize(truth.size, Image.Resampling.BICUBIC)

    # Sharpness as the photo has it: Real-ESRGAN's log-ratio to the truth is far smaller than
    # bicubic's (measured: truth 828, Real-ESRGAN 1010, bicubic 112).
    want = laplacian_variance(truth)
    esrgan_error = abs(np.log(laplacian_variance(restored) / want))
    bicubic_error = abs(np.log(laplacian_variance(bicubic) / want))
    assert esrgan_error < bicubic_error / 3, (esrgan_error, bicubic_error)

    # ... while still showing the same face: a GAN trades ~3 dB of PSNR for the detail
    # (measured 27.6 dB vs bicubic's 30.4 dB), never a different picture.
    mse = np.mean((np.asarray(restored, dtype=float) - np.asarray(truth, dtype=float)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 25


@pytest.mark.parametrize("orientation", ["across", "down"])
def test_tiled_upscale_matches_one_pass_within_a_few_levels(orientation):
    strip = face_crop((150, 60, 254, 100))  # 104 x 40: four tiles across
    if orientation == "down":
        strip = strip.transpose(Image.Transpose.TRANSPOSE)
    whole = np.asarray(upscale(strip, 2, tile=None), dtype=float)
    tiled = np.asarray(upscale(strip, 2, tile=32), dtype=float)
    diff = np.abs(whole - tiled)
    # measured: mean 0.30, 99th percentile 2, max 4 levels of 255
    assert diff.mean() < 0.6
    assert np.percentile(diff, 99) <= 4
    assert diff.max() <= 16


def test_tiles_cover_the_image_once_with_context_on_each_side():
    for length, tile, overlap in [
        (104, 32, 32),
        (1024, 192, 32),
        (1000, 256, 16),
        (97, 32, 32),
        (3001, 192, 32),
    ]:
        spans = _spans(length, tile, overlap)
        assert len(spans) > 1
        assert spans[0][0] == 0 and spans[-1][1] == length
        for (_, end, _, _), (start, _, _, _) in itertools.pairwise(spans):
            assert end == start
        for start, end, crop_start, crop_end in spans:
            assert crop_start >= 0 and crop_end <= length
            assert start == 0 or start - crop_start >= overlap - 1  # context inside the image
            assert end == length or crop_end - end >= overlap - 1
        # one crop size for every piece, so ncnn reuses its buffers instead of growing
        assert {crop_end - crop_start for _, _, crop_start, crop_end in spans} == {tile + 2 * overlap}
    assert _spans(96, 32, 32) == [(0, 96, 0, 96)]  # fits in one piece: no tiling


def test_transparency_and_grey_survive_the_upscale():
    rgba = face_crop().resize((30, 20)).convert("RGBA")
    mask = Image.new("L", (30, 20), 0)
    mask.paste(255, (0, 0, 15, 20))
    rgba.putalpha(mask)
    out = upscale(rgba, 2)
    assert out.mode == "RGBA" and out.size == (60, 40)
    alpha = np.asarray(out.getchannel("A"))
    assert alpha[:, :25].min() > 240 and alpha[:, 35:].max() < 15

    grey = upscale(face_crop().resize((30, 20)).convert("L"), 1.5)
    assert grey.mode == "L" and grey.size == (45, 30)


def test_detail_pass_gets_the_upscaled_image_and_the_exact_size_is_kept():
    seen: list[tuple[int, int]] = []

    def provider_like_pass(image: Image.Image) -> Image.Image:
        # a provider that snaps dimensions to multiples of 16, as FLUX endpoints do
        seen.append(image.size)
        sharpened = image.filter(ImageFilter.UnsharpMask(radius=2, percent=150))
        return sharpened.resize((image.width // 16 * 16, image.height // 16 * 16))

    image = face_crop().resize((37, 23))
    out = upscale(image, 2, detail_pass=provider_like_pass)
    assert seen == [(74, 46)]
    assert out.size == (74, 46)
    plain = upscale(image, 2)
    assert not np.array_equal(np.asarray(out), np.asarray(plain))


def test_asking_for_a_missing_gpu_names_the_devices_and_the_cpu_fix():
    missing = max((d.index for d in vulkan_devices()), default=-1) + 1
    with pytest.raises(NotConfigured) as info:
        upscale(face_crop().resize((32, 32)), 2, gpu=missing)
    assert f"no Vulkan device {missing}" in info.value.message
    assert "CPU" in (info.value.hint or "")


def _srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def test_upscaled_jpeg_keeps_exif_xmp_iptc_and_icc(tmp_path):
    src = tmp_path / "portrait.jpg"
    exif = Image.Exif()
    exif[0x010E] = "studio portrait, window light"  # ImageDescription
    exif[0x0131] = "Portrait Studio"  # Software
    exif.get_ifd(0x8769)[0xA002] = 40  # PixelXDimension
    exif.get_ifd(0x8769)[0xA003] = 30
    icc = _srgb_icc()
    face_crop().resize((40, 30)).save(src, "JPEG", quality=95, exif=exif, icc_profile=icc)
    with pyexiv2.Image(str(src)) as meta:
        meta.modify_xmp(
            {
                "Xmp.dc.description": {'lang="x-default"': "A test portrait"},
                "Xmp.Iptc4xmpExt.DigitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
            }
        )
        meta.modify_iptc({"Iptc.Application2.Caption": "A test portrait"})

    dst = upscale_file(src, tmp_path / "out" / "portrait@2x.jpg", 1.5)

    with Image.open(dst) as out:
        assert out.size == (60, 45)
        assert out.info.get("icc_profile") == icc
    with pyexiv2.Image(str(dst)) as meta:
        exif_out, xmp, iptc = meta.read_exif(), meta.read_xmp(), meta.read_iptc()
    assert exif_out["Exif.Image.ImageDescription"] == "studio portrait, window light"
    assert exif_out["Exif.Image.Software"] == "Portrait Studio"
    assert (exif_out["Exif.Photo.PixelXDimension"], exif_out["Exif.Photo.PixelYDimension"]) == ("60", "45")
    assert xmp["Xmp.dc.description"] == {'lang="x-default"': "A test portrait"}
    assert xmp["Xmp.iptcExt.DigitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert iptc["Iptc.Application2.Caption"] == "A test portrait"


def test_upscaled_png_keeps_its_text_chunks_and_xmp(tmp_path):
    src = tmp_path / "portrait.png"
    text = PngImagePlugin.PngInfo()
    text.add_text("parameters", "flux-1.1-pro, seed 7")
    face_crop().resize((30, 20)).save(src, "PNG", pnginfo=text)
    with pyexiv2.Image(str(src)) as meta:
        meta.modify_xmp({"Xmp.Iptc4xmpExt.DigitalSourceType": TRAINED_ALGORITHMIC_MEDIA})

    dst = upscale_file(src, tmp_path / "portrait@2x.png", 2)

    with Image.open(dst) as out:
        assert out.size == (60, 40)
        assert out.info["parameters"] == "flux-1.1-pro, seed 7"
    with pyexiv2.Image(str(dst)) as meta:
        assert meta.read_xmp()["Xmp.iptcExt.DigitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
