"""`portrait shoot | compare | pick | vary | resume`: the portrait workflow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..brief import load_brief
from ..config import Studio
from ..ledger import Ledger
from ..runner import Outcome, RunReport
from ..shoot import (
    ShootPlan,
    check_budget,
    choose_seeds,
    default_checker,
    execute_recorded_run,
    plan_shoot,
    plan_vary,
    start_run,
)
from ._common import HomeOption, JsonOption, console, err_console, print_json, studio

ModelOption = Annotated[list[str], typer.Option("--model", "-m", help="Catalog model id; repeat for several.")]
BudgetOption = Annotated[float | None, typer.Option("--budget", help="Most this command may spend, in USD.")]
SandboxOption = Annotated[
    str, typer.Option("--sandbox", help="auto: use the provider's sandbox when no API key is set; always; never.")
]
ProviderOption = Annotated[str | None, typer.Option("--provider", help="bfl, fal, replicate or local.")]
WeightsOption = Annotated[str | None, typer.Option("--weights", help="local: a diffusers folder or HF repo id.")]


def _print_plan(plan: ShootPlan, budget: float | None) -> None:
    table = Table("#", "model", "provider", "seed", "size", "steps", "guidance", "est. cost", title=f"{plan.kind} plan")
    for i, r in enumerate(plan.requests, 1):
        size = f"{r.width}×{r.height}" if r.width else (r.aspect_ratio or "input")
        table.add_row(str(i), r.model, r.provider, str(r.seed), size, str(r.steps or "-"),
                      "-" if r.guidance is None else f"{r.guidance:g}", f"${r.estimated_cost.usd:.3f}")
    console.print(table)
    est = plan.estimated
    console.print(f"estimated: {est.credits:g} credits = ${est.usd:.3f}" + (f" (budget ${budget:.2f})" if budget is not None else ""))
    by_model: dict[str, list[str]] = {}
    for r in plan.requests:
        by_model.setdefault(r.model, [])
        by_model[r.model] += [w for w in r.warnings if w not in by_model[r.model]]
    for model, notes in by_model.items():
        for note in notes:
            console.print(f"[yellow]•[/] [dim]{model}:[/] {escape(note)}", highlight=False)


def _budget(s: Studio, budget: float | None) -> float | None:
    return budget if budget is not None else s.config.default_budget_usd


def execute_run(
    s: Studio, run_id: str, *, sandbox: str, budget: float | None, weights: str | None = None,
    resubmit_uncertain: bool = False, quiet: bool = False,
) -> RunReport:
    """Run (or resume) a recorded run with a progress bar; Ctrl-C says how to resume."""
    with Ledger(s.ledger_path) as ledger:
        rows = ledger.requests(run_id)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=err_console, disable=quiet)
    task = progress.add_task(f"run {run_id}", total=len(rows), completed=sum(r.status == "done" for r in rows))

    def on_providers(providers: dict[str, Any]) -> None:
        if any(getattr(p, "sandbox", False) for p in providers.values()):
            err_console.print("[bold magenta]SANDBOX[/]: no API key set, so images come from a local sandbox that "
                              "follows the provider's API contract (set BFL_API_KEY for real images)")

    def on_outcome(o: Outcome) -> None:
        if o.status != "done" or o.resumed or o.image is not None:
            progress.advance(task)
        if o.error:
            progress.console.print(f"[red]✗[/] request {o.position + 1}: {escape(o.error)}", highlight=False)

    try:
        with progress:
            return execute_recorded_run(
                s, run_id, sandbox=sandbox, budget=budget, weights=weights, resubmit_uncertain=resubmit_uncertain,
                checker=default_checker(), on_outcome=on_outcome, on_providers=on_providers,
            )
    except KeyboardInterrupt:
        err_console.print(f"interrupted — nothing paid is lost. Finish it with: [bold]portrait resume {run_id}[/]")
        raise SystemExit(130) from None


def _summarise(s: Studio, report: RunReport, json_out: bool) -> None:
    with Ledger(s.ledger_path) as ledger:
        run = ledger.run(report.run_id)
        out = Path(run.out_dir or "")
        images = ledger.images(run_id=run.id, limit=1000)
        ranked = sorted(images, key=lambda r: -(r.check_score if r.check_score is not None else -1))
        if json_out:
            print_json({
                "run_id": run.id, "out_dir": str(out), "spent_usd": report.spent_usd, "seconds": report.seconds,
                "images": [r.model_dump(mode="json") for r in ranked],
                "failed": [o.model_dump(mode="json") for o in report.failed],
            })
            return
        table = Table("rank", "image", "model", "seed", "cost", "check", "file", title=f"run {run.id}")
        for i, r in enumerate(ranked, 1):
            table.add_row(str(i), r.id, r.model or "-", str(r.seed), f"${r.cost_usd:.3f}", r.check_overall or "-",
                          Path(r.out_path or r.path).name)
        console.print(table)
        console.print(f"spent ${report.spent_usd:.3f} in {report.seconds:.1f}s · folder {out}")
        if (out / "contact-sheet.png").exists():
            console.print(f"contact sheet: {out / 'contact-sheet.png'}")
        if report.failed:
            console.print(f"[yellow]{len(report.failed)} not done[/] — finish with: portrait resume {run.id}")
        elif ranked:
            console.print(f"next: portrait pick {run.id} {ranked[0].id}   then   portrait vary {run.id} --lighting clamshell")


def register(app: typer.Typer) -> None:
    @app.command("shoot")
    def shoot(
        brief_path: Annotated[Path, typer.Argument(help="Brief YAML file.")],
        model: ModelOption,
        seeds: Annotated[int | None, typer.Option("--seeds", help="Explore N random seeds (3–5).")] = None,
        seed: Annotated[int | None, typer.Option("--seed", help="Lock one seed.")] = None,
        budget: BudgetOption = None,
        out: Annotated[Path | None, typer.Option("--out", help="Folder for the run's files.")] = None,
        provider: ProviderOption = None,
        weights: WeightsOption = None,
        sandbox: SandboxOption = "auto",
        diversify: Annotated[str | None, typer.Option("--diversify", help="Spread over declared attributes, e.g. "
                                                      "'skin_tone=light,medium,deep;age=25,45,65'.")] = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and its cost; spend nothing.")] = False,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Explore seeds: plan, show the cost, run within budget, rank by the checklist, contact sheet."""
        s = studio(home)
        brief = load_brief(brief_path)
        if seeds is None and seed is None and brief.output.seed != "random":
            seed = int(brief.output.seed)
        chosen = choose_seeds(seeds, seed)
        variations = None
        if diversify:
            from ..shoot import diversify_brief

            variations = diversify_brief(brief, diversify)
        plan = plan_shoot(brief, model, chosen, provider=provider, variations=variations)
        limit = _budget(s, budget)
        if not json_out:
            _print_plan(plan, limit)
        check_budget(plan, limit)
        if dry_run:
            return
        with Ledger(s.ledger_path) as ledger:
            run_id, _ = start_run(plan, ledger, s.runs_dir, budget_usd=limit, brief_path=str(brief_path), out_dir=out)
        report = execute_run(s, run_id, sandbox=sandbox, budget=limit, weights=weights, quiet=json_out)
        _summarise(s, report, json_out)

    @app.command("compare")
    def compare(
        brief_path: Annotated[Path, typer.Argument(help="Brief YAML file.")],
        model: ModelOption,
        seed: Annotated[int | None, typer.Option("--seed", help="The seed every model gets.")] = None,
        seeds: Annotated[int | None, typer.Option("--seeds", help="Compare on N seeds.")] = None,
        budget: BudgetOption = None,
        out: Annotated[Path | None, typer.Option("--out")] = None,
        provider: ProviderOption = None,
        sandbox: SandboxOption = "auto",
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """2–4 models side by side on the same brief and seed: grid PNG plus feature/price table."""
        from ..compare import plan_compare

        s = studio(home)
        brief = load_brief(brief_path)
        if seed is None and seeds is None and brief.output.seed != "random":
            seed = int(brief.output.seed)
        plan = plan_compare(brief, model, choose_seeds(seeds, seed), provider=provider)
        limit = _budget(s, budget)
        if not json_out:
            _print_plan(plan, limit)
        check_budget(plan, limit)
        with Ledger(s.ledger_path) as ledger:
            run_id, folder = start_run(plan, ledger, s.runs_dir, budget_usd=limit, brief_path=str(brief_path), out_dir=out)
        report = execute_run(s, run_id, sandbox=sandbox, budget=limit, quiet=json_out)
        if not json_out:  # execute_recorded_run wrote the grid and the tables
            console.print((folder / "comparison.md").read_text(), highlight=False)
            for name in [*sorted(folder.glob("compare-grid*.png")), folder / "comparison.html"]:
                console.print(f"wrote {name}")
        _summarise(s, report, json_out)

    @app.command("pick")
    def pick(
        run: Annotated[str, typer.Argument(help="Run id (from 'portrait log').")],
        image: Annotated[str, typer.Argument(help="Image id or sha256 prefix.")],
        home: HomeOption = None,
    ) -> None:
        """Mark the chosen candidate; its seed and settings become the locked baseline."""
        s = studio(home)
        with Ledger(s.ledger_path) as ledger:
            row = ledger.pick(ledger.run(run).id, image)
        console.print(f"picked {row.id} ({row.model}, seed {row.seed}) — vary it with: portrait vary {row.run_id} --lighting clamshell")

    @app.command("vary")
    def vary(
        run: Annotated[str, typer.Argument(help="Run whose picked image is the baseline.")],
        lighting: Annotated[str | None, typer.Option("--lighting")] = None,
        background: Annotated[str | None, typer.Option("--background")] = None,
        wardrobe: Annotated[str | None, typer.Option("--wardrobe")] = None,
        lens: Annotated[int | None, typer.Option("--lens", help="Focal length in mm.")] = None,
        hair: Annotated[str | None, typer.Option("--hair")] = None,
        makeup: Annotated[str | None, typer.Option("--makeup")] = None,
        expression: Annotated[str | None, typer.Option("--expression")] = None,
        mouth: Annotated[str | None, typer.Option("--mouth")] = None,
        framing: Annotated[str | None, typer.Option("--framing")] = None,
        angle: Annotated[str | None, typer.Option("--angle")] = None,
        force: Annotated[bool, typer.Option("--force", help="Allow changing more than one element (flagged).")] = False,
        budget: BudgetOption = None,
        sandbox: SandboxOption = "auto",
        weights: WeightsOption = None,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """A new round from the locked baseline with exactly one element changed."""
        changes = {k: v for k, v in {
            "lighting": lighting, "background": background, "wardrobe": wardrobe, "lens": lens, "hair": hair,
            "makeup": makeup, "expression": expression, "mouth": mouth, "framing": framing, "angle": angle,
        }.items() if v is not None}
        s = studio(home)
        limit = _budget(s, budget)
        with Ledger(s.ledger_path) as ledger:
            plan = plan_vary(ledger, run, changes, force=force)
            if not json_out:
                _print_plan(plan, limit)
            check_budget(plan, limit)
            run_id, _ = start_run(plan, ledger, s.runs_dir, budget_usd=limit)
        report = execute_run(s, run_id, sandbox=sandbox, budget=limit, weights=weights, quiet=json_out)
        _summarise(s, report, json_out)

    @app.command("resume")
    def resume(
        run: Annotated[str, typer.Argument(help="Run id to finish.")],
        budget: BudgetOption = None,
        sandbox: SandboxOption = "auto",
        weights: WeightsOption = None,
        resubmit_uncertain: Annotated[bool, typer.Option("--resubmit-uncertain", help="Re-send requests whose "
                                      "acceptance is unknown (may pay twice for them).")] = False,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Finish an interrupted run without paying twice: re-poll accepted tasks, send only unsent ones."""
        s = studio(home)
        with Ledger(s.ledger_path) as ledger:
            row = ledger.run(run)
            limit = budget if budget is not None else row.budget_usd
            statuses = [r.status for r in ledger.requests(row.id)]
        if not json_out:
            console.print(f"run {row.id}: " + ", ".join(f"{statuses.count(k)} {k}" for k in sorted(set(statuses))))
        report = execute_run(s, row.id, sandbox=sandbox, budget=limit, weights=weights,
                             resubmit_uncertain=resubmit_uncertain, quiet=json_out)
        _summarise(s, report, json_out)


__all__ = ["execute_run", "register"]
