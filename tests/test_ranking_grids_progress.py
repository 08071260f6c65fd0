"""The one ranking rule, contact sheets that render every glyph and explain their colours, and the ETA model."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageFont
from pydantic import BaseModel

from portrait_studio import ranking
from portrait_studio.grids import LEGEND, Tile, contact_sheet, fail_reason, font_path
from portrait_studio.progress import Tracker, estimate_eta, format_duration


class Row(BaseModel):
    id: str
    check_score: float | None
    check_overall: str | None
    created_at: float


def test_ties_are_broken_by_verdict_then_by_who_came_first() -> None:
    rows = [Row(id="c", check_score=80, check_overall="warn", created_at=3),
            Row(id="b", check_score=80, check_overall="pass", created_at=5),
            Row(id="a", check_score=80, check_overall="pass", created_at=4),
            Row(id="d", check_score=None, check_overall=None, created_at=1),
            Row(id="e", check_score=95, check_overall="fail", created_at=9),
            Row(id="f", check_score=float("nan"), check_overall="pass", created_at=0)]
    assert [r.id for r in ranking.rank(rows)] == ["e", "a", "b", "c", "f", "d"]
    assert [r.id for r in ranking.rank(reversed(rows))] == ["e", "a", "b", "c", "f", "d"]


def test_contact_sheet_text_is_set_in_dejavu_so_accents_render(tmp_path: Path) -> None:
    path = font_path()
    assert path is not None and path.name == "DejaVuSans.ttf"
    font = ImageFont.truetype(str(path), 24)
    missing = font.getmask("\U0010fffd").getbbox()  # a code point no font has: the empty box
    assert font.getmask("é").getbbox() != missing and font.getmask("→").getbbox() != missing


def test_a_sheet_has_a_legend_and_says_why_a_candidate_failed(tmp_path: Path) -> None:
    img = tmp_path / "a.png"
    Image.new("RGB", (60, 80), (200, 180, 160)).save(img)
    checklist = {"items": [{"item": "lighting.pattern", "status": "fail"}, {"item": "eyes.sharpness", "status": "pass"},
                           {"item": "hands.count", "status": "fail"}]}
    reason = fail_reason(checklist)
    assert reason == "failed: lighting.pattern, hands.count"
    tiles = [Tile(path=str(img), lines=("#1 Café portrait",), status="fail", reason=reason),
             Tile(path=str(img), lines=("#2",), status="pass")]
    with_legend = contact_sheet(tiles, tmp_path / "sheet.png", title="Café")
    without = contact_sheet(tiles, tmp_path / "bare.png", title="Café", legend=None, note=None)
    with Image.open(with_legend) as a, Image.open(without) as b:
        assert a.height > b.height  # the legend's lines
        import numpy as np

        strip = np.asarray(a.convert("RGB"))[-60:]
        assert ((strip[..., 0] > 180) & (strip[..., 1] < 90)).any()  # the fail swatch in the legend
    assert {s for s, _ in LEGEND} == {"pass", "warn", "fail", None}


def test_eta_follows_the_pace_and_ignores_work_done_before_watching() -> None:
    now = [0.0]
    t = Tracker("tiles", 10, done=4, unit="tiles", clock=lambda: now[0])
    assert t.state().eta_s is None  # nothing done while watching yet
    now[0] = 2.0
    state = t.update(5)
    assert state.eta_s == 10.0 and state.describe() == "5/10 tiles · 2 s · about 10 s left"
    now[0] = 3.0
    assert t.state().eta_s == 9.0  # a second into the next tile
    now[0] = 4.0
    assert t.update(10).describe() == "10/10 tiles · 4 s · done"
    assert estimate_eta(2, 3, 10.0) == 15.0 and estimate_eta(0, 3, 10.0) is None
    assert format_duration(65) == "1 min 05 s" and format_duration(7322) == "2 h 02 min"
