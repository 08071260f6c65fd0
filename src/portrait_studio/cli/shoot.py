"""`portrait shoot | compare | pick | vary | resume`: the portrait workflow."""

from __future__ import annotations

import inspect
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import ranking
from ..brief import VARIABLE_ELEMENTS, load_brief
from ..config import Studio
from ..engine import Engine, Plan, failure_summary
from ..ledger import ImageRow, Ledger, open_ledger
from ..runner import Outcome, RunReport
from ..shoot import ShootPlan, check_budget, choose_seeds, plan_shoot, plan_vary, ranked_images
from ._common import (
    HomeOption,
    JsonOption,
    console,
    err_console,
    escape,
    plain,
    print_json,
    say_command,
    say_path,
    studio,
)
from ._engine import run_with_engine
from ._options import (
    BriefArg,
    BudgetOption,
    ModelsOption,
    OutDirOption,
    ProviderOption,
    RunArg,
    SandboxOption,
    SeedsOption,
    WeightsOption,
    check_id,
    seed_option,
)
from ._progress import progress_bars
from ._tables import ID, new_table
from ._vary import element_help, option_name, suggest_vary

__all__ = ["execute_with_progress", "record_and_execute", "register"]


def _print_plan(plan: ShootPlan | Plan, budget: float | None) -> None:
    from .brief import describe_size

    table = new_table(("#", {"justify": "right"}), ("model", {"ratio": 3}), ("seed", {}), ("size", {"ratio": 2}),
                      ("steps · guidance", {"ratio": 1}), ("est.", {"justify": "right"}),
                      title=f"{plan.kind} plan: {len(plan.requests)} image(s)")
    for i, r in enumerate(plan.requests, 1):
        table.add_row(str(i), plain(f"{r.model}\nvia {r.provider}"), str(r.seed), plain(describe_size(r)),
                      f"{r.steps or '-'} · {'-' if r.guidance is None else f'{r.guidance:g}'}",
                      f"${r.estimated_cost.usd:.3f}")
    console.print(table)
    est = plan.estimated
    console.print(f"estimated: {est.credits:g} credits = ${est.usd:.3f}" + (f" (budget ${budget:.2f})" if budget is not None else ""),
                  highlight=False)
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
    """Run (or resume) a recorded run with progress and an ETA (images, diffusion steps, the checklist);
    Ctrl-C says how to resume; a run where nothing was made raises with the real cause and fix."""
    rows = engine.ledger.requests(run_id)
    finished = {r.position for r in rows if r.status == "done"}
    with progress_bars(quiet=quiet) as bars:
        made = bars.bar(f"run {run_id}", max(len(rows), 1), done=len(finished), unit="images")
        steps: dict[str, Any] = {}

        def on_step_done(step: int, total: int) -> None:  # local diffusion steps, from the worker thread
            if "bar" not in steps:
                steps.update(bar=bars.bar("diffusion steps", None, unit="steps"), offset=0, last=0)
            if step < steps["last"]:
                steps["offset"] += steps["last"]
            steps["last"] = step
            remaining = len(rows) - len(finished)
            steps["bar"].update(steps["offset"] + step, steps["offset"] + max(remaining, 1) * total)

        for p in engine.providers.values():
            if hasattr(p, "on_step") and getattr(p, "on_step", None) is None:
                p.on_step = on_step_done

        def on_outcome(o: Outcome) -> None:
            if o.status == "done":
                finished.add(o.position)
                made.update(len(finished))
            if o.error:
                bars.console.print(f"[red]✗[/] request {o.position + 1}: {escape(o.error)}", highlight=False)

        def on_step(name: str) -> None:
            made.label(f"run {run_id} · {name}")

        checker = engine.checker
        if checker is not None:
            checking: dict[str, Any] = {"bar": None}
            to_check = _unchecked(engine.ledger, run_id) + len(rows) - len(finished)  # counted here: the ledger is this thread's
            lock = threading.Lock()  # the engine checks images as they arrive, two at a time

            def check(path: Path, brief: Any) -> tuple[str, float, dict[str, Any]]:
                with lock:
                    if checking["bar"] is None:
                        checking["bar"] = bars.bar("checklist", max(to_check, 1), unit="images")
                result = checker(path, brief)
                with lock:
                    checking["bar"].advance()
                return result  # type: ignore[no-any-return]

            engine.checker = check
        try:
            report = await engine.execute(run_id, budget_usd=budget, resubmit_uncertain=resubmit_uncertain,
                                          retry_failed=retry_failed, on_outcome=on_outcome, on_step=on_step)
        except KeyboardInterrupt:
            bars.view.stop()
            err_console.print(f"interrupted — nothing paid is lost. Finish it with: [bold]portrait resume {run_id}[/]")
            raise SystemExit(130) from None
        finally:
            engine.checker = checker
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


