"""Edits, fills, references and upscales on the hosted routes, against the sandboxes.

The stories: an instruction edit sends the image to edit first and the extra references
after it, in each API's own fields; what comes back is the user's photo with the change
(not an unrelated picture); a fill changes only what the mask covers; a hosted upscale
enlarges the very image it was given and is charged like fal charges.
"""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from portrait_studio.errors import CapabilityError, GenerationFailed, UsageError
from portrait_studio.providers.bfl import BflProvider
from portrait_studio.providers.fal import FalProvider
from portrait_studio.providers.replicate import ReplicateProvider
from portrait_studio.records import InputImage, Request, Result
from portrait_studio.testing.photos import astronaut
from portrait_studio.testing.sandbox import SandboxHandle, start_sandbox
from portrait_studio.testing.sandbox_images import is_sandbox_image

PROVIDERS: dict[str, Any] = {"bfl": BflProvider, "fal": FalProvider, "replicate": ReplicateProvider}
FAST: dict[str, Any] = {"poll_interval_s": 0.05, "poll_backoff": 1.0, "retry_backoff_s": 0.02}


def marked_photo(tmp_path: Path, name: str, size: tuple[int, int] = (384, 512), role: str = "edit") -> InputImage:
    """The astronaut with a green card in the top-left corner: a picture no text-to-image
    answer could contain, so an answer that has it was derived from it."""
    img = astronaut().resize(size)
    w, h = size
    ImageDraw.Draw(img).rectangle((int(w * 0.04), int(h * 0.04), int(w * 0.2), int(h * 0.16)), fill=(30, 200, 60))
    path = tmp_path / name
    img.save(path)
    return InputImage.from_path(path, role=role)


def submit(provider_id: str, sb: SandboxHandle, request: Request, **options: Any) -> Result:
    provider = PROVIDERS[provider_id].for_sandbox(sb, **{**FAST, **options})

    async def go() -> Result:
        try:
            return await provider.submit(request)
        finally:
            await provider.aclose()

    return asyncio.run(go())


def pixels(data: bytes | Image.Image, size: tuple[int, int] = (96, 128)) -> np.ndarray:
    img = data if isinstance(data, Image.Image) else Image.open(io.BytesIO(data))
    return np.asarray(img.convert("RGB").resize(size, Image.Resampling.BILINEAR), dtype=np.float64)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    ga, gb = a.mean(axis=2).ravel(), b.mean(axis=2).ravel()
    return float(np.corrcoef(ga, gb)[0, 1])


def card(img: np.ndarray) -> np.ndarray:
    """Mean colour of the green card's area (in the 96×128 working size)."""
    return img[int(128 * 0.06):int(128 * 0.14), int(96 * 0.06):int(96 * 0.18)].reshape(-1, 3).mean(axis=0)


def sent_images(value: Any) -> list[Image.Image]:
    values = value if isinstance(value, list) else [value]
    out = []
    for v in values:
        payload = v.split(";base64,", 1)[1] if v.startswith("data:") else v
        out.append(Image.open(io.BytesIO(base64.b64decode(payload))))
    return out


# provider, model, number of images (edit image + references), the endpoint, the image field(s) expected
EDIT_ROUTES = [
    ("bfl", "flux-kontext-pro", 2, "flux-kontext-pro", ["input_image", "input_image_2"]),
    ("bfl", "flux-kontext-max", 1, "flux-kontext-max", ["input_image"]),
    ("bfl", "flux-2-pro", 3, "flux-2-pro", ["input_image", "input_image_2", "input_image_3"]),
    ("bfl", "flux-2-flex", 2, "flux-2-flex", ["input_image", "input_image_2"]),
    ("bfl", "flux-2-max", 1, "flux-2-max", ["input_image"]),
    ("bfl", "flux-2-klein-4b", 4, "flux-2-klein-4b", ["input_image", "input_image_2", "input_image_3", "input_image_4"]),
    ("fal", "flux-kontext-pro", 1, "fal-ai/flux-pro/kontext", ["image_url"]),
    ("fal", "flux-kontext-max", 1, "fal-ai/flux-pro/kontext/max", ["image_url"]),
    ("fal", "flux-kontext-pro", 3, "fal-ai/flux-pro/kontext/multi", ["image_urls"]),
    ("fal", "flux-2-pro", 2, "fal-ai/flux-2-pro/edit", ["image_urls"]),
    ("fal", "flux-2-flex", 1, "fal-ai/flux-2-flex/edit", ["image_urls"]),
    ("fal", "flux-2-klein-9b", 2, "fal-ai/flux-2/klein/9b/edit", ["image_urls"]),
    ("replicate", "flux-kontext-pro", 1, "black-forest-labs/flux-kontext-pro", ["input_image"]),
    ("replicate", "flux-2-pro", 3, "black-forest-labs/flux-2-pro", ["input_images"]),
]


