"""`portrait shoot | compare | pick | vary | resume`: the portrait workflow."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import ranking
from ..brief import VARIABLE_ELEMENTS, load_brief
from ..config import Studio
from ..ledger import ImageRow, Ledger
from ..providers import require_configured
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

__all__ = ["execute_run", "register"]


def _print_plan(plan: ShootPlan, budget: float | None) -> None:
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


def _sandbox_banner(providers: dict[str, Any]) -> None:
    used = [pid for pid, p in providers.items() if getattr(p, "sandbox", False)]
    if used:
        from ..config import KEY_ENV_VARS

        keys = " / ".join(KEY_ENV_VARS.get(p, p) for p in used)
        err_console.print(f"[bold magenta]SANDBOX[/]: no API key set, so images come from a local sandbox that "
                          f"follows the provider's API contract (set {keys} for real images)", highlight=False)


def execute_run(
    s: Studio, run_id: str, *, sandbox: str, budget: float | None, weights: str | None = None,
    resubmit_uncertain: bool = False, quiet: bool = False,
) -> RunReport:
    """Run (or resume) a recorded run with progress and ETA; Ctrl-C says how to resume."""
    with Ledger(s.ledger_path) as ledger:
        rows = ledger.requests(run_id)
    finished = {r.position for r in rows if r.status == "done"}
    checker = default_checker()
    with progress_bars(quiet=quiet) as bars:
        made = bars.bar(f"run {run_id}", len(rows), done=len(finished), unit="images")
        steps: dict[str, Any] = {}

        def on_step(step: int, total: int) -> None:  # local diffusion steps, from the worker thread
            if "bar" not in steps:
                steps.update(bar=bars.bar("diffusion steps", None, unit="steps"), offset=0, last=0)
            if step < steps["last"]:
                steps["offset"] += steps["last"]
            steps["last"] = step
            remaining = len(rows) - len(finished)
            steps["bar"].update(steps["offset"] + step, steps["offset"] + max(remaining, 1) * total)

        def on_providers(providers: dict[str, Any]) -> None:
            if len(finished) < len(rows):  # a finished run sends nothing: no banner
                _sandbox_banner(providers)
            for p in providers.values():
                if hasattr(p, "on_step") and getattr(p, "on_step", None) is None:
                    p.on_step = on_step

        def on_outcome(o: Outcome) -> None:
            if o.status == "done":
                finished.add(o.position)
                made.update(len(finished))
            if o.error:
                bars.console.print(f"[red]✗[/] request {o.position + 1}: {escape(o.error)}", highlight=False)

        checking: dict[str, Any] = {}

        def check(path: Path, brief: Any) -> tuple[str, float, dict[str, Any]]:
            assert checker is not None
            if "bar" not in checking:
                checking["bar"] = bars.bar("checklist", _unchecked(s, run_id), unit="images")
            result = checker(path, brief)
            checking["bar"].advance()
            return result

        try:
            return execute_recorded_run(
                s, run_id, sandbox=sandbox, budget=budget, weights=weights, resubmit_uncertain=resubmit_uncertain,
                checker=check if checker is not None else None, on_outcome=on_outcome, on_providers=on_providers,
            )
        except KeyboardInterrupt:
            bars.view.stop()
            err_console.print(f"interrupted — nothing paid is lost. Finish it with: [bold]portrait resume {run_id}[/]")
            raise SystemExit(130) from None


def _unchecked(s: Studio, run_id: str) -> int:
    """Images still to check (the checklist runs once per distinct picture: equal bytes, one check)."""
    with Ledger(s.ledger_path) as ledger:
        shas = {i.image_sha256 for i in ledger.images(run_id=run_id, limit=10_000)}
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


def _summarise(s: Studio, report: RunReport, json_out: bool, *, spent_before: float = 0.0, was_complete: bool = False) -> None:
    with Ledger(s.ledger_path) as ledger:
        run = ledger.run(report.run_id)
        out = Path(run.out_dir or "")
        ranked = ranking.rank(ledger.images(run_id=run.id, limit=1000))
    spent_now = max(0.0, report.spent_usd - spent_before)
    if json_out:
        print_json({
            "run_id": run.id, "out_dir": str(out), "spent_usd": report.spent_usd, "spent_now_usd": round(spent_now, 6),
            "seconds": report.seconds, "already_complete": was_complete, "ranking": ranking.RULE,
            "images": [r.model_dump(mode="json") for r in ranked],
            "failed": [o.model_dump(mode="json") for o in report.failed],
        })
        return
    if ranked:
        console.print(_image_table(run.id, ranked))
        console.print(f"[dim]{ranking.RULE}[/]", highlight=False)
    if was_complete:
        console.print(f"run {run.id} was already complete: nothing sent, nothing spent now "
                      f"(${report.spent_usd:.3f} in all)", highlight=False)
    elif spent_before:
        console.print(f"spent ${spent_now:.3f} now in {report.seconds:.1f}s (${report.spent_usd:.3f} for the run in all)",
                      highlight=False)
    else:
        console.print(f"spent ${report.spent_usd:.3f} in {report.seconds:.1f}s", highlight=False)
    say_path("folder:", out)
    if (out / "contact-sheet.png").exists():
        say_path("contact sheet:", out / "contact-sheet.png")
    if report.failed:
        console.print(f"[yellow]{len(report.failed)} not done[/] — finish with: portrait resume {run.id}", highlight=False)
    elif ranked:
        nxt = suggest_vary(run.brief, run.varied)
        say_command("next:", f"portrait pick {run.id} {ranked[0].id}")
        if nxt:
            say_command("then:", f"portrait vary {run.id} {nxt}")


def _require_providers(s: Studio, plan: ShootPlan, sandbox: str) -> None:
    require_configured(s, {r.provider for r in plan.requests}, sandbox=sandbox)  # type: ignore[arg-type]


def _vary_command(app: typer.Typer) -> None:
    """`vary` takes one option per entry of brief.VARIABLE_ELEMENTS, built from that table."""

    def vary(run: str, force: bool, budget: float | None, sandbox: str, weights: str | None, json_out: bool,
             home: Path | None, **elements: str | None) -> None:
        changes = {e: elements[option_name(e)] for e in VARIABLE_ELEMENTS if elements.get(option_name(e)) is not None}
        s = studio(home)
        limit = _budget(s, budget)
        with Ledger(s.ledger_path) as ledger:
            plan = plan_vary(ledger, run, changes, force=force)
            if not json_out:
                _print_plan(plan, limit)
            check_budget(plan, limit)
            _require_providers(s, plan, sandbox)
            run_id, _ = start_run(plan, ledger, s.runs_dir, budget_usd=limit)
        report = execute_run(s, run_id, sandbox=sandbox, budget=limit, weights=weights, quiet=json_out)
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
        plan = plan_shoot(brief, model, chosen, provider=provider, variations=variations)
        limit = _budget(s, budget)
        if not json_out:
            _print_plan(plan, limit)
        check_budget(plan, limit)
        if dry_run:
            if json_out:
                print_json({"plan": [r.model_dump(mode="json") for r in plan.requests],
                            "estimated_usd": plan.estimated.usd, "budget_usd": limit})
            return
        _require_providers(s, plan, sandbox)
        with Ledger(s.ledger_path) as ledger:
            run_id, _ = start_run(plan, ledger, s.runs_dir, budget_usd=limit, brief_path=str(brief_path), out_dir=out)
        report = execute_run(s, run_id, sandbox=sandbox, budget=limit, weights=weights, quiet=json_out)
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
        sandbox: SandboxOption = "auto",
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """2–4 models side by side on the same brief and seed: grid PNG plus feature/price table."""
        from ..compare import plan_compare

        s = studio(home)
        brief = load_brief(brief_path)
        plan = plan_compare(brief, model, choose_seeds(seeds, _default_seed(brief, seeds, seed)), provider=provider)
        limit = _budget(s, budget)
        if not json_out:
            _print_plan(plan, limit)
        check_budget(plan, limit)
        _require_providers(s, plan, sandbox)
        with Ledger(s.ledger_path) as ledger:
            run_id, folder = start_run(plan, ledger, s.runs_dir, budget_usd=limit, brief_path=str(brief_path), out_dir=out)
        report = execute_run(s, run_id, sandbox=sandbox, budget=limit, quiet=json_out)
        if not json_out:  # execute_recorded_run wrote the grid and the tables
            _print_comparison(s, run_id)
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
        with Ledger(s.ledger_path) as ledger:
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
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Finish an interrupted run without paying twice: re-poll accepted tasks, send only unsent ones."""
        s = studio(home)
        with Ledger(s.ledger_path) as ledger:
            row = ledger.run(run)
            limit = budget if budget is not None else row.budget_usd
            statuses = [r.status for r in ledger.requests(row.id)]
            spent_before = ledger.spent(row.id).usd
        complete = bool(statuses) and all(st == "done" for st in statuses)
        if not json_out:
            console.print(f"run {row.id}: " + ", ".join(f"{statuses.count(k)} {k}" for k in sorted(set(statuses))),
                          highlight=False)
        report = execute_run(s, row.id, sandbox=sandbox, budget=limit, weights=weights,
                             resubmit_uncertain=resubmit_uncertain, quiet=json_out or complete)
        _summarise(s, report, json_out, spent_before=spent_before, was_complete=complete)


def _print_comparison(s: Studio, run_id: str) -> None:
    """The comparison as a table that fits 80 columns (comparison.md keeps every column)."""
    from ..compare import comparison_rows

    with Ledger(s.ledger_path) as ledger:
        rows = comparison_rows(ledger, run_id)
    table = new_table(("model", {"ratio": 3}), ("size · modes", {"ratio": 3}), ("price / this run", {"ratio": 2}),
                      ("time · check", {"ratio": 2}), title=f"comparison, run {run_id}")
    for r in rows:
        seconds = "-" if r["time_to_image_s"] is None else f"{r['time_to_image_s']:g}s"
        table.add_row(plain(r["model"], "bold") + plain(f"\n{r['id']} via {r['provider']}", "dim"),
                      plain(f"{r['max_resolution']}\n{r['modes']}"),
                      plain(f"{r['price']}\n${r['cost_usd']:.3f} here"), plain(f"{seconds}\n{r['checklist']}"))
    console.print(table)