def _unchecked(ledger: Ledger, run_id: str) -> int:
    """Images still to check (the checklist runs once per distinct picture: equal bytes, one check)."""
    shas = {i.image_sha256 for i in ledger.images(run_id=run_id, limit=100_000) if i.operation == "generate"}
    return sum(ledger.checks(sha) is None for sha in shas)


def _image_table(run_id: str, ranked: list[ImageRow]) -> Any:
    table = new_table(("#", {"justify": "right"}), ("image", ID), ("model · seed / file", {"ratio": 3}),
                      ("cost", {"justify": "right"}), ("check", {}), title=f"run {run_id}")
    for i, r in enumerate(ranked, 1):
        score = "" if r.check_score is None else f"\n{r.check_score:.0f}"
        table.add_row(str(i), plain(r.id + (" ★" if r.picked else ""), "bold"),
                      plain(f"{r.model or '-'}\nseed {r.seed}\n{Path(r.out_path or r.path).name}"),
                      f"${r.cost_usd:.3f}", plain(f"{r.check_overall or '-'}{score}"))
    return table


def _money(report: RunReport, spent_usd: float) -> str:
    if report.sandbox and not spent_usd:
        return f"sandbox ${report.sandbox_usd:.3f} (test images, no real money)"
    return f"spent ${spent_usd:.3f}" + (f" + sandbox ${report.sandbox_usd:.3f} (not money)" if report.sandbox_usd else "")


def _summarise(s: Studio, report: RunReport, json_out: bool, *, spent_before: float = 0.0, was_complete: bool = False) -> None:
    with open_ledger(s) as ledger:
        run = ledger.run(report.run_id)
        out = Path(run.out_dir or "")
        ranked = ranked_images(ledger, run.id)
        others = [i for i in ledger.images(run_id=run.id, limit=100_000) if i.operation != "generate"]
    spent_now = max(0.0, report.spent_usd - spent_before)
    if json_out:
        print_json({
            "run_id": run.id, "kind": run.kind, "status": run.status, "out_dir": str(out),
            "spent_usd": report.spent_usd, "spent_now_usd": round(spent_now, 6), "sandbox_usd": report.sandbox_usd,
            "sandbox": report.sandbox, "seconds": report.seconds, "already_complete": was_complete,
            "ranking": ranking.RULE, "images": [r.model_dump(mode="json") for r in ranked + others],
            "failed": [o.model_dump(mode="json") for o in report.failed],
        })
        return
    if ranked:
        console.print(_image_table(run.id, ranked))
        console.print(f"[dim]{ranking.RULE}[/]", highlight=False)
    for r in others:
        say_path(f"{r.operation}:", r.out_path or r.path)
    if was_complete:
        n = len(report.outcomes)
        console.print(f"run {run.id} was already complete ({n}/{n} done): nothing sent, nothing spent now "
                      f"({_money(report, report.spent_usd)} in all)", highlight=False)
    elif spent_before:
        console.print(f"{_money(report, spent_now)} now in {report.seconds:.1f}s "
                      f"(${report.spent_usd:.3f} for the run in all)", highlight=False)
    else:
        console.print(f"{_money(report, report.spent_usd)} in {report.seconds:.1f}s", highlight=False)
    say_path("folder:", out)
    if (out / "contact-sheet.png").exists():
        say_path("contact sheet:", out / "contact-sheet.png")
    if report.failed:
        console.print(f"[yellow]{len(report.failed)} not done[/] — see the notes above; "
                      f"'portrait resume {run.id}' continues it", highlight=False)
    elif ranked and run.kind in ("shoot", "vary", "compare"):
        nxt = suggest_vary(run.brief, run.varied)
        say_command("next:", f"portrait pick {run.id} {ranked[0].id}")
        if nxt:
            say_command("then:", f"portrait vary {run.id} {nxt}")