@pytest.mark.parametrize(("provider_id", "model", "count", "endpoint", "fields"), EDIT_ROUTES)
def test_an_edit_sends_the_image_to_edit_first_and_its_references_after_it(
        tmp_path: Path, provider_id: str, model: str, count: int, endpoint: str, fields: list[str]) -> None:
    edit = marked_photo(tmp_path, "edit.png")
    refs = tuple(marked_photo(tmp_path, f"ref{i}.png", size=(200 + 40 * i, 200), role="reference")
                 for i in range(1, count))
    request = Request(model=model, provider=provider_id, mode="edit", prompt="make the light warm, like golden hour",
                      seed=5, images=(edit, *refs), output_format="png")
    with start_sandbox(provider_id, latency=0.1) as sb:
        result = submit(provider_id, sb, request)
        (task,) = sb.state.tasks.values()
        body = sb.stats.bodies[-1]
        assert task.model == endpoint and not sb.stats.unknown_fields and sb.stats.accepted == 1
    body = body.get("input", body)  # Replicate wraps the fields in "input"
    images = [img for name in fields for img in sent_images(body[name])]
    assert [img.size for img in images] == [(384, 512), *[(200 + 40 * i, 200) for i in range(1, count)]]
    assert body["prompt"] == request.prompt
    assert result.sandbox and is_sandbox_image(Image.open(io.BytesIO(result.image)))
    # the answer is the photo that was sent, warmer: same framing, the card still there
    before, after = pixels(Image.open(edit.path)), pixels(result.image)
    assert correlation(before, after) > 0.95
    r, g, b = card(after)
    assert g > r + 40 and g > b + 40
    assert (after[..., 0] - after[..., 2]).mean() > (before[..., 0] - before[..., 2]).mean() + 5


@pytest.mark.parametrize(("instruction", "check"), [
    ("convert the portrait to black and white", "mono"),
    ("cool, blue-hour colour grade", "cool"),
    ("remove the stray hair on the forehead", "subtle"),
])
def test_edits_follow_the_instructions_look_and_are_deterministic(tmp_path: Path, instruction: str, check: str) -> None:
    edit = marked_photo(tmp_path, "edit.png")
    request = Request(model="flux-kontext-pro", provider="bfl", mode="edit", prompt=instruction, seed=9,
                      images=(edit,), output_format="png")
    with start_sandbox("bfl", latency=0.05) as sb:
        first = submit("bfl", sb, request)
        again = submit("bfl", sb, request.model_copy(update={"request_id": "req_again"}))
    assert first.image == again.image  # the same body always gives the same pixels
    before, after = pixels(Image.open(edit.path)), pixels(first.image)
    assert correlation(before, after) > 0.9
    change = np.abs(after - before).mean()
    if check == "mono":
        assert np.abs(after[..., 0] - after[..., 1]).mean() < 2 and np.abs(after[..., 1] - after[..., 2]).mean() < 2
    elif check == "cool":
        assert (after[..., 2] - after[..., 0]).mean() > (before[..., 2] - before[..., 0]).mean() + 5
    else:
        assert 1.5 < change < 25  # a visible but small change, the picture otherwise kept


@pytest.mark.parametrize("provider_id", ["bfl", "fal"])
def test_a_fill_changes_only_what_the_mask_covers(tmp_path: Path, provider_id: str) -> None:
    photo = marked_photo(tmp_path, "photo.png", size=(512, 512), role="init")
    mask_img = Image.new("L", (512, 512), 0)
    ImageDraw.Draw(mask_img).rectangle((180, 60, 330, 150), fill=255)  # the forehead
    mask_img.save(tmp_path / "mask.png")
    mask = InputImage.from_path(tmp_path / "mask.png", role="mask")
    request = Request(model="flux-fill-pro", provider=provider_id, mode="inpaint", prompt="smooth forehead, no stray hair",
                      seed=3, images=(photo,), mask=mask, output_format="png", steps=30, guidance=60)
    with start_sandbox(provider_id, latency=0.05) as sb:
        result = submit(provider_id, sb, request)
    before = np.asarray(Image.open(photo.path).convert("RGB"), dtype=np.float64)
    after = np.asarray(Image.open(io.BytesIO(result.image)).convert("RGB"), dtype=np.float64)
    assert after.shape == before.shape
    diff = np.abs(after - before).mean(axis=2)
    inside = np.asarray(mask_img) > 0
    assert diff[inside].mean() > 8 and diff[~inside].mean() < 0.5
    assert is_sandbox_image(Image.open(io.BytesIO(result.image)))


