"""`--deliver 1080p|2k|4k`: the model's best native size, then the exact delivery size."""

from __future__ import annotations

import pytest

from portrait_studio.brief import example_brief_path, load_brief
from portrait_studio.catalog import all_models, get_model, megapixels
from portrait_studio.delivery import (
    delivery_modes,
    delivery_size,
    native_size,
    parse_delivery,
    plan_delivery,
)
from portrait_studio.errors import CapabilityError, LimitError, UsageError
from portrait_studio.prompting import compile_brief


@pytest.mark.parametrize(
    ("tier", "aspect", "size"),
    [
        ("1080p", "16:9", (1920, 1080)),
        ("1080p", "9:16", (1080, 1920)),
        ("1080p", "3:4", (1440, 1920)),
        ("2k", "1:1", (2048, 2048)),
        ("2k", "3:4", (1536, 2048)),
        ("2k", "2:3", (1365, 2048)),
        ("4k", "16:9", (3840, 2160)),
        ("4k", "3:4", (2880, 3840)),
        ("4k", "4:5", (3072, 3840)),
    ],
)
def test_delivery_sizes_follow_the_long_edge_rule(tier: str, aspect: str, size: tuple[int, int]) -> None:
    assert delivery_size(tier, aspect) == size


def test_a_4k_portrait_on_flux2_renders_near_4mp_and_upscales_to_exactly_uhd_class() -> None:
    plan = plan_delivery("flux-2-pro", "bfl", "4K", "3:4")
    assert (plan.final_w, plan.final_h) == (2880, 3840)
    assert plan.native_w % 16 == 0 and plan.native_h % 16 == 0
    assert 3.8 < megapixels(plan.native_w, plan.native_h) <= 4.0
    assert plan.needs_upscale
    assert plan.upscale_factor == pytest.approx(max(2880 / plan.native_w, 3840 / plan.native_h), abs=1e-4)
    # cover: both sides reach the delivery size after scaling, so a centre crop gives it exactly
    assert plan.native_w * plan.upscale_factor >= 2880 - 0.5 and plan.native_h * plan.upscale_factor >= 3840 - 0.5


def test_1080p_on_flux2_is_native_no_upscale_and_costs_only_the_pixels_needed() -> None:
    plan = plan_delivery("flux-2-pro", "bfl", "1080p", "16:9")
    assert (plan.native_w, plan.native_h) == (1920, 1088)  # smallest size on the 16 px grid covering 1920×1080
    assert not plan.needs_upscale and plan.upscale_factor == 1.0
    assert "cropped to 1920×1080" in plan.notes[0]


def test_models_that_cannot_reach_the_delivery_render_their_largest_and_upscale() -> None:
    pro = plan_delivery("flux-1.1-pro", "bfl", "2k", "3:4")
    assert max(pro.native_w, pro.native_h) == 1440 and pro.native_w % 32 == 0  # 1440 px per side, multiples of 32
    assert pro.upscale_factor == pytest.approx(2048 / 1440, abs=1e-3)
    schnell = plan_delivery("flux-1-schnell", "local", "2k", "1:1")
    assert megapixels(schnell.native_w, schnell.native_h) <= 2.0  # its largest megapixel mode, not the grid's 4MP
    assert schnell.needs_upscale
    dev = plan_delivery("flux-1-dev", "local", "2k", "1:1")
    assert (dev.native_w, dev.native_h) == (2048, 2048) and not dev.needs_upscale


def test_aspect_ratio_models_get_an_estimated_native_size_and_a_factor_for_the_real_image() -> None:
    plan = plan_delivery("flux-1.1-pro-ultra", "bfl", "4k", "16:9")
    assert plan.native_estimated and 3.9 < megapixels(plan.native_w, plan.native_h) < 4.1
    assert plan.scale_for(2752, 1536) == pytest.approx(max(3840 / 2752, 2160 / 1536))
    assert any("recomputed from the image" in n for n in plan.notes)
    with pytest.raises(LimitError, match="outside"):
        plan_delivery("flux-kontext-pro", "bfl", "2k", "1:4")


