"""`portrait batch JOBS.yaml|people.csv [--ray auto|ADDRESS]`: many people × looks, filtered by the checklist."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn

from ..config import Studio
from ..engine import Engine
from ..ledger import Ledger
from ..runner import Outcome, RunReport
from ._common import HomeOption, JsonOption, console, err_console, print_json, studio
from ._engine import run_with_engine
from ._options import (
    BudgetOption,
    OutDirOption,
    ProviderOption,
    SandboxOption,
    WeightsOption,
    _input,
    seed_option,
    text_file,
)

RayOption = Annotated[str | None, typer.Option(
    "--ray", metavar="auto|ADDRESS", help="Run on Ray: 'auto' (the cluster this machine belongs to, or a new one "
    "here) or a cluster's ADDRESS (host:port). Without it: in this process.")]
GpuResourceOption = Annotated[str | None, typer.Option(
    "--gpu-resource", help="With --ray: the Ray resource that marks a GPU worker (default: real GPUs).")]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = round(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def _print_plan(plan: Any, *, budget: float | None, seconds: float, source: str, cluster: str) -> None:
    people, cells, requests = len(plan.people), len(plan.cells), len(plan.requests)
    by_model: dict[str, int] = {}
    for r in plan.requests:
        by_model[f"{r.model} on {r.provider}"] = by_model.get(f"{r.model} on {r.provider}", 0) + 1
    console.print(f"batch [bold]{escape(plan.name)}[/]: {people} people × looks = {cells} cells, {requests} images "
                  f"(batch seed {plan.seed})", highlight=False)
    for what, n in by_model.items():
        console.print(f"  {n} × {escape(what)}", highlight=False)
    est, worst = plan.estimated, plan.worst_case
    console.print(f"estimated: ${est.usd:.3f}, at most ${worst.usd:.3f} with every re-roll"
                  + (f" (budget ${budget:.2f})" if budget is not None else ""), highlight=False)
    console.print(f"time: about {_duration(seconds)} {cluster} ({source})", highlight=False)


def register(app: typer.Typer) -> None:
    @app.command("batch")
    def batch(
        jobs: Annotated[Path, _input("JOBS.yaml, or a CSV of people (name, age, anchor, consent_who ...).",
                                     text_file, "JOBS")],
        brief: Annotated[str | None, typer.Option("--brief", help="Default brief (file or preset) for rows without one.")] = None,
        model: Annotated[str | None, typer.Option("--model", "-m", help="Default model.")] = None,
        provider: ProviderOption = None,
        seeds: Annotated[int | None, typer.Option("--seeds", min=1, max=16,
                                                  help="Default candidates per person and look (1–16).")] = None,
        keep: Annotated[int | None, typer.Option("--keep", min=1, max=16,
                                                 help="Keep the best N per person and look.")] = None,
        rerolls: Annotated[int | None, typer.Option("--rerolls", min=0, max=5,
                                                    help="Re-roll rounds for a look short of N (0–5).")] = None,
        seed: Annotated[int | None, seed_option("The batch seed: every image's seed derives from it.")] = None,
        budget: BudgetOption = None,
        ray: RayOption = None,
        gpu_resource: GpuResourceOption = None,
        gpu_workers: Annotated[int | None, typer.Option("--gpu-workers", min=1, max=4096,
                                                        help="With --ray: local pipelines (default: one per GPU).")] = None,
        hosted_workers: Annotated[int, typer.Option("--hosted-workers", min=1, max=1024,
                                                    help="With --ray: workers for hosted requests.")] = 2,
        cpu_workers: Annotated[int, typer.Option("--cpu-workers", min=0, max=4096,
                                                 help="With --ray: workers for labels and checks.")] = 1,
        out: OutDirOption = None,
        weights: WeightsOption = None,
        sandbox: SandboxOption = "auto",
        no_check: Annotated[bool, typer.Option("--no-check", help="Skip the checklist (keep the first N).")] = False,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and its estimates; spend nothing.")] = False,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Run a batch: every person × look × seed, budget checked first, on this machine or a Ray cluster;
        keep the best N of each by the checklist, re-roll failures, a contact sheet per person and a report."""
        from ..batch import history_seconds, load_batch, plan_batch
        from ..shoot import check_budget

        s = studio(home)
        defaults = {"brief": brief, "model": model, "provider": provider, "seeds": seeds, "keep": keep, "rerolls": rerolls}
        plan = plan_batch(load_batch(jobs, defaults=defaults), base_dir=jobs.parent, source=str(jobs), seed=seed)
        limit = budget if budget is not None else s.config.default_budget_usd
        with Ledger(s.ledger_path) as ledger:
            history = history_seconds(ledger, [r.model for r in plan.requests])
        parallel = {"bfl": 24, "fal": 8, "replicate": 8, "local": gpu_workers or 1}
        seconds = plan.estimated_seconds(history=history, parallel=parallel)
        where = "on Ray" if ray else "in this process"
        if not json_out:
            _print_plan(plan, budget=limit, seconds=seconds, cluster=where,
                        source="from this studio's past images" if history else "typical figures; none measured here yet")
        check_budget(plan.to_plan(), limit)
        if dry_run:
            if json_out:
                print_json({"name": plan.name, "people": len(plan.people), "cells": len(plan.cells),
                            "requests": len(plan.requests), "estimated_usd": plan.estimated.usd,
                            "worst_case_usd": plan.worst_case.usd, "estimated_seconds": seconds, "seed": plan.seed})
            return
        report = _run(s, plan, limit=limit, ray=ray, out=out, weights=weights, sandbox=sandbox, no_check=no_check,
                      quiet=json_out, cluster={"gpu_resource": gpu_resource, "gpu_workers": gpu_workers,
                                               "hosted_workers": hosted_workers, "cpu_workers": cpu_workers})
        _summarise(s, report.run_id, json_out)


