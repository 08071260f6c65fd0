"""The four promises on the paths a user walks: never pay twice, never exceed a budget, every output
labelled, every output with its lineage — through the one engine, as the CLI drives it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from portrait_studio.brief import example_brief_path
from portrait_studio.labels import verify
from portrait_studio.ledger import Ledger

BRIEF = example_brief_path("rembrandt-studio-headshot")


def _shoot(cli, *args: str) -> dict:  # type: ignore[no-untyped-def]
    code, out, err = cli("shoot", BRIEF, "-m", "flux-1.1-pro", *args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_a_repeated_locked_seed_shoot_labels_both_files(cli, studio_home: Path) -> None:
    first = _shoot(cli, "--seed", "4242")
    second = _shoot(cli, "--seed", "4242")
    files = [Path(first["images"][0]["out_path"]), Path(second["images"][0]["out_path"])]
    assert files[0] != files[1]
    assert first["images"][0]["image_sha256"] == second["images"][0]["image_sha256"]  # the same pixels, twice
    for f in files:
        report = verify(f)
        assert report.labelled and report.digital_source_type.endswith("trainedAlgorithmicMedia"), f
        assert report.parameters.get("Seed") == "4242" and "SANDBOX" in (report.caption or "")
        assert Path(str(f) + ".json").is_file()  # the sidecar too


def test_a_repeated_four_model_compare_labels_every_file(cli) -> None:
    models = ["-m", "flux-1.1-pro", "-m", "flux-2-pro", "-m", "flux-1.1-pro-ultra", "-m", "flux-kontext-pro"]
    for _ in range(2):
        code, out, err = cli("compare", BRIEF, *models, "--seed", "1234", "--json")
        assert code == 0, err
        data = json.loads(out)
        assert len(data["images"]) == 4
        for image in data["images"]:
            assert verify(image["out_path"]).labelled, image["out_path"]


def test_fixing_the_run_folder_copy_keeps_the_generation_and_its_cost_in_the_lineage(cli) -> None:
    shot = _shoot(cli, "--seed", "7")
    copy = shot["images"][0]["out_path"]  # the file the CLI points the user to
    code, out, err = cli("fix", copy, "--region", "teeth", "--json")
    assert code == 0, err
    lineage = json.loads(out)["lineage"]
    assert [s["operation"] for s in lineage] == ["generate", "fix"]
    assert lineage[0]["seed"] == 7 and lineage[0]["cost_usd"] == pytest.approx(0.04)
    fixed = Path(json.loads(out)["path"])
    assert verify(fixed).labelled and "SANDBOX" in (verify(fixed).caption or "")
    code, out, err = cli("lineage", str(fixed), "--json")
    assert code == 0 and json.loads(out)["lineage"][0]["operation"] == "generate"


def test_a_shoot_where_nothing_can_be_made_exits_non_zero_naming_the_real_fix(cli, studio_home: Path,
                                                                              tmp_path: Path) -> None:
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "model_index.json").write_text('{"_class_name": "FluxPipeline"}')
    code, out, err = cli("shoot", BRIEF, "-m", "flux-1-dev", "--provider", "local", "--weights", weights, "--seeds", "3")
    said = " ".join(err.split())
    assert code != 0
    assert "portrait local licence flux-1-dev" in said and "portrait resume" not in said
    assert said.count("Non-Commercial") <= 1  # the licence is named once, not once per request
    with Ledger(studio_home / "ledger.db") as ledger:
        assert ledger.runs() == []  # refused before anything was recorded


def test_sandbox_spend_is_never_added_to_real_money(cli) -> None:
    shot = _shoot(cli, "--seeds", "2")
    assert shot["sandbox"] and shot["spent_usd"] == 0 and shot["sandbox_usd"] == pytest.approx(0.08)
    code, out, err = cli("log")
    said = " ".join(out.split())
    assert code == 0 and "$0.000 real money" in said and "sandbox (test, not money): $0.080" in said


def test_a_key_pasted_into_a_brief_is_refused_before_sending(cli, tmp_path: Path, studio_home: Path) -> None:
    brief = tmp_path / "brief.yaml"
    brief.write_text("subject:\n  description: a woman, bfl_0123456789abcdefghijklmnopqrstuv\n")
    code, out, err = cli("shoot", brief, "-m", "flux-1.1-pro", "--seeds", "1")
    assert code == 2 and "API key" in err
    with Ledger(studio_home / "ledger.db") as ledger:
        assert ledger.runs() == []


def test_an_identity_reference_without_a_rights_record_is_not_sent(cli, tmp_path: Path, studio_home: Path) -> None:
    from portrait_studio.testing.photos import astronaut

    astronaut().save(tmp_path / "face.png")
    brief = tmp_path / "brief.yaml"
    brief.write_text("subject:\n  description: a woman in her forties\nreferences:\n  - path: face.png\n    role: identity\n")
    for command in (["shoot", brief, "-m", "flux-1.1-pro-ultra", "--seeds", "1"],
                    ["compare", brief, "-m", "flux-1.1-pro-ultra", "-m", "flux-2-pro", "--seed", "1"]):
        code, out, err = cli(*command)
        assert code == 2 and "rights" in err, err
    with Ledger(studio_home / "ledger.db") as ledger:
        assert ledger.runs() == [] and ledger.spent(sandbox=None).usd == 0


def test_a_truncated_run_folder_copy_is_repaired_by_resume(cli) -> None:
    """A full disk or a kill mid-write must not break the run: resume writes the copy again, labelled."""
    shot = _shoot(cli, "--seeds", "2")
    damaged = Path(shot["images"][0]["out_path"])
    damaged.write_bytes(damaged.read_bytes()[:300])
    missing = Path(shot["images"][1]["out_path"])
    missing.unlink()
    code, out, err = cli("resume", shot["run_id"], "--json")
    assert code == 0, err
    for f in (damaged, missing):
        assert verify(f).labelled, f
    with Ledger(Path(shot["out_dir"]).parents[1] / "ledger.db") as ledger:
        assert ledger.run(shot["run_id"]).status == "done"
        assert ledger.spent(shot["run_id"], sandbox=True).usd == pytest.approx(0.08)  # nothing paid again


def test_resume_of_a_finished_run_pays_nothing_and_counts_right(cli) -> None:
    shot = _shoot(cli, "--seeds", "2")
    code, out, err = cli("resume", shot["run_id"])
    assert code == 0, err
    said = " ".join((out + err).split())
    assert "2/2" in said and "4/2" not in said
    assert "$0.080" in said  # what the run cost, sandbox — not paid again


def test_out_inside_or_above_the_studio_is_refused_before_anything_is_sent(cli, studio_home: Path) -> None:
    for out in (studio_home, studio_home.parent, studio_home / "images"):
        code, _, err = cli("shoot", BRIEF, "-m", "flux-1.1-pro", "--seeds", "1", "--out", out)
        assert code == 2 and "studio folder" in err, (out, err)
    with Ledger(studio_home / "ledger.db") as ledger:
        assert ledger.runs() == []
