"""`portrait series | swap`: one person across many portraits, identity measured; identity transfer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from ..brief import Rights, load_brief
from ..errors import BriefError
from ._common import HomeOption, JsonOption, console, err_console, print_json, renamed_option, studio
from ._engine import run_with_engine

T = TypeVar("T")

AnchorOption = Annotated[Path, typer.Option("--anchor", help="Clean, front-facing headshot of the person (the identity).")]
WhoOption = Annotated[str | None, typer.Option("--who", help="Consent: the person shown in the anchor ('synthetic' for a generated face).")]
SourceOption = Annotated[str | None, typer.Option("--source", help="Consent: where the anchor image comes from.")]
PermissionOption = Annotated[str | None, typer.Option("--permission", help="Consent: what they agreed to, e.g. 'model release 2026-03-02'.")]
ProviderOption = Annotated[str | None, typer.Option("--provider", help="bfl, fal, replicate or local.")]
WeightsOption = Annotated[str | None, typer.Option("--weights", help="local: a diffusers folder or HF repo id.")]
BudgetOption = Annotated[float | None, typer.Option("--budget", help="Most this command may spend, in USD.")]
SandboxOption = Annotated[str, typer.Option("--sandbox", help="auto: the provider's sandbox when no API key is set; always; never.")]


def _rights(who: str | None, source: str | None, permission: str | None) -> Rights | None:
    given = {"--who": who, "--source": source, "--permission": permission}
    if not any(given.values()):
        return None
    missing = [k for k, v in given.items() if not v]
    if missing:
        raise BriefError(f"consent needs all three of --who, --source and --permission; missing {', '.join(missing)}",
                         field=missing[0], hint="e.g. --who 'Ana Ruiz' --source 'own photo' --permission 'model release 2026-03-02'")
    return Rights(who=who, source=source, permission=permission)  # type: ignore[arg-type]


def _dist(value: float | None) -> str:
    return "no face" if value is None else f"{value:.3f}"


def register(app: typer.Typer) -> None:
    @app.command("series")
    def series(
        brief_path: Annotated[Path, typer.Argument(help="Brief YAML file (the prompt skeleton).")],
        anchor: AnchorOption,
        shots_path: Annotated[Path, typer.Option("--shots", help="SHOTS.yaml: what each shot changes.")],
        method: Annotated[str, typer.Option("--method", help="seed | reference | anchors | lora")] = "seed",
        reference_weight: Annotated[float, typer.Option("--reference-weight", help="How strongly the anchor steers "
                                                        "(0.25–0.35 holds a face).")] = 0.3,
        strength: Annotated[float | None, typer.Option("--strength", hidden=True)] = None,
        model: Annotated[str, typer.Option("--model", "-m", help="Catalog model id.")] = "flux-1.1-pro-ultra",
        provider: ProviderOption = None,
        weights: WeightsOption = None,
        lora: Annotated[Path | None, typer.Option("--lora", help="LoRA .safetensors of the person (local).")] = None,
        lora_weight: Annotated[float, typer.Option("--lora-weight")] = 1.0,
        finetune_id: Annotated[str | None, typer.Option("--finetune-id", help="BFL finetune id (flux-1.1-pro-ultra).")] = None,
        seed: Annotated[int | None, typer.Option("--seed", help="Series seed (default: the brief's).")] = None,
        who: WhoOption = None,
        source: SourceOption = None,
        permission: PermissionOption = None,
        budget: BudgetOption = None,
        sandbox: SandboxOption = "auto",
        out: Annotated[Path | None, typer.Option("--out", help="Folder for the run's files.")] = None,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Shoot a series of one person; measure identity after each shot and reset when it drifts."""
        from ..catalog import get_model
        from ..series import load_shots, plan_series, run_series

        renamed_option("--strength", strength, "--reference-weight", "how strongly the anchor steers")
        s = studio(home)
        brief = load_brief(brief_path)
        shots = load_shots(shots_path)
        rights = _rights(who, source, permission)
        plan = plan_series(brief, shots, method, anchor, reference_weight, lora, finetune_id, model=model,  # type: ignore[arg-type]
                           provider=provider, seed=seed, lora_weight=lora_weight)
        limit = budget if budget is not None else s.config.default_budget_usd
        if not json_out:
            console.print(f"series of {len(plan.shots)} · method {plan.method} · {plan.model} on {plan.provider} · "
                          f"seed {plan.seed} · estimated ${plan.estimated.usd:.3f} before any reset"
                          + (f" (budget ${limit:.2f})" if limit is not None else ""), highlight=False)
        provider_id = plan.provider or get_model(plan.model).default_provider

        def shot_done(shot: Any) -> None:
            if not json_out:
                mark = " [red]reset[/]" if shot.reset_applied else ""
                err_console.print(f"shot {shot.index + 1}: {_dist(shot.distance)} {shot.status}{mark}", highlight=False)

        async def work(engine: Any) -> Any:
            return await run_series(engine, plan, out_dir=out, budget_usd=limit, rights=rights,
                                    brief_path=str(brief_path), on_shot=shot_done)

        report = run_with_engine(s, [provider_id], work, sandbox=sandbox, weights=weights, quiet=json_out)
        if json_out:
            print_json(report.model_dump(mode="json"))
            return
        table = Table("shot", "name", "distance", "identity", "reset", "held back", "file", title=f"series {report.run_id}")
        for shot in report.shots:
            table.add_row(str(shot.index + 1), shot.name, _dist(shot.distance), shot.status,
                          f"yes ({len(shot.attempts) - 1} tries)" if shot.reset_applied else "-",
                          ", ".join(shot.held_back) or "-", Path(shot.path).name)
        console.print(table)
        th = report.thresholds
        console.print(f"same person if distance <= {th.same_person_max:g} (drift warning above {th.drift_warn:g}); "
                      f"rights record {report.rights_id}; spent ${report.spent_usd:.3f}", highlight=False)
        console.print(f"series sheet: {report.sheet}\nidentity plot: {report.plot}", highlight=False)
        if report.stopped:
            console.print(f"[yellow]stopped:[/] {report.stopped}", highlight=False)
        if not report.all_passed:
            raise typer.Exit(1)

    @app.command("swap")
    def swap(
        portrait: Annotated[Path, typer.Argument(help="The portrait to place the identity into.")],
        anchor: AnchorOption,
        model: Annotated[str, typer.Option("--model", "-m", help="flux-2-pro, flux-kontext-pro, or a local FLUX.2.")] = "flux-2-pro",
        provider: ProviderOption = None,
        weights: WeightsOption = None,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        who: WhoOption = None,
        source: SourceOption = None,
        permission: PermissionOption = None,
        budget: BudgetOption = None,
        sandbox: SandboxOption = "auto",
        out: Annotated[Path | None, typer.Option("--out", help="Folder for the run's files.")] = None,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Identity transfer: the person from the anchor in the scene of PORTRAIT; reports the identity distance."""
        from ..catalog import get_model
        from ..swap import plan_swap, transfer_identity

        s = studio(home)
        rights = _rights(who, source, permission)
        request = plan_swap(portrait, anchor, model=model, provider=provider, seed=seed)  # fails fast on a wrong model
        limit = budget if budget is not None else s.config.default_budget_usd
        provider_id = provider or get_model(request.model).default_provider
        async def work(engine: Any) -> Any:
            return await transfer_identity(engine, portrait, anchor, model, provider=provider_id, out_dir=out, seed=seed,
                                           rights=rights, budget_usd=limit)

        report = run_with_engine(s, [provider_id], work, sandbox=sandbox, weights=weights, quiet=json_out)
        if json_out:
            print_json(report.model_dump(mode="json"))
            return
        console.print(f"identity distance to the anchor: {_dist(report.distance_before)} before → "
                      f"{_dist(report.distance)} after ({report.status}) · {report.model} · ${report.spent_usd:.3f}",
                      highlight=False)
        console.print(f"image: {report.path}\nrun {report.run_id} · rights record {report.rights_id}", highlight=False)
        if not report.passed:
            raise typer.Exit(1)


__all__ = ["register"]