@pytest.mark.parametrize(("provider_id", "model", "mode"), [
    ("bfl", "flux-1.1-pro", "reference"), ("bfl", "flux-1.1-pro-ultra", "reference"),
    ("fal", "flux-1-dev", "image-to-image"), ("replicate", "flux-1-dev", "image-to-image"),
    ("replicate", "flux-1.1-pro", "reference"),
])
def test_references_and_img2img_answer_with_the_person_that_was_sent(
        tmp_path: Path, provider_id: str, model: str, mode: str) -> None:
    photo = marked_photo(tmp_path, "photo.png", size=(512, 512), role="reference" if mode == "reference" else "init")
    fields: dict[str, Any] = {"width": 512, "height": 512} if model != "flux-1.1-pro-ultra" else {"aspect_ratio": "1:1"}
    if mode == "image-to-image":
        fields.update(denoise=0.6, steps=20, guidance=3.0)
    request = Request(model=model, provider=provider_id, mode=mode, prompt="editorial portrait, crisp light", seed=4,
                      images=(photo,), output_format="png", **fields)
    with start_sandbox(provider_id, latency=0.05, **({"ultra_megapixels": 1.0} if provider_id == "bfl" else {})) as sb:
        result = submit(provider_id, sb, request)
    before, after = pixels(Image.open(photo.path), (96, 96)), pixels(result.image, (96, 96))
    assert correlation(before, after) > 0.8 and np.abs(after - before).mean() > 1


def upscale_request(tmp_path: Path, **fields: Any) -> Request:
    photo = marked_photo(tmp_path, "small.png", size=(256, 320), role="init")
    values: dict[str, Any] = {"model": "real-esrgan", "provider": "fal", "mode": "upscale", "prompt": "", "seed": 0,
                              "images": (photo,), "width": 512, "height": 640, "output_format": "png"}
    return Request(**{**values, **fields})


def test_a_hosted_upscale_enlarges_the_image_it_was_given(tmp_path: Path) -> None:
    request = upscale_request(tmp_path)
    with start_sandbox("fal", latency=0.05) as sb:
        result = submit("fal", sb, request)
        body = sb.stats.bodies[-1]
        (task,) = sb.state.tasks.values()
        stats = sb.stats
    assert task.model == "fal-ai/esrgan" and body["scale"] == 2.0 and set(body) == {"image_url", "scale"}
    big = Image.open(io.BytesIO(result.image))
    assert big.size == (512, 640) and result.sandbox and is_sandbox_image(big)
    small = Image.open(request.images[0].path)
    assert correlation(pixels(small), pixels(big)) > 0.98  # the same picture, larger
    assert stats.paid == 1 and stats.credits_spent == pytest.approx(0.002 * 512 * 640 / 1e6, abs=1e-6)


def test_hosted_upscale_refuses_bad_requests_before_paying(tmp_path: Path) -> None:
    with start_sandbox("fal", latency=0.05) as sb:
        with pytest.raises(UsageError) as caught:
            submit("fal", sb, upscale_request(tmp_path, options={"scale": 9}))
        assert caught.value.field == "scale"
        second = marked_photo(tmp_path, "other.png", role="init")
        with pytest.raises(CapabilityError):
            submit("fal", sb, upscale_request(tmp_path).model_copy(update={"images": ()}))
        with pytest.raises(CapabilityError):
            request = upscale_request(tmp_path)
            submit("fal", sb, request.model_copy(update={"images": (*request.images, second)}))
        assert sb.stats.submissions == 0


def test_a_failed_hosted_upscale_is_not_charged_like_fal_says(tmp_path: Path) -> None:
    with start_sandbox("fal", latency=0.05) as sb:
        sb.inject("fail")
        with pytest.raises(GenerationFailed) as caught:
            submit("fal", sb, upscale_request(tmp_path))
        assert caught.value.charged is False and caught.value.ticket is not None
        assert sb.stats.accepted == 1 and sb.stats.paid == 0 and sb.stats.credits_spent == 0


def test_replicate_kontext_refuses_extra_references_instead_of_dropping_them(tmp_path: Path) -> None:
    edit, ref = marked_photo(tmp_path, "edit.png"), marked_photo(tmp_path, "ref.png", role="reference")
    request = Request(model="flux-kontext-pro", provider="replicate", mode="edit", prompt="warm light", seed=1,
                      images=(edit, ref))
    with start_sandbox("replicate", latency=0.05) as sb:
        with pytest.raises(CapabilityError) as caught:
            submit("replicate", sb, request)
        assert "bfl or fal" in (caught.value.hint or "") and sb.stats.submissions == 0