def _vary_command(app: typer.Typer) -> None:
    """`vary` takes one option per entry of brief.VARIABLE_ELEMENTS, built from that table."""

    def vary(run: str, force: bool, budget: float | None, sandbox: str, weights: str | None, json_out: bool,
             home: Path | None, **elements: str | None) -> None:
        changes = {e: elements[option_name(e)] for e in VARIABLE_ELEMENTS if elements.get(option_name(e)) is not None}
        s = studio(home)
        limit = _budget(s, budget)
        with open_ledger(s) as ledger:
            plan = plan_vary(ledger, run, changes, force=force)
        if not json_out:
            _print_plan(plan, limit)
        check_budget(plan, limit)
        report = record_and_execute(s, plan.to_plan(), sandbox=sandbox, budget=limit, weights=weights, quiet=json_out)
        _summarise(s, report, json_out)

    fixed = [
        inspect.Parameter("run", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Annotated[str, typer.Argument(
            help="Run whose picked image is the baseline (id or unique prefix).", metavar="RUN",
            callback=lambda v: check_id(v, "run id"))]),
    ]
    element_params = [
        inspect.Parameter(option_name(e), inspect.Parameter.KEYWORD_ONLY, default=None,
                          annotation=Annotated[str | None, typer.Option(f"--{e}", help=element_help(e))])
        for e in VARIABLE_ELEMENTS
    ]
    rest = [
        ("force", Annotated[bool, typer.Option("--force", help="Allow changing more than one element (flagged).")], False),
        ("budget", BudgetOption, None), ("sandbox", SandboxOption, "auto"), ("weights", WeightsOption, None),
        ("json_out", JsonOption, False), ("home", HomeOption, None),
    ]
    params = fixed + element_params + [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a)
                                       for n, a, d in rest]

    def vary_cmd(**kwargs: Any) -> None:
        vary(kwargs.pop("run"), kwargs.pop("force"), kwargs.pop("budget"), kwargs.pop("sandbox"), kwargs.pop("weights"),
             kwargs.pop("json_out"), kwargs.pop("home"), **kwargs)

    vary_cmd.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    vary_cmd.__annotations__ = {p.name: p.annotation for p in params}
    vary_cmd.__doc__ = "A new round from the locked baseline with exactly one element changed."
    app.command("vary")(vary_cmd)


def _default_seed(brief: Any, seeds: int | None, seed: int | None) -> int | None:
    if seeds is None and seed is None and brief.output.seed != "random":
        return int(brief.output.seed)
    return seed