def test_fill_models_and_unknown_tiers_are_refused_with_the_fix() -> None:
    with pytest.raises(CapabilityError, match="input image's size"):
        plan_delivery("flux-fill-pro", "bfl", "4k", "3:4")
    with pytest.raises(UsageError, match="--deliver") as err:
        parse_delivery("8k")
    assert "3840" in (err.value.hint or "")
    assert parse_delivery("UHD") == "4k" and parse_delivery(" 2K ") == "2k"


@pytest.mark.parametrize("model", [m.id for m in all_models() if m.size.kind != "input"])
def test_every_native_size_obeys_the_catalog_rules(model: str) -> None:
    spec = get_model(model)
    for provider in spec.routes:
        rules = spec.size_on(provider)
        for aspect in ("3:4", "16:9", "1:1", "9:16"):
            for tier in ("1080p", "2k", "4k"):
                try:
                    w, h, estimated = native_size(spec, provider, aspect, delivery_size(tier, aspect))
                except LimitError:
                    assert rules.kind == "aspect"  # outside the model's aspect range
                    continue
                assert w % rules.multiple == 0 and h % rules.multiple == 0
                if not estimated:
                    assert rules.max_side is None or max(w, h) <= rules.max_side
                    assert rules.max_mp is None or megapixels(w, h) <= rules.max_mp + 1e-9


def test_compare_columns_read_2k_and_4k_modes_from_the_catalog_rules() -> None:
    assert delivery_modes(get_model("flux-2-pro")) == {"1080p": "native", "2k": "native", "4k": "upscale ×1.41"}
    assert delivery_modes(get_model("flux-1.1-pro-ultra"))["2k"] == "native"
    assert delivery_modes(get_model("flux-kontext-pro"))["2k"].startswith("upscale ×")
    assert delivery_modes(get_model("flux-1-dev"), "bfl")["2k"].startswith("upscale")  # 1440 px on BFL's API
    assert delivery_modes(get_model("flux-1-dev"), "local")["2k"] == "native"
    assert set(delivery_modes(get_model("flux-fill-pro")).values()) == {"-"}


def test_compile_with_a_delivery_plan_renders_at_the_native_size_and_says_so() -> None:
    brief = load_brief(example_brief_path("rembrandt-studio-headshot"))
    plan = plan_delivery("flux-2-pro", "bfl", "4k", "3:4")
    req = compile_brief(brief, "flux-2-pro", provider="bfl", seed=7, delivery=plan)
    assert (req.width, req.height) == (plan.native_w, plan.native_h)
    assert any("upscaled ×1.63 to 2880×3840" in w for w in req.warnings)
    plain = compile_brief(brief, "flux-2-pro", provider="bfl", seed=7)
    assert req.estimated_cost.usd > plain.estimated_cost.usd  # FLUX.2 is priced per megapixel
    ultra = compile_brief(brief, "flux-1.1-pro-ultra", provider="bfl", seed=7,
                          delivery=plan_delivery("flux-1.1-pro-ultra", "bfl", "4k", "3:4"))
    assert ultra.aspect_ratio == "3:4" and ultra.width is None
    with pytest.raises(UsageError, match="flux-2-pro@bfl"):
        compile_brief(brief, "flux-2-max", provider="bfl", seed=7, delivery=plan)


def test_an_edit_plans_its_delivery_from_the_photos_own_proportions() -> None:
    plan = plan_delivery("flux-kontext-pro", "bfl", "2k", 1200 / 1600)
    assert plan.aspect_ratio == "3:4" and (plan.final_w, plan.final_h) == (1536, 2048)
    odd = plan_delivery("flux-2-pro", "bfl", "4k", 1000 / 1500)
    assert odd.aspect_ratio == "2:3" and (odd.final_w, odd.final_h) == (2560, 3840)
