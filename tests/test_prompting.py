"""compile(brief, model) → the right request for each model, with the portrait rules pinned."""

from __future__ import annotations

from pathlib import Path

import pytest

from portrait_studio.brief import Brief, example_brief_path, example_briefs, load_brief, parse_brief
from portrait_studio.catalog import all_models, get_model
from portrait_studio.errors import BriefError, CapabilityError, LimitError
from portrait_studio.prompting import compile_brief


def brief(**changes: object) -> Brief:
    base = load_brief(example_brief_path("rembrandt-studio-headshot")).model_dump(mode="python")
    for dotted, value in changes.items():
        node = base
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return parse_brief(base)


TEXT_MODELS = [m.id for m in all_models() if "text-to-image" in m.modes]


@pytest.mark.parametrize("name", example_briefs())
@pytest.mark.parametrize("model", TEXT_MODELS)
def test_every_example_brief_compiles_within_limits_or_names_the_limit(name: str, model: str) -> None:
    b = load_brief(example_brief_path(name))
    spec = get_model(model)
    try:
        req = compile_brief(b, model)
    except LimitError as err:  # e.g. 2MP on a 1MP-only model: must name the limit
        assert err.field.startswith("output.") and spec.name in str(err)
        return
    rules = spec.size_on(req.provider)
    if req.width is not None:
        assert req.width % rules.multiple == 0 and req.height % rules.multiple == 0  # type: ignore[operator]
        assert rules.max_side is None or max(req.width, req.height) <= rules.max_side  # type: ignore[type-var]
    else:
        assert req.aspect_ratio
    if spec.steps:
        assert spec.steps.min <= req.steps <= spec.steps.max  # type: ignore[operator]
    if spec.guidance:
        assert spec.guidance.min <= req.guidance <= spec.guidance.max  # type: ignore[operator]
    assert req.estimated_cost.usd > 0
    assert req.prompt.startswith("Photorealistic")


def test_compile_is_pure() -> None:
    a = compile_brief(brief(), "flux-1.1-pro")
    b = compile_brief(brief(), "flux-1.1-pro")
    assert a.model_dump(exclude={"request_id"}) == b.model_dump(exclude={"request_id"})
    assert a.idempotency_key == b.idempotency_key


def test_baseline_portrait_size_steps_and_guidance() -> None:
    req = compile_brief(brief(), "flux-1-dev", provider="local")
    assert (req.width, req.height) == (768, 1024)
    assert req.steps == 30
    assert req.guidance == pytest.approx(2.833, abs=1e-3)  # CFG 5.0 on dev's distilled 2.5–3.5 map
    square = compile_brief(brief(output__aspect_ratio="1:1"), "flux-1.1-pro")
    assert (square.width, square.height) == (1024, 1024)


def test_subject_comes_first_and_anchors_are_verbatim() -> None:
    req = compile_brief(brief(), "flux-1.1-pro")
    assert req.prompt.startswith("Photorealistic head-and-shoulders portrait of a woman in her early thirties")
    for anchor in ("almond-shaped dark brown eyes", "a small scar above the left brow", "a heart-shaped face"):
        assert anchor in req.prompt
    assert "Rembrandt lighting" in req.prompt and "85mm lens at f/2" in req.prompt


def test_visible_hands_raise_steps_and_cap_guidance() -> None:
    b = brief(hands__visible=True, hands__pose="relaxed hands at chest level, no finger splay", quality__cfg=6.0)
    req = compile_brief(b, "flux-1-dev", provider="local")
    assert req.steps == 36
    assert req.guidance == pytest.approx(get_model("flux-1-dev").guidance.from_cfg(5.5))  # type: ignore[union-attr]
    assert "relaxed hands at chest level, no finger splay" in req.prompt
    assert any("steps raised 30 → 36" in w for w in req.warnings)
    assert any("lowered to 5.5" in w for w in req.warnings)


def test_teeth_visible_adds_the_even_teeth_cue_and_no_teeth_keeps_lips_closed() -> None:
    teeth = compile_brief(brief(expression__mouth="teeth visible"), "flux-1.1-pro")
    assert "even teeth, no gaps, natural shade" in teeth.prompt
    closed = compile_brief(brief(), "flux-1.1-pro")
    assert "closed-mouth smile" in closed.prompt and "even teeth, no gaps" not in closed.prompt


def test_skin_realism_cues_are_always_present() -> None:
    for model in ("flux-1.1-pro", "flux-2-pro", "flux-1-dev"):
        assert "natural skin texture with visible pores" in compile_brief(brief(avoid=[]), model).prompt


def test_plastic_skin_recipe_lowers_guidance_and_moves_to_rembrandt_soft_fill() -> None:
    plain = compile_brief(brief(lighting__pattern="clamshell"), "flux-1-dev", provider="local")
    fixed = compile_brief(brief(lighting__pattern="clamshell", quality__plastic_skin_remedy=True), "flux-1-dev", provider="local")
    step = get_model("flux-1-dev").guidance.cfg_step(0.5)  # type: ignore[union-attr]
    assert fixed.guidance == pytest.approx(plain.guidance - step, abs=1e-3)  # type: ignore[operator]
    assert "Rembrandt lighting" in fixed.prompt and "soft fill from the camera axis" in fixed.prompt


def test_avoid_list_becomes_positive_cues_on_hosted_models_and_is_reported() -> None:
    req = compile_brief(brief(), "flux-1.1-pro")
    assert req.negative_prompt is None
    assert "natural skin texture with visible pores" in req.prompt
    assert "plastic" not in req.prompt.lower() and "watermark" not in req.prompt.lower()
    assert any("avoid 'plastic skin' → 'natural skin texture with visible pores'" in w for w in req.warnings)