def register(app: typer.Typer) -> None:
    @app.command("shoot")
    def shoot(
        brief_path: BriefArg,
        model: ModelsOption,
        seeds: SeedsOption = None,
        seed: Annotated[int | None, seed_option("Lock one seed.")] = None,
        budget: BudgetOption = None,
        out: OutDirOption = None,
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
        chosen = choose_seeds(seeds, _default_seed(brief, seeds, seed))
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
            if json_out:
                print_json({"plan": [r.model_dump(mode="json") for r in plan.requests],
                            "estimated_usd": plan.estimated.usd, "budget_usd": limit})
            return
        report = record_and_execute(s, plan.to_plan(brief_path=str(brief_path)), sandbox=sandbox, budget=limit,
                                    weights=weights, out=out, quiet=json_out)
        _summarise(s, report, json_out)

    @app.command("compare")
    def compare(
        brief_path: BriefArg,
        model: ModelsOption,
        seed: Annotated[int | None, seed_option("The seed every model gets.")] = None,
        seeds: SeedsOption = None,
        budget: BudgetOption = None,
        out: OutDirOption = None,
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
        plan = plan_compare(brief, model, choose_seeds(seeds, _default_seed(brief, seeds, seed)), provider=provider,
                            deliver=deliver)
        limit = _budget(s, budget)
        if not json_out:
            _print_plan(plan, limit)
        check_budget(plan, limit)
        report = record_and_execute(s, plan.to_plan(brief_path=str(brief_path)), sandbox=sandbox, budget=limit,
                                    weights=weights, out=out, quiet=json_out)
        if not json_out:  # the engine's compare step wrote the grid and the tables
            with open_ledger(s) as ledger:
                folder = Path(ledger.run(report.run_id).out_dir or "")
            _print_comparison(s, report.run_id)
            for name in [*sorted(folder.glob("compare-grid*.png")), folder / "comparison.html", folder / "comparison.md"]:
                say_path("wrote", name)
        _summarise(s, report, json_out)

    @app.command("pick")
    def pick(
        run: RunArg,
        image: Annotated[str, typer.Argument(help="Image id or sha256 prefix (see the run's table or 'portrait log').",
                                             metavar="IMAGE", callback=lambda v: check_id(v, "image id"))],
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Mark the chosen candidate; its seed and settings become the locked baseline."""
        s = studio(home)
        with open_ledger(s) as ledger:
            row = ledger.pick(ledger.run(run).id, image)
            brief = ledger.run(row.run_id).brief if row.run_id else None
        if json_out:
            print_json(row.model_dump(mode="json"))
            return
        nxt = suggest_vary(brief)
        console.print(plain(f"picked {row.id} ({row.model}, seed {row.seed})"
                            + (f" — vary it with: portrait vary {row.run_id} {nxt}" if nxt else "")))

    _vary_command(app)

    @app.command("resume")
    def resume(
        run: RunArg,
        budget: BudgetOption = None,
        sandbox: SandboxOption = "auto",
        weights: WeightsOption = None,
        resubmit_uncertain: Annotated[bool, typer.Option("--resubmit-uncertain", help="Re-send requests whose "
                                      "acceptance is unknown (may pay twice for them).")] = False,
        retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Send again requests the provider accepted "
                                "and that then failed (moderated, error, expired): they may have been charged.")] = False,
        ray: Annotated[str | None, typer.Option("--ray", metavar="auto|ADDRESS", help="Finish it on Ray: 'auto' or "
                                                "a cluster's ADDRESS (as 'portrait batch --ray').")] = None,
        gpu_resource: Annotated[str | None, typer.Option("--gpu-resource", help="With --ray: the Ray resource that "
                                                         "marks a GPU worker (default: real GPUs).")] = None,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Finish an interrupted run of any kind without paying twice: re-poll accepted tasks, send only
        what never went out, then apply its finishing steps (labels, checks, composites, next shots)."""
        from ..engine import hold_run

        s = studio(home)
        with open_ledger(s) as ledger:
            row = ledger.run(run)
            hold_run(ledger, row.id)  # one resumer at a time, decided before any sandbox or model is opened
            rows = ledger.requests(row.id)
            statuses = [r.status for r in rows]
            providers = list(dict.fromkeys([*(row.plan or {}).get("providers", []), *(r.provider for r in rows)]))
            spent_before = ledger.spent(row.id).usd
        complete = bool(statuses) and all(st == "done" for st in statuses) and row.status == "done"
        if not json_out:
            counts = ", ".join(f"{statuses.count(k)} {k}" for k in sorted(set(statuses))) or "no requests yet"
            console.print(plain(f"run {row.id} ({row.kind}, {row.status}): {counts}"))

        async def work(engine: Engine) -> RunReport:
            quiet = json_out or complete
            if not ray:
                return await execute_with_progress(engine, row.id, budget=budget, resubmit_uncertain=resubmit_uncertain,
                                                   retry_failed=retry_failed, quiet=quiet)
            from ..cluster import ClusterOptions, ClusterRunner

            runner = ClusterRunner(ClusterOptions(address=ray, gpu_resource=gpu_resource), engine=engine)
            engine.runner = runner
            try:
                return await execute_with_progress(engine, row.id, budget=budget, resubmit_uncertain=resubmit_uncertain,
                                                   retry_failed=retry_failed, quiet=quiet)
            finally:
                runner.close()

        report = run_with_engine(s, providers, work, sandbox=sandbox, weights=weights, quiet=json_out or complete)
        _summarise(s, report, json_out, spent_before=spent_before, was_complete=complete)


def _print_comparison(s: Studio, run_id: str) -> None:
    """The comparison as a table that fits 80 columns (comparison.md keeps every column)."""
    from ..compare import comparison_rows

    with open_ledger(s) as ledger:
        rows = comparison_rows(ledger, run_id)
    table = new_table(("model", {"ratio": 3}), ("size · modes", {"ratio": 3}), ("price / this run", {"ratio": 2}),
                      ("time · check", {"ratio": 2}), title=f"comparison, run {run_id}")
    for r in rows:
        seconds = "-" if r["time_to_image_s"] is None else f"{r['time_to_image_s']:g}s"
        table.add_row(plain(r["model"], "bold") + plain(f"\n{r['id']} via {r['provider']}", "dim"),
                      plain(f"{r['max_resolution']}\n{r['modes']}"),
                      plain(f"{r['price']}\n${r['cost_usd']:.3f} here"), plain(f"{seconds}\n{r['checklist']}"))
    console.print(table)


