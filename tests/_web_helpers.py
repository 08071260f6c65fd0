"""Shared set-up for the web studio's tests: a ledger filled through the real library calls."""

from __future__ import annotations

import itertools
from io import BytesIO
from pathlib import Path

from portrait_studio.brief import Brief, example_brief_path, load_brief
from portrait_studio.config import Studio
from portrait_studio.engine import Engine
from portrait_studio.ledger import ImageRow, Ledger
from portrait_studio.records import Cost, Result
from portrait_studio.shoot import plan_shoot
from portrait_studio.testing.photos import astronaut

BRIEF = load_brief(example_brief_path("rembrandt-studio-headshot"))
_SHADES = itertools.count(1)  # every recorded image differs, so no two share a sha256 (or its checks)


def portrait_png(size: tuple[int, int] = (192, 256), shade: int = 0) -> bytes:
    """A small real portrait (the astronaut photo), shifted by `shade` so each file differs."""
    im = astronaut().resize(size)
    if shade:
        im = im.point(lambda v: min(255, v + shade))
    buf = BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def shoot_into_ledger(
    studio: Studio, models: list[str], seeds: list[int], *, kind: str = "shoot", size: tuple[int, int] = (192, 256),
    out_dir: Path | None = None, brief: Brief = BRIEF,
) -> tuple[str, list[ImageRow]]:
    """Record a run the way `portrait shoot` does, with each request's image stored in the ledger."""
    plan = plan_shoot(brief, models, seeds, kind=kind).to_plan()
    made = []
    with Ledger(studio.ledger_path) as ledger:
        engine = Engine(ledger=ledger, images_dir=studio.images_dir, runs_dir=studio.runs_dir, providers={})
        engine.preflight = lambda plan: None  # type: ignore[method-assign]  # no provider is opened: results are stored directly
        # An --out the engine would refuse today (inside or above the studio) stands for a ledger written by an
        # older version: the web must stay safe whatever the ledger holds.
        engine.check_out = lambda out: Path(out)  # type: ignore[method-assign]
        run_id = engine.record(plan, out_dir=out_dir)
        out = Path(ledger.run(run_id).out_dir or "")
        for n, row in enumerate(ledger.requests(run_id)):
            result = Result(request_id=row.id, provider=row.provider, model=row.model, seed=row.seed,
                            image=portrait_png(size, shade=next(_SHADES) % 200), cost=Cost(credits=4, usd=0.04), sandbox=True)
            image = ledger.record_image(result, images_dir=studio.images_dir, run_id=run_id, request_id=row.id,
                                        out_path=out / f"{n + 1:02d}.png", charge=result.cost)
            made.append(engine.deliver(image))
        ledger.set_run_status(run_id, "done")
    return run_id, made


def read_events(client, url: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Every `data:` payload of an SSE stream, until the server ends it."""
    found = []
    with client.stream("GET", url) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: ") and line != "data: {}":  # "{}" closes the stream (event: end)
                found.append(line.removeprefix("data: "))
    return found


def file_count(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0
