"""Planning instruction edits and restyles: the Request each edit model gets, and the refusals."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from portrait_studio.catalog import all_models, get_model
from portrait_studio.delivery import plan_delivery
from portrait_studio.edit import (
    MAX_INSTRUCTION_CHARS,
    check_instruction,
    compile_edit,
    compile_restyle,
    keep_sentence,
)
from portrait_studio.errors import BriefError, CapabilityError, LimitError, UsageError
from portrait_studio.looks import Look, load_look
from portrait_studio.records import InputImage
from portrait_studio.testing.photos import astronaut

EDIT_ROUTES = [(m.id, p) for m in all_models() if "edit" in m.modes for p in m.routes]


@pytest.fixture
def headshot(tmp_path: Path) -> Path:
    """A finished 3:4 headshot (the public-domain astronaut portrait, cropped)."""
    path = tmp_path / "pick.png"
    astronaut().crop((64, 0, 448, 512)).resize((768, 1024)).save(path)
    return path


@pytest.fixture
def style_image(tmp_path: Path) -> Path:
    path = tmp_path / "moody-still.jpg"
    Image.new("RGB", (640, 480), (30, 60, 70)).save(path)
    return path


@pytest.mark.parametrize(("model", "provider"), EDIT_ROUTES)
def test_every_edit_route_gets_the_photo_first_and_the_keep_sentence(model: str, provider: str, headshot: Path) -> None:
    req = compile_edit(headshot, "soften the fill light", model, provider, seed=11)
    spec = get_model(model)
    assert req.mode == "edit" and req.provider == provider and req.seed == 11
    assert req.images[0].path == str(headshot) and req.images[0].role == "edit"
    assert req.prompt == ("Soften the fill light. Keep the person's face, identity, expression, pose and framing "
                          "unchanged, and change nothing else.")
    if spec.size_on(provider).kind == "aspect":  # Kontext [pro]/[max]: an aspect ratio, about 1MP
        assert req.aspect_ratio == "3:4" and req.width is None
    else:
        assert req.width and req.height and req.width * 4 == req.height * 3
        assert req.width % spec.size_on(provider).multiple == 0
    assert req.estimated_cost.usd >= 0


def test_flux2_keeps_the_photos_size_and_kontext_dev_works_at_1mp(headshot: Path) -> None:
    assert (compile_edit(headshot, "x", "flux-2-pro", "bfl", seed=1).width, 1024) == (768, 1024)
    big = headshot.with_name("big.png")
    Image.open(headshot).resize((2400, 3200)).save(big)
    req = compile_edit(big, "remove the stray hair on the forehead", "flux-2-pro", "bfl", seed=1)
    assert req.width * req.height <= 4 * 1024 * 1024 and req.width % 16 == 0  # type: ignore[operator]
    assert any("edits at most 4MP" in w for w in req.warnings)
    local = compile_edit(big, "remove the stray hair on the forehead", "flux-1-kontext-dev", "local", seed=1)
    assert local.width * local.height <= 1024 * 1024 and local.steps == 28 and local.guidance == 2.5  # type: ignore[operator]


def test_references_follow_the_photo_and_the_prompt_numbers_them(headshot: Path, style_image: Path) -> None:
    req = compile_edit(headshot, "change the sweater to the navy one in image 2", "flux-2-pro", "fal", seed=3,
                       references=[style_image])
    assert [i.role for i in req.images] == ["edit", "reference"]
    assert req.prompt.startswith("Edit image 1: Change the sweater to the navy one in image 2. ")
    assert "the face, identity, expression, pose and framing of the person in image 1 unchanged" in req.prompt
    assert any("image 1 = pick.png (the photo); image 2 = moody-still.jpg (reference)" in w for w in req.warnings)
    assert req.estimated_cost.usd > compile_edit(headshot, "x", "flux-2-pro", "fal", seed=3).estimated_cost.usd


def test_a_reference_with_rights_keeps_its_role_and_record(headshot: Path, style_image: Path) -> None:
    anchor = InputImage.from_path(style_image, role="identity", rights_id="rights_1")
    req = compile_edit(headshot, "match the hair to image 2", "flux-2-klein-4b", "local", seed=1, references=[anchor])
    assert req.images[1].role == "identity" and req.images[1].rights_id == "rights_1"


def test_too_many_references_name_the_models_limit(headshot: Path, style_image: Path) -> None:
    with pytest.raises(LimitError, match="takes 4 input images: the photo and at most 3 references; 4 references"):
        compile_edit(headshot, "x", "flux-kontext-pro", "bfl", seed=1, references=[style_image] * 4)
    with pytest.raises(LimitError, match="the photo only"):
        compile_edit(headshot, "x", "flux-1-kontext-dev", "local", seed=1, references=[style_image])


def test_models_without_an_edit_mode_are_refused_with_the_ones_that_can(headshot: Path) -> None:
    with pytest.raises(CapabilityError, match=r"FLUX1.1 \[pro\] Ultra has no edit mode") as err:
        compile_edit(headshot, "soften the fill light", "flux-1.1-pro-ultra", seed=1)
    hint = err.value.hint or ""
    assert "flux-2-pro (bfl, fal, replicate)" in hint and "flux-kontext-pro" in hint and "flux-1-kontext-dev (local)" in hint
    with pytest.raises(CapabilityError, match="not served by provider 'local'"):
        compile_edit(headshot, "x", "flux-2-pro", "local", seed=1)


def test_the_keep_sentence_drops_what_the_instruction_changes(headshot: Path) -> None:
    req = compile_edit(headshot, "make her smile with teeth", "flux-kontext-max", "bfl", seed=1)
    assert "Keep the person's face, identity, pose and framing unchanged" in req.prompt
    assert any("changes the expression" in w for w in req.warnings)
    assert keep_sentence("crop tighter and turn her head left")[1] == ["pose", "framing"]
    assert keep_sentence("change the sweater to navy")[1] == []


def test_instructions_are_checked_in_one_place() -> None:
    assert check_instruction("  soften   the\nfill light ") == "soften the fill light"
    with pytest.raises(BriefError, match="field 'instruction': is empty"):
        check_instruction(" \n ")
    with pytest.raises(BriefError, match=f"over {MAX_INSTRUCTION_CHARS}"):
        check_instruction("soften " * 300)


def test_hosted_edits_say_the_sampler_is_not_sent_and_local_flux2_takes_it(headshot: Path) -> None:
    hosted = compile_edit(headshot, "x", "flux-2-pro", "bfl", seed=1, sampler="DPM++ 2M Karras")
    assert "sampler" not in hosted.options
    assert any("the bfl API takes no sampler: 'DPM++ 2M Karras' not sent" in w for w in hosted.warnings)
    local = compile_edit(headshot, "x", "flux-2-dev", "local", seed=1, sampler="dpmpp_2m")
    assert local.options["sampler"] == "dpm++ 2m"
    with pytest.raises(UsageError, match="unknown sampler 'heun'"):
        compile_edit(headshot, "x", "flux-2-dev", "local", seed=1, sampler="heun")


def test_an_edit_for_4k_delivery_renders_at_the_plans_native_size(headshot: Path) -> None:
    plan = plan_delivery("flux-2-pro", "bfl", "4k", "3:4")
    req = compile_edit(headshot, "soften the fill light", "flux-2-pro", "bfl", seed=1, delivery=plan)
    assert (req.width, req.height) == (plan.native_w, plan.native_h)
    with pytest.raises(UsageError, match="--deliver"):
        compile_edit(headshot, "x", "flux-2-max", "bfl", seed=1, delivery=plan)


def test_restyle_to_a_look_is_an_edit_that_keeps_the_person(headshot: Path) -> None:
    req = compile_restyle(headshot, "flux-kontext-pro", "bfl", seed=5, look="cinematic")
    assert req.mode == "edit" and len(req.images) == 1
    assert req.prompt.startswith("Restyle the photo as a cinematic film-still portrait. Colour grade: ")
    assert req.prompt.endswith("Keep the person's face, identity, expression, pose, clothing and framing unchanged, "
                               "and change only the colour grade, the light and the photographic rendering.")
    assert req.options["look"] == "cinematic" and req.options["monochrome"] is False
    assert compile_restyle(headshot, "flux-2-pro", seed=5, look="black-and-white").options["monochrome"] is True


def test_restyle_to_a_style_reference_sends_it_as_image_2(headshot: Path, style_image: Path) -> None:
    req = compile_restyle(headshot, "flux-2-flex", "bfl", seed=5, style_ref=style_image)
    assert [(Path(i.path).name, i.role) for i in req.images] == [("pick.png", "edit"), ("moody-still.jpg", "style")]
    assert req.prompt.startswith("Restyle image 1 to match the look of image 2")
    assert "not its person" in req.prompt and "of the person in image 1 unchanged" in req.prompt
    assert req.steps == 50 and req.guidance == 4.5 and "look" not in req.options
    both = compile_restyle(headshot, "flux-2-pro", "bfl", seed=5, style_ref=style_image, look="film")
    assert "Aim for a portrait shot on colour negative film" in both.prompt


def test_restyle_refusals_say_what_to_do(headshot: Path, style_image: Path) -> None:
    with pytest.raises(CapabilityError, match="edits one image") as err:
        compile_restyle(headshot, "flux-1-kontext-dev", "local", seed=1, style_ref=style_image)
    assert "flux-2-pro" in (err.value.hint or "") and "flux-1-kontext-dev" not in (err.value.hint or "")
    with pytest.raises(UsageError, match="nothing to restyle to"):
        compile_restyle(headshot, "flux-2-pro", seed=1)
    with pytest.raises(BriefError, match="unknown look 'cinematik'") as err:
        compile_restyle(headshot, "flux-2-pro", seed=1, look="cinematik")
    assert "did you mean cinematic" in (err.value.hint or "")
    with pytest.raises(BriefError, match="image not found"):
        compile_restyle(headshot.with_name("missing.png"), "flux-2-pro", seed=1, look="film")


def test_a_users_own_look_file_or_object_restyles_too(headshot: Path, tmp_path: Path) -> None:
    path = tmp_path / "neon.yaml"
    path.write_text("name: Neon\nsummary: a neon-lit night portrait\ngrade: magenta and cyan neon colour\n")
    req = compile_restyle(headshot, "flux-2-pro", seed=2, look=path)
    assert "magenta and cyan" in req.prompt and req.options["look"] == "neon"
    custom = Look(name="Sepia", summary="a sepia-toned portrait", grade="warm brown sepia toning")
    assert "sepia toning" in compile_restyle(headshot, "flux-2-pro", seed=2, look=custom).prompt
    assert load_look("film").film == "shot on Kodak Portra 400, fine natural grain"


def test_compile_edit_is_pure(headshot: Path) -> None:
    a = compile_edit(headshot, "soften the fill light", "flux-2-pro", "bfl", seed=9)
    b = compile_edit(headshot, "soften the fill light", "flux-2-pro", "bfl", seed=9)
    assert a.idempotency_key == b.idempotency_key
    assert a.idempotency_key != compile_edit(headshot, "soften the key light", "flux-2-pro", "bfl", seed=9).idempotency_key


@pytest.mark.parametrize("provider", ["bfl", "fal", "replicate"])
def test_every_hosted_edit_route_is_accepted_by_its_sandbox(provider: str, headshot: Path, style_image: Path) -> None:
    """The planned requests follow each provider's contract: the sandbox validates them and returns the edit."""
    import asyncio

    from portrait_studio.providers import bfl, fal, replicate
    from portrait_studio.testing.sandbox import start_sandbox

    cls = {"bfl": bfl.BflProvider, "fal": fal.FalProvider, "replicate": replicate.ReplicateProvider}[provider]
    requests = [compile_edit(headshot, "soften the fill light", model, provider, seed=4)
                for model, route in EDIT_ROUTES if route == provider]
    requests.append(compile_restyle(headshot, "flux-2-pro", provider, seed=4, look="cinematic", style_ref=style_image))

    async def run_all() -> list[tuple[int, int]]:
        with start_sandbox(provider, latency=0.01) as sandbox:
            client = cls.for_sandbox(sandbox, poll_interval_s=0.02)
            try:
                results = [await client.submit(r) for r in requests]
            finally:
                await client.aclose()
        sizes = []
        for result in results:
            with Image.open(io.BytesIO(result.image)) as im:
                sizes.append(im.size)
        return sizes

    sizes = asyncio.run(run_all())
    assert len(sizes) == len(requests) >= 2
    for request, (w, h) in zip(requests, sizes, strict=True):
        assert abs(w / h - 0.75) < 0.02, (request.model, w, h)  # the photo's 3:4 framing comes back
