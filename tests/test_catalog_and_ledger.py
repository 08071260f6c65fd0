"""The catalog knows every model; the ledger remembers everything made and spent."""

from __future__ import annotations

from pathlib import Path

import pytest

from portrait_studio.catalog import all_models, get_model
from portrait_studio.errors import CapabilityError, LedgerError
from portrait_studio.ledger import Ledger
from portrait_studio.records import Cost, Result, Ticket

REQUIRED = {
    "flux-1.1-pro", "flux-1.1-pro-ultra", "flux-2-pro", "flux-2-flex", "flux-2-max", "flux-2-klein-4b",
    "flux-2-klein-9b", "flux-kontext-pro", "flux-kontext-max", "flux-fill-pro", "flux-1-dev", "flux-1-schnell",
}


def test_catalog_has_every_model_the_studio_promises() -> None:
    assert {m.id for m in all_models()} >= REQUIRED


def test_hosted_models_take_no_negative_prompt_and_dev_is_non_commercial() -> None:
    assert get_model("flux-1.1-pro").negative_prompt == "none"
    assert get_model("flux-1-dev").negative_prompt == "true_cfg"
    assert "Non-Commercial" in get_model("flux-1-dev").licence
    assert get_model("flux-kontext-max").routes["bfl"].max_active == 6
    assert get_model("flux-2-pro").safety_tolerance.max == 5  # type: ignore[union-attr]


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(CapabilityError, match="did you mean flux-1.1-pro"):
        get_model("flux-1.1-pr")


def _result(request_id: str, payload: bytes, usd: float) -> Result:
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.new("RGB", (8, 8), tuple(payload[:3])).save(buf, "PNG")
    return Result(request_id=request_id, provider="bfl", model="flux-1.1-pro", image=buf.getvalue(),
                  seed=1, cost=Cost(credits=usd * 100, usd=usd))


def test_ledger_records_runs_requests_images_and_costs(tmp_path: Path) -> None:
    from portrait_studio.brief import example_brief_path, load_brief
    from portrait_studio.prompting import compile_brief

    brief = load_brief(example_brief_path("rembrandt-studio-headshot"))
    reqs = [compile_brief(brief, "flux-1.1-pro", seed=s) for s in (1, 2)]
    with Ledger(tmp_path / "ledger.db") as ledger:
        run = ledger.create_run("shoot", brief=brief.model_dump(mode="json"), budget_usd=1.0)
        ledger.add_requests(run, reqs)
        ledger.record_accepted(Ticket(request_id=reqs[0].request_id, provider="bfl", task_id="task-1"))
        rows = ledger.requests(run)
        assert [r.status for r in rows] == ["accepted", "planned"] and rows[0].task_id == "task-1"
        result = _result(reqs[0].request_id, b"abc", 0.04)
        image = ledger.record_image(result, images_dir=tmp_path / "img", run_id=run, request_id=reqs[0].request_id,
                                    charge=result.cost)
        assert Path(image.path).exists() and image.path.endswith(f"{image.image_sha256}.png")
        assert ledger.requests(run)[0].status == "done"
        assert ledger.spent(run).usd == pytest.approx(0.04)
        assert ledger.pick(run, image.id).picked
        child = ledger.record_image(_result("x", b"def", 0.05), images_dir=tmp_path / "img", run_id=None,
                                    request_id=None, parent_sha256=image.image_sha256, operation="fix")
        assert [r.operation for r in ledger.lineage(child.image_sha256)] == ["fix", "generate"]
        with pytest.raises(LedgerError, match="no run"):
            ledger.run("run_nope")


def test_ledger_migrations_are_recorded_and_idempotent(tmp_path: Path) -> None:
    from portrait_studio.ledger.database import head

    Ledger(tmp_path / "l.db").close()
    with Ledger(tmp_path / "l.db") as ledger:
        assert [r[0] for r in ledger.db.execute("SELECT version_num FROM alembic_version")] == [head()]
        assert ledger.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
