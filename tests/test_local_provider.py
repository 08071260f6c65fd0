"""The local provider on tiny random-weight FLUX pipelines saved to disk and loaded back.

Every pipeline here goes through `save_pretrained` -> `from_pretrained`, the same path as
real downloaded weights; nothing touches the Hugging Face hub.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("diffusers")

from portrait_studio.config import Studio
from portrait_studio.errors import CapabilityError, NotConfigured
from portrait_studio.finishing.composite import composite, feathered_alpha
from portrait_studio.providers.local import (
    GenerationCancelled,
    LicenceNotAccepted,
    LocalOptions,
    LocalProvider,
)
from portrait_studio.records import InputImage, LoraWeight, Request
from portrait_studio.testing.tiny import save_tiny_lora, save_tiny_pipeline

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*torchvision.*"),
    pytest.mark.filterwarnings("ignore:.*float32.*"),
]

SMALL = {"width": 64, "height": 64, "steps": 2}


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tiny-weights")
    kinds = ["flux1-dev", "flux1-schnell", "flux1-fill", "flux1-kontext", "flux1-redux", "flux2-klein", "flux2-dev"]
    return {kind: str(save_tiny_pipeline(kind, root / kind)) for kind in kinds}


@pytest.fixture(scope="session")
def tiny_lora(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(save_tiny_lora(tmp_path_factory.mktemp("lora") / "style.safetensors"))


@pytest.fixture(scope="session")
def photo(tmp_path_factory: pytest.TempPathFactory) -> InputImage:
    """A 64x64 photo-like test image: smooth gradients plus a bright disc (no network)."""
    y, x = np.mgrid[0:64, 0:64]
    rgb = np.stack([x * 4, y * 4, np.full_like(x, 120)], axis=-1).astype(np.uint8)
    rgb[(x - 32) ** 2 + (y - 28) ** 2 < 150] = (230, 190, 170)
    path = tmp_path_factory.mktemp("photos") / "portrait.png"
    Image.fromarray(rgb).save(path)
    return InputImage.from_path(path, role="init")


@pytest.fixture(scope="session")
def other_photo(tmp_path_factory: pytest.TempPathFactory) -> InputImage:
    rgb = np.random.RandomState(7).randint(0, 255, (64, 64, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("photos") / "noise.png"
    Image.fromarray(rgb).save(path)
    return InputImage.from_path(path, role="init")


@pytest.fixture(scope="session")
def mask(tmp_path_factory: pytest.TempPathFactory) -> InputImage:
    m = Image.new("L", (64, 64), 0)
    m.paste(255, (16, 16, 48, 40))
    path = tmp_path_factory.mktemp("masks") / "mask.png"
    m.save(path)
    return InputImage.from_path(path, role="mask")


def provider(tmp_path: Path, *, accept: bool = True, **options: object) -> LocalProvider:
    p = LocalProvider(LocalOptions(max_sequence_length=32, device="cpu", **options), studio=Studio(tmp_path))
    if accept:
        for model in ("flux-1-dev", "flux-1-fill-dev", "flux-1-kontext-dev", "flux-2-dev", "flux-2-klein-9b"):
            p.accept_licence(model)
    return p


def request(model: str, weights: str, *, sampler: str | None = None, **fields: object) -> Request:
    fields = {"prompt": "a portrait photo of a woman", "seed": 0, **SMALL, **fields}
    options = {"weights": weights} | ({"sampler": sampler} if sampler else {})
    return Request(model=model, provider="local", options=options, **fields)  # type: ignore[arg-type]


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int16)


async def test_locked_seed_reproduces_pixels_and_records_versions(tmp_path, tiny_weights):
    p = provider(tmp_path)
    a = await p.submit(request("flux-1-dev", tiny_weights["flux1-dev"], seed=11))
    b = await p.submit(request("flux-1-dev", tiny_weights["flux1-dev"], seed=11))
    c = await p.submit(request("flux-1-dev", tiny_weights["flux1-dev"], seed=12))
    assert a.image == b.image
    assert (pixels(a.image) != pixels(c.image)).any()
    assert Image.open(io.BytesIO(a.image)).size == (64, 64)
    v = a.versions
    assert {"torch", "cuda", "diffusers", "transformers"} <= set(v)
    assert v["dtype"] == "float32" and v["device"] == "cpu"
    assert v["model_revision"].startswith("sha256:") and v["weights"] == tiny_weights["flux1-dev"]
    assert a.metadata["pipeline"] == "FluxPipeline" and a.metadata["transformer_calls"] == 2
    assert a.seed == 11 and a.cost.usd == 0


async def test_changed_weights_change_the_recorded_revision(tmp_path, tiny_weights):
    p = provider(tmp_path)
    dev = await p.submit(request("flux-1-dev", tiny_weights["flux1-dev"]))
    schnell = await p.submit(request("flux-1-schnell", tiny_weights["flux1-schnell"]))
    assert dev.versions["model_revision"] != schnell.versions["model_revision"]


async def test_low_strength_img2img_keeps_the_photo_high_strength_does_not(tmp_path, tiny_weights, photo, other_photo):
    """At low strength the result depends on the input photo; near 1.0 the photo hardly matters."""
    p = provider(tmp_path)

    async def spread(strength: float) -> tuple[float, int]:
        outs = [await p.submit(request("flux-1-dev", tiny_weights["flux1-dev"], mode="image-to-image",
                                       images=(img,), denoise=strength, steps=10)) for img in (photo, other_photo)]
        diff = float(np.abs(pixels(outs[0].image) - pixels(outs[1].image)).mean())
        return diff, outs[0].metadata["transformer_calls"]

    low_diff, low_calls = await spread(0.3)
    high_diff, high_calls = await spread(0.95)
    assert low_diff > 2 * high_diff
    assert low_calls == 3 and high_calls == 10  # strength decides how many of the 10 steps run


async def test_inpaint_after_compositing_changes_only_the_masked_region(tmp_path, tiny_weights, photo, mask):
    p = provider(tmp_path)
    for model, kind in (("flux-1-dev", "flux1-dev"), ("flux-1-fill-dev", "flux1-fill")):
        result = await p.submit(request(model, tiny_weights[kind], mode="inpaint", images=(photo,), mask=mask))
        original = Image.open(photo.path).convert("RGB")
        generated = Image.open(io.BytesIO(result.image)).convert("RGB")
        # The model alone re-encodes everything: pixels outside the mask change too.
        outside = feathered_alpha(Image.open(mask.path), 3) == 0
        assert (np.asarray(generated)[outside] != np.asarray(original)[outside]).any()
        fixed = composite(original, generated, Image.open(mask.path), feather_px=3)
        assert (np.asarray(fixed)[outside] == np.asarray(original)[outside]).all()
        inside = np.asarray(Image.open(mask.path)) == 255
        assert (np.asarray(fixed)[inside] != np.asarray(original)[inside]).any()
        assert result.metadata["pipeline"] == ("FluxFillPipeline" if kind == "flux1-fill" else "FluxInpaintPipeline")


async def test_lora_changes_the_image_and_switches_off_cleanly(tmp_path, tiny_weights, tiny_lora):
    p = provider(tmp_path)
    weights = tiny_weights["flux1-dev"]
    base = await p.submit(request("flux-1-dev", weights))
    styled = await p.submit(request("flux-1-dev", weights, loras=(LoraWeight(path=tiny_lora, weight=1.0),)))
    zero = await p.submit(request("flux-1-dev", weights, loras=(LoraWeight(path=tiny_lora, weight=0.0),)))
    after = await p.submit(request("flux-1-dev", weights))
    assert (pixels(styled.image) != pixels(base.image)).any()
    assert after.image == base.image
    assert np.abs(pixels(zero.image) - pixels(base.image)).max() <= 1
    [recorded] = styled.metadata["loras"]
    assert recorded["path"] == tiny_lora and recorded["weight"] == 1.0 and len(recorded["sha256"]) == 64
    assert "peft" in styled.versions and base.metadata["loras"] == []


async def test_negative_prompt_doubles_transformer_calls(tmp_path, tiny_weights):
    p = provider(tmp_path)
    plain = await p.submit(request("flux-1-dev", tiny_weights["flux1-dev"]))
    negative = await p.submit(request("flux-1-dev", tiny_weights["flux1-dev"], negative_prompt="blurry, plastic skin"))
    assert plain.metadata["transformer_calls"] == 2 and not plain.metadata["true_cfg"]
    assert negative.metadata["transformer_calls"] == 4 and negative.metadata["true_cfg"]
    assert negative.metadata["true_cfg_scale"] == 4.0
    assert (pixels(plain.image) != pixels(negative.image)).any()


async def test_klein_negative_prompt_runs_through_its_cfg(tmp_path, tiny_weights):
    p = provider(tmp_path)
    weights = tiny_weights["flux2-klein"]
    plain = await p.submit(request("flux-2-klein-4b", weights, guidance=4.0))
    negative = await p.submit(request("flux-2-klein-4b", weights, guidance=4.0, negative_prompt="blurry"))
    assert plain.metadata["transformer_calls"] == 4  # undistilled klein: CFG against an empty prompt
    assert negative.metadata["transformer_calls"] == 4 and negative.metadata["true_cfg"]
    assert (pixels(plain.image) != pixels(negative.image)).any()


async def test_kontext_edits_the_given_photo_at_its_size(tmp_path, tiny_weights, photo, other_photo):
    p = provider(tmp_path)
    w = tiny_weights["flux1-kontext"]
    a = await p.submit(request("flux-1-kontext-dev", w, mode="edit", images=(photo,), prompt="make her smile"))
    b = await p.submit(request("flux-1-kontext-dev", w, mode="edit", images=(other_photo,), prompt="make her smile"))
    assert Image.open(io.BytesIO(a.image)).size == (64, 64)
    assert (pixels(a.image) != pixels(b.image)).any()
    assert a.metadata["pipeline"] == "FluxKontextPipeline"


async def test_redux_image_prompt_steers_flux1_dev(tmp_path, tiny_weights, photo, other_photo):
    p = provider(tmp_path, redux_weights=tiny_weights["flux1-redux"])
    w = tiny_weights["flux1-dev"]
    a = await p.submit(request("flux-1-dev", w, mode="reference", images=(photo,)))
    b = await p.submit(request("flux-1-dev", w, mode="reference", images=(other_photo,)))
    assert (pixels(a.image) != pixels(b.image)).any()
    assert a.metadata["pipeline"] == "FluxPipeline + FluxPriorReduxPipeline"


async def test_flux2_takes_several_reference_images(tmp_path, tiny_weights, photo, other_photo):
    p = provider(tmp_path)
    for model, kind in (("flux-2-dev", "flux2-dev"), ("flux-2-klein-9b", "flux2-klein")):
        one = await p.submit(request(model, tiny_weights[kind], mode="reference", images=(photo,)))
        two = await p.submit(request(model, tiny_weights[kind], mode="reference", images=(photo, other_photo)))
        assert (pixels(one.image) != pixels(two.image)).any()
        assert one.metadata["pipeline"] == ("Flux2Pipeline" if kind == "flux2-dev" else "Flux2KleinPipeline")


async def test_progress_is_reported_per_step_and_cancel_stops_between_steps(tmp_path, tiny_weights):
    seen: list[tuple[int, int]] = []
    p = provider(tmp_path)
    p.on_step = lambda step, total: seen.append((step, total))
    await p.submit(request("flux-1-dev", tiny_weights["flux1-dev"]))
    assert seen == [(1, 2), (2, 2)]

    seen.clear()

    def cancel_after_first(step: int, total: int) -> None:
        seen.append((step, total))
        p.cancel()

    p.on_step = cancel_after_first
    with pytest.raises(GenerationCancelled, match="after step 1 of 4"):
        await p.submit(request("flux-1-dev", tiny_weights["flux1-dev"], steps=4))
    assert seen == [(1, 4)]
    p.on_step = None
    ok = await p.submit(request("flux-1-dev", tiny_weights["flux1-dev"]))  # a later run is not cancelled
    assert ok.metadata["steps_done"] == 2


async def test_generation_runs_off_the_event_loop(tmp_path, tiny_weights):
    p = provider(tmp_path)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    await p.submit(request("flux-1-dev", tiny_weights["flux1-dev"], steps=8, width=128, height=128))
    task.cancel()
    assert ticks > 3


async def test_step_cache_runs_and_is_reported(tmp_path, tiny_weights):
    p = provider(tmp_path, cache="fbc", cache_params={"threshold": 0.5})
    result = await p.submit(request("flux-1-dev", tiny_weights["flux1-dev"], steps=4))
    assert result.metadata["cache"] == "fbc" and result.metadata["cache_params"] == {"threshold": 0.5}
    uncached = await provider(tmp_path).submit(request("flux-1-dev", tiny_weights["flux1-dev"], steps=4))
    assert uncached.metadata["cache"] is None


async def test_missing_weights_folder_says_which_path_and_how_to_fix(tmp_path):
    p = provider(tmp_path)
    missing = tmp_path / "no-such-weights"
    with pytest.raises(NotConfigured) as err:
        await p.submit(request("flux-1-dev", str(missing)))
    assert str(missing) in err.value.message and "--weights" in (err.value.hint or "")


async def test_unsupported_modes_and_options_are_refused_before_loading(tmp_path, tiny_weights, photo):
    p = provider(tmp_path)
    dev, fill = tiny_weights["flux1-dev"], tiny_weights["flux1-fill"]
    with pytest.raises(CapabilityError, match="cannot do text-to-image"):
        p.check(request("flux-1-fill-dev", fill))
    with pytest.raises(CapabilityError, match="reference"):
        p.check(request("flux-1-schnell", dev, mode="reference", images=(photo,)))
    with pytest.raises(CapabilityError, match="negative prompt"):
        p.check(request("flux-2-dev", tiny_weights["flux2-dev"], negative_prompt="blurry"))
    with pytest.raises(CapabilityError, match="needs a mask"):
        p.check(request("flux-1-dev", dev, mode="inpaint", images=(photo,)))
    with pytest.raises(CapabilityError, match="not served by provider 'local'"):
        p.check(request("flux-1.1-pro", dev))
    with pytest.raises(CapabilityError, match="needs a CUDA GPU"):
        provider(tmp_path, quantize="fp8").check(request("flux-1-dev", dev))
    with pytest.raises(CapabilityError, match="needs a CUDA GPU"):
        provider(tmp_path, offload="model").check(request("flux-1-dev", dev))


async def test_non_commercial_weights_need_the_licence_accepted_once(tmp_path, tiny_weights):
    p = provider(tmp_path, accept=False)
    notice = p.licence_notice("flux-1-dev")
    assert notice and "Non-Commercial" in notice and "huggingface.co/black-forest-labs/FLUX.1-dev" in notice
    assert p.licence_notice("flux-1-schnell") is None and p.licence_notice("flux-2-klein-4b") is None
    with pytest.raises(LicenceNotAccepted):
        await p.submit(request("flux-1-dev", tiny_weights["flux1-dev"]))
    p.accept_licence("flux-1-dev")
    assert "flux-1-dev" in json.loads((tmp_path / "licences.json").read_text())
    again = provider(tmp_path, accept=False)  # a new process reads the acceptance back
    assert again.licence_notice("flux-1-dev") is None
    await again.submit(request("flux-1-dev", tiny_weights["flux1-dev"]))


async def test_pipelines_over_the_same_weights_share_one_transformer(tmp_path, tiny_weights, photo, mask):
    from portrait_studio.providers.local_runtime import derived_pipeline, load_weights

    p = provider(tmp_path)
    w = tiny_weights["flux1-dev"]
    await p.submit(request("flux-1-dev", w))
    await p.submit(request("flux-1-dev", w, mode="inpaint", images=(photo,), mask=mask))
    import torch

    loaded = load_weights("FluxPipeline", w, device="cpu", dtype=torch.float32)
    assert load_weights("FluxPipeline", w, device="cpu", dtype=torch.float32) is loaded
    inpaint = derived_pipeline(loaded, "FluxInpaintPipeline")
    assert inpaint.transformer is loaded.base.transformer and inpaint.vae is loaded.base.vae


# --- samplers (issue 17 item 4) ------------------------------------------------------------------
async def test_dpm_solver_changes_the_run_repeats_itself_and_is_recorded(tmp_path, tiny_weights):
    p = provider(tmp_path)
    w = tiny_weights["flux1-dev"]
    euler = await p.submit(request("flux-1-dev", w, seed=5, steps=8))
    dpm = await p.submit(request("flux-1-dev", w, seed=5, steps=8, sampler="dpm++ 2m"))
    again = await p.submit(request("flux-1-dev", w, seed=5, steps=8, sampler="dpm++ 2m"))
    assert (pixels(euler.image) != pixels(dpm.image)).any()  # another solver, same seed: other pixels
    assert dpm.image == again.image  # the same sampler twice: the same pixels
    e, d = euler.metadata["scheduler"], dpm.metadata["scheduler"]
    assert e["class"] == "FlowMatchEulerDiscreteScheduler" and e["sampler"] == "euler"
    assert d["class"] == "DPMSolverMultistepScheduler" and d["sampler"] == "dpm++ 2m"
    assert d["config"]["use_flow_sigmas"] and d["config"]["prediction_type"] == "flow_prediction"
    assert d["config"]["algorithm_type"] == "dpmsolver++" and d["config"]["solver_order"] == 2
    assert len(d["sigmas"]) == len(e["sigmas"]) == 9 and d["sigmas"] != e["sigmas"]
    assert d["sigmas"][0] <= 1.0 and d["sigmas"][-1] == 0.0  # flow sigmas, not DDPM ones
    assert dpm.versions["scheduler"] == "DPMSolverMultistepScheduler"
    assert euler.versions["scheduler"] == "FlowMatchEulerDiscreteScheduler"
    assert dpm.metadata["transformer_calls"] == 8  # multistep: one model call per step, like Euler
    json.dumps(dpm.metadata)  # the ledger stores it as JSON
    after = await p.submit(request("flux-1-dev", w, seed=5, steps=8))
    assert after.image == euler.image  # the shared pipeline got its own scheduler back


async def test_karras_spacing_is_used_only_where_diffusers_computes_it_on_flow_sigmas(tmp_path, tiny_weights):
    from diffusers import DPMSolverMultistepScheduler

    from portrait_studio.providers.local_runtime import karras_on_flow_sigmas

    probe = DPMSolverMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        use_karras_sigmas=True, use_dynamic_shifting=True)
    probe.set_timesteps(8, mu=0.5)
    assert karras_on_flow_sigmas() == (float(probe.sigmas.max()) <= 1.0)
    p = provider(tmp_path)
    w = tiny_weights["flux2-klein"]
    plain = await p.submit(request("flux-2-klein-4b", w, steps=6, sampler="dpm++ 2m"))
    karras = await p.submit(request("flux-2-klein-4b", w, steps=6,
                                    sampler="dpm++ 2m karras"))
    record = karras.metadata["scheduler"]
    assert record["sampler"] == "dpm++ 2m karras" and record["karras"] is karras_on_flow_sigmas()
    if not karras_on_flow_sigmas():  # diffusers 0.42.1: σ_max ≈ 157 with Karras + flow sigmas
        assert "Karras spacing not applied" in record["note"] and karras.image == plain.image
    else:
        assert record["sigmas"] != plain.metadata["scheduler"]["sigmas"]


async def test_samplers_are_refused_where_the_pipeline_cannot_run_them(tmp_path, tiny_weights, photo):
    from diffusers import FlowMatchEulerDiscreteScheduler

    from portrait_studio.providers.local_runtime import make_scheduler

    p = provider(tmp_path)
    dpm = "dpm++ 2m"
    with pytest.raises(CapabilityError, match="FluxKontextPipeline passes its own sigmas"):
        p.check(request("flux-1-kontext-dev", tiny_weights["flux1-kontext"], mode="edit", images=(photo,),
                        sampler=dpm))
    with pytest.raises(CapabilityError, match="step-distilled"):
        p.check(request("flux-1-schnell", tiny_weights["flux1-schnell"], sampler=dpm))
    with pytest.raises(CapabilityError, match="cannot start image-to-image"):
        p.check(request("flux-1-dev", tiny_weights["flux1-dev"], mode="image-to-image", images=(photo,),
                        sampler=dpm))
    with pytest.raises(CapabilityError, match="fixed shift"):
        make_scheduler("dpm++ 2m", FlowMatchEulerDiscreteScheduler())


async def test_a_brief_asking_for_dpm_karras_runs_locally_with_it_recorded(tmp_path, tiny_weights):
    from portrait_studio.brief import example_brief_path, load_brief, parse_brief
    from portrait_studio.prompting import compile_brief

    data = load_brief(example_brief_path("rembrandt-studio-headshot")).model_dump(mode="python")
    data["quality"]["sampler"] = "DPM++ 2M Karras"
    req = compile_brief(parse_brief(data), "flux-1-dev", provider="local", seed=3)
    assert req.options == {"sampler": "dpm++ 2m karras"}
    req = req.model_copy(update={"steps": 4, "width": 64, "height": 64,  # tiny weights, tiny image
                                 "options": {**req.options, "weights": tiny_weights["flux1-dev"]}})
    result = await provider(tmp_path).submit(req)
    assert result.metadata["scheduler"]["class"] == "DPMSolverMultistepScheduler"


# --- edits planned by edit.py, run locally (issue 17 item 6) ----------------------------------------
async def test_planned_edits_run_on_local_kontext_and_flux2_pipelines(tmp_path, tiny_weights, photo, other_photo):
    from portrait_studio.edit import compile_edit, compile_restyle

    p = provider(tmp_path)
    larger = tmp_path / "headshot-256.png"  # Kontext [dev] takes 256 px and up
    Image.open(photo.path).resize((256, 320)).save(larger)
    kontext = compile_edit(larger, "soften the fill light", "flux-1-kontext-dev", "local", seed=2, steps=2)
    kontext = kontext.model_copy(update={"options": {"weights": tiny_weights["flux1-kontext"]}})
    out = await p.submit(kontext)
    assert out.metadata["pipeline"] == "FluxKontextPipeline" and Image.open(io.BytesIO(out.image)).size == (256, 320)

    for model, kind in (("flux-2-klein-4b", "flux2-klein"), ("flux-2-dev", "flux2-dev")):
        w = {"weights": tiny_weights[kind]}
        alone = compile_edit(photo.path, "change the sweater to navy", model, "local", seed=2, steps=2)
        with_ref = compile_edit(photo.path, "change the sweater to the one in image 2", model, "local", seed=2,
                                steps=2, references=[other_photo.path])
        restyled = compile_restyle(photo.path, model, "local", seed=2, steps=2, look="film",
                                   style_ref=other_photo.path, sampler="dpm++ 2m")
        a = await p.submit(alone.model_copy(update={"options": w}))
        b = await p.submit(with_ref.model_copy(update={"options": w}))
        c = await p.submit(restyled.model_copy(update={"options": {**restyled.options, **w}}))
        assert Image.open(io.BytesIO(a.image)).size == Image.open(io.BytesIO(b.image)).size == (64, 64)
        assert (pixels(a.image) != pixels(b.image)).any()  # the reference image reaches the model
        assert c.metadata["scheduler"]["class"] == "DPMSolverMultistepScheduler"
        assert a.metadata["pipeline"] == ("Flux2KleinPipeline" if kind == "flux2-klein" else "Flux2Pipeline")
