"""Pick a candidate, vary one element, compare models side by side, hand over the audit bundle."""

from __future__ import annotations

import asyncio
import json
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from portrait_studio.audit import build_audit_bundle
from portrait_studio.brief import example_brief_path, load_brief
from portrait_studio.compare import plan_compare, write_comparison
from portrait_studio.engine import Engine
from portrait_studio.errors import BriefError, StudioError
from portrait_studio.ledger import Ledger
from portrait_studio.shoot import diversify_brief, plan_shoot, plan_vary
from test_runner import CountingProvider

BRIEF = load_brief(example_brief_path("rembrandt-studio-headshot"))


def _run(tmp_path: Path, ledger: Ledger, plan, provider=None, checker=None):  # type: ignore[no-untyped-def]
    engine = Engine(ledger=ledger, images_dir=tmp_path / "img", runs_dir=tmp_path / "runs",
                    providers={"bfl": provider or CountingProvider()}, checker=checker)
    run_id = engine.record(plan.to_plan())
    report = asyncio.run(engine.execute(run_id))
    return run_id, Path(ledger.run(run_id).out_dir or ""), report


def test_shoot_writes_a_contact_sheet_and_run_json(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        run_id, out, report = _run(tmp_path, ledger, plan_shoot(BRIEF, ["flux-1.1-pro"], [5, 6, 7]),
                                   checker=lambda p, b: ("pass", 1.0, {"overall": "pass"}))
        sheet = out / "contact-sheet.png"
        assert sheet.is_file() and Image.open(sheet).width > 3 * 384
        data = json.loads((out / "run.json").read_text())
        assert [r["request"]["seed"] for r in data["requests"]] == [5, 6, 7]
        assert all(r["image"]["check"] == "pass" for r in data["requests"])
        assert data["redo"] == f"portrait resume {run_id}"


def test_vary_locks_the_picked_seed_and_changes_exactly_one_element(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        run_id, _, report = _run(tmp_path, ledger, plan_shoot(BRIEF, ["flux-1.1-pro"], [11, 22, 33]))
        with pytest.raises(StudioError, match="no picked image"):
            plan_vary(ledger, run_id, {"lighting": "clamshell"})
        picked = report.outcomes[1].image
        assert picked is not None
        ledger.pick(run_id, picked.id)
        plan = plan_vary(ledger, run_id, {"lighting": "clamshell"})
        (req,) = plan.requests
        base = ledger.requests(run_id)[1].request
        assert req.seed == 22 and (req.width, req.height) == (base.width, base.height)
        assert "Clamshell beauty lighting" in req.prompt and "Rembrandt" not in req.prompt
        assert req.parent_id == picked.id
        with pytest.raises(BriefError, match="one element per round"):
            plan_vary(ledger, run_id, {"lighting": "clamshell", "background": "white-seamless"})
        forced = plan_vary(ledger, run_id, {"lighting": "clamshell", "background": "white-seamless"}, force=True)
        vary_id, _, _ = _run(tmp_path, ledger, forced)
        row = ledger.run(vary_id)
        assert row.forced and row.parent_run_id == run_id and row.varied == {"lighting": "clamshell", "background": "white-seamless"}


def test_compare_takes_two_to_four_models(tmp_path: Path) -> None:
    with pytest.raises(BriefError, match="2 to 4"):
        plan_compare(BRIEF, ["flux-1.1-pro", "flux-2-pro", "flux-1.1-pro-ultra", "flux-kontext-pro", "flux-2-max"], [1])
    with pytest.raises(BriefError, match="2 to 4"):
        plan_compare(BRIEF, ["flux-1.1-pro"], [1])


def test_compare_gives_each_model_its_own_prompt_and_writes_grid_and_tables(tmp_path: Path) -> None:
    models = ["flux-1.1-pro", "flux-2-pro", "flux-1.1-pro-ultra", "flux-kontext-pro"]
    plan = plan_compare(BRIEF, models, [1234, 99, 7])
    assert len(plan.requests) == 12 and {r.seed for r in plan.requests} == {1234, 99, 7}
    with Ledger(tmp_path / "l.db") as ledger:
        run_id, out, _ = _run(tmp_path, ledger, plan)
        paths = write_comparison(ledger, run_id, out)
        md = paths["markdown"].read_text()
        for header in ("Provider", "Modes", "Max resolution", "Aspect ratios", "Safety tolerance", "Variants",
                       "Price per image", "This comparison cost", "Time to image"):
            assert header in md
        assert "FLUX1.1 [pro] Ultra" in md and "raw" in md
        assert "Total spent: $0.480" in md  # 12 images at the sandbox-reported $0.04
        grid = Image.open(out / "compare-grid.png")
        assert grid.width > 4 * 300
        assert "<table>" in paths["html"].read_text()


def test_diversify_declares_attributes_in_each_variant() -> None:
    variants = diversify_brief(BRIEF, "skin_tone=light,medium,deep;age=25,45,65")
    assert len(variants) == 3
    assert sorted(v.subject.skin_tone for _, v in variants) == ["deep", "light", "medium"]
    assert {a["age"] for a, _ in variants} == {"25", "45", "65"}
    with pytest.raises(BriefError, match="cannot diversify"):
        diversify_brief(BRIEF, "eye_colour=blue")


def test_audit_bundle_has_every_record_and_no_secret(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        run_id, _, _ = _run(tmp_path, ledger, plan_shoot(BRIEF, ["flux-1.1-pro"], [1, 2]))
        bundle = build_audit_bundle(ledger, run_id, tmp_path / "bundle.zip", secrets=["bfl_secret_key_123"])
        with zipfile.ZipFile(bundle) as zf:
            names = zf.namelist()
            assert {"records.csv", "summary.html"} <= set(names)
            assert sum(n.startswith("images/") for n in names) == 2
            record = json.loads(zf.read(next(n for n in names if n.startswith("records/"))))
            for key in ("brief", "request", "model", "provider", "seed", "cost", "timings", "checks", "lineage",
                        "references", "versions", "libraries"):
                assert key in record
            assert all(b"bfl_secret_key_123" not in zf.read(n) for n in names)
        # a key that somehow reached the ledger is caught before the zip is written
        ledger.db.execute("UPDATE results SET metadata_json='{\"leak\": \"bfl_secret_key_123\"}'")
        with pytest.raises(StudioError, match="contains an API key"):
            build_audit_bundle(ledger, run_id, tmp_path / "bundle2.zip", secrets=["bfl_secret_key_123"])
