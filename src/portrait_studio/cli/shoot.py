"""`portrait shoot | compare | pick | vary | resume`: the portrait workflow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..brief import load_brief
from ..config import Studio
from ..engine import Engine, Plan, failure_summary
from ..ledger import Ledger
from ..runner import Outcome, RunReport
from ..shoot import ShootPlan, check_budget, choose_seeds, plan_shoot, plan_vary, ranked_images
from ._common import HomeOption, JsonOption, console, err_console, print_json, studio
from ._engine import run_with_engine

ModelOption = Annotated[list[str], typer.Option("--model", "-m", help="Catalog model id; repeat for several.")]
BudgetOption = Annotated[float | None, typer.Option("--budget", help="Most this command may spend, in USD.")]
SandboxOption = Annotated[
    str, typer.Option("--sandbox", help="auto: use the provider's sandbox when no API key is set; always; never.")
]
ProviderOption = Annotated[str | None, typer.Option("--provider", help="bfl, fal, replicate or local.")]
WeightsOption = Annotated[str | None, typer.Option("--weights", help="local: a diffusers folder or HF repo id.")]


def _print_plan(plan: ShootPlan | Plan, budget: float | None) -> None:
    table = Table("#", "model", "provider", "seed", "size", "steps", "guidance", "est. cost", title=f"{plan.kind} plan")
    for i, r in enumerate(plan.requests, 1):
        size = f"{r.width}×{r.height}" if r.width else (r.aspect_ratio or "input")
        table.add_row(str(i), escape(r.model), r.provider, str(r.seed), size, str(r.steps or "-"),
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
            console.print(f"[yellow]•[/] [dim]{escape(model)}:[/] {escape(note)}", highlight=False)


def _budget(s: Studio, budget: float | None) -> float | None:
    return budget if budget is not None else s.config.default_budget_usd


async def execute_with_progress(
    engine: Engine, run_id: str, *, budget: float | None = None, resubmit_uncertain: bool = False,
    retry_failed: bool = False, quiet: bool = False,
) -> RunReport:
    """Run (or resume) a recorded run with a progress bar; Ctrl-C says how to resume; a run where
    nothing was made raises with the real cause and fix."""
    rows = engine.ledger.requests(run_id)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=err_console, disable=quiet)
    done_before = sum(r.status == "done" for r in rows)
    task = progress.add_task(f"run {run_id}", total=max(len(rows), 1), completed=done_before)

    def on_outcome(o: Outcome) -> None:
        if not o.already:
            progress.advance(task)
        if o.error:
            progress.console.print(f"[red]✗[/] request {o.position + 1}: {escape(o.error)}", highlight=False)

    def on_step(name: str) -> None:
        progress.update(task, description=f"run {run_id} · {name}")

    try:
        with progress:
            report = await engine.execute(run_id, budget_usd=budget, resubmit_uncertain=resubmit_uncertain,
                                          retry_failed=retry_failed, on_outcome=on_outcome, on_step=on_step)
    except KeyboardInterrupt:
        err_console.print(f"interrupted — nothing paid is lost. Finish it with: [bold]portrait resume {run_id}[/]")
        raise SystemExit(130) from None
    failure = failure_summary(report)
    if failure is not None:
        raise failure
    return report


def record_and_execute(s: Studio, plan: Plan, *, sandbox: str, budget: float | None, weights: str | None = None,
                       out: Path | None = None, quiet: bool = False) -> RunReport:
    """Record the plan (nothing sent before it is in the ledger), run it, finish it."""

    async def work(engine: Engine) -> RunReport:
        run_id = engine.record(plan, budget_usd=budget, out_dir=out)
        return await execute_with_progress(engine, run_id, budget=budget, quiet=quiet)

    return run_with_engine(s, plan.provider_ids, work, sandbox=sandbox, weights=weights, quiet=quiet)


def _summarise(s: Studio, report: RunReport, json_out: bool) -> None:
    with Ledger(s.ledger_path) as ledger:
        run = ledger.run(report.run_id)
        out = Path(run.out_dir or "")
        ranked = ranked_images(ledger, run.id)
        others = [i for i in ledger.images(run_id=run.id, limit=100_000) if i.operation != "generate"]
        money = (f"sandbox ${report.sandbox_usd:.3f} (test images, no real money)" if report.sandbox and not report.spent_usd
                 else f"spent ${report.spent_usd:.3f}" + (f" + sandbox ${report.sandbox_usd:.3f}" if report.sandbox_usd else ""))
        if json_out:
            print_json({
                "run_id": run.id, "kind": run.kind, "status": run.status, "out_dir": str(out),
                "spent_usd": report.spent_usd, "sandbox_usd": report.sandbox_usd, "sandbox": report.sandbox,
                "seconds": report.seconds,
                "images": [r.model_dump(mode="json") for r in ranked + others],
                "failed": [o.model_dump(mode="json") for o in report.failed],
            })
            return
        if ranked:
            table = Table("rank", "image", "model", "seed", "cost", "check", "file", title=f"run {run.id}")
            for i, r in enumerate(ranked, 1):
                table.add_row(str(i), r.id, escape(r.model or "-"), str(r.seed), f"${r.cost_usd:.3f}",
                              r.check_overall or "-", escape(Path(r.out_path or r.path).name))
            console.print(table)
        for r in others:
            console.print(f"{r.operation}: {escape(str(r.out_path or r.path))}", highlight=False)
        console.print(f"{money} in {report.seconds:.1f}s · folder {escape(str(out))}", highlight=False)
        if (out / "contact-sheet.png").exists():
            console.print(f"contact sheet: {escape(str(out / 'contact-sheet.png'))}", highlight=False)
        if report.failed:
            console.print(f"[yellow]{len(report.failed)} not done[/] — see the notes above; "
                          f"'portrait resume {run.id}' continues it")
        elif ranked and run.kind in ("shoot", "vary", "compare"):
            console.print(f"next: portrait pick {run.id} {ranked[0].id}   then   portrait vary {run.id} --background ...")


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
        deliver: Annotated[str | None, typer.Option("--deliver", help="1080p, 2k or 4k: render at the model's best "
                                                    "native size, then upscale to the exact size.")] = None,
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
        plan = plan_shoot(brief, model, chosen, provider=provider, variations=variations, deliver=deliver)
        limit = _budget(s, budget)
        if not json_out:
            _print_plan(plan, limit)
        check_budget(plan, limit)
        if dry_run:
            return
        report = record_and_execute(s, plan.to_plan(brief_path=str(brief_path)), sandbox=sandbox, budget=limit,
                                    weights=weights, out=out, quiet=json_out)
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
        weights: WeightsOption = None,
        deliver: Annotated[str | None, typer.Option("--deliver", help="1080p, 2k or 4k for every model.")] = None,
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
        plan = plan_compare(brief, model, choose_seeds(seeds, seed), provider=provider, deliver=deliver)
        limit = _budget(s, budget)
        if not json_out:
            _print_plan(plan, limit)
        check_budget(plan, limit)
        report = record_and_execute(s, plan.to_plan(brief_path=str(brief_path)), sandbox=sandbox, budget=limit,
                                    weights=weights, out=out, quiet=json_out)
        if not json_out:  # the engine's compare step wrote the grid and the tables
            with Ledger(s.ledger_path) as ledger:
                folder = Path(ledger.run(report.run_id).out_dir or "")
            console.print((folder / "comparison.md").read_text(), highlight=False, markup=False)
            for name in [*sorted(folder.glob("compare-grid*.png")), folder / "comparison.html"]:
                console.print(f"wrote {escape(str(name))}", highlight=False)
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
        report = record_and_execute(s, plan.to_plan(), sandbox=sandbox, budget=limit, weights=weights, quiet=json_out)
        _summarise(s, report, json_out)

    @app.command("resume")
    def resume(
        run: Annotated[str, typer.Argument(help="Run id (or a unique prefix) to finish.")],
        budget: BudgetOption = None,
        sandbox: SandboxOption = "auto",
        weights: WeightsOption = None,
        resubmit_uncertain: Annotated[bool, typer.Option("--resubmit-uncertain", help="Re-send requests whose "
                                      "acceptance is unknown (may pay twice for them).")] = False,
        retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Send again requests the provider accepted "
                                "and that then failed (moderated, error, expired): they may have been charged.")] = False,
        ray: Annotated[str | None, typer.Option("--ray", help="Finish it on Ray: 'auto' or a cluster ADDRESS "
                                                "(a batch; see 'portrait batch --help').")] = None,
        gpu_resource: Annotated[str | None, typer.Option("--gpu-resource", help="with --ray: the resource that marks "
                                                         "a GPU worker (default: real GPUs).")] = None,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Finish an interrupted run of any kind without paying twice: re-poll accepted tasks, send only
        what never went out, then apply its finishing steps (labels, checks, composites, next shots)."""
        s = studio(home)
        with Ledger(s.ledger_path) as ledger:
            row = ledger.run(run)
            rows = ledger.requests(row.id)
            statuses = [r.status for r in rows]
            providers = list(dict.fromkeys([*(row.plan or {}).get("providers", []), *(r.provider for r in rows)]))
        if not json_out:
            counts = ", ".join(f"{statuses.count(k)} {k}" for k in sorted(set(statuses))) or "no requests yet"
            console.print(f"run {row.id} ({row.kind}, {row.status}): {counts}")

        async def work(engine: Engine) -> RunReport:
            if not ray:
                return await execute_with_progress(engine, row.id, budget=budget, resubmit_uncertain=resubmit_uncertain,
                                                   retry_failed=retry_failed, quiet=json_out)
            from ..cluster import ClusterOptions, ClusterRunner

            runner = ClusterRunner(ClusterOptions(address=ray, gpu_resource=gpu_resource), engine=engine)
            engine.runner = runner
            try:
                return await execute_with_progress(engine, row.id, budget=budget, resubmit_uncertain=resubmit_uncertain,
                                                   retry_failed=retry_failed, quiet=json_out)
            finally:
                runner.close()

        report = run_with_engine(s, providers, work, sandbox=sandbox, weights=weights, quiet=json_out)
        _summarise(s, report, json_out)


__all__ = ["execute_with_progress", "record_and_execute", "register"]
