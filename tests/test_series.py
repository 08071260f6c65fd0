"""A series holds one person across six looks: planned by method, measured after every shot, reset on drift.

Hosted runs go through the BFL sandbox on loopback (every image is the public-domain astronaut,
so the anchor is her headshot); drift is injected by a provider wrapper that returns another
person (face_recognition's biden.jpg). Local runs use tiny random pipelines, whose noise has no
face: that must read "no face", never a pass, and trigger the reset rule.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from portrait_studio.brief import Brief, Rights, example_brief_path, load_brief
from portrait_studio.errors import BriefError, CapabilityError, ConsentRequired
from portrait_studio.ledger import Ledger
from portrait_studio.providers.base import Provider
from portrait_studio.providers.bfl import BflProvider, request_body
from portrait_studio.series import (
    SeriesReport,
    Shot,
    example_shots_path,
    load_shots,
    plan_series,
    run_series,
)
from portrait_studio.swap import plan_swap, transfer_identity
from portrait_studio.testing.drift import DriftingProvider
from portrait_studio.testing.photos import astronaut
from portrait_studio.testing.sandbox import SandboxHandle, start_sandbox

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*torchvision.*:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*should be kept in float32.*"),
]

BRIEF = load_brief(example_brief_path("rembrandt-studio-headshot"))
SHOTS = load_shots(example_shots_path())
CONSENT = Rights(who="Eileen Collins", source="NASA portrait via scikit-image", permission="public domain")
FAST = {"poll_interval": 0.02, "max_poll_interval": 0.05}


@pytest.fixture(scope="module")
def anchor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("anchor") / "collins-headshot.png"
    astronaut().crop((100, 0, 360, 260)).save(path)
    return path


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxHandle]:
    with start_sandbox("bfl", latency=0.01, ultra_megapixels=1.0) as sb:
        yield sb


def _run(plan: Any, tmp_path: Path, ledger: Ledger, provider: Provider, **kw: Any) -> SeriesReport:
    from portrait_studio.engine import Engine

    async def go() -> SeriesReport:
        engine = Engine(ledger=ledger, images_dir=tmp_path / "img", runs_dir=tmp_path / "runs",
                        providers={provider.provider_id: provider})
        try:
            return await run_series(engine, plan, **kw)
        finally:
            await provider.aclose()

    return asyncio.run(go())


def _sentences(prompt: str) -> list[str]:
    return [s for s in prompt.split(". ") if s]


# --- SHOTS.yaml ------------------------------------------------------------------------------


def test_example_shots_file_has_six_looks_each_changing_the_scene() -> None:
    assert len(SHOTS) == 6
    for shot in SHOTS:
        assert {"wardrobe", "background", "lighting"} <= shot.changes.keys()
    assert any("pose" in s.changes for s in SHOTS) and any("framing" in s.changes for s in SHOTS)


def test_shots_file_mistakes_name_the_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "SHOTS.yaml"
    path.write_text("shots:\n  - wardrobe: a red coat\n  - wardrobe: a blue coat\n    lightning: clamshell\n")
    with pytest.raises(BriefError) as err:
        load_shots(path)
    assert f"{path}:4" in str(err.value) and "unknown field 'lightning'" in str(err.value)
    path.write_text("- wardrobe: a red coat\n- background: office\n  lighting: rembrant\n")
    with pytest.raises(BriefError) as err:
        load_shots(path)
    assert f"{path}:3" in str(err.value) and "did you mean rembrandt" in str(err.value)


# --- planning: how each method holds identity --------------------------------------------------


def test_seed_method_keeps_one_seed_and_the_prompt_differs_only_in_the_changed_element(anchor: Path) -> None:
    skeleton = plan_series(BRIEF, [Shot()], "seed", anchor, model="flux-1.1-pro").shots[0].request
    plan = plan_series(BRIEF, [Shot(wardrobe="a red silk blouse"), *SHOTS], "seed", anchor, model="flux-1.1-pro")
    assert {s.request.seed for s in plan.shots} == {1234}
    assert plan.shots[0].request.prompt == skeleton.prompt.replace("a charcoal merino turtleneck", "a red silk blouse")
    assert sum(1 for p in plan.shots if p.request.prompt != skeleton.prompt) == 6  # "studio classic" is the skeleton
    for planned in plan.shots:
        changed = [s for s in _sentences(planned.request.prompt) if s not in _sentences(skeleton.prompt)]
        assert len(changed) <= len(planned.shot.changes)  # one sentence per changed element, at most
        assert len(_sentences(planned.request.prompt)) == len(_sentences(skeleton.prompt))
        assert _sentences(planned.request.prompt)[-1] == _sentences(skeleton.prompt)[-1]  # the quality cues stay


def test_anchors_method_repeats_every_descriptor_anchor_verbatim_in_every_shot(anchor: Path) -> None:
    for model in ("flux-1.1-pro", "flux-2-pro"):
        plan = plan_series(BRIEF, SHOTS, "anchors", anchor, model=model)
        for planned in plan.shots:
            for trait in BRIEF.subject.anchors:
                assert trait in planned.request.prompt
        assert len({p.request.seed for p in plan.shots}) == 6  # identity is held by the words, not the noise
    two = BRIEF.model_copy(update={"subject": BRIEF.subject.model_copy(update={"anchors": ("grey eyes", "a freckle")})})
    with pytest.raises(BriefError, match="3–4 descriptor anchors"):
        plan_series(two, SHOTS, "anchors", anchor)


def test_reference_method_sends_the_anchor_at_the_users_reference_weight(anchor: Path) -> None:
    ultra = plan_series(BRIEF, SHOTS, "reference", anchor, reference_weight=0.35).shots[2].request
    endpoint, body = request_body(ultra)
    assert endpoint == "flux-pro-1.1-ultra" and body["image_prompt_strength"] == 0.35 and body["image_prompt"]
    assert ultra.images[0].sha256 == plan_series(BRIEF, SHOTS, "reference", anchor).anchor_sha256
    for model, field in (("flux-2-pro", "input_image"), ("flux-kontext-pro", "input_image")):
        _, body = request_body(plan_series(BRIEF, SHOTS, "reference", anchor, model=model).shots[0].request)
        assert body[field]
    local = plan_series(BRIEF, SHOTS, "reference", anchor, model="flux-1-dev", provider="local").shots[0].request
    assert (local.mode, local.denoise, local.images[0].role) == ("image-to-image", 0.7, "init")
    redux = plan_series(BRIEF, SHOTS, "reference", anchor, model="flux-1-dev", provider="local", local_reference="redux")
    assert redux.shots[0].request.mode == "reference" and redux.shots[0].request.denoise is None
    kontext = plan_series(BRIEF, SHOTS, "reference", anchor, model="flux-1-kontext-dev", provider="local")
    assert kontext.shots[0].request.mode == "edit"


def test_lora_method_takes_a_local_lora_file_or_a_bfl_finetune(anchor: Path, tmp_path: Path) -> None:
    lora = tmp_path / "person.safetensors"
    lora.write_bytes(b"not really weights")
    local = plan_series(BRIEF, SHOTS, "lora", anchor, lora=lora, model="flux-1-dev", provider="local", lora_weight=0.8)
    assert all(p.request.loras[0].path == str(lora) and p.request.loras[0].weight == 0.8 for p in local.shots)
    hosted = plan_series(BRIEF, SHOTS, "lora", anchor, finetune_id="ft-123", model="flux-1.1-pro-ultra")
    endpoint, body = request_body(hosted.shots[0].request)
    assert endpoint == "flux-pro-1.1-ultra-finetuned" and body["finetune_id"] == "ft-123"
    with pytest.raises(CapabilityError, match="takes no LoRA"):
        plan_series(BRIEF, SHOTS, "lora", anchor, lora=lora, model="flux-1.1-pro-ultra")
    with pytest.raises(BriefError, match="exactly one"):
        plan_series(BRIEF, SHOTS, "lora", anchor)
    with pytest.raises(CapabilityError, match="finetune"):
        plan_series(BRIEF, SHOTS, "lora", anchor, finetune_id="ft-123", model="flux-2-pro")


# --- consent -----------------------------------------------------------------------------------


def test_a_series_without_a_rights_record_is_refused_before_anything_is_paid(
    anchor: Path, tmp_path: Path, sandbox: SandboxHandle
) -> None:
    paid = sandbox.stats.paid
    with Ledger(tmp_path / "l.db") as ledger:
        plan = plan_series(BRIEF, SHOTS, "reference", anchor)
        with pytest.raises(ConsentRequired) as err:
            _run(plan, tmp_path, ledger, BflProvider.for_sandbox(sandbox, **FAST))
        assert "collins-headshot.png shows a real person" in err.value.message and "--who" in (err.value.hint or "")
        assert sandbox.stats.paid == paid and ledger.runs() == []
        # once recorded (here: from the CLI options), the same anchor is usable and the record is reused
        rights_id = ledger.record_rights(plan.anchor_sha256, CONSENT.who, CONSENT.source, CONSENT.permission)
        report = _run(plan.model_copy(update={"shots": plan.shots[:1]}), tmp_path, ledger,
                      BflProvider.for_sandbox(sandbox, **FAST))
        assert report.rights_id == rights_id


# --- against the BFL sandbox -------------------------------------------------------------------


@pytest.mark.parametrize(("method", "kw"), [
    ("seed", {"model": "flux-1.1-pro"}),
    ("reference", {"model": "flux-1.1-pro-ultra", "reference_weight": 0.3}),
    ("anchors", {"model": "flux-2-pro"}),
    ("lora", {"model": "flux-1.1-pro-ultra", "finetune_id": "ft-person-1"}),
])
def test_a_six_shot_series_runs_on_the_sandbox_and_measures_every_shot(
    method: str, kw: dict[str, Any], anchor: Path, tmp_path: Path, sandbox: SandboxHandle
) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        plan = plan_series(BRIEF, SHOTS, method, anchor, **kw)  # type: ignore[arg-type]
        report = _run(plan, tmp_path, ledger, BflProvider.for_sandbox(sandbox, **FAST), rights=CONSENT)
        assert len(report.shots) == 6 and report.all_passed and report.resets == []
        assert all(s.distance is not None and s.distance < 0.44 for s in report.shots)  # the same astronaut
        rows = ledger.identity(report.run_id)
        assert [r["shot"] for r in rows] == list(range(6)) and not any(r["reset_applied"] for r in rows)
        assert all(r["details"]["rights_id"] == report.rights_id for r in rows)
        requests = [r.request for r in ledger.requests(report.run_id)]
        if method == "reference":
            assert all(r.images[0].rights_id == report.rights_id for r in requests)
        if method == "lora":
            assert all(r.finetune_id == "ft-person-1" for r in requests)


def test_injected_drift_triggers_the_reset_rule_which_reintroduces_one_element_at_a_time(
    anchor: Path, tmp_path: Path, sandbox: SandboxHandle
) -> None:
    # shot 2 comes back as someone else once; every image with the city-street background does
    drifting = DriftingProvider(BflProvider.for_sandbox(sandbox, **FAST), submissions={1},
                                when_prompt_contains="city street")
    with Ledger(tmp_path / "l.db") as ledger:
        plan = plan_series(BRIEF, SHOTS, "reference", anchor, model="flux-1.1-pro-ultra")
        report = _run(plan, tmp_path, ledger, drifting, rights=CONSENT)
        assert report.resets == [1, 3] and report.all_passed
        second, city = report.shots[1], report.shots[3]
        assert second.attempts[0].status == "fail" and second.attempts[0].distance > 0.52  # type: ignore[operator]
        assert [a.step for a in second.attempts] == ["shot", "skeleton", "+wardrobe", "+background", "+lighting", "+mouth"]
        assert second.held_back == () and second.seed == plan.seed
        assert [a.step for a in city.attempts] == ["shot", "skeleton", "+wardrobe", "+background", "+lighting", "+framing"]
        assert city.held_back == ("background",) and city.status == "pass"
        rows = [r for r in ledger.identity(report.run_id) if r["shot"] == 3]
        assert not rows[0]["reset_applied"] and all(r["reset_applied"] for r in rows[1:])
        assert rows[-1]["details"]["held_back"] == ["background"] and rows[-1]["details"]["final"]

        out = Path(report.out_dir)
        run = ledger.run(report.run_id)
        assert run.plan and run.plan["sheet"] == str(out / "series-sheet.png") and run.plan["plot"] == str(out / "identity-plot.png")
        assert Image.open(out / "series-sheet.png").width > 4 * 320 and Image.open(out / "identity-plot.png").height > 300
        data = json.loads((out / "run.json").read_text())
        assert data["series"]["plot"].endswith("identity-plot.png") and data["series"]["shots"][3]["reset_applied"]
        assert sum(1 for r in data["identity"] if r["reset_applied"]) == len(rows) - 1 + 6


# --- tiny local pipelines: no face is never a pass --------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from portrait_studio.testing.tiny import save_tiny_lora, save_tiny_pipeline

    root = tmp_path_factory.mktemp("tiny")
    return {"flux1-dev": str(save_tiny_pipeline("flux1-dev", root / "dev")),
            "flux2-klein": str(save_tiny_pipeline("flux2-klein", root / "klein")),
            "lora": str(save_tiny_lora(root / "lora" / "person.safetensors"))}


def _small(brief: Brief) -> Brief:
    return brief.model_copy(update={
        "output": brief.output.model_copy(update={"width": 256, "height": 256, "aspect_ratio": None}),
        "quality": brief.quality.model_copy(update={"steps": 2}),
    })


@pytest.mark.parametrize(("method", "model", "kind"), [
    ("seed", "flux-1-dev", "flux1-dev"),
    ("reference", "flux-1-dev", "flux1-dev"),
    ("reference", "flux-2-klein-4b", "flux2-klein"),
    ("anchors", "flux-1-dev", "flux1-dev"),
    ("lora", "flux-1-dev", "flux1-dev"),
])
def test_tiny_local_series_reports_no_face_and_resets_every_shot(
    method: str, model: str, kind: str, anchor: Path, tmp_path: Path, tiny: dict[str, str]
) -> None:
    from portrait_studio.providers.local import LocalProvider

    provider = LocalProvider({"weights": tiny[kind]})
    provider.accept_licence(model)
    with Ledger(tmp_path / "l.db") as ledger:
        brief = _small(BRIEF).model_copy(update={"avoid": ()})  # the local FLUX.2 pipelines take no negative prompt
        plan = plan_series(brief, SHOTS, method, anchor, model=model, provider="local",  # type: ignore[arg-type]
                           lora=tiny["lora"] if method == "lora" else None)
        report = _run(plan, tmp_path, ledger, provider, rights=CONSENT)
        assert len(report.shots) == 6 and not report.all_passed
        for shot in report.shots:
            assert shot.status == "no_face" and shot.distance is None and not shot.passed
            assert shot.reset_applied and [a.step for a in shot.attempts] == ["shot", "skeleton"]
            assert shot.held_back == tuple(shot.changes)  # the skeleton itself shows no face: nothing reintroduced
        rows = ledger.identity(report.run_id)
        assert {r["status"] for r in rows} == {"no_face"} and sum(r["reset_applied"] for r in rows) == 12
        assert Path(report.plot or "").is_file()


# --- identity transfer -------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["flux-2-pro", "flux-kontext-pro"])
def test_swap_places_the_anchor_identity_and_reports_the_distance(
    model: str, anchor: Path, tmp_path: Path, sandbox: SandboxHandle
) -> None:
    portrait = tmp_path / "portrait.png"
    astronaut().resize((384, 512)).save(portrait)
    provider = BflProvider.for_sandbox(sandbox, **FAST)
    with Ledger(tmp_path / "l.db") as ledger:
        from portrait_studio.consent import require_rights
        from portrait_studio.engine import Engine

        require_rights(ledger, portrait, CONSENT)  # the portrait shows a real person too

        async def go() -> Any:
            engine = Engine(ledger=ledger, images_dir=tmp_path / "img", runs_dir=tmp_path / "runs",
                            providers={"bfl": provider})
            try:
                return await transfer_identity(engine, portrait, anchor, model, rights=CONSENT)
            finally:
                await provider.aclose()

        report = asyncio.run(go())
        assert report.passed and report.distance is not None and report.distance < 0.52
        body = sandbox.stats.bodies[-1]
        assert body["input_image"] and body["input_image_2"] and "person from image 1" in body["prompt"]
        (row,) = ledger.identity(report.run_id)
        assert row["details"]["rights_id"] == report.rights_id and row["details"]["operation"] == "swap"
        (req,) = ledger.requests(report.run_id)
        assert req.request.images[0].rights_id == report.rights_id


def test_swap_without_consent_or_on_a_one_image_model_is_refused(anchor: Path, tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        from portrait_studio.engine import Engine

        engine = Engine(ledger=ledger, images_dir=tmp_path, runs_dir=tmp_path, providers={})
        with pytest.raises(ConsentRequired):
            asyncio.run(transfer_identity(engine, anchor, anchor))
        assert ledger.runs() == []
    with pytest.raises(CapabilityError, match="two images"):
        plan_swap(anchor, anchor, model="flux-1-kontext-dev", provider="local")
    with pytest.raises(CapabilityError, match="two images"):
        plan_swap(anchor, anchor, model="flux-1.1-pro")


# --- CLI ---------------------------------------------------------------------------------------


def test_cli_series_and_swap_run_on_the_sandbox(anchor: Path, tmp_path: Path, example_brief_file: Path) -> None:
    import typer

    from portrait_studio.cli.series import register

    app = typer.Typer()
    register(app)
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("[providers.bfl]\npoll_interval = 0.02\nmax_poll_interval = 0.05\n")
    runner = CliRunner()
    base = ["series", str(example_brief_file), "--anchor", str(anchor), "--shots", str(example_shots_path()),
            "--model", "flux-1.1-pro", "--sandbox", "always", "--home", str(home)]
    refused = runner.invoke(app, base)
    assert isinstance(refused.exception, ConsentRequired)
    done = runner.invoke(app, [*base, "--method", "anchors", "--who", "Eileen Collins", "--source", "NASA",
                               "--permission", "public domain", "--json"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert len(data["shots"]) == 6 and all(s["status"] == "pass" for s in data["shots"])
    assert Path(data["sheet"]).is_file() and Path(data["plot"]).is_file()
    swapped = runner.invoke(app, ["swap", str(anchor), "--anchor", str(anchor), "--sandbox", "always",
                                  "--home", str(home)])  # the rights record from the series is reused
    assert swapped.exit_code == 0, swapped.output
    assert "identity distance to the anchor" in swapped.stdout and "pass" in swapped.stdout
