"""`portrait fix | upscale | masks | lineage`: finishing a picked portrait, with its lineage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape

from ..errors import CapabilityError, LedgerError
from ..ledger import Ledger
from ._common import HomeOption, JsonOption, console, print_json, renamed_option, studio

T = TypeVar("T")

ImageArg = Annotated[Path, typer.Argument(help="The image file.", exists=True, dir_okay=False)]
OutOption = Annotated[Path | None, typer.Option("--out", help="Output file or folder (default: next to the input).")]
SandboxOption = Annotated[
    str, typer.Option("--sandbox", help="auto: use the provider's sandbox when no API key is set; always; never.")
]
ProviderOption = Annotated[str | None, typer.Option("--provider", help="bfl, fal, replicate or local.")]
WeightsOption = Annotated[str | None, typer.Option("--weights", help="local: a diffusers folder or HF repo id.")]
BudgetOption = Annotated[float | None, typer.Option("--budget", help="Most this command may spend, in USD.")]
LicenceOption = Annotated[bool, typer.Option("--accept-licence", help="Accept a local model's licence (non-commercial "
                                             "FLUX.1 [dev] weights) for this run.")]


def record_consent(ledger: Ledger, image: Path, who: str | None, source: str | None, permission: str | None) -> None:
    """--who/--source/--permission given: record the rights for the photo before anything is sent."""
    if not any((who, source, permission)):
        return
    from ..brief import Rights
    from ..consent import require_rights
    from ..errors import BriefError

    missing = [k for k, v in (("--who", who), ("--source", source), ("--permission", permission)) if not v]
    if missing:
        raise BriefError(f"consent needs all three of --who, --source and --permission; missing {', '.join(missing)}",
                         field=missing[0], hint="e.g. --who 'Ana Ruiz' --source 'own photo' --permission 'model release'")
    require_rights(ledger, image, Rights(who=who, source=source, permission=permission))  # type: ignore[arg-type]


def _print_chain(ledger: Ledger, sha: str) -> None:
    from ..finishing.lineage import describe_chain

    console.print("[bold]lineage[/] (oldest first):")
    for n, line in enumerate(describe_chain(ledger.lineage(sha))):
        console.print(("  " if n == 0 else "  └─ ") + escape(line), highlight=False)


def _chain_json(ledger: Ledger, sha: str) -> list[dict[str, Any]]:
    return [r.model_dump(mode="json") for r in reversed(ledger.lineage(sha))]


def register(app: typer.Typer) -> None:
    @app.command("fix")
    def fix(
        image: ImageArg,
        region: Annotated[str | None, typer.Option("--region", help="mouth, teeth, eyes, face, skin or hands "
                                                   "(also eye_left, eye_right, hand_0 ...).")] = None,
        auto: Annotated[bool, typer.Option("--auto", help="Run the checklist and fix the regions that failed.")] = False,
        max_tries: Annotated[int, typer.Option("--max-tries", help="--auto: most fix-and-recheck rounds.")] = 2,
        denoise: Annotated[float | None, typer.Option("--denoise", help="How much the region may change (0–1); default "
                                                      "per model (FLUX.1 dev 0.85: FLUX barely changes anything below ~0.8).")] = None,
        strength: Annotated[float | None, typer.Option("--strength", hidden=True)] = None,
        model: Annotated[str, typer.Option("--model", "-m", help="An inpainting model: flux-fill-pro, "
                                           "flux-1-fill-dev, flux-1-dev, flux-1-schnell.")] = "flux-fill-pro",
        provider: ProviderOption = None,
        prompt_add: Annotated[str | None, typer.Option("--prompt-add", help="Added to the region's repair cue, "
                                                       "e.g. 'even teeth, natural shade'.")] = None,
        seed: Annotated[int | None, typer.Option("--seed", help="Default: derived from the image and region.")] = None,
        steps: Annotated[int | None, typer.Option("--steps")] = None,
        who: Annotated[str | None, typer.Option("--who", help="Consent for a photo the studio did not make: the person shown.")] = None,
        source: Annotated[str | None, typer.Option("--source", help="Consent: where the photo comes from.")] = None,
        permission: Annotated[str | None, typer.Option("--permission", help="Consent: what they agreed to.")] = None,
        weights: WeightsOption = None,
        budget: BudgetOption = None,
        sandbox: SandboxOption = "auto",
        out: OutOption = None,
        sign: Annotated[bool, typer.Option("--sign/--no-sign", help="Sign the new file with the C2PA key.")] = True,
        accept_licence: LicenceOption = False,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Repaint one region with a light masked inpaint; everything outside the feathered mask stays byte for byte."""
        from ..engine import Engine
        from ..finishing.fix import auto_fix, default_provider, fix_region
        from ._engine import run_with_engine

        renamed_option("--strength", strength, "--denoise", "how much the region may change")
        if auto == (region is not None):
            raise CapabilityError("give either --region or --auto", hint="e.g. portrait fix IMG --region teeth")
        s = studio(home)
        pid = provider or default_provider(model)
        options: dict[str, Any] = dict(model=model, provider=pid, denoise=denoise, prompt_add=prompt_add, steps=steps,
                                       weights=weights)
        with Ledger(s.ledger_path) as ledger:
            record_consent(ledger, image, who, source, permission)

        if auto:
            def on_round(r: Any) -> None:
                if not json_out:
                    console.print(f"round {r.round}: fixed {', '.join(f.region for f in r.fixes) or 'nothing'}; "
                                  f"failed before: {', '.join(r.failed_before) or '-'} → after: "
                                  f"{', '.join(r.failed_after) or '-'} (score {r.score_before:g} → {r.score_after:g})"
                                  + ("" if r.kept else " — not better, not kept"))
                    for e in r.errors:
                        console.print(f"  [red]✗[/] {escape(e)}", highlight=False)

            async def work_auto(engine: Engine) -> Any:
                return await auto_fix(engine, image, max_tries=max_tries, on_round=on_round, budget_usd=budget, out=out,
                                      **{k: v for k, v in options.items() if k not in ("provider",)}, provider=pid)

            report = run_with_engine(s, [pid], work_auto, sandbox=sandbox, weights=weights, sign=sign, quiet=json_out,
                                     accept_licence=model if accept_licence else None)
            with Ledger(s.ledger_path) as ledger:
                if json_out:
                    print_json({**report.model_dump(mode="json"), "lineage": _chain_json(ledger, report.final_sha256)})
                    return
                money = (f"spent ${report.spent_usd:.3f}" if not report.sandbox_usd
                         else f"sandbox ${report.sandbox_usd:.3f} (no real money)")
                console.print(f"stopped: {report.stopped} · resolved: {', '.join(report.resolved) or '-'} · "
                              f"still failing: {', '.join(report.remaining) or '-'} · {money}")
                if report.unfixable:
                    console.print(f"not region fixes (re-shoot or vary instead): {', '.join(report.unfixable)}")
                if report.kept_original:
                    console.print("[yellow]kept the original[/]: no round improved the checklist score")
                console.print(f"final: {escape(report.final)}", highlight=False)
                _print_chain(ledger, report.final_sha256)
            return
        assert region is not None

        async def work(engine: Engine) -> Any:
            return await fix_region(engine, image, region, seed=seed, budget_usd=budget, out=out, **options)

        outcome = run_with_engine(s, [pid], work, sandbox=sandbox, weights=weights, sign=sign, quiet=json_out,
                                  accept_licence=model if accept_licence else None)
        with Ledger(s.ledger_path) as ledger:
            if json_out:
                print_json({**outcome.model_dump(mode="json"), "lineage": _chain_json(ledger, outcome.image.image_sha256)})
                return
            for w in outcome.warnings:
                console.print(f"[yellow]note:[/] {escape(w)}", highlight=False)
            denoise_text = f" at denoise {outcome.denoise:g}" if outcome.denoise is not None else ""
            money = "sandbox, no real money" if outcome.sandbox else f"${outcome.cost_usd:.3f}"
            console.print(f"fixed {region} with {escape(outcome.model)} via {outcome.provider}{denoise_text}: "
                          f"{outcome.changed_pixels} px repainted, {outcome.outside_changed} px changed outside the "
                          f"feathered mask · {money}", highlight=False)
            console.print(f"wrote {escape(outcome.path)}", highlight=False)
            _print_chain(ledger, outcome.image.image_sha256)

    @app.command("upscale")
    def upscale(
        image: ImageArg,
        scale: Annotated[float, typer.Option("--scale", help="1.5 or 2 (the workflow's range; up to 4 allowed).")] = 2.0,
        detail_denoise: Annotated[float | None, typer.Option("--detail-denoise", help="Add a light image-to-image "
                                                             "detail pass at this denoise (0.1-0.3).")] = None,
        detail_strength: Annotated[float | None, typer.Option("--detail-strength", hidden=True)] = None,
        model: Annotated[str, typer.Option("--model", "-m", help="Detail-pass model.")] = "flux-1-dev",
        provider: ProviderOption = None,
        weights: WeightsOption = None,
        gpu: Annotated[int | None, typer.Option("--gpu", help="Vulkan device index (default: CPU).")] = None,
        tile: Annotated[int | None, typer.Option("--tile", help="Tile size in input pixels (bounds memory).")] = None,
        budget: BudgetOption = None,
        sandbox: SandboxOption = "auto",
        out: OutOption = None,
        sign: Annotated[bool, typer.Option("--sign/--no-sign")] = True,
        accept_licence: LicenceOption = False,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Upscale 1.5–4x to the exact size; keeps the lineage; an optional paid detail pass runs on the engine."""
        from ..engine import Engine
        from ..finishing.fix import default_provider
        from ..finishing.upscaling import DetailPass, upscale_image
        from ._engine import run_with_engine

        renamed_option("--detail-strength", detail_strength, "--detail-denoise", "how much the detail pass may change")
        s = studio(home)
        detail = None
        ids: list[str] = []
        if detail_denoise is not None:
            pid = provider or default_provider(model)
            detail = DetailPass(model=model, denoise=detail_denoise, weights=weights, provider=pid)
            ids = [pid]

        async def work(engine: Engine) -> Any:
            return await upscale_image(engine, image, scale, detail=detail, gpu=gpu, tile=tile, out=out,
                                       budget_usd=budget)

        outcome = run_with_engine(s, ids, work, sandbox=sandbox, weights=weights, sign=sign, quiet=json_out,
                                  checker=None, accept_licence=model if accept_licence and detail else None)
        with Ledger(s.ledger_path) as ledger:
            if json_out:
                print_json({**outcome.model_dump(mode="json"), "lineage": _chain_json(ledger, outcome.image.image_sha256)})
                return
            console.print(f"upscaled ×{scale:g} to {outcome.size[0]}×{outcome.size[1]} in {outcome.seconds:.1f}s"
                          + (f" with a {escape(outcome.detail_model)} detail pass" if outcome.detail_model else ""),
                          highlight=False)
            console.print(f"wrote {escape(outcome.path)}", highlight=False)
            _print_chain(ledger, outcome.image.image_sha256)

    @app.command("masks")
    def masks(
        image: ImageArg,
        out: Annotated[Path, typer.Option("--out", help="Folder for the mask PNGs.")] = Path("masks"),
        json_out: JsonOption = False,
    ) -> None:
        """Write the region masks a fix would use (mouth, teeth, eyes, face, skin, hands) and an overlay."""
        from ..analysis import analyze
        from ..finishing.masks import region_masks, save_masks

        analysis = analyze(image)
        paths = save_masks(analysis, out)
        found = region_masks(analysis)
        if json_out:
            print_json({name: {"path": str(p), "area": found[name].area if name in found else None,
                               "feather_px": found[name].feather_px if name in found else None,
                               "box": found[name].box if name in found else None} for name, p in paths.items()})
            return
        for name, p in paths.items():
            m = found.get(name)
            extra = f"  {m.area} px, feather {m.feather_px} px" if m else ""
            console.print(f"{name:10s} {escape(str(p))}{extra}", highlight=False)
        if not found:
            console.print("[yellow]no face or hands found[/]: nothing to mask")

    @app.command("lineage")
    def lineage(
        image: Annotated[str, typer.Argument(help="Image file, or an id / sha256 prefix from 'portrait log'.")],
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Print an image's chain: generation → fixes → upscale, with models, settings and costs."""
        from ..finishing.lineage import describe_chain, file_sha256

        s = studio(home)
        ref = file_sha256(image) if Path(image).is_file() else image
        with Ledger(s.ledger_path) as ledger:
            try:
                row = ledger.image(ref)
            except LedgerError as exc:
                raise LedgerError(f"{image} is not in the ledger", hint="only images made, fixed or upscaled here "
                                  "have a lineage; 'portrait log' lists them") from exc
            chain = ledger.lineage(row.image_sha256)
            children = ledger.children(row.image_sha256)
            if json_out:
                print_json({"lineage": [r.model_dump(mode="json") for r in reversed(chain)],
                            "children": [r.model_dump(mode="json") for r in children]})
                return
            _print_chain(ledger, row.image_sha256)
            total = sum(r.cost_usd for r in chain)
            console.print(f"{len(chain)} step(s), ${total:.3f} in all")
            if children:
                console.print("made from it: " + ", ".join(describe_chain([c])[0] for c in children), highlight=False)


__all__ = ["register"]
