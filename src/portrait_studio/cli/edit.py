"""`portrait edit | restyle`: refine a finished portrait with an instruction, or move it between looks."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..engine import Engine
from ..ledger import Ledger
from ._common import HomeOption, JsonOption, console, print_json, studio
from ._engine import run_with_engine
from ._options import BudgetOption, ImageArg, SandboxOption, _input, image_file, image_files, seed_option

ModelOption = Annotated[str, typer.Option("--model", "-m", help="An edit model: flux-2-pro, flux-kontext-pro, "
                                          "flux-kontext-max, flux-2-flex, flux-2-max, flux-2-klein-4b, … (MODEL@PROVIDER).")]
DeliverOption = Annotated[str | None, typer.Option("--deliver", help="1080p, 2k or 4k: render at the model's best "
                                                   "native size, then upscale to the exact size.")]
SeedOption = Annotated[int | None, seed_option("Default: random (recorded).")]


def _consent(s: Any, image: Path, who: str | None, source: str | None, permission: str | None) -> None:
    from .finishing import record_consent

    with Ledger(s.ledger_path) as ledger:
        record_consent(ledger, image, who, source, permission)


def _route(model: str) -> tuple[str, str | None]:
    from ..catalog import parse_model_ref

    route = parse_model_ref(model)
    return route.model, route.provider


def _show(report: Any, json_out: bool) -> None:
    if json_out:
        print_json({**report.model_dump(mode="json"), "flagged": [r.image_id for r in report.flagged]})
        return
    table = Table("image", "look", "identity", "distance", "check", "file", title=f"{report.kind} {report.run_id}")
    for r in report.results:
        mark = " ★" if r.picked else ""
        ident = f"[red]{r.identity} — person lost[/]" if r.identity in ("fail", "no_face") else r.identity
        table.add_row(r.image_id + mark, escape(r.look or "-"), ident, "-" if r.distance is None else f"{r.distance:.3f}",
                      r.check or "-", escape(Path(r.path).name))
    console.print(table)
    for r in report.flagged:
        console.print(f"[yellow]flagged:[/] {r.image_id} lost the person (identity {r.identity}); it is not kept "
                      "as the pick", highlight=False)
    money = (f"sandbox ${report.sandbox_usd:.3f} (no real money)" if report.sandbox_usd and not report.spent_usd
             else f"spent ${report.spent_usd:.3f}")
    console.print(money)
    if report.sheet:
        console.print(f"restyle sheet: {escape(report.sheet)}", highlight=False)


def register(app: typer.Typer) -> None:
    @app.command("edit")
    def edit(
        image: ImageArg,
        instruction: Annotated[str, typer.Argument(help='What to change, e.g. "soften the fill light".')],
        model: ModelOption = "flux-2-pro",
        ref: Annotated[list[Path] | None, _input("A reference image (models that take several); repeat for more.",
                                                 image_files, "IMAGE", option="--ref")] = None,
        seed: SeedOption = None,
        deliver: DeliverOption = None,
        who: Annotated[str | None, typer.Option("--who", help="Consent for a photo the studio did not make.")] = None,
        source: Annotated[str | None, typer.Option("--source", help="Consent: where the photo comes from.")] = None,
        permission: Annotated[str | None, typer.Option("--permission", help="Consent: what they agreed to.")] = None,
        budget: BudgetOption = None,
        sandbox: SandboxOption = "auto",
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """One instruction edit (Kontext / FLUX.2): a child in the lineage, identity measured before/after, checked."""
        from ..edit import run_edit

        s = studio(home)
        model_id, provider = _route(model)
        _consent(s, image, who, source, permission)

        async def work(engine: Engine) -> Any:
            return await run_edit(engine, image, instruction=instruction, model=model_id, provider=provider,
                                  references=ref or (), seed=seed if seed is not None else random.randrange(2**32),
                                  deliver=deliver, budget_usd=budget)

        assert provider is not None
        _show(run_with_engine(s, [provider], work, sandbox=sandbox, quiet=json_out), json_out)

    @app.command("restyle")
    def restyle(
        image: ImageArg,
        look: Annotated[list[str] | None, typer.Option("--look", help="A look preset (editorial, cinematic, lifestyle, "
                                                       "film, black-and-white, …) or a look file; repeat for several.")] = None,
        style_ref: Annotated[Path | None, _input("Match the look of this image (rights recorded like any reference).",
                                                 image_file, "IMAGE", option="--style-ref")] = None,
        model: ModelOption = "flux-2-pro",
        seed: SeedOption = None,
        deliver: DeliverOption = None,
        who: Annotated[str | None, typer.Option("--who", help="Consent for the photo (or the style reference).")] = None,
        source: Annotated[str | None, typer.Option("--source")] = None,
        permission: Annotated[str | None, typer.Option("--permission")] = None,
        budget: BudgetOption = None,
        sandbox: SandboxOption = "auto",
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Move a portrait between looks keeping the person; a look that loses the person is flagged, never the pick."""
        from ..edit import run_edit

        s = studio(home)
        model_id, provider = _route(model)
        _consent(s, image, who, source, permission)
        if style_ref is not None:
            _consent(s, style_ref, who, source, permission)

        async def work(engine: Engine) -> Any:
            return await run_edit(engine, image, looks=look or (), style_ref=style_ref, model=model_id,
                                  provider=provider, seed=seed if seed is not None else random.randrange(2**32),
                                  deliver=deliver, budget_usd=budget)

        assert provider is not None
        _show(run_with_engine(s, [provider], work, sandbox=sandbox, quiet=json_out), json_out)


__all__ = ["register"]
