"""Refine a finished headshot with an instruction, move it between looks: each result a labelled child
in the lineage, its identity measured against the original, its checklist run — on the engine."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from portrait_studio.brief import example_brief_path
from portrait_studio.config import Studio
from portrait_studio.labels import COMPOSITE_SOURCE_TYPE, verify
from portrait_studio.ledger import Ledger

BRIEF = example_brief_path("rembrandt-studio-headshot")


@pytest.fixture
def headshot(cli) -> Path:  # type: ignore[no-untyped-def]
    code, out, err = cli("shoot", BRIEF, "-m", "flux-2-pro", "--seed", "11", "--json")
    assert code == 0, err
    return Path(json.loads(out)["images"][0]["out_path"])


def test_an_instruction_edit_round_is_a_labelled_child_with_identity_and_checks(cli, headshot: Path,
                                                                                studio_home: Path) -> None:
    code, out, err = cli("edit", headshot, "change the sweater to navy", "-m", "flux-2-pro", "--seed", "3", "--json")
    assert code == 0, err
    report = json.loads(out)
    (result,) = report["results"]
    assert result["identity"] in ("pass", "warn") and result["distance"] is not None and result["check"]
    edited = Path(result["path"])
    label = verify(edited)
    assert label.labelled and label.digital_source_type == COMPOSITE_SOURCE_TYPE and "SANDBOX" in (label.caption or "")
    with Ledger(studio_home / "ledger.db") as ledger:
        chain = ledger.lineage(ledger.image(str(edited)).image_sha256)
        assert [r.operation for r in chain] == ["edit", "generate"]  # a child of the generation, not an import
        (req,) = ledger.requests(report["run_id"])
        assert req.request.mode == "edit" and "navy" in req.request.prompt and "unchanged" in req.request.prompt
        assert req.request.images[0].sha256 == chain[1].image_sha256  # the original was sent as image 1


def test_a_photo_from_elsewhere_is_not_edited_without_consent(cli, tmp_path: Path, studio_home: Path) -> None:
    from portrait_studio.testing.photos import astronaut

    photo = tmp_path / "someone.png"
    astronaut().save(photo)
    code, out, err = cli("edit", photo, "warmer light", "-m", "flux-2-pro")
    assert code == 2 and "rights" in err
    with Ledger(studio_home / "ledger.db") as ledger:
        assert ledger.spent(sandbox=None).usd == 0


def test_a_restyle_to_three_looks_keeps_the_person_and_flags_a_look_that_loses_them(studio: Studio,
                                                                                    headshot: Path) -> None:
    from portrait_studio.edit import run_edit
    from portrait_studio.engine import Engine
    from portrait_studio.providers.bfl import BflProvider
    from portrait_studio.testing.drift import DriftingProvider
    from portrait_studio.testing.sandbox import start_sandbox

    with start_sandbox("bfl", latency=0.02) as sb, Ledger(studio.ledger_path) as ledger:
        # the film look comes back as somebody else: identity-breaking on purpose
        drifting = DriftingProvider(BflProvider.for_sandbox(sb, poll_interval=0.02), when_prompt_contains="colour negative film")
        engine = Engine(ledger=ledger, images_dir=studio.images_dir, runs_dir=studio.runs_dir,
                        providers={"bfl": drifting})
        report = asyncio.run(run_edit(engine, headshot, looks=["editorial", "cinematic", "lifestyle", "film"],
                                      model="flux-2-pro", provider="bfl", seed=5))
    by_look = {r.look: r for r in report.results}
    assert list(by_look) == ["editorial", "cinematic", "lifestyle", "film"]
    for look in ("editorial", "cinematic", "lifestyle"):
        assert by_look[look].identity in ("pass", "warn"), by_look[look]
    assert by_look["film"].identity == "fail" and [r.look for r in report.flagged] == ["film"]
    assert not by_look["film"].picked and sum(r.picked for r in report.results) == 1
    assert report.sheet and Path(report.sheet).is_file()
    for r in report.results:
        assert verify(r.path).labelled


def test_portrait_restyle_on_the_sandbox_writes_a_restyle_sheet(cli, headshot: Path) -> None:
    code, out, err = cli("restyle", headshot, "--look", "editorial", "--look", "black-and-white", "-m",
                         "flux-kontext-pro", "--seed", "9", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert [r["look"] for r in report["results"]] == ["editorial", "black-and-white"]
    assert Path(report["sheet"]).is_file() and report["flagged"] == []


def test_an_edit_on_a_model_without_an_edit_mode_is_refused_naming_those_that_can(cli, headshot: Path) -> None:
    code, out, err = cli("edit", headshot, "warmer light", "-m", "flux-1.1-pro")
    assert code == 2 and "flux-2-pro" in " ".join(err.split())


def test_a_mixed_local_and_hosted_comparison_through_the_cli(cli, studio: Studio, tmp_path: Path) -> None:
    """`-m flux-1-dev@local -m flux-1.1-pro@bfl -m flux-2-pro@fal`: each on its own provider, one grid,
    one cost table."""
    from _finishing_helpers import tiny_pipeline
    from portrait_studio.providers.local import LocalProvider

    weights = tiny_pipeline("flux1-dev", tmp_path)
    LocalProvider(studio=studio).accept_licence("flux-1-dev")
    brief = tmp_path / "small.yaml"
    brief.write_text("subject:\n  description: a woman in her forties, confident\n"
                     "output:\n  width: 256\n  height: 256\nquality:\n  steps: 2\n")
    code, out, err = cli("compare", brief, "-m", "flux-1-dev@local", "-m", "flux-1.1-pro@bfl", "-m", "flux-2-pro@fal",
                         "--seed", "7", "--weights", weights, "--json")
    assert code == 0, err
    data = json.loads(out)
    made = {(i["model"], i["provider"]) for i in data["images"]}
    assert made == {("flux-1-dev", "local"), ("flux-1.1-pro", "bfl"), ("flux-2-pro", "fal")}
    folder = Path(data["out_dir"])
    assert (folder / "compare-grid.png").is_file()
    table = (folder / "comparison.md").read_text()
    assert table.count("\n| FLUX") == 3 and "This comparison cost" in table


def test_an_edit_instruction_describing_a_minor_is_refused_before_sending(cli, headshot: Path,
                                                                          studio_home: Path) -> None:
    code, out, err = cli("edit", headshot, "make her look like a 12-year-old schoolgirl", "-m", "flux-2-pro")
    assert code == 2 and "instruction" in err
    with Ledger(studio_home / "ledger.db") as ledger:
        assert [r.kind for r in ledger.runs()] == ["shoot"]  # nothing recorded, nothing sent


def test_a_shot_list_describing_a_minor_is_refused_naming_the_shot(tmp_path: Path) -> None:
    from portrait_studio.errors import BriefError
    from portrait_studio.series import load_shots

    shots = tmp_path / "shots.yaml"
    shots.write_text("- name: studio\n  wardrobe: navy blazer\n- name: a teen schoolboy on his first day\n"
                     "  wardrobe: navy blazer\n")
    with pytest.raises(BriefError) as err:
        load_shots(shots)
    assert "shots.1" in str(err.value) and "shots.yaml:3" in str(err.value)
