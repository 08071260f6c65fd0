"""`portrait series | swap`: one person across many portraits, identity measured; identity transfer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer

from ..brief import Rights, load_brief
from ..errors import BriefError
from ..quiet import native_quiet
from ._common import (
    HomeOption,
    JsonOption,
    console,
    plain,
    print_json,
    renamed_option,
    say_path,
    studio,
)
from ._engine import run_with_engine
from ._options import (
    BriefArg,
    BudgetOption,
    OutDirOption,
    ProviderOption,
    SandboxOption,
    WeightsOption,
    finite,
    image_file,
    input_argument,
    input_file,
    input_option,
    seed_option,
    text_file,
)
from ._progress import progress_bars
from ._run import debug
from ._tables import new_table

T = TypeVar("T")

AnchorOption = Annotated[Path, input_option("--anchor", "Clean, front-facing headshot of the person (the identity).",
                                           image_file, "IMAGE")]
WhoOption = Annotated[str | None, typer.Option("--who", help="Consent: the person shown in the anchor ('synthetic' for a generated face).")]
SourceOption = Annotated[str | None, typer.Option("--source", help="Consent: where the anchor image comes from.")]
PermissionOption = Annotated[str | None, typer.Option("--permission", help="Consent: what they agreed to, e.g. 'model release 2026-03-02'.")]


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
        brief_path: BriefArg,
        anchor: AnchorOption,
        shots_path: Annotated[Path, input_option("--shots", "SHOTS.yaml: what each shot changes.", text_file, "SHOTS")],
        method: Annotated[Literal["seed", "reference", "anchors", "lora"],
                          typer.Option("--method", help="How identity is held.")] = "seed",
        reference_weight: Annotated[float, typer.Option("--reference-weight", callback=finite(0.0, 1.0),
                                                        help="How strongly the anchor steers (0.25–0.35 holds a face).")] = 0.3,
        strength: Annotated[str | None, typer.Option("--strength", hidden=True)] = None,
        model: Annotated[str, typer.Option("--model", "-m", help="Catalog model id.")] = "flux-1.1-pro-ultra",
        provider: ProviderOption = None,
        weights: WeightsOption = None,
        lora: Annotated[Path | None, input_option("--lora", "LoRA .safetensors of the person (local).", input_file,
                                                  "SAFETENSORS")] = None,
        lora_weight: Annotated[float, typer.Option("--lora-weight", callback=finite(-4.0, 4.0),
                                                   help="How strongly the LoRA applies.")] = 1.0,
        finetune_id: Annotated[str | None, typer.Option("--finetune-id", help="BFL finetune id (flux-1.1-pro-ultra).")] = None,
        seed: Annotated[int | None, seed_option("Series seed (default: the brief's).")] = None,
        who: WhoOption = None,
        source: SourceOption = None,
        permission: PermissionOption = None,
        budget: BudgetOption = None,
        sandbox: SandboxOption = "auto",
        out: OutDirOption = None,
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
            console.print(plain(f"series of {len(plan.shots)} · method {plan.method} · {plan.model} on {plan.provider} · "
                          f"seed {plan.seed} · estimated ${plan.estimated.usd:.3f} before any reset"
                          + (f" (budget ${limit:.2f})" if limit is not None else "")))
        provider_id = plan.provider or get_model(plan.model).default_provider

        with progress_bars(quiet=json_out) as bars:
            bar = bars.bar("series", len(plan.shots), unit="shots")

            def shot_done(shot: Any) -> None:
                mark = " [red]reset[/]" if shot.reset_applied else ""
                bars.console.print(f"shot {shot.index + 1}: {_dist(shot.distance)} {shot.status}{mark}", highlight=False)
                bar.advance()

            async def work(engine: Any) -> Any:
                return await run_series(engine, plan, out_dir=out, budget_usd=limit, rights=rights,
                                        brief_path=str(brief_path), on_shot=shot_done)

            with native_quiet(enabled=not debug()):
                report = run_with_engine(s, [provider_id], work, sandbox=sandbox, weights=weights, quiet=json_out)
        if json_out:
            print_json(report.model_dump(mode="json"))
            return
        table = new_table(("shot", {"justify": "right"}), ("name", {"ratio": 3}), ("distance · identity", {"ratio": 2}),
                          ("reset · held back", {"ratio": 2}), title=f"series {report.run_id}")
        for shot in report.shots:
            reset = f"yes ({len(shot.attempts) - 1} tries)" if shot.reset_applied else "-"
            table.add_row(str(shot.index + 1), plain(f"{shot.name}\n{Path(shot.path).name}"),
                          plain(f"{_dist(shot.distance)}\n{shot.status}"),
                          plain(f"{reset}\n{', '.join(shot.held_back) or '-'}"))
        console.print(table)
        th = report.thresholds
        console.print(f"same person if distance <= {th.same_person_max:g} (drift warning above {th.drift_warn:g}); "
                      f"rights record {report.rights_id}; spent ${report.spent_usd:.3f}", highlight=False)
        say_path("series sheet:", report.sheet)
        say_path("identity plot:", report.plot)
        if report.stopped:
            console.print("[yellow]stopped:[/]", plain(str(report.stopped)), highlight=False)
        if not report.all_passed:
            raise typer.Exit(1)

    @app.command("swap")
    def swap(
        portrait: Annotated[Path, input_argument("The portrait to place the identity into.", image_file, "PORTRAIT")],
        anchor: AnchorOption,
        model: Annotated[str, typer.Option("--model", "-m", help="flux-2-pro, flux-kontext-pro, or a local FLUX.2.")] = "flux-2-pro",
        provider: ProviderOption = None,
        weights: WeightsOption = None,
        seed: Annotated[int, seed_option("The seed.")] = 0,
        who: WhoOption = None,
        source: SourceOption = None,
        permission: PermissionOption = None,
        budget: BudgetOption = None,
        sandbox: SandboxOption = "auto",
        out: OutDirOption = None,
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

        with native_quiet(enabled=not debug()):
            report = run_with_engine(s, [provider_id], work, sandbox=sandbox, weights=weights, quiet=json_out)
        if json_out:
            print_json(report.model_dump(mode="json"))
            return
        console.print(plain(f"identity distance to the anchor: {_dist(report.distance_before)} before → "
                      f"{_dist(report.distance)} after ({report.status}) · {report.model} · ${report.spent_usd:.3f}"))
        say_path("image:", report.path)
        console.print(plain(f"run {report.run_id} · rights record {report.rights_id}"))
        if not report.passed:
            raise typer.Exit(1)


__all__ = ["register"]
