"""`portrait fix | upscale | masks | lineage`: finishing a picked portrait, with its lineage."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape

from ..config import Studio
from ..errors import CapabilityError, LedgerError
from ..ledger import Ledger
from ..providers import SandboxMode, open_providers
from ..providers.base import Provider
from ._common import HomeOption, JsonOption, console, err_console, print_json, renamed_option, studio

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


def _with_provider(
    s: Studio, provider_id: str, *, sandbox: str, model: str, accept_licence: bool,
    work: Callable[[Provider], Awaitable[T]],
) -> T:
    """Open one provider (a sandbox when there is no key), run `work` with it, close it."""
    mode: SandboxMode = sandbox  # type: ignore[assignment]
    if mode not in ("auto", "always", "never"):
        raise CapabilityError(f"--sandbox {sandbox} is not auto, always or never", hint="use --sandbox auto")
    with ExitStack() as stack:
        if provider_id == "local":
            # built with the studio so licences accepted with 'portrait local licence' count
            from ..providers.local import LocalProvider

            provider: Provider = LocalProvider(s.config.providers.get("local", {}), studio=s)
        else:
            provider = stack.enter_context(open_providers(s, [provider_id], sandbox=mode))[provider_id]
        if getattr(provider, "sandbox", False):
            err_console.print("[bold magenta]SANDBOX[/]: no API key set, so the repair comes from a local sandbox that "
                              "follows the provider's API contract")
        if accept_licence and hasattr(provider, "accept_licence"):
            provider.accept_licence(model)

        async def go() -> T:
            try:
                return await work(provider)
            finally:
                await provider.aclose()

        return asyncio.run(go())


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
        from ..finishing.fix import auto_fix, default_provider, fix_region
        from ..finishing.lineage import LabelSettings

        renamed_option("--strength", strength, "--denoise", "how much the region may change")
        if auto == (region is not None):
            raise CapabilityError("give either --region or --auto", hint="e.g. portrait fix IMG --region teeth")
        s = studio(home)
        pid = provider or default_provider(model)
        limit = budget if budget is not None else s.config.default_budget_usd
        labels = LabelSettings.from_studio(s, sign=sign)
        with Ledger(s.ledger_path) as ledger:
            common: dict[str, Any] = dict(ledger=ledger, images_dir=s.images_dir, model=model, denoise=denoise,
                                          prompt_add=prompt_add, out=out, mask_dir=s.home / "masks", labels=labels,
                                          budget_usd=limit, weights=weights, steps=steps)
            if auto:
                def on_round(r: Any) -> None:
                    if not json_out:
                        console.print(f"round {r.round}: fixed {', '.join(f.region for f in r.fixes) or 'nothing'}; "
                                      f"failed before: {', '.join(r.failed_before) or '-'} → after: "
                                      f"{', '.join(r.failed_after) or '-'} (score {r.score_before:g} → {r.score_after:g})")
                        for e in r.errors:
                            console.print(f"  [red]✗[/] {escape(e)}", highlight=False)

                report = _with_provider(
                    s, pid, sandbox=sandbox, model=model, accept_licence=accept_licence,
                    work=lambda p: auto_fix(image, provider=p, max_tries=max_tries, on_round=on_round, **common),
                )
                if json_out:
                    print_json({**report.model_dump(mode="json"), "lineage": _chain_json(ledger, report.final_sha256)})
                    return
                console.print(f"stopped: {report.stopped} · resolved: {', '.join(report.resolved) or '-'} · "
                              f"still failing: {', '.join(report.remaining) or '-'} · spent ${report.spent_usd:.3f}")
                if report.unfixable:
                    console.print(f"not region fixes (re-shoot or vary instead): {', '.join(report.unfixable)}")
                console.print(f"final: {escape(report.final)}", highlight=False)
                _print_chain(ledger, report.final_sha256)
                return
            assert region is not None
            outcome = _with_provider(
                s, pid, sandbox=sandbox, model=model, accept_licence=accept_licence,
                work=lambda p: fix_region(image, region, provider=p, seed=seed, **common),
            )
            if json_out:
                print_json({**outcome.model_dump(mode="json"), "lineage": _chain_json(ledger, outcome.image.image_sha256)})
                return
            for w in outcome.warnings:
                console.print(f"[yellow]note:[/] {escape(w)}", highlight=False)
            denoise_text = f" at denoise {outcome.denoise:g}" if outcome.denoise is not None else ""
            console.print(f"fixed {region} with {outcome.model} via {outcome.provider}{denoise_text}: "
                          f"{outcome.changed_pixels} px repainted, {outcome.outside_changed} px changed outside the "
                          f"feathered mask · ${outcome.cost_usd:.3f}")
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
        tile: Annotated[int, typer.Option("--tile", help="Tile size in input pixels (bounds memory).")] = 192,
        budget: BudgetOption = None,
        sandbox: SandboxOption = "auto",
        out: OutOption = None,
        sign: Annotated[bool, typer.Option("--sign/--no-sign")] = True,
        accept_licence: LicenceOption = False,
        json_out: JsonOption = False,
        home: HomeOption = None,
    ) -> None:
        """Upscale 1.5–2x with Real-ESRGAN x4plus to the exact size; keeps metadata; records the lineage."""
        from ..finishing.fix import default_provider
        from ..finishing.lineage import LabelSettings
        from ..finishing.upscaling import DetailPass, upscale_image

        renamed_option("--detail-strength", detail_strength, "--detail-denoise", "how much the detail pass may change")
        s = studio(home)
        labels = LabelSettings.from_studio(s, sign=sign)
        limit = budget if budget is not None else s.config.default_budget_usd
        with Ledger(s.ledger_path) as ledger:
            common: dict[str, Any] = dict(ledger=ledger, images_dir=s.images_dir, out=out, labels=labels, gpu=gpu,
                                          tile=tile, budget_usd=limit)
            if detail_denoise is not None:
                detail = DetailPass(model=model, denoise=detail_denoise, weights=weights)
                outcome = _with_provider(
                    s, provider or default_provider(model), sandbox=sandbox, model=model,
                    accept_licence=accept_licence,
                    work=lambda p: upscale_image(image, scale, detail=detail, provider=p, **common),
                )
            else:
                outcome = asyncio.run(upscale_image(image, scale, **common))
            if json_out:
                print_json({**outcome.model_dump(mode="json"), "lineage": _chain_json(ledger, outcome.image.image_sha256)})
                return
            console.print(f"upscaled ×{scale:g} to {outcome.size[0]}×{outcome.size[1]} in {outcome.seconds:.1f}s"
                          + (f" with a {outcome.detail_model} detail pass" if outcome.detail_model else ""))
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