def test_unknown_avoid_term_is_reported_not_silently_dropped() -> None:
    req = compile_brief(brief(avoid=["plastic skin", "purple umbrellas"]), "flux-1.1-pro")
    assert any("'purple umbrellas'" in w and "not sent" in w for w in req.warnings)


def test_local_dev_rewrites_the_avoid_list_as_positive_cues_by_default() -> None:
    """The guide calls the avoid list light: no doubled transformer calls unless asked for."""
    req = compile_brief(brief(), "flux-1-dev", provider="local")
    assert req.negative_prompt is None and req.true_cfg_scale is None
    assert "natural skin texture with visible pores" in req.prompt
    assert any("quality.true_cfg: true" in w and "×2 transformer calls" in w for w in req.warnings)


def test_true_cfg_negatives_on_local_dev_are_an_explicit_choice_with_their_cost_stated() -> None:
    b = brief()
    b = b.model_copy(update={"quality": b.quality.model_copy(update={"true_cfg": True})})
    req = compile_brief(b, "flux-1-dev", provider="local")
    assert req.negative_prompt and "plastic skin" in req.negative_prompt
    assert req.true_cfg_scale == 4.0
    assert any("×2 transformer calls per step" in w for w in req.warnings)


def test_size_beyond_a_models_limit_is_an_error_naming_it() -> None:
    with pytest.raises(LimitError) as err:
        compile_brief(brief(output__resolution="4MP"), "flux-1.1-pro")
    assert err.value.field == "output.resolution" and "1440" in str(err.value)
    with pytest.raises(LimitError, match="1MP"):
        compile_brief(brief(output__resolution="2MP"), "flux-kontext-pro")
    with pytest.raises(LimitError, match="aspect ratio 1:4"):
        compile_brief(brief(output__aspect_ratio="1:4"), "flux-1.1-pro-ultra")


def test_snapping_to_the_multiple_is_reported() -> None:
    req = compile_brief(brief(output__width=1000, output__height=1300, output__aspect_ratio=None), "flux-1.1-pro")
    assert (req.width, req.height) == (992, 1312)
    assert any("snapped to 992×1312" in w for w in req.warnings)


def test_ultra_takes_an_aspect_ratio_and_raw() -> None:
    req = compile_brief(brief(output__raw=True), "flux-1.1-pro-ultra")
    assert req.aspect_ratio == "3:4" and req.width is None and req.raw is True
    pro = compile_brief(brief(output__raw=True), "flux-1.1-pro")
    assert pro.raw is False and any("raw is an Ultra option" in w for w in pro.warnings)


def test_flux2_can_take_the_structured_json_prompt() -> None:
    req = compile_brief(brief(), "flux-2-pro", structured=True)
    assert req.structured_prompt and req.structured_prompt["camera"]["lens"] == "85mm f/2"
    assert req.prompt.startswith("{")
    pro = compile_brief(brief(), "flux-1.1-pro", structured=True)
    assert pro.structured_prompt is None and any("takes prose" in w for w in pro.warnings)


def test_step_distilled_models_keep_their_few_steps() -> None:
    req = compile_brief(brief(), "flux-1-schnell", provider="local")
    assert req.steps == 4 and any("step-distilled" in w for w in req.warnings)


def test_flux2_price_follows_the_megapixel_formula() -> None:
    one = compile_brief(brief(output__aspect_ratio="1:1"), "flux-2-pro")
    assert one.estimated_cost.usd == pytest.approx(0.03)
    four = compile_brief(brief(output__aspect_ratio="1:1", output__resolution="4MP"), "flux-2-pro")
    assert (four.width, four.height) == (2048, 2048)
    assert four.estimated_cost.usd == pytest.approx(0.03 + 3 * 0.015)


def test_random_seed_must_be_made_explicit() -> None:
    with pytest.raises(BriefError, match="output.seed"):
        compile_brief(brief(output__seed="random"), "flux-1.1-pro")
    assert compile_brief(brief(output__seed="random"), "flux-1.1-pro", seed=7).seed == 7


def test_fill_is_not_a_text_to_image_model() -> None:
    with pytest.raises(CapabilityError, match="portrait fix"):
        compile_brief(brief(), "flux-fill-pro")


def test_provider_must_serve_the_model() -> None:
    with pytest.raises(CapabilityError, match="not served by provider 'local'"):
        compile_brief(brief(), "flux-1.1-pro", provider="local")


def test_safety_tolerance_outside_the_model_range_is_refused() -> None:
    with pytest.raises(LimitError, match="0–5"):
        compile_brief(brief(output__safety_tolerance=6), "flux-2-pro")


def test_reference_image_becomes_ultra_image_prompt_or_dev_img2img(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (64, 64)).save(tmp_path / "ref.png")
    refs = [{"path": str(tmp_path / "ref.png"), "weight": 0.3, "rights": {"who": "a", "source": "b", "permission": "c"}}]
    ultra = compile_brief(brief(references=refs), "flux-1.1-pro-ultra")
    assert ultra.mode == "reference" and ultra.reference_weight == 0.3 and ultra.denoise is None and len(ultra.images) == 1
    dev = compile_brief(brief(references=refs), "flux-1-dev", provider="local")
    assert dev.mode == "image-to-image" and dev.images[0].role == "init"
    # one meaning per word: the weight becomes the opposite-direction denoise, and the notes say so
    assert dev.denoise == 0.7 and dev.reference_weight is None and any("1 − weight" in w for w in dev.warnings)