def _run(s: Studio, plan: Any, *, limit: float | None, ray: str | None, out: Path | None, weights: str | None,
         sandbox: str, no_check: bool, quiet: bool, cluster: dict[str, Any]) -> RunReport:
    from ..batch import record_consent

    async def work(engine: Engine) -> RunReport:
        runner = None
        if ray:
            from ..cluster import ClusterOptions, ClusterRunner

            runner = ClusterRunner(ClusterOptions(address=ray, **{k: v for k, v in cluster.items() if v is not None}),
                                   engine=engine)
            engine.runner = runner
        try:
            recorded = engine.record(record_consent(plan, engine.ledger).to_plan(), budget_usd=limit, out_dir=out)
            if not quiet:
                console.print(f"run {recorded} recorded — if it stops, 'portrait resume {recorded}' finishes it",
                              highlight=False)
            return await execute_batch(engine, recorded, budget=limit, quiet=quiet)
        finally:
            if runner is not None:
                runner.close()

    return run_with_engine(s, plan.provider_ids, work, sandbox=sandbox, weights=weights, quiet=quiet,
                           checker=None if no_check else "default")


async def execute_batch(engine: Engine, run_id: str, *, budget: float | None, quiet: bool = False) -> RunReport:
    """Run (or resume) a batch with done / failed / rate / ETA on the terminal."""
    from ..engine import failure_summary

    rows = engine.ledger.requests(run_id)
    total = len(rows)
    state = {"done": sum(r.status == "done" for r in rows), "failed": 0, "new": 0}
    started = time.monotonic()
    progress = Progress(TextColumn("{task.description}"), BarColumn(),
                        TextColumn("{task.completed:.0f}/{task.total:.0f} done · {task.fields[failed]} failed · "
                                   "{task.fields[rate]} · ETA {task.fields[eta]}"),
                        console=err_console, disable=quiet)
    task = progress.add_task(f"batch {run_id}", total=max(total, 1), completed=state["done"], failed=0,
                             rate="- img/min", eta="?")

    def on_outcome(o: Outcome) -> None:
        if o.already:
            return
        if o.status == "done":
            state["done"] += 1
            state["new"] += 1
        else:
            state["failed"] += 1
            progress.console.print(f"[red]✗[/] request {o.position + 1}: {escape(o.error or o.status)}", highlight=False)
        elapsed = time.monotonic() - started
        rate = state["new"] / elapsed * 60 if elapsed > 0 else 0.0
        left = max(0, (progress.tasks[0].total or 0) - state["done"] - state["failed"]) if progress.tasks else 0
        eta = _duration(left / rate * 60) if rate > 0 else "?"
        progress.update(task, completed=state["done"], failed=state["failed"], rate=f"{rate:.1f} img/min", eta=eta)

    def on_step(name: str) -> None:
        rows_now = engine.ledger.requests(run_id)
        progress.update(task, total=max(len(rows_now), 1), description=f"batch {run_id} · {name}")

    try:
        with progress:
            report = await engine.execute(run_id, budget_usd=budget, on_outcome=on_outcome, on_step=on_step)
    except KeyboardInterrupt:
        err_console.print(f"interrupted — nothing paid is lost. Finish it with: [bold]portrait resume {run_id}[/]")
        raise SystemExit(130) from None
    failure = failure_summary(report)
    if failure is not None:
        raise failure
    return report


def _summarise(s: Studio, run_id: str, json_out: bool) -> None:
    from ..batch import batch_report

    with Ledger(s.ledger_path) as ledger:
        run = ledger.run(run_id)
        report = batch_report(ledger, run.id)
    folder = Path(run.out_dir or "")
    if json_out:
        print_json({"run_id": run.id, "status": run.status, "out_dir": str(folder),
                    "report": report.model_dump(mode="json"), "pass_rate": report.pass_rate})
        return
    rate = f"{report.pass_rate:.0%}" if report.pass_rate is not None else "n/a"
    money = f"${report.spent_usd:.3f}" + (f" + sandbox ${report.sandbox_usd:.3f} (not money)" if report.sandbox_usd else "")
    console.print(f"{report.images} images for {report.people} people ({len(report.cells)} cells): kept {report.kept}, "
                  f"pass rate {rate}, {report.rerolls} re-rolls, {report.failed} failed · {money} · "
                  f"{report.seconds:.1f}s", highlight=False)
    if report.short_cells:
        console.print(f"[yellow]short of their keep:[/] {escape(', '.join(report.short_cells))}", highlight=False)
    console.print(f"report: {escape(str(folder / 'batch-report.md'))} · sheets: {escape(str(folder))}/<person>/contact-sheet.png",
                  highlight=False)


__all__ = ["execute_batch", "register"]
