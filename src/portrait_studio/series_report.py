"""The series report: a sheet of anchor + shots labelled with identity, and a plot of drift by shot.

Both are written into the run folder and named in the run's plan (ledger) and run.json, so the
proof that the face held travels with the series.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .grids import Tile, contact_sheet

if TYPE_CHECKING:
    from .series import SeriesReport

__all__ = ["identity_plot", "series_sheet"]

_VERDICT = {"pass": "pass", "warn": "pass (drift warning)", "fail": "FAIL: another face", "no_face": "FAIL: no face"}


def _distance(value: float | None) -> str:
    return "no face" if value is None else f"d={value:.3f}"


def series_sheet(report: SeriesReport, out: Path, *, title: str | None = None, tile_height: int = 320) -> Path:
    """Anchor first, then each shot: distance to the anchor, pass/fail, and a RESET badge where the rule ran."""
    limit = report.thresholds.same_person_max
    tiles = [Tile(path=report.anchor, lines=("anchor", f"pass if d <= {limit:g}"), status=None, badge="ANCHOR")]
    for shot in report.shots:
        lines = [f"#{shot.index + 1} {shot.name}"[:48], f"{_distance(shot.distance)} · {_VERDICT[shot.status]}"]
        if shot.reset_applied:
            first = shot.attempts[0]
            lines.append(f"reset after {_distance(first.distance)} · {len(shot.attempts) - 1} tries")
            if shot.held_back:
                lines.append("held back: " + ", ".join(shot.held_back))
        badges = [b for b in ("RESET" if shot.reset_applied else None, "SANDBOX" if shot.sandbox else None) if b]
        tiles.append(Tile(path=shot.path, lines=tuple(lines), status="fail" if shot.status == "no_face" else shot.status,
                          badge=" · ".join(badges) or None))
    legend = (("pass", f"same person (d <= {limit:g})"), ("warn", "same person, drifting"),
              ("fail", "another face, or none"), (None, "the anchor"))
    return contact_sheet(tiles, out, columns=min(len(tiles), 4), tile_height=tile_height, title=title,
                         legend=legend, note=None)


def identity_plot(report: SeriesReport, out: Path, *, title: str | None = None) -> Path:
    """Distance to the anchor per shot, with the same-person threshold and the drift-warning line.

    Kept images are the line; a shot's first try that triggered the reset rule is a red cross
    (drawn at the top, labelled, when no face was found).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    th = report.thresholds
    xs = [s.index + 1 for s in report.shots]
    known = [d for s in report.shots for d in (s.distance, s.attempts[0].distance) if d is not None]
    top = max([th.same_person_max * 1.6, *(d * 1.1 for d in known)])
    fig = Figure(figsize=(max(6.0, 0.8 * len(xs) + 3), 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.axhspan(th.same_person_max, top, color="#da3633", alpha=0.06)
    ax.axhline(th.same_person_max, color="#da3633", linestyle="--", linewidth=1.2,
               label=f"same person <= {th.same_person_max:g}")
    ax.axhline(th.drift_warn, color="#d29922", linestyle=":", linewidth=1.2, label=f"drift warning {th.drift_warn:g}")
    kept = [(x, s.distance) for x, s in zip(xs, report.shots) if s.distance is not None]
    if kept:
        ax.plot([k[0] for k in kept], [k[1] for k in kept], "o-", color="#2ea043", label="kept image")
    first_label = "drifted first try (reset)"
    for x, shot in zip(xs, report.shots):
        if shot.distance is None:
            ax.plot([x], [top * 0.97], "X", color="#da3633", markersize=10)
            ax.annotate("no face", (x, top * 0.97), textcoords="offset points", xytext=(0, -14), ha="center", fontsize=8)
        if shot.reset_applied:
            first = shot.attempts[0]
            y = first.distance if first.distance is not None else top * 0.97
            ax.plot([x], [y], "x", color="#da3633", markersize=9, markeredgewidth=2, label=first_label)
            first_label = "_"
            ax.annotate("reset", (x, y), textcoords="offset points", xytext=(0, 8), ha="center", fontsize=8,
                        color="#da3633")
    ax.set_xlim(0.5, max(xs) + 0.5 if xs else 1.5)
    ax.set_ylim(0, top)
    ax.set_xticks(xs)
    ax.set_xlabel("shot")
    ax.set_ylabel("identity distance to the anchor (dlib)")
    ax.set_title(title or "identity by shot", fontsize=9)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=4, fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(out)
    return out
