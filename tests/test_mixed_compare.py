"""One comparison, each model on its own provider: `-m flux-1-dev@local -m flux-1.1-pro@bfl -m flux-2-pro@fal`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from PIL import Image

from portrait_studio.brief import example_brief_path, load_brief
from portrait_studio.compare import comparison_rows, plan_compare, write_comparison
from portrait_studio.engine import Engine
from portrait_studio.errors import CapabilityError
from portrait_studio.ledger import Ledger
from test_runner import CountingProvider

BRIEF = load_brief(example_brief_path("rembrandt-studio-headshot"))
MIXED = ["flux-1-dev@local", "flux-1.1-pro@bfl", "flux-2-pro@fal"]


def counting(provider_id: str) -> CountingProvider:
    p = CountingProvider()
    p.provider_id = provider_id  # type: ignore[misc]
    return p


def test_each_model_is_compiled_for_its_own_provider() -> None:
    plan = plan_compare(BRIEF, MIXED, [1234])
    assert [(r.model, r.provider) for r in plan.requests] == [
        ("flux-1-dev", "local"), ("flux-1.1-pro", "bfl"), ("flux-2-pro", "fal")]
    local = plan.requests[0]
    assert any("quality.true_cfg" in w for w in local.warnings)  # only the local route could take a negative prompt
    assert plan.requests[1].negative_prompt is None
    bare = plan_compare(BRIEF, ["flux-1.1-pro", "flux-2-pro@fal"], [1], provider="replicate")
    assert [r.provider for r in bare.requests] == ["replicate", "fal"]


def test_unknown_routes_are_refused_before_anything_is_planned() -> None:
    with pytest.raises(CapabilityError, match="its routes: flux-1.1-pro@bfl"):
        plan_compare(BRIEF, ["flux-1.1-pro@local", "flux-2-pro"], [1])


def test_a_mixed_comparison_makes_one_grid_and_one_cost_table_with_2k_and_4k_modes(tmp_path: Path) -> None:
    plan = plan_compare(BRIEF, [*MIXED, "flux-1-dev@bfl"], [7])
    providers = {name: counting(name) for name in ("local", "bfl", "fal")}
    with Ledger(tmp_path / "l.db") as ledger:
        engine = Engine(ledger=ledger, images_dir=tmp_path / "img", runs_dir=tmp_path / "runs", providers=providers)
        run_id = engine.record(plan.to_plan())
        asyncio.run(engine.execute(run_id))
        out = Path(ledger.run(run_id).out_dir or "")
        rows = comparison_rows(ledger, run_id)
        assert [(r["id"], r["provider"]) for r in rows] == [
            ("flux-1-dev", "local"), ("flux-1.1-pro", "bfl"), ("flux-2-pro", "fal"), ("flux-1-dev", "bfl")]
        by_route = {(r["id"], r["provider"]): r for r in rows}
        assert by_route[("flux-2-pro", "fal")]["mode_2k"] == "native"
        assert by_route[("flux-2-pro", "fal")]["mode_4k"].startswith("upscale ×")
        assert by_route[("flux-1-dev", "local")]["mode_2k"] == "native"  # 2048 px locally …
        assert by_route[("flux-1-dev", "bfl")]["mode_2k"].startswith("upscale")  # … 1440 px on BFL's API
        paths = write_comparison(ledger, run_id, out)
        md = paths["markdown"].read_text()
        assert "| 2K mode | 4K mode |" in md and md.count("| FLUX.1 [dev] |") == 2
        assert "Total spent: $0.160" in md  # four images in one table
        assert Image.open(out / "compare-grid.png").width > 4 * 300
        assert all(p.paid == [7] for name, p in providers.items() if name != "bfl")
        assert providers["bfl"].paid == [7, 7]
