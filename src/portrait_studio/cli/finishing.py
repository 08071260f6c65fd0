"""`portrait fix | upscale | masks | lineage`: finishing a picked portrait, with its lineage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from ..errors import CapabilityError, LedgerError
from ..ledger import Ledger
from ..quiet import native_quiet
from ._common import HomeOption, JsonOption, console, plain, print_json, renamed_option, say_path, studio
from ._options import (
    BudgetOption,
    ImageArg,
    ProviderOption,
    SandboxOption,
    WeightsOption,
    check_id,
    finite,
    seed_option,
)
from ._progress import progress_bars
from ._run import debug

T = TypeVar("T")

OutOption = Annotated[Path | None, typer.Option("--out", help="Output file or folder (default: next to the input).")]
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
        console.print(plain(("  " if n == 0 else "  └─ ") + line))


def _chain_json(ledger: Ledger, sha: str) -> list[dict[str, Any]]:
    return [r.model_dump(mode="json") for r in reversed(ledger.lineage(sha))]


def register(app: typer.Typer) -> None:
    @app.command("fix")
    def fix(
        image: ImageArg,
        region: Annotated[str | None, typer.Option("--region", help="mouth, teeth, eyes, face, skin or hands "
                                                   "(also eye_left, eye_right, hand_0 ...).")] = None,
        auto: Annotated[bool, typer.Option("--auto", help="Run the checklist and fix the regions that failed.")] = False,
        max_tries: Annotated[int, typer.Option("--max-tries", min=1, max=10, help="--auto: most fix-and-recheck rounds.")] = 2,
        denoise: Annotated[float | None, typer.Option("--denoise", callback=finite(0.0, 1.0), help="How much the region may change (0–1); default "
                                                      "per model (FLUX.1 dev 0.85: FLUX barely changes anything below ~0.8).")] = None,
        strength: Annotated[str | None, typer.Option("--strength", hidden=True)] = None,
        model: Annotated[str, typer.Option("--model", "-m", help="An inpainting model: flux-fill-pro, "
                                           "flux-1-fill-dev, flux-1-dev, flux-1-schnell.")] = "flux-fill-pro",
        provider: ProviderOption = None,
        prompt_add: Annotated[str | None, typer.Option("--prompt-add", help="Added to the region's repair cue, "
                                                       "e.g. 'even teeth, natural shade'.")] = None,
        seed: Annotated[int | None, seed_option("Default: derived from the image and region.")] = None,
        steps: Annotated[int | None, typer.Option("--steps", min=1, max=100, help="Inference steps (local models).")] = None,
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
                        console.print("  [red]✗[/]", plain(e), highlight=False)

            async def work_auto(engine: Engine) -> Any:
                return await auto_fix(engine, image, max_tries=max_tries, on_round=on_round, budget_usd=budget, out=out,
                                      **{k: v for k, v in options.items() if k not in ("provider",)}, provider=pid)

            with native_quiet(enabled=not debug()):  # the checklist's mediapipe/TFLite set-up chatter
                report = run_with_engine(s, [pid], work_auto, sandbox=sandbox, weights=weights, sign=sign, quiet=json_out,
                                         accept_licence=model if accept_licence else None)
            with Ledger(s.ledger_path) as ledger:
                if json_out:
                    print_json({**report.model_dump(mode="json"), "lineage": _chain_json(ledger, report.final_sha256)})
                    return
                money = (f"spent ${report.spent_usd:.3f}" if not report.sandbox_usd
                         else f"sandbox ${report.sandbox_usd:.3f} (no real money)")
                console.print(plain(f"stopped: {report.stopped} · resolved: {', '.join(report.resolved) or '-'} · "
                                    f"still failing: {', '.join(report.remaining) or '-'} · {money}"))
                if report.unfixable:
                    console.print(f"not region fixes (re-shoot or vary instead): {', '.join(report.unfixable)}")
                if report.kept_original:
                    console.print("[yellow]kept the original[/]: no round improved the checklist score")
                say_path("final:", report.final)
                _print_chain(ledger, report.final_sha256)
            return
        assert region is not None

        async def work(engine: Engine) -> Any:
            return await fix_region(engine, image, region, seed=seed, budget_usd=budget, out=out, **options)

        with native_quiet(enabled=not debug()):
            outcome = run_with_engine(s, [pid], work, sandbox=sandbox, weights=weights, sign=sign, quiet=json_out,
                                      accept_licence=model if accept_licence else None)
        with Ledger(s.ledger_path) as ledger:
            if json_out:
                print_json({**outcome.model_dump(mode="json"), "lineage": _chain_json(ledger, outcome.image.image_sha256)})
                return
            for w in outcome.warnings:
                console.print("[yellow]note:[/]", plain(w), highlight=False)
            denoise_text = f" at denoise {outcome.denoise:g}" if outcome.denoise is not None else ""
            money = "sandbox, no real money" if outcome.sandbox else f"${outcome.cost_usd:.3f}"
            console.print(plain(f"fixed {region} with {outcome.model} via {outcome.provider}{denoise_text}: "
                                f"{outcome.changed_pixels} px repainted, {outcome.outside_changed} px changed outside the "
                                f"feathered mask · {money}"))
            say_path("wrote", outcome.path)
            _print_chain(ledger, outcome.image.image_sha256)

    @app.command("upscale")
    def upscale(
        image: ImageArg,
        scale: Annotated[float, typer.Option("--scale", callback=finite(1.0, 4.0, low_open=True), help="1.5 or 2 (the workflow's range; up to 4 allowed).")] = 2.0,
        detail_denoise: Annotated[float | None, typer.Option("--detail-denoise", callback=finite(0.0, 1.0), help="Add a light image-to-image "
                                                             "detail pass at this denoise (0.1-0.3).")] = None,
        detail_strength: Annotated[str | None, typer.Option("--detail-strength", hidden=True)] = None,
        model: Annotated[str, typer.Option("--model", "-m", help="Detail-pass model.")] = "flux-1-dev",
        provider: ProviderOption = None,
        weights: WeightsOption = None,
        gpu: Annotated[int | None, typer.Option("--gpu", min=0, max=64, help="Vulkan device index (default: CPU).")] = None,
        tile: Annotated[int | None, typer.Option("--tile", min=32, max=4096, help="Tile size in input pixels (bounds memory).")] = None,
        quality: Annotated[str, typer.Option("--quality", help="auto: a local GPU, else the hosted upscaler when "
                                             "FAL_KEY is set, else SPAN on the CPU; standard: SPAN locally; max: "
                                             "Real-ESRGAN x4plus (minutes on CPU, best on JPEG artefacts); hosted: fal's "
                                             "Real-ESRGAN (paid); lanczos: no network.")] = "auto",
        who: Annotated[str | None, typer.Option("--who", help="Consent for a photo the studio did not make (detail pass).")] = None,
        source: Annotated[str | None, typer.Option("--source", help="Consent: where the photo comes from.")] = None,
        permission: Annotated[str | None, typer.Option("--permission", help="Consent: what they agreed to.")] = None,
        budget: BudgetOption = None,
        sandbox: SandboxOption = "auto",
        out: OutOption = None,
        sign: Annotated[bool, typer.Option("--sign/--no-sign")] = True,
        accept_licence: LicenceOption = False,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Upscale 1.5–4x to the exact size (SPAN on the CPU by default); keeps the lineage; an optional paid
        detail pass runs on the engine."""
        from ..engine import Engine
        from ..finishing.fix import default_provider
        from ..finishing.upscaling import DetailPass, upscale_image
        from ._engine import run_with_engine

        renamed_option("--detail-strength", detail_strength, "--detail-denoise", "how much the detail pass may change")
        methods = {"auto": "auto", "standard": "standard", "max": "max", "lanczos": "lanczos", "hosted": "hosted"}
        if quality not in methods:
            from ..errors import UsageError

            raise UsageError(f"unknown quality '{quality}'", field="--quality",
                             hint="choose auto, standard, max, hosted or lanczos")
        s = studio(home)
        from ..finishing.upscaling import HOSTED_UPSCALER, choose_method

        method = choose_method(s, quality, gpu=gpu)
        if method == "hosted" and detail_denoise is not None:
            from ..errors import UsageError

            raise UsageError("a detail pass runs on a local upscale", field="--quality",
                             hint="use --quality standard (or max) with --detail-denoise")
        with Ledger(s.ledger_path) as ledger:
            record_consent(ledger, image, who, source, permission)
        detail = None
        ids: list[str] = []
        if detail_denoise is not None:
            pid = provider or default_provider(model)
            detail = DetailPass(model=model, denoise=detail_denoise, weights=weights, provider=pid)
            ids = [pid]
        if method == "hosted":
            from ..catalog import get_model

            ids = [get_model(HOSTED_UPSCALER).default_provider]

        with progress_bars(quiet=json_out) as bars:
            tiles = bars.bar(f"upscale ×{scale:g}", None, unit="tiles")

            async def work(engine: Engine) -> Any:
                engine.progress = tiles.update  # type: ignore[attr-defined]  # (tiles done, tiles in all)
                return await upscale_image(engine, image, scale, detail=detail, gpu=gpu, tile=tile, out=out,
                                           budget_usd=budget, method=method)

            outcome = run_with_engine(s, ids, work, sandbox=sandbox, weights=weights, sign=sign, quiet=json_out,
                                      checker=None, accept_licence=model if accept_licence and detail else None)
        with Ledger(s.ledger_path) as ledger:
            if json_out:
                print_json({**outcome.model_dump(mode="json"), "lineage": _chain_json(ledger, outcome.image.image_sha256)})
                return
            console.print(plain(f"upscaled ×{scale:g} to {outcome.size[0]}×{outcome.size[1]} in {outcome.seconds:.1f}s"
                                f" with {outcome.engine}"
                                + (f" and a {outcome.detail_model} detail pass" if outcome.detail_model else "")))
            say_path("wrote", outcome.path)
            _print_chain(ledger, outcome.image.image_sha256)

    @app.command("masks")
    def masks(
        image: ImageArg,
        out: Annotated[Path, typer.Option("--out", help="Folder for the mask PNGs.", file_okay=False,
                                          metavar="FOLDER")] = Path("masks"),
        json_out: JsonOption = False,
    ) -> None:
        """Write the region masks a fix would use (mouth, teeth, eyes, face, skin, hands) and an overlay."""
        from ..analysis import analyze
        from ..finishing.masks import region_masks, save_masks

        with native_quiet(enabled=not debug()):
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
            console.print(plain(f"{name:10s} {p}{extra}"))
        if not found:
            console.print("[yellow]no face or hands found[/]: nothing to mask")

    @app.command("lineage")
    def lineage(
        image: Annotated[str, typer.Argument(help="Image file, or an id / sha256 prefix from 'portrait log'.",
                                             metavar="IMAGE")],
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Print an image's chain: generation → fixes → upscale, with models, settings and costs."""
        from ..finishing.lineage import describe_chain, file_sha256

        s = studio(home)
        if Path(image).is_dir():
            raise typer.BadParameter(f"'{image}' is a folder, not an image file or id", param_hint="IMAGE")
        ref = file_sha256(image) if Path(image).is_file() else check_id(image, "image id or file") or image
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
                console.print(plain("made from it: " + ", ".join(describe_chain([c])[0] for c in children)))


__all__ = ["register"]
